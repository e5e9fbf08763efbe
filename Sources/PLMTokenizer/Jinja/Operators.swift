// Python's operators on template values: `+` adds numbers and concatenates strings, lists and
// tuples (anything else is a TypeError, as `'a' + 1` is in Python), `~` joins the `str()` of both
// sides, `==` is Python equality (`1 == 1.0 == True`, code-point string comparison), `<` orders
// numbers, strings and sequences. Integer overflow is an error: Python would switch to big
// integers, which no chat template needs.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Operators {
    static func binary(_ op: BinaryOperator, _ a: Value, _ b: Value, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        if op == .concat {
            return try r.checked(PythonText.str(a) + PythonText.str(b), p)
        }
        if case .undefined(let hint) = a { throw r.error(.undefined, p, hint) }
        if case .undefined(let hint) = b { throw r.error(.undefined, p, hint) }
        let symbol = op.rawValue
        func typeError() -> TemplateError {
            r.error(.type, p, "unsupported operand type(s) for \(symbol): '\(a.typeName)' and '\(b.typeName)'")
        }
        if let x = a.number, let y = b.number { return try arithmetic(op, x, y, p, r) }
        switch (op, a, b) {
        case (.add, .string(let x), .string(let y)):
            return try r.checked(x + y, p)
        case (.add, .string, _), (.add, _, .string):
            throw r.error(.type, p, a.typeName == "str"
                ? "can only concatenate str (not \"\(b.typeName)\") to str"
                : "unsupported operand type(s) for +: '\(a.typeName)' and 'str'")
        case (.add, .list(let x), .list(let y)):
            try r.checkCount(x.count + y.count, p)
            return .list(x + y)
        case (.add, .tuple(let x), .tuple(let y)):
            try r.checkCount(x.count + y.count, p)
            return .tuple(x + y)
        case (.multiply, .string(let s), _), (.multiply, _, .string(let s)):
            guard let n = (a.integer ?? b.integer) else { throw typeError() }
            let count = max(0, n)
            let (bytes, overflow) = s.utf8.count.multipliedReportingOverflow(by: count)
            guard !overflow, bytes <= r.limits.maxStringBytes else {
                throw r.error(.limit, p, "a string exceeds \(r.limits.maxStringBytes) bytes")
            }
            return .string(String(repeating: s, count: count))
        case (.multiply, .list(let l), _), (.multiply, _, .list(let l)):
            guard let n = (a.integer ?? b.integer) else { throw typeError() }
            let count = max(0, n)
            let (total, overflow) = l.count.multipliedReportingOverflow(by: count)
            guard !overflow else { throw r.error(.limit, p, "a list exceeds \(r.limits.maxCollectionCount) items") }
            try r.checkCount(total, p)
            var out: [Value] = []
            out.reserveCapacity(total)
            for _ in 0..<count { out += l }
            return .list(out)
        case (.modulo, .string, _):
            throw r.error(.unsupported, p, "printf-style string formatting ('…' % value) is not supported")
        default:
            throw typeError()
        }
    }

    private static func arithmetic(_ op: BinaryOperator, _ x: PyNumber, _ y: PyNumber, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        let overflow = r.error(.limit, p, "integer overflow in \(op.rawValue)")
        if case .int(let a) = x, case .int(let b) = y {
            switch op {
            case .add:
                let (v, o) = a.addingReportingOverflow(b)
                if o { throw overflow }
                return .int(v)
            case .subtract:
                let (v, o) = a.subtractingReportingOverflow(b)
                if o { throw overflow }
                return .int(v)
            case .multiply:
                let (v, o) = a.multipliedReportingOverflow(by: b)
                if o { throw overflow }
                return .int(v)
            case .divide:
                guard b != 0 else { throw r.error(.type, p, "division by zero") }
                return .float(Double(a) / Double(b))
            case .floorDivide, .modulo:
                guard b != 0 else { throw r.error(.type, p, "integer division or modulo by zero") }
                if a == Int.min && b == -1 { throw overflow }
                // Python floors toward negative infinity; the remainder takes the divisor's sign.
                var q = a / b, m = a % b
                if m != 0 && ((m < 0) != (b < 0)) { q -= 1; m += b }
                return .int(op == .floorDivide ? q : m)
            case .power:
                if b < 0 { return .float(pow(Double(a), Double(b))) }
                var result = 1, base = a, e = b
                while e > 0 {
                    if e & 1 == 1 {
                        let (v, o) = result.multipliedReportingOverflow(by: base)
                        if o { throw overflow }
                        result = v
                    }
                    e >>= 1
                    if e > 0 {
                        let (v, o) = base.multipliedReportingOverflow(by: base)
                        if o { throw overflow }
                        base = v
                    }
                }
                return .int(result)
            case .concat:
                return .none
            }
        }
        let a = x.double, b = y.double
        switch op {
        case .add: return .float(a + b)
        case .subtract: return .float(a - b)
        case .multiply: return .float(a * b)
        case .divide:
            guard b != 0 else { throw r.error(.type, p, "float division by zero") }
            return .float(a / b)
        case .floorDivide, .modulo:
            guard b != 0 else { throw r.error(.type, p, "float modulo by zero") }
            var m = a.truncatingRemainder(dividingBy: b)
            if m != 0 && ((m < 0) != (b < 0)) { m += b }
            return op == .modulo ? .float(m) : .float(((a - m) / b).rounded())
        case .power: return .float(pow(a, b))
        case .concat: return .none
        }
    }

    static func compare(_ op: CompareOperator, _ a: Value, _ b: Value, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Bool {
        switch op {
        case .equal: return equal(a, b)
        case .notEqual: return !equal(a, b)
        case .isIn: return try contains(b, a, p, r)
        case .notIn: return !(try contains(b, a, p, r))
        case .less: return try less(a, b, op, p, r)
        case .greater: return try less(b, a, op, p, r)
        case .lessEqual: return try !less(b, a, op, p, r)
        case .greaterEqual: return try !less(a, b, op, p, r)
        }
    }

    /// Python `==`.
    static func equal(_ a: Value, _ b: Value) -> Bool {
        if let x = a.number, let y = b.number {
            if case .int(let i) = x, case .int(let j) = y { return i == j }
            return x.double == y.double
        }
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return PythonString.equal(x, y)
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            for (k, v) in x.items {
                guard let h = HashKey(k), let w = y[h], equal(v, w) else { return false }
            }
            return true
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.generator(let x), .generator(let y)): return x === y
        default: return false
        }
    }

    /// Python `<`, which only orders numbers, strings and sequences of those.
    static func less(_ a: Value, _ b: Value, _ op: CompareOperator, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Bool {
        if let x = a.number, let y = b.number {
            if case .int(let i) = x, case .int(let j) = y { return i < j }
            return x.double < y.double
        }
        switch (a, b) {
        case (.string(let x), .string(let y)): return PythonString.less(x, y)
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            for (u, v) in zip(x, y) where !equal(u, v) { return try less(u, v, op, p, r) }
            return x.count < y.count
        default:
            if case .undefined(let hint) = a { throw r.error(.undefined, p, hint) }
            if case .undefined(let hint) = b { throw r.error(.undefined, p, hint) }
            throw r.error(.type, p, "'\(op.rawValue)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    /// Python `needle in container`.
    static func contains(_ container: Value, _ needle: Value, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Bool {
        switch container {
        case .undefined: return false
        case .string(let s):
            guard case .string(let n) = needle else {
                throw r.error(.type, p, "'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return PythonString.contains(s, n)
        case .list(let items), .tuple(let items), .view(_, let items):
            return items.contains { equal($0, needle) }
        case .dict(let d):
            guard let h = HashKey(needle) else { throw r.error(.type, p, "unhashable type: '\(needle.typeName)'") }
            return d[h] != nil
        case .generator(let g):
            // Python consumes the iterator up to the first match.
            while let item = g.next() { if equal(item, needle) { return true } }
            return false
        case .namespace(let ns):
            // A Namespace is not a container in Jinja either; it has no __contains__ or __iter__.
            _ = ns
            throw r.error(.type, p, "argument of type 'Namespace' is not iterable")
        default:
            throw r.error(.type, p, "argument of type '\(container.typeName)' is not iterable")
        }
    }
}

// Attribute and item access, filters, tests, globals and the Python methods templates call,
// each with the semantics of Jinja 3.1 (sandboxed, as transformers runs it) and of the Python
// objects behind the values.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Builtins {
    static let filterNames: Set<String> = [
        "abs", "attr", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "indent", "int",
        "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title",
        "tojson", "trim", "unique", "upper",
    ]

    static let testNames: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "even", "false", "float", "ge",
        ">=", "greaterthan", "gt", ">", "in", "integer", "iterable", "le", "<=", "lessthan", "lower", "lt", "<",
        "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper",
    ]

    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]
    static let stringMethods: Set<String> = [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower",
        "title", "capitalize", "replace", "find", "rfind", "count", "join", "isdigit", "isalpha", "isalnum",
        "isspace", "isupper", "islower", "removeprefix", "removesuffix",
    ]
    static let listMethods: Set<String> = ["index", "count"]

    // MARK: - Attribute and item access

    /// `value.name`: a Python attribute (a method) first, then the item, else undefined.
    static func attribute(of v: Value, _ name: String, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        switch v {
        case .undefined(let hint):
            throw r.error(.undefined, p, hint)
        case .dict(let d):
            if dictMethods.contains(name) { return .function(.method(receiver: v, name: name)) }
            return d[name] ?? .undefined(hint: "'dict object' has no attribute '\(name)'")
        case .namespace(let ns):
            return ns.attributes[name] ?? .undefined(hint: "'Namespace object' has no attribute '\(name)'")
        case .loop(let loop):
            return loopAttribute(loop, name)
        case .string:
            if stringMethods.contains(name) { return .function(.method(receiver: v, name: name)) }
        case .list, .tuple:
            if listMethods.contains(name) { return .function(.method(receiver: v, name: name)) }
        default:
            break
        }
        return .undefined(hint: "'\(v.typeName) object' has no attribute '\(name)'")
    }

    private static func loopAttribute(_ l: LoopState, _ name: String) -> Value {
        switch name {
        case "index": return .int(l.index0 + 1)
        case "index0": return .int(l.index0)
        case "revindex": return .int(l.length - l.index0)
        case "revindex0": return .int(l.length - l.index0 - 1)
        case "first": return .bool(l.index0 == 0)
        case "last": return .bool(l.index0 == l.length - 1)
        case "length": return .int(l.length)
        case "depth": return .int(l.depth0 + 1)
        case "depth0": return .int(l.depth0)
        case "previtem": return l.index0 > 0 ? l.items[l.index0 - 1] : .undefined(hint: "there is no previous item")
        case "nextitem": return l.index0 + 1 < l.length ? l.items[l.index0 + 1] : .undefined(hint: "there is no next item")
        case "cycle": return .function(.loopCycle(l))
        default: return .undefined(hint: "'LoopContext object' has no attribute '\(name)'")
        }
    }

    /// `value[key]`: the item first, then (for a string key) the attribute, else undefined.
    static func item(of v: Value, _ key: Value, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        switch v {
        case .undefined(let hint):
            throw r.error(.undefined, p, hint)
        case .dict(let d):
            if let h = HashKey(key), let found = d[h] { return found }
        case .list(let items), .tuple(let items):
            if let i = key.integer {
                let k = i < 0 ? i + items.count : i
                if k >= 0 && k < items.count { return items[k] }
                return .undefined(hint: "\(v.typeName) index \(i) out of range")
            }
        case .string(let s):
            if let i = key.integer {
                let scalars = Array(s.unicodeScalars)
                let k = i < 0 ? i + scalars.count : i
                if k >= 0 && k < scalars.count { return .string(String(scalars[k])) }
                return .undefined(hint: "string index \(i) out of range")
            }
        default:
            break
        }
        if case .string(let name) = key { return try attribute(of: v, name, p, r) }
        return .undefined(hint: "'\(v.typeName) object' has no item \(PythonText.repr(key))")
    }

    /// Python's `sequence[start:stop:step]` on lists, tuples and strings.
    static func slice(_ v: Value, _ start: Value?, _ stop: Value?, _ step: Value?, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        func index(_ x: Value?) throws(TemplateError) -> Int? {
            guard let x, !isNone(x) else { return nil }
            guard let i = x.integer else { throw r.error(.type, p, "slice indices must be integers or None") }
            return i
        }
        let s0 = try index(start), s1 = try index(stop), s2 = try index(step) ?? 1
        guard s2 != 0 else { throw r.error(.type, p, "slice step cannot be zero") }
        func indices(_ n: Int) -> [Int] {
            var lo: Int, hi: Int
            if s2 > 0 {
                lo = s0.map { $0 < 0 ? max(0, $0 + n) : min($0, n) } ?? 0
                hi = s1.map { $0 < 0 ? max(0, $0 + n) : min($0, n) } ?? n
                return lo < hi ? Array(stride(from: lo, to: hi, by: s2)) : []
            }
            lo = s0.map { $0 < 0 ? max(-1, $0 + n) : min($0, n - 1) } ?? (n - 1)
            hi = s1.map { $0 < 0 ? max(-1, $0 + n) : min($0, n - 1) } ?? -1
            return lo > hi ? Array(stride(from: lo, to: hi, by: s2)) : []
        }
        switch v {
        case .undefined(let hint): throw r.error(.undefined, p, hint)
        case .list(let items): return .list(indices(items.count).map { items[$0] })
        case .tuple(let items): return .tuple(indices(items.count).map { items[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        default:
            throw r.error(.type, p, "'\(v.typeName)' object is not subscriptable")
        }
    }

    static func isNone(_ v: Value) -> Bool { if case .none = v { return true } else { return false } }

    /// Jinja's `make_attrgetter`: `"a.b.0"` looked up part by part with item access.
    static func attributePath(_ item: Value, _ path: Value, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        guard case .string(let s) = path else { return try Builtins.item(of: item, path, p, r) }
        var v = item
        for part in PythonString.split(s, sep: ".", maxSplit: -1) {
            let key: Value = Int(part).map { .int($0) } ?? .string(part)
            v = try Builtins.item(of: v, key, p, r)
        }
        return v
    }

    // MARK: - Filters

    static func filter(_ name: String, _ v: Value, _ args: Arguments, _ p: SourcePosition, _ r: inout Renderer) throws(TemplateError) -> Value {
        switch name {
        case "trim":
            let a = try args.bind(["chars"], "trim", p, r)
            return .string(PythonString.strip(PythonText.str(v), chars: try optionalString(a[0], p, r), left: true, right: true))
        case "length", "count":
            _ = try args.bind([], name, p, r)
            return .int(try length(v, p, r))
        case "upper", "lower", "capitalize", "title":
            _ = try args.bind([], name, p, r)
            return try r.checked(StringCase.apply(name == "title" ? "jinja-title" : name, PythonText.str(v)), p)
        case "string":
            _ = try args.bind([], name, p, r)
            return .string(PythonText.str(v))
        case "safe":
            return v
        case "e", "escape":
            _ = try args.bind([], name, p, r)
            var out = ""
            for u in PythonText.str(v).unicodeScalars {
                switch u {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "'": out += "&#39;"
                case "\"": out += "&#34;"
                default: out.unicodeScalars.append(u)
                }
            }
            return try r.checked(out, p)
        case "default", "d":
            let a = try args.bind(["default_value", "boolean"], name, p, r)
            if v.isUndefined || ((a[1]?.truthy ?? false) && !v.truthy) { return a[0] ?? .string("") }
            return v
        case "replace":
            let a = try args.bind(["old", "new", "count"], "replace", p, r)
            guard let old = a[0], let new = a[1] else { throw r.error(.type, p, "replace needs the old and the new text") }
            let count = try a[2].map { (c) throws(TemplateError) -> Int in
                guard let n = c.integer else { throw r.error(.type, p, "replace count must be an integer") }
                return n
            } ?? -1
            let text = PythonText.str(v), o = PythonText.str(old), n = PythonText.str(new)
            // Bound the result before building it.
            var hits = o.isEmpty ? PythonString.length(text) + 1 : PythonString.split(text, sep: o, maxSplit: -1).count - 1
            if count >= 0 { hits = min(hits, count) }
            let growth = n.utf8.count - o.utf8.count
            if growth > 0 {
                let (extra, overflow) = growth.multipliedReportingOverflow(by: hits)
                if overflow || text.utf8.count + extra > r.limits.maxStringBytes {
                    throw r.error(.limit, p, "a string exceeds \(r.limits.maxStringBytes) bytes")
                }
            }
            return try r.checked(PythonString.replace(text, o, n, count: count), p)
        case "join":
            let a = try args.bind(["d", "attribute"], "join", p, r)
            var items = try r.iterate(v, p)
            if let attr = a[1], !isNone(attr) {
                var mapped: [Value] = []
                for item in items { mapped.append(try attributePath(item, attr, p, r)) }
                items = mapped
            }
            let sep = a[0].map(PythonText.str) ?? ""
            var out = ""
            for (k, item) in items.enumerated() {
                if k > 0 { out += sep }
                out += PythonText.str(item)
                if out.utf8.count > r.limits.maxStringBytes { throw r.error(.limit, p, "a string exceeds \(r.limits.maxStringBytes) bytes") }
            }
            return .string(out)
        case "list":
            _ = try args.bind([], "list", p, r)
            return .list(try r.iterate(v, p))
        case "first":
            _ = try args.bind([], "first", p, r)
            if case .generator(let g) = v { return g.next() ?? .undefined(hint: "No first item, sequence was empty.") }
            return try r.iterate(v, p).first ?? .undefined(hint: "No first item, sequence was empty.")
        case "last":
            _ = try args.bind([], "last", p, r)
            switch v {
            case .list, .tuple, .string, .dict, .view: return try r.iterate(v, p).last ?? .undefined(hint: "No last item, sequence was empty.")
            case .undefined(let hint): throw r.error(.undefined, p, hint)
            default: throw r.error(.type, p, "'\(v.typeName)' object is not reversible")
            }
        case "reverse":
            _ = try args.bind([], "reverse", p, r)
            switch v {
            case .string(let s):
                var out = String.UnicodeScalarView()
                out.append(contentsOf: s.unicodeScalars.reversed())
                return .string(String(out))
            case .list, .tuple, .dict: return .generator(GeneratorObject(try r.iterate(v, p).reversed()))
            default: return .list(try r.iterate(v, p).reversed())
            }
        case "items":
            _ = try args.bind([], "items", p, r)
            switch v {
            case .undefined: return .generator(GeneratorObject([]))
            case .dict(let d): return .generator(GeneratorObject(d.items.map { .tuple([$0.key, $0.value]) }))
            default: throw r.error(.type, p, "can only get item pairs from a mapping")
            }
        case "tojson":
            // transformers replaces Jinja's tojson: json.dumps(x, ensure_ascii=False, indent=None,
            // separators=None, sort_keys=False), no HTML escaping.
            let a = try args.bind(["ensure_ascii", "indent", "separators", "sort_keys"], "tojson", p, r)
            var options = JSONDump.Options()
            options.ensureASCII = a[0]?.truthy ?? false
            if let indent = a[1], !isNone(indent) {
                if let n = indent.integer { options.indent = String(repeating: " ", count: max(0, min(n, 64))) } else if case .string(let s) = indent { options.indent = s } else {
                    throw r.error(.type, p, "tojson indent must be an integer or a string")
                }
                options.itemSeparator = ","
            }
            if let sep = a[2], !isNone(sep) {
                let parts = try r.iterate(sep, p)
                guard parts.count == 2, case .string(let item) = parts[0], case .string(let key) = parts[1] else {
                    throw r.error(.type, p, "tojson separators must be two strings")
                }
                options.itemSeparator = item
                options.keySeparator = key
            }
            options.sortKeys = a[3]?.truthy ?? false
            var dump = JSONDump(options: options, limit: r.limits.maxStringBytes)
            do { try dump.write(v, depth: 0) } catch { throw r.error(error.isLimit ? .limit : .type, p, error.message) }
            return .string(dump.out)
        case "int":
            let a = try args.bind(["default", "base"], "int", p, r)
            return try toInt(v, default: a[0] ?? .int(0), base: a[1]?.integer ?? 10, p, r)
        case "float":
            let a = try args.bind(["default"], "float", p, r)
            return toFloat(v) ?? a[0] ?? .float(0)
        case "abs":
            _ = try args.bind([], "abs", p, r)
            switch v.number {
            case .int(let i)?:
                guard i != Int.min else { throw r.error(.limit, p, "integer overflow") }
                return .int(abs(i))
            case .float(let d)?: return .float(abs(d))
            case nil: throw try r.operandError("bad operand type for abs(): '\(v.typeName)'", v, p)
            }
        case "round":
            let a = try args.bind(["precision", "method"], "round", p, r)
            guard let x = v.number?.double else { throw try r.operandError("round needs a number, not '\(v.typeName)'", v, p) }
            let precision = a[0]?.integer ?? 0
            let method = a[1].map(PythonText.str) ?? "common"
            let scale = pow(10.0, Double(precision))
            switch method {
            case "common": return .float((x * scale).rounded(.toNearestOrEven) / scale)
            case "ceil": return .float((x * scale).rounded(.up) / scale)
            case "floor": return .float((x * scale).rounded(.down) / scale)
            default: throw r.error(.type, p, "round method must be 'common', 'ceil' or 'floor'")
            }
        case "select", "reject", "selectattr", "rejectattr":
            let byAttribute = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            guard v.truthy else { return .generator(GeneratorObject([])) }
            var positional = args.positional
            var attribute: Value? = nil
            if byAttribute {
                guard !positional.isEmpty else { throw r.error(.type, p, "\(name) needs the attribute name") }
                attribute = positional.removeFirst()
            }
            var testName: String? = nil
            if !positional.isEmpty {
                guard case .string(let t) = positional.removeFirst() else { throw r.error(.type, p, "\(name): the test name must be a string") }
                guard testNames.contains(t) else { throw r.error(.unknownTest, p, "unknown test '\(t)'") }
                testName = t
            }
            var out: [Value] = []
            for item in try r.iterate(v, p) {
                let subject = try attribute.map { (a) throws(TemplateError) in try attributePath(item, a, p, r) } ?? item
                let passes = try testName.map { (t) throws(TemplateError) in
                    try test(t, subject, Arguments(positional: positional, keywords: args.keywords), p, r)
                } ?? subject.truthy
                if passes == keep { out.append(item) }
            }
            return .generator(GeneratorObject(out))
        case "map":
            var out: [Value] = []
            if let attribute = args.keywords.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = args.keywords.first(where: { $0.0 == "default" })?.1
                for item in try r.iterate(v, p) {
                    var x = try attributePath(item, attribute, p, r)
                    if x.isUndefined, let fallback { x = fallback }
                    out.append(x)
                }
            } else {
                guard case .string(let f)? = args.positional.first else { throw r.error(.type, p, "map needs a filter name or attribute=") }
                guard filterNames.contains(f) else { throw r.error(.unknownFilter, p, "unknown filter '\(f)'") }
                let rest = Arguments(positional: Array(args.positional.dropFirst()), keywords: args.keywords)
                for item in try r.iterate(v, p) { out.append(try filter(f, item, rest, p, &r)) }
            }
            return .generator(GeneratorObject(out))
        case "unique":
            let a = try args.bind(["case_sensitive", "attribute"], "unique", p, r)
            let caseSensitive = a[0]?.truthy ?? false
            var seen = Set<HashKey>()
            var out: [Value] = []
            for item in try r.iterate(v, p) {
                var key = try a[1].map { (x) throws(TemplateError) in try attributePath(item, x, p, r) } ?? item
                if !caseSensitive, case .string(let s) = key { key = .string(StringCase.apply("lower", s)) }
                guard let h = HashKey(key) else { throw r.error(.type, p, "unhashable type: '\(key.typeName)'") }
                if seen.insert(h).inserted { out.append(item) }
            }
            return .generator(GeneratorObject(out))
        case "sort":
            let a = try args.bind(["reverse", "case_sensitive", "attribute"], "sort", p, r)
            let items = try r.iterate(v, p)
            let keys = try sortKeys(items, caseSensitive: a[1]?.truthy ?? false, attribute: a[2], p, r)
            let order = try stableOrder(keys, descending: a[0]?.truthy ?? false, p, r)
            return .list(order.map { items[$0] })
        case "min", "max":
            let a = try args.bind(["case_sensitive", "attribute"], name, p, r)
            let items = try r.iterate(v, p)
            guard !items.isEmpty else { return .undefined(hint: "No aggregated item, sequence was empty.") }
            let keys = try sortKeys(items, caseSensitive: a[0]?.truthy ?? false, attribute: a[1], p, r)
            var best = 0
            for k in 1..<items.count {
                let better = name == "min" ? try Operators.less(keys[k], keys[best], .less, p, r) : try Operators.less(keys[best], keys[k], .less, p, r)
                if better { best = k }
            }
            return items[best]
        case "sum":
            let a = try args.bind(["attribute", "start"], "sum", p, r)
            var total = a[1] ?? .int(0)
            for item in try r.iterate(v, p) {
                let x = try a[0].map { (attr) throws(TemplateError) in try attributePath(item, attr, p, r) } ?? item
                total = try Operators.binary(.add, total, x, p, r)
            }
            return total
        case "attr":
            let a = try args.bind(["name"], "attr", p, r)
            guard case .string(let n)? = a[0] else { throw r.error(.type, p, "attr needs an attribute name") }
            return try attribute(of: v, n, p, r)
        case "indent":
            let a = try args.bind(["width", "first", "blank"], "indent", p, r)
            let indentation: String
            switch a[0] {
            case .string(let s)?: indentation = s
            case let w?:
                guard let n = w.integer else { throw r.error(.type, p, "indent width must be an integer or a string") }
                indentation = String(repeating: " ", count: max(0, min(n, 256)))
            case nil: indentation = "    "
            }
            let lines = PythonString.splitLines(PythonText.str(v) + "\n")
            var out: String
            if a[2]?.truthy ?? false {
                out = lines.joined(separator: "\n" + indentation)
            } else {
                out = lines.first ?? ""
                let rest = lines.dropFirst()
                if !rest.isEmpty { out += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n") }
            }
            if a[1]?.truthy ?? false { out = indentation + out }
            return try r.checked(out, p)
        default:
            throw r.error(.unknownFilter, p, "unknown filter '\(name)'")
        }
    }

    static func length(_ v: Value, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Int {
        switch v {
        case .undefined: return 0
        case .string(let s): return PythonString.length(s)
        case .list(let a), .tuple(let a), .view(_, let a): return a.count
        case .dict(let d): return d.count
        default: throw r.error(.type, p, "object of type '\(v.typeName)' has no len()")
        }
    }

    private static func optionalString(_ v: Value?, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> String? {
        guard let v, !isNone(v) else { return nil }
        guard case .string(let s) = v else { throw r.error(.type, p, "expected a string argument, not '\(v.typeName)'") }
        return s
    }

    private static func sortKeys(_ items: [Value], caseSensitive: Bool, attribute: Value?, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> [Value] {
        var keys: [Value] = []
        for item in items {
            var key = try attribute.map { (a) throws(TemplateError) in try attributePath(item, a, p, r) } ?? item
            if !caseSensitive, case .string(let s) = key { key = .string(StringCase.apply("lower", s)) }
            keys.append(key)
        }
        return keys
    }

    /// A stable merge sort of indices (Python's sort is stable, also with reverse=True).
    private static func stableOrder(_ keys: [Value], descending: Bool, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> [Int] {
        var order = Array(keys.indices)
        var buffer = order
        var width = 1
        while width < order.count {
            var lo = 0
            while lo < order.count {
                let mid = min(lo + width, order.count), hi = min(lo + 2 * width, order.count)
                var i = lo, j = mid, k = lo
                while i < mid && j < hi {
                    // Take from the right run only when it is strictly before the left one.
                    let rightFirst = descending
                        ? try Operators.less(keys[order[i]], keys[order[j]], .less, p, r)
                        : try Operators.less(keys[order[j]], keys[order[i]], .less, p, r)
                    if rightFirst { buffer[k] = order[j]; j += 1 } else { buffer[k] = order[i]; i += 1 }
                    k += 1
                }
                while i < mid { buffer[k] = order[i]; i += 1; k += 1 }
                while j < hi { buffer[k] = order[j]; j += 1; k += 1 }
                lo = hi
            }
            swap(&order, &buffer)
            width *= 2
        }
        return order
    }

    /// Jinja's `int` filter: `int(value)` (strings in `base`), else `int(float(value))`, else the default.
    private static func toInt(_ v: Value, default fallback: Value, base: Int, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Value {
        switch v {
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let i): return .int(i)
        case .float(let d):
            guard d.isFinite else { throw r.error(.type, p, "cannot convert float \(PythonText.floatRepr(d)) to integer") }
            guard let i = Int(exactly: d.rounded(.towardZero)) else { throw r.error(.limit, p, "integer overflow") }
            return .int(i)
        case .string(let s):
            let t = PythonString.strip(s, chars: nil, left: true, right: true)
            var digits = String(t.unicodeScalars.filter { $0 != "_" })
            var negative = false
            if digits.hasPrefix("-") || digits.hasPrefix("+") { negative = digits.hasPrefix("-"); digits.removeFirst() }
            // Python accepts the 0x/0o/0b prefix that matches the base, and base 0 reads the prefix.
            var radix = base
            let lower = digits.lowercased()
            for (prefix, b) in [("0x", 16), ("0o", 8), ("0b", 2)] where lower.hasPrefix(prefix) && (radix == b || radix == 0) {
                radix = b
                digits.removeFirst(2)
            }
            if radix == 0 { radix = 10 }
            if (2...36).contains(radix), !digits.isEmpty, !t.hasPrefix("_"), let i = Int(digits, radix: radix) { return .int(negative ? -i : i) }
            if let d = toFloat(v), case .float(let x) = d, x.isFinite, let i = Int(exactly: x.rounded(.towardZero)) { return .int(i) }
            return fallback
        default:
            return fallback
        }
    }

    private static func toFloat(_ v: Value) -> Value? {
        switch v {
        case .bool(let b): return .float(b ? 1 : 0)
        case .int(let i): return .float(Double(i))
        case .float(let d): return .float(d)
        case .string(let s):
            let t = PythonString.strip(s, chars: nil, left: true, right: true).lowercased()
            switch t {
            case "inf", "+inf", "infinity", "+infinity": return .float(.infinity)
            case "-inf", "-infinity": return .float(-.infinity)
            case "nan", "+nan", "-nan": return .float(.nan)
            default:
                guard !t.isEmpty, t.unicodeScalars.allSatisfy({ "0123456789+-.e_".unicodeScalars.contains($0) }) else { return nil }
                return Double(String(t.unicodeScalars.filter { $0 != "_" })).map { .float($0) }
            }
        default: return nil
        }
    }

    // MARK: - Tests

    static func test(_ name: String, _ v: Value, _ args: Arguments, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> Bool {
        func other() throws(TemplateError) -> Value {
            let a = try args.bind(["other"], name, p, r)
            guard let o = a[0] else { throw r.error(.type, p, "the '\(name)' test needs an argument") }
            return o
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return isNone(v)
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .float = v { return true } else { return false }
        case "number": return v.number != nil
        case "string": if case .string = v { return true } else { return false }
        case "mapping": if case .dict = v { return true } else { return false }
        case "callable": if case .function = v { return true } else { return false }
        case "iterable":
            switch v {
            case .undefined, .string, .list, .tuple, .dict, .generator, .view: return true
            default: return false
            }
        case "sequence":
            switch v {
            case .string, .list, .tuple, .dict: return true
            default: return false
            }
        case "lower", "upper":
            guard case .string(let s) = v else { return false }
            return StringCase.apply(name, s) == s
        case "odd", "even":
            guard let i = v.integer else { throw try r.operandError("the '\(name)' test needs an integer, not '\(v.typeName)'", v, p) }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            let o = try other()
            guard let i = v.integer, let n = o.integer, n != 0 else { throw r.error(.type, p, "divisibleby needs a non-zero integer") }
            return i % n == 0
        case "eq", "equalto", "==": return Operators.equal(v, try other())
        case "ne", "!=": return !Operators.equal(v, try other())
        case "lt", "lessthan", "<": return try Operators.compare(.less, v, try other(), p, r)
        case "le", "<=": return try Operators.compare(.lessEqual, v, try other(), p, r)
        case "gt", "greaterthan", ">": return try Operators.compare(.greater, v, try other(), p, r)
        case "ge", ">=": return try Operators.compare(.greaterEqual, v, try other(), p, r)
        case "in": return try Operators.contains(try other(), v, p, r)
        case "sameas":
            let o = try other()
            switch (v, o) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        default:
            throw r.error(.unknownTest, p, "unknown test '\(name)'")
        }
    }

    // MARK: - Globals

    static let globalNames: [String] = ["raise_exception", "strftime_now", "namespace", "dict", "range"]

    static func callGlobal(_ name: String, _ args: Arguments, _ p: SourcePosition, _ r: inout Renderer) throws(TemplateError) -> Value {
        switch name {
        case "raise_exception":
            let a = try args.bind(["message"], name, p, r)
            throw r.error(.raised, p, a[0].map(PythonText.str) ?? "")
        case "strftime_now":
            let a = try args.bind(["format"], name, p, r)
            guard case .string(let format)? = a[0] else { throw r.error(.type, p, "strftime_now needs a format string") }
            return try r.checked(Clock.localTime(format), p)
        case "namespace", "dict":
            var d = PyDict()
            guard args.positional.count <= 1 else { throw r.error(.type, p, "\(name) takes at most one positional argument") }
            if let first = args.positional.first {
                guard case .dict(let initial) = first else { throw r.error(.type, p, "\(name) takes a dict as its positional argument") }
                d = initial
            }
            for (k, v) in args.keywords {
                if name == "namespace", k.hasPrefix("_") { throw r.error(.type, p, "namespace attributes cannot start with '_' ('\(k)')") }
                d.set(k, v)
            }
            return name == "dict" ? .dict(d) : .namespace(NamespaceObject(d))
        case "range":
            guard args.keywords.isEmpty, (1...3).contains(args.positional.count) else { throw r.error(.type, p, "range takes one to three integers") }
            var bounds: [Int] = []
            for v in args.positional {
                guard let i = v.integer else { throw r.error(.type, p, "range needs integers, not '\(v.typeName)'") }
                bounds.append(i)
            }
            let start = bounds.count == 1 ? 0 : bounds[0]
            let stop = bounds.count == 1 ? bounds[0] : bounds[1]
            let step = bounds.count == 3 ? bounds[2] : 1
            guard step != 0 else { throw r.error(.type, p, "range() arg 3 must not be zero") }
            let count = step > 0 ? (stop > start ? (stop - start - 1) / step + 1 : 0) : (start > stop ? (start - stop - 1) / (-step) + 1 : 0)
            try r.checkCount(count, p)
            return .list((0..<count).map { .int(start + $0 * step) })
        default:
            throw r.error(.undefined, p, "'\(name)' is undefined")
        }
    }

    // MARK: - Methods

    static func callMethod(_ receiver: Value, _ name: String, _ args: Arguments, _ p: SourcePosition, _ r: inout Renderer) throws(TemplateError) -> Value {
        switch receiver {
        case .dict(let d):
            switch name {
            case "items":
                _ = try args.bind([], name, p, r)
                return .view(kind: "dict_items", d.items.map { .tuple([$0.key, $0.value]) })
            case "keys":
                _ = try args.bind([], name, p, r)
                return .view(kind: "dict_keys", d.keys)
            case "values":
                _ = try args.bind([], name, p, r)
                return .view(kind: "dict_values", d.values)
            default:
                let a = try args.bind(["key", "default"], "get", p, r)
                guard let key = a[0] else { throw r.error(.type, p, "get expected at least 1 argument") }
                guard let h = HashKey(key) else { throw r.error(.type, p, "unhashable type: '\(key.typeName)'") }
                return d[h] ?? a[1] ?? .none
            }
        case .list(let items), .tuple(let items):
            let a = try args.bind(["value"], name, p, r)
            guard let x = a[0] else { throw r.error(.type, p, "\(name) expected 1 argument") }
            if name == "count" { return .int(items.filter { Operators.equal($0, x) }.count) }
            guard let i = items.firstIndex(where: { Operators.equal($0, x) }) else { throw r.error(.type, p, "\(PythonText.repr(x)) is not in list") }
            return .int(i)
        case .string(let s):
            return try stringMethod(s, name, args, p, &r)
        default:
            throw r.error(.type, p, "'\(receiver.typeName)' has no method '\(name)'")
        }
    }

    private static func stringMethod(_ s: String, _ name: String, _ args: Arguments, _ p: SourcePosition, _ r: inout Renderer) throws(TemplateError) -> Value {
        func stringArgument(_ v: Value?, _ what: String) throws(TemplateError) -> String {
            guard case .string(let x)? = v else { throw r.error(.type, p, "\(name): \(what) must be a string") }
            return x
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            let a = try args.bind(["chars"], name, p, r)
            return .string(PythonString.strip(s, chars: try optionalString(a[0], p, r), left: name != "rstrip", right: name != "lstrip"))
        case "split", "rsplit":
            let a = try args.bind(["sep", "maxsplit"], name, p, r)
            let sep = try optionalString(a[0], p, r)
            if sep == "" { throw r.error(.type, p, "empty separator") }
            let maxSplit = a[1]?.integer ?? -1
            var parts = PythonString.split(s, sep: sep, maxSplit: name == "split" ? maxSplit : -1)
            if name == "rsplit", maxSplit >= 0, parts.count - 1 > maxSplit {
                guard let sep else { throw r.error(.unsupported, p, "rsplit with maxsplit and no separator is not supported") }
                let head = parts[..<(parts.count - maxSplit)].joined(separator: sep)
                parts = [head] + parts[(parts.count - maxSplit)...]
            }
            try r.checkCount(parts.count, p)
            return .list(parts.map { .string($0) })
        case "splitlines":
            _ = try args.bind([], name, p, r)
            return .list(PythonString.splitLines(s).map { .string($0) })
        case "startswith", "endswith":
            let a = try args.bind(["prefix"], name, p, r)
            var candidates: [String] = []
            switch a[0] {
            case .string(let x)?: candidates = [x]
            case .tuple(let xs)?:
                for x in xs { candidates.append(try stringArgument(x, "each prefix")) }
            default: throw r.error(.type, p, "\(name) first arg must be str or a tuple of str")
            }
            return .bool(candidates.contains { name == "startswith" ? PythonString.hasPrefix(s, $0) : PythonString.hasSuffix(s, $0) })
        case "upper", "lower", "title", "capitalize":
            _ = try args.bind([], name, p, r)
            return .string(StringCase.apply(name, s))
        case "replace":
            return try filter("replace", .string(s), args, p, &r)
        case "find", "rfind", "count":
            let a = try args.bind(["sub"], name, p, r)
            let sub = Array(try stringArgument(a[0], "the substring").utf8)
            let h = Array(s.utf8)
            var hits: [Int] = []
            var from = 0
            while let at = PythonString.find(h, sub, from: from) {
                hits.append(at)
                if name == "find" { break }
                from = at + max(sub.count, 1)
                if from > h.count { break }
            }
            if name == "count" { return .int(hits.count) }
            guard let at = name == "find" ? hits.first : hits.last else { return .int(-1) }
            return .int(String(decoding: h[..<at], as: UTF8.self).unicodeScalars.count)
        case "join":
            let a = try args.bind(["iterable"], name, p, r)
            guard let items = a[0] else { throw r.error(.type, p, "join expected 1 argument") }
            var out = ""
            for (k, item) in try r.iterate(items, p).enumerated() {
                guard case .string(let x) = item else { throw r.error(.type, p, "sequence item \(k): expected str instance, \(item.typeName) found") }
                if k > 0 { out += s }
                out += x
                if out.utf8.count > r.limits.maxStringBytes { throw r.error(.limit, p, "a string exceeds \(r.limits.maxStringBytes) bytes") }
            }
            return .string(out)
        case "removeprefix", "removesuffix":
            let a = try args.bind(["affix"], name, p, r)
            let x = try stringArgument(a[0], "the affix")
            let b = Array(s.utf8), n = x.utf8.count
            if name == "removeprefix", PythonString.hasPrefix(s, x) { return .string(String(decoding: b[n...], as: UTF8.self)) }
            if name == "removesuffix", n > 0, PythonString.hasSuffix(s, x) { return .string(String(decoding: b[..<(b.count - n)], as: UTF8.self)) }
            return .string(s)
        default:
            // isdigit, isalpha, isalnum, isspace, isupper, islower
            _ = try args.bind([], name, p, r)
            let scalars = Array(s.unicodeScalars)
            guard !scalars.isEmpty else { return .bool(false) }
            switch name {
            case "isspace": return .bool(scalars.allSatisfy(PythonString.isSpace))
            case "isdigit": return .bool(scalars.allSatisfy { $0.properties.numericType == .decimal || $0.properties.numericType == .digit })
            case "isalpha": return .bool(scalars.allSatisfy { $0.properties.isAlphabetic })
            case "isalnum": return .bool(scalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
            case "isupper", "islower":
                let cased = scalars.filter { $0.properties.isCased }
                return .bool(!cased.isEmpty && StringCase.apply(name == "isupper" ? "upper" : "lower", s) == s)
            default: throw r.error(.type, p, "'str' has no method '\(name)'")
            }
        }
    }
}

/// Python's case conversions on code points.
enum StringCase {
    static func apply(_ kind: String, _ s: String) -> String {
        var out = ""
        switch kind {
        case "upper": for u in s.unicodeScalars { out += u.properties.uppercaseMapping }
        case "lower": for u in s.unicodeScalars { out += u.properties.lowercaseMapping }
        case "capitalize":
            for (k, u) in s.unicodeScalars.enumerated() { out += k == 0 ? u.properties.titlecaseMapping : u.properties.lowercaseMapping }
        case "title":
            // str.title: the first cased character after an uncased one is title-cased.
            var previousCased = false
            for u in s.unicodeScalars {
                let cased = u.properties.isCased
                out += cased ? (previousCased ? u.properties.lowercaseMapping : u.properties.titlecaseMapping) : String(u)
                previousCased = cased
            }
        default:
            // Jinja's title filter: words start after `-`, white space, `(`, `{`, `[` or `<`; the
            // first character of each word is upper-cased (not title-cased) and the rest lowered.
            var atWordStart = true
            for u in s.unicodeScalars {
                let separator = PythonString.isSpace(u) || "-({[<".unicodeScalars.contains(u)
                if separator {
                    out.unicodeScalars.append(u)
                    atWordStart = true
                } else {
                    out += atWordStart ? u.properties.uppercaseMapping : u.properties.lowercaseMapping
                    atWordStart = false
                }
            }
        }
        return out
    }
}

extension PythonString {
    /// `str.splitlines()`: the line boundaries Python knows, without keeping them.
    static func splitLines(_ s: String) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        let scalars = Array(s.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let u = scalars[i]
            switch u.value {
            case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(String(current))
                current = String.UnicodeScalarView()
                if u == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
            default:
                current.append(u)
            }
            i += 1
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }
}

/// The local wall clock through the C library's `strftime`, which is what Python's
/// `datetime.now().strftime` uses.
enum Clock {
    static func localTime(_ format: String) -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 512)
        let n = strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

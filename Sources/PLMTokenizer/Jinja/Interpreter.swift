// Runs a parsed template. Scoping follows Jinja: a `for` body gets a fresh scope on every
// iteration (a `set` inside a loop is gone after the iteration, which is why templates use
// `namespace`), `if` opens no scope, a top-level `set` replaces the variable for the rest of the
// template. Every step, loop iteration, appended byte and built collection counts against the
// limits, so a hostile template ends with a `.limit` error instead of hanging or filling memory.

enum Flow {
    case normal, breakLoop, continueLoop
}

struct Renderer {
    let limits: ChatTemplate.Limits
    private(set) var output = ""
    private var outputBytes = 0
    private var scopes: [[String: Value]]
    private var steps = 0
    private var iterations = 0
    private var callDepth = 0

    init(limits: ChatTemplate.Limits, variables: [String: Value]) {
        self.limits = limits
        scopes = [variables]
    }

    func error(_ kind: TemplateError.Kind, _ p: SourcePosition, _ message: String) -> TemplateError {
        TemplateError(kind, line: p.line, column: p.column, message)
    }

    private mutating func step(_ p: SourcePosition) throws(TemplateError) {
        steps += 1
        if steps > limits.maxSteps { throw error(.limit, p, "the template ran more than \(limits.maxSteps) steps") }
    }

    private mutating func emit(_ s: String, _ p: SourcePosition) throws(TemplateError) {
        outputBytes += s.utf8.count
        if outputBytes > limits.maxOutputBytes { throw error(.limit, p, "the output exceeds \(limits.maxOutputBytes) bytes") }
        output += s
    }

    /// A string result must stay under the string limit.
    func checked(_ s: String, _ p: SourcePosition) throws(TemplateError) -> Value {
        if s.utf8.count > limits.maxStringBytes { throw error(.limit, p, "a string exceeds \(limits.maxStringBytes) bytes") }
        return .string(s)
    }

    func checkCount(_ n: Int, _ p: SourcePosition) throws(TemplateError) {
        if n > limits.maxCollectionCount { throw error(.limit, p, "a list exceeds \(limits.maxCollectionCount) items") }
    }

    // MARK: - Variables

    func lookup(_ name: String) -> Value? {
        for scope in scopes.reversed() {
            if let v = scope[name] { return v }
        }
        return nil
    }

    private mutating func bind(_ target: AssignTarget, _ value: Value, _ p: SourcePosition) throws(TemplateError) {
        switch target {
        case .name(let n):
            scopes[scopes.count - 1][n] = value
        case .namespaceAttribute(let n, let attribute):
            guard case .namespace(let ns)? = lookup(n) else {
                throw error(.type, p, "cannot assign attribute '\(attribute)': '\(n)' is not a namespace")
            }
            if attribute.hasPrefix("_") { throw error(.type, p, "namespace attributes cannot start with '_' ('\(attribute)')") }
            ns.attributes.set(attribute, value)
        case .tuple(let targets):
            let items = try iterate(value, p)
            guard items.count == targets.count else {
                throw error(.type, p, items.count > targets.count
                    ? "too many values to unpack (expected \(targets.count))"
                    : "not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            for (t, v) in zip(targets, items) { try bind(t, v, p) }
        }
    }

    // MARK: - Statements

    mutating func execute(_ body: [Statement]) throws(TemplateError) -> Flow {
        for statement in body {
            let flow = try execute(statement)
            if case .normal = flow { continue }
            return flow
        }
        return .normal
    }

    private mutating func execute(_ statement: Statement) throws(TemplateError) -> Flow {
        switch statement {
        case .text(let s):
            try emit(s, SourcePosition(line: 0, column: 0))
        case .output(let e):
            try step(e.position)
            let v = try evaluate(e)
            try emit(PythonText.str(v), e.position)
        case .ifChain(let branches, let otherwise):
            for branch in branches {
                try step(branch.condition.position)
                if try evaluate(branch.condition).truthy { return try execute(branch.body) }
            }
            return try execute(otherwise)
        case .forLoop(let loop):
            return try run(loop)
        case .assign(let target, let e, let p):
            try step(p)
            try bind(target, try evaluate(e), p)
        case .blockAssign(let target, let body, let p):
            let text = try capture(body)
            try bind(target, .string(text), p)
        case .loopControl(let isBreak, _):
            return isBreak ? .breakLoop : .continueLoop
        case .macro(let m):
            scopes[scopes.count - 1][m.name] = .function(.macro(m))
        }
        return .normal
    }

    /// Renders `body` into a string of its own (block set, macro call).
    private mutating func capture(_ body: [Statement]) throws(TemplateError) -> String {
        let saved = output
        output = ""
        defer { output = saved }
        _ = try execute(body)
        return output
    }

    private mutating func run(_ loop: ForLoop) throws(TemplateError) -> Flow {
        try step(loop.position)
        var items = try iterate(try evaluate(loop.iterable), loop.iterable.position)
        if let condition = loop.condition {
            var kept: [Value] = []
            for item in items {
                scopes.append([:])
                defer { scopes.removeLast() }
                try bind(loop.target, item, loop.position)
                try step(condition.position)
                if try evaluate(condition).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            _ = try execute(loop.otherwise)
            return .normal
        }
        for (k, item) in items.enumerated() {
            iterations += 1
            if iterations > limits.maxLoopIterations {
                throw error(.limit, loop.position, "the template ran more than \(limits.maxLoopIterations) loop iterations")
            }
            // `loop.depth` counts recursive loops only (not supported), so it is 1 in nested loops too.
            scopes.append(["loop": .loop(LoopState(items: items, index0: k, depth0: 0))])
            defer { scopes.removeLast() }
            try bind(loop.target, item, loop.position)
            if case .breakLoop = try execute(loop.body) { break }
        }
        return .normal
    }

    // MARK: - Expressions

    mutating func evaluate(_ e: Expr) throws(TemplateError) -> Value {
        try step(e.position)
        switch e {
        case .constant(let c, _):
            switch c {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .float(let d): return .float(d)
            case .string(let s): return .string(s)
            }
        case .name(let n, _):
            return lookup(n) ?? .undefined(hint: "'\(n)' is undefined")
        case .list(let items, let p):
            var out: [Value] = []
            for item in items { out.append(try evaluate(item)) }
            try checkCount(out.count, p)
            return .list(out)
        case .tuple(let items, _):
            var out: [Value] = []
            for item in items { out.append(try evaluate(item)) }
            return .tuple(out)
        case .dict(let entries, let p):
            var d = PyDict()
            for entry in entries {
                let k = try evaluate(entry.key)
                guard d.set(k, try evaluate(entry.value)) else { throw error(.type, p, "unhashable type: '\(k.typeName)'") }
            }
            return .dict(d)
        case .attribute(let base, let name, let p):
            return try Builtins.attribute(of: try evaluate(base), name, p, self)
        case .item(let base, let index, let p):
            return try Builtins.item(of: try evaluate(base), try evaluate(index), p, self)
        case .slice(let base, let start, let stop, let stepExpr, let p):
            let b = try evaluate(base)
            return try Builtins.slice(b, try evaluate(optional: start), try evaluate(optional: stop), try evaluate(optional: stepExpr), p, self)
        case .call(let callee, let args, let kwargs, let p):
            let f = try evaluate(callee)
            var values: [Value] = []
            for a in args { values.append(try evaluate(a)) }
            var named: [(String, Value)] = []
            for k in kwargs { named.append((k.name, try evaluate(k.value))) }
            return try call(f, Arguments(positional: values, keywords: named), p)
        case .filter(let base, let name, let args, let kwargs, let p):
            let v = try evaluate(base)
            var values: [Value] = []
            for a in args { values.append(try evaluate(a)) }
            var named: [(String, Value)] = []
            for k in kwargs { named.append((k.name, try evaluate(k.value))) }
            return try Builtins.filter(name, v, Arguments(positional: values, keywords: named), p, &self)
        case .test(let base, let name, let args, let kwargs, let p):
            let v = try evaluate(base)
            var values: [Value] = []
            for a in args { values.append(try evaluate(a)) }
            var named: [(String, Value)] = []
            for k in kwargs { named.append((k.name, try evaluate(k.value))) }
            return .bool(try Builtins.test(name, v, Arguments(positional: values, keywords: named), p, self))
        case .not(let x, _):
            return .bool(!(try evaluate(x)).truthy)
        case .negate(let x, let p):
            let v = try evaluate(x)
            switch v.number {
            case .int(let i)?:
                guard i != Int.min else { throw error(.limit, p, "integer overflow") }
                return .int(-i)
            case .float(let d)?: return .float(-d)
            case nil: throw try operandError("bad operand type for unary -: '\(v.typeName)'", v, p)
            }
        case .plus(let x, let p):
            let v = try evaluate(x)
            switch v.number {
            case .int(let i)?: return .int(i)
            case .float(let d)?: return .float(d)
            case nil: throw try operandError("bad operand type for unary +: '\(v.typeName)'", v, p)
            }
        case .binary(let op, let l, let r, let p):
            return try Operators.binary(op, try evaluate(l), try evaluate(r), p, self)
        case .and(let l, let r, _):
            let left = try evaluate(l)
            return left.truthy ? try evaluate(r) : left
        case .or(let l, let r, _):
            let left = try evaluate(l)
            return left.truthy ? left : try evaluate(r)
        case .compare(let first, let comparisons, let p):
            var left = try evaluate(first)
            for c in comparisons {
                let right = try evaluate(c.operand)
                guard try Operators.compare(c.op, left, right, p, self) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let then, let condition, let otherwise, _):
            if try evaluate(condition).truthy { return try evaluate(then) }
            guard let otherwise else { return .undefined(hint: "the conditional expression had no else branch") }
            return try evaluate(otherwise)
        }
    }

    private mutating func evaluate(optional e: Expr?) throws(TemplateError) -> Value? {
        guard let e else { return nil }
        return try evaluate(e)
    }

    /// Using an undefined value as an operand is an UndefinedError in Jinja; anything else is
    /// Python's TypeError.
    func operandError(_ message: String, _ v: Value, _ p: SourcePosition) throws(TemplateError) -> TemplateError {
        if case .undefined(let hint) = v { return error(.undefined, p, hint) }
        return error(.type, p, message)
    }

    /// Every element of an iterable, as Python's `iter()` gives them (undefined: none).
    func iterate(_ v: Value, _ p: SourcePosition) throws(TemplateError) -> [Value] {
        switch v {
        case .undefined: return []
        case .list(let a), .tuple(let a), .view(_, let a): return a
        case .dict(let d): return d.keys
        case .string(let s): return PythonString.characters(s)
        case .generator(let g): return g.drain()
        default: throw error(.type, p, "'\(v.typeName)' object is not iterable")
        }
    }

    // MARK: - Calls

    mutating func call(_ f: Value, _ args: Arguments, _ p: SourcePosition) throws(TemplateError) -> Value {
        guard case .function(let callable) = f else {
            if case .undefined(let hint) = f { throw error(.undefined, p, hint) }
            throw error(.type, p, "'\(f.typeName)' object is not callable")
        }
        switch callable {
        case .global(let name): return try Builtins.callGlobal(name, args, p, &self)
        case .method(let receiver, let name): return try Builtins.callMethod(receiver, name, args, p, &self)
        case .loopCycle(let loop):
            guard !args.positional.isEmpty else { throw error(.type, p, "no items for cycling given") }
            return args.positional[loop.index0 % args.positional.count]
        case .macro(let m): return try callMacro(m, args, p)
        }
    }

    private mutating func callMacro(_ m: MacroDefinition, _ args: Arguments, _ p: SourcePosition) throws(TemplateError) -> Value {
        callDepth += 1
        defer { callDepth -= 1 }
        guard callDepth <= limits.maxCallDepth else { throw error(.limit, p, "macro calls nested deeper than \(limits.maxCallDepth)") }
        guard args.positional.count <= m.parameters.count else {
            throw error(.type, p, "macro '\(m.name)' takes \(m.parameters.count) positional arguments but \(args.positional.count) were given")
        }
        var local: [String: Value] = [:]
        for (k, v) in args.positional.enumerated() { local[m.parameters[k].name] = v }
        for (name, v) in args.keywords {
            guard m.parameters.contains(where: { $0.name == name }) else { throw error(.type, p, "macro '\(m.name)' has no parameter '\(name)'") }
            guard local[name] == nil else { throw error(.type, p, "macro '\(m.name)' got multiple values for '\(name)'") }
            local[name] = v
        }
        // A macro sees the template's top-level names and its parameters, not the caller's locals.
        let savedScopes = scopes
        scopes = [scopes[0], local]
        defer { scopes = savedScopes }
        for parameter in m.parameters where local[parameter.name] == nil {
            let v = try evaluate(optional: parameter.defaultValue) ?? .undefined(hint: "parameter '\(parameter.name)' of macro '\(m.name)' was not given")
            scopes[1][parameter.name] = v
        }
        let text = try capture(m.body)
        return try checked(text, p)
    }
}

/// Positional and keyword arguments of a call, filter or test.
struct Arguments {
    var positional: [Value]
    var keywords: [(String, Value)]


    /// Binds to the parameter names in order; a missing one is nil. Too many positional
    /// arguments or an unknown keyword is an error naming `function`.
    func bind(_ names: [String], _ function: String, _ p: SourcePosition, _ r: Renderer) throws(TemplateError) -> [Value?] {
        guard positional.count <= names.count else {
            throw r.error(.type, p, "\(function) takes at most \(names.count) argument(s), \(positional.count) given")
        }
        var out: [Value?] = positional.map { $0 }
        out += Array(repeating: nil, count: names.count - positional.count)
        for (name, v) in keywords {
            guard let k = names.firstIndex(of: name) else { throw r.error(.type, p, "\(function) got an unexpected keyword argument '\(name)'") }
            guard out[k] == nil else { throw r.error(.type, p, "\(function) got multiple values for argument '\(name)'") }
            out[k] = v
        }
        return out
    }
}

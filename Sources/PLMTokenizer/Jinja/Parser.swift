// A recursive-descent parser with Jinja's grammar and operator precedence (lowest first):
//   conditional `a if c else b` → `or` → `and` → `not` → comparisons and `in`/`not in`
//   → `+ -` → `~` → `* / // %` → `**` → unary `- +` → primary with `.attr`, `[item]`, `[a:b]`,
//   calls, then `|filter` and `is test`.
// Statements: if/elif/else, for (with `if` filter and `else`), set (plain, tuple, namespace
// attribute, block), macro, break/continue, generation (its body is rendered as is). Filters and
// tests are checked against the supported lists here, so an unknown one fails before rendering.

struct Parser {
    private var tokens: [Token]
    private var i = 0
    private var depth = 0
    private let maxDepth: Int
    private var loopDepth = 0
    /// The blocks being parsed, innermost last, for "unclosed block" messages.
    private var openBlocks: [(name: String, position: SourcePosition)] = []

    init(tokens: [Token], maxDepth: Int) {
        self.tokens = tokens
        self.maxDepth = maxDepth
    }

    private var current: Token { tokens[min(i, tokens.count - 1)] }
    private func peek(_ k: Int = 1) -> Token { tokens[min(i + k, tokens.count - 1)] }
    private mutating func advance() { if i < tokens.count - 1 { i += 1 } }

    private func error(_ message: String, _ p: SourcePosition, kind: TemplateError.Kind = .syntax) -> TemplateError {
        TemplateError(kind, line: p.line, column: p.column, message)
    }

    private func isName(_ t: Token, _ name: String) -> Bool {
        if case .name(let n) = t.kind { return n == name }
        return false
    }

    private func isOp(_ t: Token, _ op: String) -> Bool {
        if case .op(let o) = t.kind { return o == op }
        return false
    }

    private func describe(_ t: Token) -> String {
        switch t.kind {
        case .data: return "template text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return PythonText.repr(.string(s))
        case .integer(let v): return String(v)
        case .float(let d): return PythonText.floatRepr(d)
        case .op(let o): return "'\(o)'"
        case .eof: return "the end of the template"
        }
    }

    private mutating func expectOp(_ op: String) throws(TemplateError) {
        guard isOp(current, op) else { throw error("expected '\(op)', found \(describe(current))", current.position) }
        advance()
    }

    private mutating func expectName() throws(TemplateError) -> String {
        guard case .name(let n) = current.kind else { throw error("expected a name, found \(describe(current))", current.position) }
        advance()
        return n
    }

    private mutating func expectBlockEnd() throws(TemplateError) {
        guard current.kind == .blockEnd else { throw error("expected '%}', found \(describe(current))", current.position) }
        advance()
    }

    private mutating func enter(_ p: SourcePosition) throws(TemplateError) {
        depth += 1
        guard depth <= maxDepth else { throw error("nesting deeper than \(maxDepth) levels", p, kind: .limit) }
    }

    // MARK: - Statements

    mutating func parseTemplate() throws(TemplateError) -> [Statement] {
        let (body, end) = try parseBody(until: [])
        if let end { throw error("unexpected '\(end)' tag: no block is open", current.position) }
        return body
    }

    /// Parses statements until `{% name` with `name` in `ends` (left unconsumed after the name,
    /// which is returned), or the end of the template (only allowed when `ends` is empty).
    private mutating func parseBody(until ends: Set<String>) throws(TemplateError) -> ([Statement], String?) {
        var body: [Statement] = []
        while true {
            let t = current
            switch t.kind {
            case .eof:
                if let open = openBlocks.last {
                    let expected = ends.sorted().map { "'\($0)'" }.joined(separator: " or ")
                    throw error("unclosed '\(open.name)' block: the template ended while looking for \(expected)", open.position)
                }
                return (body, nil)
            case .data(let text):
                body.append(.text(text))
                advance()
            case .variableBegin:
                advance()
                let e = try parseTuple(withCondition: true, endNames: [])
                guard current.kind == .variableEnd else { throw error("expected '}}', found \(describe(current))", current.position) }
                advance()
                body.append(.output(e))
            case .blockBegin:
                advance()
                guard case .name(let name) = current.kind else {
                    throw error("expected a tag name after '{%', found \(describe(current))", current.position)
                }
                if ends.contains(name) {
                    advance()
                    return (body, name)
                }
                // Statements are located at their `{%`.
                body.append(try parseStatement(name, t.position))
            default:
                throw error("unexpected \(describe(t))", t.position)
            }
        }
    }

    private mutating func parseStatement(_ name: String, _ p: SourcePosition) throws(TemplateError) -> Statement {
        try enter(p)
        defer { depth -= 1 }
        advance()
        switch name {
        case "if": return try parseIf(p)
        case "for": return try parseFor(p)
        case "set": return try parseSet(p)
        case "macro": return try parseMacro(p)
        case "break", "continue":
            guard loopDepth > 0 else { throw error("'\(name)' outside of a for loop", p) }
            try expectBlockEnd()
            return .loopControl(isBreak: name == "break", p)
        case "generation":
            // transformers' assistant-mask extension: the body renders as written.
            try expectBlockEnd()
            openBlocks.append((name, p))
            let (body, _) = try parseBody(until: ["endgeneration"])
            openBlocks.removeLast()
            try expectBlockEnd()
            return .ifChain([IfBranch(condition: .constant(.bool(true), p), body: body)], otherwise: [])
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endraw", "endcall", "endfilter", "endblock", "endwith":
            if let open = openBlocks.last {
                throw error("unexpected '\(name)' inside the '\(open.name)' block opened at line \(open.position.line), column \(open.position.column)", p)
            }
            throw error("unexpected '\(name)': no block is open", p)
        case "filter", "call", "with", "include", "import", "from", "extends", "block", "do", "autoescape", "trans":
            throw error("the '\(name)' tag is not supported", p, kind: .unsupported)
        default:
            throw error("unknown tag '\(name)'", p)
        }
    }

    private mutating func parseIf(_ p: SourcePosition) throws(TemplateError) -> Statement {
        var branches: [IfBranch] = []
        var condition = try parseTuple(withCondition: false, endNames: [])
        try expectBlockEnd()
        openBlocks.append(("if", p))
        defer { openBlocks.removeLast() }
        while true {
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append(IfBranch(condition: condition, body: body))
            switch end {
            case "elif":
                condition = try parseTuple(withCondition: false, endNames: [])
                try expectBlockEnd()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseBody(until: ["endif"])
                try expectBlockEnd()
                return .ifChain(branches, otherwise: otherwise)
            default:
                try expectBlockEnd()
                return .ifChain(branches, otherwise: [])
            }
        }
    }

    private mutating func parseFor(_ p: SourcePosition) throws(TemplateError) -> Statement {
        let target = try parseAssignTarget(withNamespace: false, endNames: ["in"])
        guard isName(current, "in") else { throw error("expected 'in' in the for loop, found \(describe(current))", current.position) }
        advance()
        let iterable = try parseTuple(withCondition: false, endNames: ["recursive"])
        var condition: Expr? = nil
        if isName(current, "if") {
            advance()
            condition = try parseExpression(withCondition: true)
        }
        if isName(current, "recursive") { throw error("recursive for loops are not supported", current.position, kind: .unsupported) }
        try expectBlockEnd()
        openBlocks.append(("for", p))
        defer { openBlocks.removeLast() }
        loopDepth += 1
        let (body, end) = try parseBody(until: ["endfor", "else"])
        loopDepth -= 1
        try expectBlockEnd()
        var otherwise: [Statement] = []
        if end == "else" {
            (otherwise, _) = try parseBody(until: ["endfor"])
            try expectBlockEnd()
        }
        return .forLoop(ForLoop(target: target, iterable: iterable, condition: condition, body: body, otherwise: otherwise, position: p))
    }

    private mutating func parseSet(_ p: SourcePosition) throws(TemplateError) -> Statement {
        let target = try parseAssignTarget(withNamespace: true, endNames: [])
        if isOp(current, "=") {
            advance()
            let value = try parseTuple(withCondition: true, endNames: [])
            try expectBlockEnd()
            return .assign(target, value, p)
        }
        if isOp(current, "|") { throw error("filters on a block set are not supported", current.position, kind: .unsupported) }
        try expectBlockEnd()
        openBlocks.append(("set", p))
        defer { openBlocks.removeLast() }
        let (body, _) = try parseBody(until: ["endset"])
        try expectBlockEnd()
        return .blockAssign(target, body, p)
    }

    private mutating func parseMacro(_ p: SourcePosition) throws(TemplateError) -> Statement {
        let name = try expectName()
        try expectOp("(")
        var parameters: [MacroParameter] = []
        while !isOp(current, ")") {
            if !parameters.isEmpty { try expectOp(",") }
            if isOp(current, ")") { break }
            let pname = try expectName()
            var value: Expr? = nil
            if isOp(current, "=") {
                advance()
                value = try parseExpression(withCondition: true)
            } else if parameters.last?.defaultValue != nil {
                throw error("macro parameter '\(pname)' without a default follows one with a default", current.position)
            }
            parameters.append(MacroParameter(name: pname, defaultValue: value))
        }
        advance()
        try expectBlockEnd()
        openBlocks.append(("macro", p))
        defer { openBlocks.removeLast() }
        let savedLoops = loopDepth
        loopDepth = 0
        let (body, _) = try parseBody(until: ["endmacro"])
        loopDepth = savedLoops
        // `{% endmacro name %}` is allowed by Jinja.
        if case .name = current.kind { advance() }
        try expectBlockEnd()
        return .macro(MacroDefinition(name: name, parameters: parameters, body: body, position: p))
    }

    private mutating func parseAssignTarget(withNamespace: Bool, endNames: Set<String>) throws(TemplateError) -> AssignTarget {
        var targets: [AssignTarget] = []
        var isTuple = false
        while true {
            if !targets.isEmpty {
                try expectOp(",")
            }
            if isTupleEnd(endNames) || isOp(current, "=") { break }
            let p = current.position
            let name = try expectName()
            if ["true", "false", "True", "False", "none", "None"].contains(name) { throw error("cannot assign to '\(name)'", p) }
            if withNamespace, isOp(current, ".") {
                advance()
                targets.append(.namespaceAttribute(name, try expectName()))
            } else {
                targets.append(.name(name))
            }
            if isOp(current, ",") { isTuple = true } else { break }
        }
        guard let first = targets.first else { throw error("expected a name to assign to, found \(describe(current))", current.position) }
        return isTuple ? .tuple(targets) : first
    }

    // MARK: - Expressions

    private func isTupleEnd(_ endNames: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(")"): return true
        case .name(let n): return endNames.contains(n)
        default: return false
        }
    }

    /// A comma-separated list of expressions (a tuple) or one expression.
    private mutating func parseTuple(withCondition: Bool, endNames: Set<String>, explicitParentheses: Bool = false) throws(TemplateError) -> Expr {
        let p = current.position
        var items: [Expr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(endNames) { break }
            items.append(try parseExpression(withCondition: withCondition))
            if isOp(current, ",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let only = items.first { return only }
            if !explicitParentheses { throw error("expected an expression, found \(describe(current))", current.position) }
        }
        return .tuple(items, p)
    }

    private mutating func parseExpression(withCondition: Bool) throws(TemplateError) -> Expr {
        try enter(current.position)
        defer { depth -= 1 }
        guard withCondition else { return try parseOr() }
        var e = try parseOr()
        while isName(current, "if") {
            let p = current.position
            advance()
            let condition = try parseOr()
            var otherwise: Expr? = nil
            if isName(current, "else") {
                advance()
                otherwise = try parseExpression(withCondition: true)
            }
            e = .conditional(then: e, condition: condition, otherwise: otherwise, p)
        }
        return e
    }

    private mutating func parseOr() throws(TemplateError) -> Expr {
        var left = try parseAnd()
        while isName(current, "or") {
            let p = current.position
            advance()
            left = .or(left, try parseAnd(), p)
        }
        return left
    }

    private mutating func parseAnd() throws(TemplateError) -> Expr {
        var left = try parseNot()
        while isName(current, "and") {
            let p = current.position
            advance()
            left = .and(left, try parseNot(), p)
        }
        return left
    }

    private mutating func parseNot() throws(TemplateError) -> Expr {
        if isName(current, "not") {
            let p = current.position
            advance()
            try enter(p)
            defer { depth -= 1 }
            return .not(try parseNot(), p)
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws(TemplateError) -> Expr {
        let p = current.position
        let first = try parseMath1()
        var ops: [Comparison] = []
        while true {
            if case .op(let o) = current.kind, let op = CompareOperator(rawValue: o), op != .isIn, op != .notIn {
                advance()
                ops.append(Comparison(op: op, operand: try parseMath1()))
            } else if isName(current, "in") {
                advance()
                ops.append(Comparison(op: .isIn, operand: try parseMath1()))
            } else if isName(current, "not"), isName(peek(), "in") {
                advance(); advance()
                ops.append(Comparison(op: .notIn, operand: try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? first : .compare(first, ops, p)
    }

    private mutating func parseMath1() throws(TemplateError) -> Expr {
        var left = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            let p = current.position
            advance()
            left = .binary(o == "+" ? .add : .subtract, left, try parseConcat(), p)
        }
        return left
    }

    private mutating func parseConcat() throws(TemplateError) -> Expr {
        var left = try parseMath2()
        while isOp(current, "~") {
            let p = current.position
            advance()
            left = .binary(.concat, left, try parseMath2(), p)
        }
        return left
    }

    private mutating func parseMath2() throws(TemplateError) -> Expr {
        var left = try parsePow()
        while case .op(let o) = current.kind, o == "*" || o == "/" || o == "//" || o == "%" {
            let p = current.position
            advance()
            let op: BinaryOperator = o == "*" ? .multiply : o == "/" ? .divide : o == "//" ? .floorDivide : .modulo
            left = .binary(op, left, try parsePow(), p)
        }
        return left
    }

    private mutating func parsePow() throws(TemplateError) -> Expr {
        var left = try parseUnary(withFilter: true)
        while isOp(current, "**") {
            let p = current.position
            advance()
            left = .binary(.power, left, try parseUnary(withFilter: true), p)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool) throws(TemplateError) -> Expr {
        let p = current.position
        try enter(p)
        defer { depth -= 1 }
        var node: Expr
        if isOp(current, "-") {
            advance()
            node = .negate(try parseUnary(withFilter: false), p)
        } else if isOp(current, "+") {
            advance()
            node = .plus(try parseUnary(withFilter: false), p)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    private mutating func parsePrimary() throws(TemplateError) -> Expr {
        let t = current
        let p = t.position
        switch t.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return .constant(.bool(true), p)
            case "false", "False": return .constant(.bool(false), p)
            case "none", "None": return .constant(.none, p)
            default: return .name(n, p)
            }
        case .string(let s):
            advance()
            var text = s
            // Adjacent string literals are joined, as in Python.
            while case .string(let more) = current.kind {
                text += more
                advance()
            }
            return .constant(.string(text), p)
        case .integer(let v):
            advance()
            return .constant(.int(v), p)
        case .float(let d):
            advance()
            return .constant(.float(d), p)
        case .op("("):
            advance()
            let e = try parseTuple(withCondition: true, endNames: [], explicitParentheses: true)
            try expectOp(")")
            return e
        case .op("["):
            advance()
            var items: [Expr] = []
            while !isOp(current, "]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp(current, "]") { break }
                items.append(try parseExpression(withCondition: true))
            }
            advance()
            return .list(items, p)
        case .op("{"):
            advance()
            var entries: [DictEntry] = []
            while !isOp(current, "}") {
                if !entries.isEmpty { try expectOp(",") }
                if isOp(current, "}") { break }
                let key = try parseExpression(withCondition: true)
                try expectOp(":")
                entries.append(DictEntry(key: key, value: try parseExpression(withCondition: true)))
            }
            advance()
            return .dict(entries, p)
        default:
            throw error("unexpected \(describe(t))", p)
        }
    }

    private mutating func parsePostfix(_ start: Expr) throws(TemplateError) -> Expr {
        var node = start
        while true {
            let p = current.position
            if isOp(current, ".") {
                advance()
                switch current.kind {
                case .name(let n):
                    advance()
                    node = .attribute(node, n, p)
                case .integer(let v):
                    advance()
                    node = .item(node, .constant(.int(v), p), p)
                default:
                    throw error("expected an attribute name after '.', found \(describe(current))", current.position)
                }
            } else if isOp(current, "[") {
                advance()
                node = try parseSubscript(node, p)
            } else if isOp(current, "(") {
                let (args, kwargs) = try parseCallArguments()
                node = .call(node, args, kwargs, p)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ base: Expr, _ p: SourcePosition) throws(TemplateError) -> Expr {
        // One index or one slice (`a[1]`, `a[1:]`, `a[::-1]`); tuple subscripts are refused.
        var parts: [Expr?] = []
        var isSlice = false
        var currentPart: Expr? = nil
        while true {
            if isOp(current, ":") {
                isSlice = true
                parts.append(currentPart)
                currentPart = nil
                advance()
                continue
            }
            if isOp(current, "]") {
                advance()
                break
            }
            if isOp(current, ",") { throw error("tuple subscripts are not supported", current.position, kind: .unsupported) }
            guard currentPart == nil else { throw error("expected ']' or ':', found \(describe(current))", current.position) }
            currentPart = try parseExpression(withCondition: true)
        }
        parts.append(currentPart)
        if !isSlice {
            guard let index = parts.first ?? nil else { throw error("empty subscript", p) }
            return .item(base, index, p)
        }
        guard parts.count <= 3 else { throw error("a slice has at most three parts", p) }
        return .slice(base, start: parts[0], stop: parts.count > 1 ? parts[1] : nil, step: parts.count > 2 ? parts[2] : nil, p)
    }

    private mutating func parseCallArguments() throws(TemplateError) -> ([Expr], [KeywordArgument]) {
        try expectOp("(")
        var args: [Expr] = []
        var kwargs: [KeywordArgument] = []
        while !isOp(current, ")") {
            if !args.isEmpty || !kwargs.isEmpty {
                try expectOp(",")
                if isOp(current, ")") { break }
            }
            if isOp(current, "*") || isOp(current, "**") {
                throw error("*args and **kwargs in calls are not supported", current.position, kind: .unsupported)
            }
            if case .name(let n) = current.kind, isOp(peek(), "=") {
                advance(); advance()
                kwargs.append(KeywordArgument(name: n, value: try parseExpression(withCondition: true)))
            } else {
                guard kwargs.isEmpty else { throw error("a positional argument follows a keyword argument", current.position) }
                args.append(try parseExpression(withCondition: true))
            }
        }
        advance()
        return (args, kwargs)
    }

    private mutating func parseFilterExpression(_ start: Expr) throws(TemplateError) -> Expr {
        var node = start
        while true {
            if isOp(current, "|") {
                advance()
                let p = current.position
                let name = try expectName()
                guard Builtins.filterNames.contains(name) else { throw error("unknown filter '\(name)'", p, kind: .unknownFilter) }
                var args: [Expr] = [], kwargs: [KeywordArgument] = []
                if isOp(current, "(") { (args, kwargs) = try parseCallArguments() }
                node = .filter(node, name, args, kwargs, p)
            } else if isName(current, "is") {
                let isPosition = current.position
                advance()
                var negated = false
                if isName(current, "not") {
                    negated = true
                    advance()
                }
                let p = current.position
                let name = try expectName()
                guard Builtins.testNames.contains(name) else { throw error("unknown test '\(name)'", p, kind: .unknownTest) }
                var args: [Expr] = [], kwargs: [KeywordArgument] = []
                if isOp(current, "(") {
                    (args, kwargs) = try parseCallArguments()
                } else if startsTestArgument(), !isName(current, "else"), !isName(current, "or"), !isName(current, "and") {
                    if isName(current, "is") { throw error("tests cannot be chained with 'is'", current.position) }
                    args = [try parsePostfix(try parsePrimary())]
                }
                let test = Expr.test(node, name, args, kwargs, p)
                node = negated ? .not(test, isPosition) : test
            } else if isOp(current, "(") {
                let p = current.position
                let (args, kwargs) = try parseCallArguments()
                node = .call(node, args, kwargs, p)
            } else {
                return node
            }
        }
    }

    /// Jinja lets a test take one argument without parentheses (`x is divisibleby 3`).
    private func startsTestArgument() -> Bool {
        switch current.kind {
        case .name, .string, .integer, .float: return true
        case .op(let o): return o == "(" || o == "[" || o == "{"
        default: return false
        }
    }
}

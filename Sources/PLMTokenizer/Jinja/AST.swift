// The parsed template: statements and expressions, each carrying the position it came from so a
// render error points at the line and column of the construct that failed.

enum Constant: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
}

struct KeywordArgument: Sendable {
    var name: String
    var value: Expr
}

enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//", modulo = "%", power = "**", concat = "~"
}

enum CompareOperator: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">=", isIn = "in", notIn = "not in"
}

struct Comparison: Sendable {
    var op: CompareOperator
    var operand: Expr
}

struct DictEntry: Sendable {
    var key: Expr
    var value: Expr
}

indirect enum Expr: Sendable {
    case constant(Constant, SourcePosition)
    case name(String, SourcePosition)
    case list([Expr], SourcePosition)
    case tuple([Expr], SourcePosition)
    case dict([DictEntry], SourcePosition)
    case attribute(Expr, String, SourcePosition)
    case item(Expr, Expr, SourcePosition)
    case slice(Expr, start: Expr?, stop: Expr?, step: Expr?, SourcePosition)
    case call(Expr, [Expr], [KeywordArgument], SourcePosition)
    case filter(Expr, String, [Expr], [KeywordArgument], SourcePosition)
    case test(Expr, String, [Expr], [KeywordArgument], SourcePosition)
    case not(Expr, SourcePosition)
    case negate(Expr, SourcePosition)
    case plus(Expr, SourcePosition)
    case binary(BinaryOperator, Expr, Expr, SourcePosition)
    case and(Expr, Expr, SourcePosition)
    case or(Expr, Expr, SourcePosition)
    case compare(Expr, [Comparison], SourcePosition)
    /// `then if condition else otherwise` (no `else`: undefined).
    case conditional(then: Expr, condition: Expr, otherwise: Expr?, SourcePosition)

    var position: SourcePosition {
        switch self {
        case .constant(_, let p), .name(_, let p), .list(_, let p), .tuple(_, let p), .dict(_, let p),
             .attribute(_, _, let p), .item(_, _, let p), .slice(_, _, _, _, let p), .call(_, _, _, let p),
             .filter(_, _, _, _, let p), .test(_, _, _, _, let p), .not(_, let p), .negate(_, let p), .plus(_, let p),
             .binary(_, _, _, let p), .and(_, _, let p), .or(_, _, let p), .compare(_, _, let p),
             .conditional(_, _, _, let p):
            return p
        }
    }
}

indirect enum AssignTarget: Sendable {
    case name(String)
    case tuple([AssignTarget])
    /// `ns.attribute` in `{% set ns.attribute = … %}`.
    case namespaceAttribute(String, String)
}

struct IfBranch: Sendable {
    var condition: Expr
    var body: [Statement]
}

struct ForLoop: Sendable {
    var target: AssignTarget
    var iterable: Expr
    var condition: Expr?
    var body: [Statement]
    var otherwise: [Statement]
    var position: SourcePosition
}

struct MacroParameter: Sendable {
    var name: String
    var defaultValue: Expr?
}

struct MacroDefinition: Sendable {
    var name: String
    var parameters: [MacroParameter]
    var body: [Statement]
    var position: SourcePosition
}

indirect enum Statement: Sendable {
    /// Template text, already white-space controlled.
    case text(String)
    /// `{{ expression }}`.
    case output(Expr)
    case ifChain([IfBranch], otherwise: [Statement])
    case forLoop(ForLoop)
    case assign(AssignTarget, Expr, SourcePosition)
    /// `{% set name %}…{% endset %}`.
    case blockAssign(AssignTarget, [Statement], SourcePosition)
    case loopControl(isBreak: Bool, SourcePosition)
    case macro(MacroDefinition)
}

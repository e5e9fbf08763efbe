// Splits a template into text and tag tokens exactly as Jinja's lexer does with the settings
// transformers compiles chat templates with (`trim_blocks=True`, `lstrip_blocks=True`,
// `keep_trailing_newline=False`):
// - every line break (`\r\n`, `\r`, `\n`) becomes `\n`, and one trailing line break of the
//   source is dropped;
// - `{%-`, `{{-`, `{#-` strip all white space before the tag; `-%}`, `-}}`, `-#}` strip all
//   white space after it;
// - trim_blocks: a block or comment end (`%}`, `#}`) eats one `\n` right after it (`+%}` keeps it);
// - lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag are
//   removed (`{%+` keeps them; `{{` is never lstripped). "Start of a line" means after a `\n` in
//   the text, or at the start of the text when the previous tag's match ended with `\n`.

/// A position in the template source: 1-based line and column (column in Unicode scalars).
public struct SourcePosition: Sendable, Equatable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

enum TokenKind: Equatable {
    case data(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    case op(String)
    case eof
}

struct Token {
    var kind: TokenKind
    var position: SourcePosition
}

struct Lexer {
    private let s: [Unicode.Scalar]
    private var lineStarts: [Int] = [0]
    private var tokens: [Token] = []
    private var pos = 0
    /// Jinja's `line_starting`: the previous match ended with a line break.
    private var lineStarting = true
    private var balance: [Unicode.Scalar] = []

    /// Multi-character operators first, so the longest one wins.
    private static let operators: [String] = ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"]

    init(source: String) {
        // Normalise line breaks and drop one trailing line break (keep_trailing_newline=False).
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pendingCR = false
        while let u = it.next() {
            if pendingCR {
                pendingCR = false
                scalars.append("\n")
                if u == "\n" { continue }
            }
            if u == "\r" { pendingCR = true } else { scalars.append(u) }
        }
        if pendingCR { scalars.append("\n") }
        if scalars.last == "\n" { scalars.removeLast() }
        s = scalars
        for (i, u) in s.enumerated() where u == "\n" { lineStarts.append(i + 1) }
    }

    func position(_ index: Int) -> SourcePosition {
        // Binary search for the line containing `index`.
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= index { lo = mid } else { hi = mid - 1 }
        }
        return SourcePosition(line: lo + 1, column: index - lineStarts[lo] + 1)
    }

    private func error(_ message: String, at index: Int) -> TemplateError {
        let p = position(index)
        return TemplateError(.syntax, line: p.line, column: p.column, message)
    }

    private func at(_ i: Int, _ text: String) -> Bool {
        var k = i
        for u in text.unicodeScalars {
            guard k < s.count, s[k] == u else { return false }
            k += 1
        }
        return true
    }

    private func isSpace(_ i: Int) -> Bool { i < s.count && PythonString.isSpace(s[i]) }

    private func text(_ range: Range<Int>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: s[range])
        return String(view)
    }

    /// The text before a tag after the tag's white-space control: `-` strips all trailing white
    /// space; otherwise lstrip_blocks removes the indentation before a block or comment tag.
    private func controlledText(_ range: Range<Int>, sign: Unicode.Scalar?, lstrip: Bool) -> Range<Int> {
        if sign == "-" {
            var hi = range.upperBound
            while hi > range.lowerBound && PythonString.isSpace(s[hi - 1]) { hi -= 1 }
            return range.lowerBound..<hi
        }
        guard sign != "+", lstrip else { return range }
        var lineStart = range.upperBound
        while lineStart > range.lowerBound && s[lineStart - 1] != "\n" { lineStart -= 1 }
        guard lineStart > range.lowerBound || lineStarting, lineStart < range.upperBound else { return range }
        for i in lineStart..<range.upperBound where !PythonString.isSpace(s[i]) { return range }
        return range.lowerBound..<lineStart
    }

    private mutating func emitData(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        tokens.append(Token(kind: .data(text(range)), position: position(range.lowerBound)))
    }

    mutating func tokenize() throws(TemplateError) -> [Token] {
        let n = s.count
        while pos < n {
            // The next `{{`, `{%` or `{#`.
            var j = pos
            var found = false
            while j + 1 < n {
                if s[j] == "{", s[j + 1] == "{" || s[j + 1] == "%" || s[j + 1] == "#" { found = true; break }
                j += 1
            }
            guard found else {
                emitData(pos..<n)
                pos = n
                break
            }
            let kind = s[j + 1]
            var after = j + 2
            var sign: Unicode.Scalar? = nil
            if after < n, s[after] == "-" || s[after] == "+" { sign = s[after]; after += 1 }
            emitData(controlledText(pos..<j, sign: sign, lstrip: kind != "{"))
            lineStarting = false
            if kind == "%", let rawEnd = rawBlockStart(after) {
                try lexRaw(from: rawEnd, openedAt: j)
                continue
            }
            switch kind {
            case "#": try lexComment(from: after, openedAt: j)
            case "%":
                tokens.append(Token(kind: .blockBegin, position: position(j)))
                pos = after
                try lexTag(block: true, openedAt: j)
            default:
                tokens.append(Token(kind: .variableBegin, position: position(j)))
                pos = after
                try lexTag(block: false, openedAt: j)
            }
        }
        tokens.append(Token(kind: .eof, position: position(n)))
        return tokens
    }

    /// If a `{% raw %}` tag starts at `i` (after `{%` and its sign), the index after it.
    private func rawBlockStart(_ i: Int) -> Int? {
        var k = i
        while isSpace(k) { k += 1 }
        guard at(k, "raw") else { return nil }
        k += 3
        while isSpace(k) { k += 1 }
        if at(k, "-%}") {
            k += 3
            while isSpace(k) { k += 1 }
            return k
        }
        return at(k, "%}") ? k + 2 : nil
    }

    private mutating func lexRaw(from start: Int, openedAt: Int) throws(TemplateError) {
        // The raw begin match ends after its `%}` (and white space for `-%}`).
        lineStarting = start > 0 && s[start - 1] == "\n"
        var j = start
        while j + 1 < s.count {
            if s[j] == "{", s[j + 1] == "%" {
                var k = j + 2
                var sign: Unicode.Scalar? = nil
                if k < s.count, s[k] == "-" || s[k] == "+" { sign = s[k]; k += 1 }
                while isSpace(k) { k += 1 }
                if at(k, "endraw") {
                    k += 6
                    while isSpace(k) { k += 1 }
                    var end: Int? = nil
                    if at(k, "+%}") { end = k + 3 } else if at(k, "-%}") {
                        var e = k + 3
                        while isSpace(e) { e += 1 }
                        end = e
                    } else if at(k, "%}") { end = at(k + 2, "\n") ? k + 3 : k + 2 }
                    if let end {
                        emitData(controlledText(start..<j, sign: sign, lstrip: true))
                        pos = end
                        lineStarting = s[end - 1] == "\n"
                        return
                    }
                }
            }
            j += 1
        }
        throw error("missing end of raw block ({% endraw %})", at: openedAt)
    }

    private mutating func lexComment(from start: Int, openedAt: Int) throws(TemplateError) {
        var j = start
        while j < s.count {
            if at(j, "+#}") { pos = j + 3; lineStarting = false; return }
            if at(j, "-#}") {
                var e = j + 3
                while isSpace(e) { e += 1 }
                pos = e
                lineStarting = s[e - 1] == "\n"
                return
            }
            if at(j, "#}") {
                pos = at(j + 2, "\n") ? j + 3 : j + 2
                lineStarting = s[pos - 1] == "\n"
                return
            }
            j += 1
        }
        throw error("missing end of comment tag (#})", at: openedAt)
    }

    private mutating func lexTag(block: Bool, openedAt: Int) throws(TemplateError) {
        let n = s.count
        balance.removeAll()
        while true {
            if balance.isEmpty {
                if block {
                    if at(pos, "+%}") { finishTag(pos, .blockEnd, length: 3, strip: false, trim: false); return }
                    if at(pos, "-%}") { finishTag(pos, .blockEnd, length: 3, strip: true, trim: false); return }
                    if at(pos, "%}") { finishTag(pos, .blockEnd, length: 2, strip: false, trim: true); return }
                } else {
                    if at(pos, "-}}") { finishTag(pos, .variableEnd, length: 3, strip: true, trim: false); return }
                    if at(pos, "}}") { finishTag(pos, .variableEnd, length: 2, strip: false, trim: false); return }
                }
            }
            guard pos < n else {
                throw error(block ? "unexpected end of template: the block tag opened here has no %}" : "unexpected end of template: the expression opened here has no }}", at: openedAt)
            }
            let u = s[pos]
            if PythonString.isSpace(u) { pos += 1; continue }
            let start = pos
            if let (kind, end) = number(at: pos) {
                tokens.append(Token(kind: kind, position: position(start)))
                pos = end
            } else if isNameStart(u) {
                var e = pos + 1
                while e < n, isNameContinue(s[e]) { e += 1 }
                tokens.append(Token(kind: .name(text(pos..<e)), position: position(start)))
                pos = e
            } else if u == "'" || u == "\"" {
                let (value, end) = try string(at: pos)
                tokens.append(Token(kind: .string(value), position: position(start)))
                pos = end
            } else if let op = Lexer.operators.first(where: { at(pos, $0) }) {
                let c = op.unicodeScalars.first ?? " "
                switch c {
                case "(": balance.append(")")
                case "[": balance.append("]")
                case "{": balance.append("}")
                case ")", "]", "}":
                    guard let expected = balance.popLast() else { throw error("unexpected '\(op)'", at: pos) }
                    guard expected == c else { throw error("unexpected '\(op)', expected '\(expected)'", at: pos) }
                default: break
                }
                tokens.append(Token(kind: .op(op), position: position(start)))
                pos += op.unicodeScalars.count
            } else {
                throw error("unexpected character \(PythonText.repr(.string(String(u)))) in a tag", at: pos)
            }
        }
    }

    private mutating func finishTag(_ at: Int, _ kind: TokenKind, length: Int, strip: Bool, trim: Bool) {
        tokens.append(Token(kind: kind, position: position(at)))
        var e = at + length
        if strip { while isSpace(e) { e += 1 } }
        if trim, e < s.count, s[e] == "\n" { e += 1 }
        pos = e
        lineStarting = s[e - 1] == "\n"
    }

    private func isNameStart(_ u: Unicode.Scalar) -> Bool {
        u == "_" || (u.value < 0x80 ? (u.properties.isAlphabetic) : u.properties.isXIDStart)
    }

    private func isNameContinue(_ u: Unicode.Scalar) -> Bool {
        u == "_" || (u.value < 0x80 ? (u.properties.isAlphabetic || ("0"..."9").contains(u)) : u.properties.isXIDContinue)
    }

    private func isDigit(_ i: Int) -> Bool { i < s.count && ("0"..."9").contains(s[i]) }

    /// Digits with single `_` separators, as Jinja's `(\d+_)*\d+`; returns the end index.
    private func digitRun(_ i: Int) -> Int? {
        guard isDigit(i) else { return nil }
        var e = i
        while true {
            while isDigit(e) { e += 1 }
            if e < s.count, s[e] == "_", isDigit(e + 1) { e += 1; continue }
            return e
        }
    }

    /// An integer or float literal at `i` (Jinja's float rule is tried first).
    private func number(at i: Int) -> (TokenKind, Int)? {
        guard isDigit(i) else { return nil }
        let afterDot = i > 0 && s[i - 1] == "."
        if !afterDot, let intEnd = digitRun(i) {
            var e = intEnd
            var isFloat = false
            if e < s.count, s[e] == ".", let fracEnd = digitRun(e + 1) { e = fracEnd; isFloat = true }
            if e < s.count, s[e] == "e" || s[e] == "E" {
                var k = e + 1
                if k < s.count, s[k] == "+" || s[k] == "-" { k += 1 }
                if let expEnd = digitRun(k) { e = expEnd; isFloat = true }
            }
            if isFloat {
                if let d = Double(digits(i..<e)) { return (.float(d), e) }
            }
        }
        // Integers: 0b/0o/0x prefixes, decimal without leading zeros, or zeros.
        if s[i] == "0", i + 1 < s.count {
            let p = s[i + 1]
            let radix: Int? = (p == "b" || p == "B") ? 2 : (p == "o" || p == "O") ? 8 : (p == "x" || p == "X") ? 16 : nil
            if let radix {
                var e = i + 2
                var digits = ""
                while e < s.count {
                    if s[e] == "_", e + 1 < s.count, Int(String(s[e + 1]), radix: radix) != nil { e += 1; continue }
                    guard Int(String(s[e]), radix: radix) != nil else { break }
                    digits.unicodeScalars.append(s[e])
                    e += 1
                }
                if !digits.isEmpty, let v = Int(digits, radix: radix) { return (.integer(v), e) }
            }
            // Decimal zero: 0(_?0)*
            var e = i + 1
            while e < s.count {
                if s[e] == "0" { e += 1 } else if s[e] == "_", e + 1 < s.count, s[e + 1] == "0" { e += 2 } else { break }
            }
            return (.integer(0), e)
        }
        guard let end = digitRun(i) else { return nil }
        let literal = digits(i..<end)
        // Python ints are unbounded; a literal beyond Int is refused rather than wrapped.
        guard let v = Int(literal) else { return (.float(Double(literal) ?? .infinity), end) }
        return (.integer(v), end)
    }

    /// The literal text without its `_` separators.
    private func digits(_ range: Range<Int>) -> String {
        var view = String.UnicodeScalarView()
        for u in s[range] where u != "_" { view.append(u) }
        return String(view)
    }

    /// A quoted string with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\xhh`, `\uhhhh`, …).
    private func string(at i: Int) throws(TemplateError) -> (String, Int) {
        let quote = s[i]
        var out = String.UnicodeScalarView()
        var k = i + 1
        while k < s.count {
            let u = s[k]
            if u == quote { return (String(out), k + 1) }
            if u != "\\" { out.append(u); k += 1; continue }
            guard k + 1 < s.count else { break }
            let e = s[k + 1]
            k += 2
            switch e {
            case "\n": break
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "v": out.append("\u{0B}")
            case "0"..."7":
                var v = e.value - 0x30
                var count = 1
                while count < 3, k < s.count, ("0"..."7").contains(s[k]) { v = v * 8 + (s[k].value - 0x30); k += 1; count += 1 }
                guard let scalar = Unicode.Scalar(v) else { throw error("invalid octal escape", at: k) }
                out.append(scalar)
            case "x", "u", "U":
                let width = e == "x" ? 2 : e == "u" ? 4 : 8
                var v: UInt32 = 0
                for _ in 0..<width {
                    guard k < s.count, let d = UInt32(String(s[k]), radix: 16) else {
                        throw error("truncated \\\(e) escape in a string", at: k)
                    }
                    v = v * 16 + d
                    k += 1
                }
                guard let scalar = Unicode.Scalar(v) else { throw error("escape \\\(e) gives no valid character (a surrogate or beyond U+10FFFF)", at: k) }
                out.append(scalar)
            case "N": throw error("\\N{…} escapes are not supported", at: k - 2)
            default:
                out.append("\\")
                out.append(e)
            }
        }
        throw error("unterminated string", at: i)
    }
}

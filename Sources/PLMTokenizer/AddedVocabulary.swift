import PLMCore

/// One entry of tokenizer.json's `added_tokens`.
public struct AddedToken: Sendable, Equatable {
    public let id: Int
    public let content: String
    /// Special tokens are dropped by `decode(skipSpecialTokens: true)`.
    public let special: Bool
    /// Only matched when not inside a word (no `\w` character touching either side).
    public let singleWord: Bool
    /// Swallows the white space on its left / right.
    public let lstrip: Bool
    public let rstrip: Bool
    /// Matched in the normalized text (after the normalizer) instead of the raw text.
    public let normalized: Bool
}

/// Finds added tokens inside text the way `tokenizers` does: leftmost-longest matches, then the
/// `single_word`, `lstrip` and `rstrip` rules.
struct AddedTokenMatcher: Sendable {
    /// Trie over the tokens' bytes: node 0 is the root; `children[node]` is sorted by byte.
    private var children: [[(byte: UInt8, node: Int32)]] = [[]]
    /// Index into `tokens` of the token ending at each node, or -1.
    private var terminal: [Int32] = [-1]
    /// Bytes a token can start with, to skip most positions without a trie walk.
    private var firstBytes = [Bool](repeating: false, count: 256)
    let tokens: [AddedToken]
    let isEmpty: Bool

    /// `patterns[i]` is what to search for token `tokens[i]`.
    init(tokens: [AddedToken], patterns: [[UInt8]]) {
        self.tokens = tokens
        isEmpty = tokens.isEmpty
        for (t, pattern) in patterns.enumerated() where !pattern.isEmpty {
            var node = 0
            for b in pattern {
                if let child = children[node].first(where: { $0.byte == b }) {
                    node = Int(child.node)
                } else {
                    children.append([])
                    terminal.append(-1)
                    let created = children.count - 1
                    children[node].append((b, Int32(created)))
                    children[node].sort { $0.byte < $1.byte }
                    node = created
                }
            }
            // Two tokens with the same pattern: the later one wins, as a later insertion does.
            terminal[node] = Int32(t)
            firstBytes[Int(pattern[0])] = true
        }
    }

    /// The longest token starting at `start`: (token index, end offset).
    private func longest(in text: UnsafeBufferPointer<UInt8>, at start: Int) -> (Int, Int)? {
        var node = 0
        var best: (Int, Int)? = nil
        var i = start
        while i < text.count {
            let b = text[i]
            guard let child = children[node].first(where: { $0.byte == b }) else { break }
            node = Int(child.node)
            i += 1
            if terminal[node] >= 0 { best = (Int(terminal[node]), i) }
        }
        return best
    }

    /// Splits `text` into runs of plain text (`token == nil`) and added tokens, covering all of it.
    func split(_ text: UnsafeBufferPointer<UInt8>) -> [(range: Range<Int>, token: Int?)] {
        if isEmpty || text.isEmpty { return [(0..<text.count, nil)] }
        var out: [(range: Range<Int>, token: Int?)] = []
        var startOffset = 0
        var i = 0
        while i < text.count {
            guard firstBytes[Int(text[i])], let (t, matchEnd) = longest(in: text, at: i) else { i += 1; continue }
            var start = i, stop = matchEnd
            let token = tokens[t]
            i = matchEnd  // matches never overlap: the search goes on after this one, kept or not
            if token.singleWord {
                let startSpace = start == 0 || !UnicodeText.isWordCharacter(UnicodeText.lastScalar(text, before: start))
                let stopSpace = stop == text.count || !UnicodeText.isWordCharacter(UnicodeText.firstScalar(text, from: stop))
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0, let (scalar, len) = UnicodeText.scalar(text, endingAt: s), scalar.properties.isWhitespace { s -= len }
                start = max(s, startOffset)
            }
            if token.rstrip {
                while stop < text.count, let (scalar, len) = UnicodeText.scalar(text, startingAt: stop), scalar.properties.isWhitespace { stop += len }
                i = max(i, stop)
            }
            if startOffset < start { out.append((startOffset..<start, nil)) }
            out.append((start..<stop, t))
            startOffset = stop
        }
        if startOffset < text.count { out.append((startOffset..<text.count, nil)) }
        return out
    }
}

/// Unicode character tests on UTF-8 bytes, with the meanings the Rust code of `tokenizers` uses.
enum UnicodeText {
    /// The scalar starting at `i`, with its length (nil for invalid UTF-8).
    static func scalar(_ t: UnsafeBufferPointer<UInt8>, startingAt i: Int) -> (Unicode.Scalar, Int)? {
        let n = utf8Length(leadByte: t[i])
        guard i + n <= t.count else { return nil }
        var v: UInt32
        switch n {
        case 1: v = UInt32(t[i])
        case 2: v = UInt32(t[i] & 0x1F)
        case 3: v = UInt32(t[i] & 0x0F)
        default: v = UInt32(t[i] & 0x07)
        }
        for k in 1..<max(1, n) { v = v << 6 | UInt32(t[i + k] & 0x3F) }
        guard let s = Unicode.Scalar(v) else { return nil }
        return (s, n)
    }

    /// The scalar that ends at `end` (exclusive), with its length.
    static func scalar(_ t: UnsafeBufferPointer<UInt8>, endingAt end: Int) -> (Unicode.Scalar, Int)? {
        var s = end - 1
        while s > 0 && t[s] & 0xC0 == 0x80 { s -= 1 }
        guard s >= 0, let (scalar, n) = scalar(t, startingAt: s), s + n == end else { return nil }
        return (scalar, n)
    }

    static func lastScalar(_ t: UnsafeBufferPointer<UInt8>, before end: Int) -> Unicode.Scalar? { scalar(t, endingAt: end)?.0 }
    static func firstScalar(_ t: UnsafeBufferPointer<UInt8>, from i: Int) -> Unicode.Scalar? { scalar(t, startingAt: i)?.0 }

    /// Rust regex `\w`: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
    static func isWordCharacter(_ s: Unicode.Scalar?) -> Bool {
        guard let s else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// Rust `char::is_numeric`: general categories Nd, Nl and No.
    static func isNumeric(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// `tokenizers`' punctuation test: ASCII punctuation (which includes `$+<=>^`|~`) or a
    /// Unicode punctuation category.
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII {
            let v = s.value
            return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v) || (0x7B...0x7E).contains(v)
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}

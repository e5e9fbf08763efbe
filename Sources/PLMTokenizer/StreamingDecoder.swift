/// Turns ids into text one id at a time during generation.
///
/// A token can end in the middle of a UTF-8 sequence (Llama 3 splits many CJK characters and
/// emoji over two or three tokens). The decoder keeps such an unfinished tail and prints it only
/// when the next tokens complete it, so no half character is ever printed. Bytes that can never
/// become valid UTF-8 are printed as U+FFFD right away, exactly as a whole-sequence `decode`
/// would print them; the concatenation of everything `append` returns plus `finish()` equals
/// `decode` of all the ids.
public struct StreamingDecoder: Sendable {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    /// Bytes of an unfinished UTF-8 sequence (at most 3).
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text that `id` completes (possibly empty).
    public mutating func append(_ id: Int) throws(TokenizerError) -> String {
        var bytes = pending
        try tokenizer.appendBytes(of: [id], skipSpecialTokens: skipSpecialTokens, to: &bytes)
        let complete = StreamingDecoder.completePrefixLength(bytes)
        pending = Array(bytes[complete...])
        return String(decoding: bytes[..<complete], as: UTF8.self)
    }

    /// Whatever is still held back (an incomplete sequence at the very end), repaired as U+FFFD.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a sequence that could still be
    /// completed. An invalid tail (one that no further byte can fix) counts as complete: it
    /// decodes to U+FFFD now, as it would later.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // Look back at most 3 bytes for the lead byte of the last sequence.
        var start = n - 1
        while start >= 0 && start >= n - 3 && bytes[start] & 0xC0 == 0x80 { start -= 1 }
        guard start >= 0 else { return n }
        let lead = bytes[start]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return n  // ASCII, a stray continuation run, or a byte that never starts a sequence
        }
        let have = n - start
        if have >= need { return n }
        // Only hold back a prefix that is still valid (e.g. E0 must be followed by A0…BF).
        if have >= 2 {
            let second = bytes[start + 1]
            let ok: Bool
            switch lead {
            case 0xE0: ok = (0xA0...0xBF).contains(second)
            case 0xED: ok = (0x80...0x9F).contains(second)
            case 0xF0: ok = (0x90...0xBF).contains(second)
            case 0xF4: ok = (0x80...0x8F).contains(second)
            default: ok = true
            }
            if !ok { return n }
        }
        return start
    }
}

/// GPT-2's reversible byte ↔ character mapping, which byte-level BPE vocabularies are written in.
///
/// Printable Latin-1 bytes (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) stand for themselves; the other 68 bytes
/// (controls, space, 0x7F–0xA0, 0xAD) are mapped in order to U+0100, U+0101, …, so a space is
/// `Ġ` (U+0120) and a newline `Ċ` (U+010A).
enum ByteLevel {
    /// `scalarForByte[b]` is the character that stands for byte `b`.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The UTF-8 bytes of the mapped character of each byte (1 or 2 bytes), concatenated, with
    /// `mappedOffset[b] ..< mappedOffset[b + 1]` the range for byte `b`.
    static let mappedUTF8: (bytes: [UInt8], offsets: [Int]) = {
        var bytes: [UInt8] = []
        var offsets = [0]
        for b in 0..<256 {
            bytes.append(contentsOf: utf8(of: scalarForByte[b]))
            offsets.append(bytes.count)
        }
        return (bytes, offsets)
    }()

    /// Byte for a mapped character, or -1 when the character is not in the alphabet.
    static func byte(forScalar s: UInt32) -> Int {
        if s < 256 {
            let b = Int(s)
            return scalarForByte[b] == s ? b : -1
        }
        if s < 256 + 68 { return byteForHighScalar[Int(s - 256)] }
        return -1
    }

    private static let byteForHighScalar: [Int] = {
        var table = [Int](repeating: -1, count: 68)
        for b in 0..<256 where scalarForByte[b] >= 256 { table[Int(scalarForByte[b] - 256)] = b }
        return table
    }()

    /// Maps a token string written in the byte-level alphabet back to its bytes, the way the
    /// `ByteLevel` decoder does: if any character is outside the alphabet (an added token such as
    /// `<|image|>` is inside it; one with a space is not), the token's own UTF-8 is used whole.
    static func decodeToken(_ utf8Token: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        let start = out.count
        var i = 0
        while i < utf8Token.count {
            let lead = utf8Token[i]
            var scalar: UInt32
            let n = utf8Length(leadByte: lead)
            guard i + n <= utf8Token.count else { break }
            switch n {
            case 1: scalar = lead < 0x80 ? UInt32(lead) : UInt32.max  // a stray continuation byte
            case 2: scalar = (UInt32(lead & 0x1F) << 6) | UInt32(utf8Token[i + 1] & 0x3F)
            default: scalar = UInt32.max  // 3- and 4-byte characters are never in the alphabet
            }
            let b = byte(forScalar: scalar)
            if b < 0 {
                out.removeSubrange(start...)
                out.append(contentsOf: utf8Token)
                return
            }
            out.append(UInt8(b))
            i += n
        }
        if i != utf8Token.count {
            out.removeSubrange(start...)
            out.append(contentsOf: utf8Token)
        }
    }

    private static func utf8(of scalar: UInt32) -> [UInt8] {
        if scalar < 0x80 { return [UInt8(scalar)] }
        return [UInt8(0xC0 | (scalar >> 6)), UInt8(0x80 | (scalar & 0x3F))]
    }
}

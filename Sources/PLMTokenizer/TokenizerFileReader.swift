import PLMCore

/// The parts of a tokenizer.json, with `model.vocab` and `model.merges` read by a dedicated
/// scanner and every other field by PLMCore's strict `JSONParser`.
///
/// Why two readers: the generic parser builds a `JSONValue` tree, which for Llama 3 means
/// 128 000 keyed entries and 280 000 strings (~0.3 s). The scanner here puts vocab strings
/// straight into a `ByteStringTable` and merges into one byte arena. It is as strict as the
/// generic parser (escapes, UTF-8, duplicate keys, trailing data).
struct TokenizerFile {
    /// Top-level fields other than `model`, in file order.
    var fields = JSONObject()
    /// `model` fields other than `vocab` and `merges`.
    var modelFields = JSONObject()
    var vocab: VocabEntries?
    var merges: MergeEntries?
}

/// `model.vocab` as read: unique strings (table entry i) and the id of each.
struct VocabEntries {
    var strings: ByteStringTable
    var ids: [UInt32]
}

/// `model.merges` as read, before ids are resolved: the two sides of merge i are
/// `arena[sides[2i]]` and `arena[sides[2i+1]]`.
struct MergeEntries {
    var arena: [UInt8] = []
    var sides: [Range<Int32>] = []
    /// Index in the file of each kept merge (legacy `#version` lines are skipped).
    var fileIndex: [Int32] = []
    var count: Int { fileIndex.count }
}

struct TokenizerFileReader {
    let source: String
    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private var scratch: [UInt8] = []

    /// Largest id accepted in `model.vocab`: an id sizes per-id tables, so it is bounded.
    static let maxTokenId: UInt64 = 1 << 24
    private static let versionPrefix = Array("#version".utf8)

    static func read(_ bytes: UnsafeRawBufferPointer, source: String) throws(TokenizerError) -> TokenizerFile {
        var reader = TokenizerFileReader(source: source, bytes: bytes)
        try reader.validateUTF8()
        return try reader.readFile()
    }

    private init(source: String, bytes: UnsafeRawBufferPointer) {
        self.source = source
        self.bytes = bytes
        scratch.reserveCapacity(256)
    }

    private func fail(_ reason: String) -> TokenizerError {
        .malformedJSON(source: source, offset: pos, reason: reason)
    }

    // MARK: - Lexing

    /// The whole file must be UTF-8 (as `serde_json` requires); checking once here means the
    /// strings below need no further validation (escapes produce valid UTF-8 themselves).
    private mutating func validateUTF8() throws(TokenizerError) {
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b < 0x80 { i += 1; continue }
            let len: Int, minScalar: UInt32
            switch b {
            case 0xC2...0xDF: len = 2; minScalar = 0x80
            case 0xE0...0xEF: len = 3; minScalar = 0x800
            case 0xF0...0xF4: len = 4; minScalar = 0x10000
            default: pos = i; throw fail("invalid UTF-8")
            }
            guard i + len <= n else { pos = i; throw fail("truncated UTF-8 sequence") }
            var scalar = UInt32(b) & (0xFF >> UInt32(len + 1))
            for k in 1..<len {
                let c = bytes[i + k]
                guard c & 0xC0 == 0x80 else { pos = i; throw fail("invalid UTF-8") }
                scalar = scalar << 6 | UInt32(c & 0x3F)
            }
            guard scalar >= minScalar, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar) else {
                pos = i; throw fail("invalid UTF-8")
            }
            i += len
        }
    }

    private var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            let c = bytes[pos]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            pos += 1
        }
    }

    private mutating func expect(_ c: UInt8, _ what: String) throws(TokenizerError) {
        skipWhitespace()
        guard peek == c else { throw fail("expected \(what)") }
        pos += 1
    }

    /// Reads a JSON string (the cursor on its opening quote) into `scratch`, escapes decoded.
    private mutating func readStringIntoScratch() throws(TokenizerError) {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw fail("expected a string") }
        pos += 1
        scratch.removeAll(keepingCapacity: true)
        do { try JSONStringLiteral.decode(bytes, at: &pos, into: &scratch) } catch { throw fail(error.reason) }
    }


    private mutating func readKey() throws(TokenizerError) -> String {
        try readStringIntoScratch()
        let key = String(decoding: scratch, as: UTF8.self)
        try expect(UInt8(ascii: ":"), "':'")
        return key
    }

    /// Skips one value (lenient about its inside) and returns its byte range; the caller hands the
    /// range to the strict parser.
    private mutating func skipValue() throws(TokenizerError) -> Range<Int> {
        skipWhitespace()
        let start = pos
        guard let first = peek else { throw fail("unexpected end of input") }
        switch first {
        case UInt8(ascii: "\""):
            try readStringIntoScratch()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            repeat {
                guard let c = peek else { throw fail("unterminated object or array") }
                switch c {
                case UInt8(ascii: "\""):
                    try readStringIntoScratch()
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    pos += 1
                    guard depth <= 128 else { throw fail("nesting deeper than 128") }
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    pos += 1
                default:
                    pos += 1
                }
            } while depth > 0
        default:
            // A number or literal runs to the next delimiter.
            while let c = peek, !isValueEnd(c) { pos += 1 }
        }
        return start..<pos
    }

    private func isValueEnd(_ c: UInt8) -> Bool {
        c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09
    }

    private mutating func genericValue() throws(TokenizerError) -> JSONValue {
        let range = try skipValue()
        do {
            return try JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[range]))
        } catch {
            throw TokenizerError.malformedJSON(source: source, offset: range.lowerBound + error.offset, reason: error.reason)
        }
    }

    /// After a member: `,` (more follow, returns true) or the closing bracket (returns false).
    private mutating func nextMember(close: UInt8) throws(TokenizerError) -> Bool {
        skipWhitespace()
        guard let c = peek else { throw fail("unterminated object or array") }
        pos += 1
        if c == close { return false }
        guard c == UInt8(ascii: ",") else { pos -= 1; throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))'") }
        return true
    }

    /// True (and consumes it) when the container that was just opened is empty.
    private mutating func closesImmediately(_ close: UInt8) -> Bool {
        skipWhitespace()
        if peek == close { pos += 1; return true }
        return false
    }

    // MARK: - Structure

    private mutating func readFile() throws(TokenizerError) -> TokenizerFile {
        var file = TokenizerFile()
        try expect(UInt8(ascii: "{"), "a JSON object")
        var seen = Set<String>()
        if !closesImmediately(UInt8(ascii: "}")) {
            repeat {
                let keyOffset = pos
                let key = try readKey()
                guard seen.insert(key).inserted else {
                    throw TokenizerError.malformedJSON(source: source, offset: keyOffset, reason: "duplicate key \"\(key)\"")
                }
                if key == "model" {
                    try readModel(into: &file)
                } else {
                    file.fields[key] = try genericValue()
                }
            } while try nextMember(close: UInt8(ascii: "}"))
        }
        skipWhitespace()
        guard pos == bytes.count else { throw fail("unexpected data after the JSON value") }
        return file
    }

    private mutating func readModel(into file: inout TokenizerFile) throws(TokenizerError) {
        skipWhitespace()
        guard peek == UInt8(ascii: "{") else {
            throw TokenizerError.invalidField(source: source, field: "model", reason: "must be an object")
        }
        pos += 1
        var seen = Set<String>()
        if closesImmediately(UInt8(ascii: "}")) { return }
        repeat {
            let keyOffset = pos
            let key = try readKey()
            guard seen.insert(key).inserted else {
                throw TokenizerError.malformedJSON(source: source, offset: keyOffset, reason: "duplicate key \"\(key)\"")
            }
            switch key {
            case "vocab": file.vocab = try readVocab()
            case "merges": file.merges = try readMerges()
            default: file.modelFields[key] = try genericValue()
            }
        } while try nextMember(close: UInt8(ascii: "}"))
    }

    private mutating func readVocab() throws(TokenizerError) -> VocabEntries {
        skipWhitespace()
        guard peek == UInt8(ascii: "{") else {
            throw TokenizerError.invalidField(source: source, field: "model.vocab", reason: "must be an object of token → id")
        }
        pos += 1
        // ~70 bytes of JSON per entry in real files; a generous first guess avoids regrowing.
        var table = ByteStringTable(expectedCount: max(16, bytes.count / 64))
        var ids: [UInt32] = []
        if closesImmediately(UInt8(ascii: "}")) { return VocabEntries(strings: table, ids: ids) }
        repeat {
            let keyOffset = pos
            try readStringIntoScratch()
            let inserted = scratch.withUnsafeBufferPointer { table.insert($0).inserted }
            guard inserted else {
                throw TokenizerError.malformedJSON(source: source, offset: keyOffset,
                                                   reason: "duplicate key \(quoted(String(decoding: scratch, as: UTF8.self))) in model.vocab")
            }
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            var value: UInt64 = 0
            var digits = 0
            while let c = peek, c >= 0x30, c <= 0x39 {
                value = value * 10 + UInt64(c - 0x30)
                digits += 1
                pos += 1
                if value > TokenizerFileReader.maxTokenId { break }
            }
            guard digits > 0, value <= TokenizerFileReader.maxTokenId, peek.map(isValueEnd) ?? false,
                  !(digits > 1 && bytes[pos - digits] == 0x30) else {
                throw TokenizerError.invalidField(
                    source: source, field: "model.vocab[\(quoted(String(decoding: scratch, as: UTF8.self)))]",
                    reason: "id must be an integer from 0 to \(TokenizerFileReader.maxTokenId)")
            }
            ids.append(UInt32(value))
        } while try nextMember(close: UInt8(ascii: "}"))
        return VocabEntries(strings: table, ids: ids)
    }

    private mutating func readMerges() throws(TokenizerError) -> MergeEntries {
        skipWhitespace()
        guard peek == UInt8(ascii: "[") else {
            throw TokenizerError.invalidField(source: source, field: "model.merges", reason: "must be an array")
        }
        pos += 1
        var merges = MergeEntries()
        merges.arena.reserveCapacity(bytes.count / 4)
        if closesImmediately(UInt8(ascii: "]")) { return merges }
        // serde reads either form, but not a mix: the first element decides.
        enum Form { case string, pair }
        var form: Form? = nil
        var index = 0
        repeat {
            skipWhitespace()
            let thisForm: Form = peek == UInt8(ascii: "[") ? .pair : .string
            if let form, form != thisForm {
                throw TokenizerError.invalidField(source: source, field: "model.merges[\(index)]",
                                                  reason: "mixes the \"a b\" string form and the [\"a\", \"b\"] pair form")
            }
            form = thisForm
            switch thisForm {
            case .pair:
                pos += 1
                try readStringIntoScratch()
                let a = appendSide(&merges)
                try expect(UInt8(ascii: ","), "',' between the two sides of a merge")
                try readStringIntoScratch()
                let b = appendSide(&merges)
                guard !(try nextMember(close: UInt8(ascii: "]"))) else {
                    throw TokenizerError.invalidField(source: source, field: "model.merges[\(index)]", reason: "must be a pair of two strings")
                }
                merges.sides.append(a)
                merges.sides.append(b)
                merges.fileIndex.append(Int32(truncatingIfNeeded: index))
            case .string:
                guard peek == UInt8(ascii: "\"") else {
                    throw TokenizerError.invalidField(source: source, field: "model.merges[\(index)]",
                                                      reason: "must be a string \"a b\" or a pair [\"a\", \"b\"]")
                }
                try readStringIntoScratch()
                // Legacy merges.txt header lines are skipped, as `tokenizers` does.
                if scratch.starts(with: TokenizerFileReader.versionPrefix) { break }
                var spaces = 0, split = 0
                for (k, c) in scratch.enumerated() where c == 0x20 {
                    spaces += 1
                    split = k
                }
                guard spaces == 1 else {
                    throw TokenizerError.invalidField(source: source, field: "model.merges[\(index)]",
                                                      reason: "\(quoted(String(decoding: scratch, as: UTF8.self))) is not two tokens separated by one space")
                }
                let base = Int32(truncatingIfNeeded: merges.arena.count)
                merges.arena.append(contentsOf: scratch)
                merges.sides.append(base..<(base + Int32(split)))
                merges.sides.append((base + Int32(split) + 1)..<(base + Int32(scratch.count)))
                merges.fileIndex.append(Int32(truncatingIfNeeded: index))
            }
            index += 1
        } while try nextMember(close: UInt8(ascii: "]"))
        return merges
    }

    private func appendSide(_ merges: inout MergeEntries) -> Range<Int32> {
        let base = Int32(truncatingIfNeeded: merges.arena.count)
        merges.arena.append(contentsOf: scratch)
        return base..<Int32(truncatingIfNeeded: merges.arena.count)
    }
}

import PLMCore

/// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json, giving the same ids as the
/// `tokenizers` library.
///
/// What is read, and refused when it is not supported (a named `TokenizerError.unsupported`, never
/// an approximation):
/// - `model`: BPE with `vocab`, `merges` as `"a b"` strings or `["a", "b"]` pairs,
///   `ignore_merges`, `unk_token`/`fuse_unk`; dropout, byte fallback and subword affixes are refused.
/// - `added_tokens` with `special`, `single_word`, `lstrip`, `rstrip`, `normalized`.
/// - `normalizer`: null, `Sequence`, `Lowercase`, `Replace`, `Prepend`, `Strip`.
/// - `pre_tokenizer`: `Sequence`, `Split` (regex or string, any behavior, `invert`), `ByteLevel`
///   (`add_prefix_space`, `use_regex`), `Digits`, `Punctuation`; there must be one `ByteLevel`.
/// - `post_processor`: null, `TemplateProcessing` (its single-sequence template), `ByteLevel`,
///   `Sequence`.
/// - `decoder`: `ByteLevel` (or null).
/// - `truncation` and `padding` must be null.
public struct Tokenizer: Sendable {
    /// Where the file came from, for messages.
    public let source: String
    let model: BPEModel
    public let addedTokens: [AddedToken]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let normalizer: NormalizerSpec?
    let preTokenizer: PreTokenizerSpec
    let template: [TemplateItem]?
    let byteLevelDecoder: Bool
    /// Per id: bytes the decoder produces (`decodedArena[decodedStarts[id] ..< decodedStarts[id + 1]]`).
    let decodedArena: [UInt8]
    let decodedStarts: [Int32]
    /// Per id: the token is special (dropped by `skipSpecialTokens`), or the id is unused.
    let special: [Bool]
    let used: [Bool]
    /// Added tokens by content, for `tokenId(for:)`.
    let addedByContent: [String: Int]

    /// One past the largest id (model or added).
    public var idCount: Int { used.count }

    /// Reads tokenizer.json bytes. `source` names the file in errors.
    public init(json: [UInt8], source: String = "tokenizer.json") throws(TokenizerError) {
        let read: Result<TokenizerFile, TokenizerError> = json.withUnsafeBytes { raw in
            do throws(TokenizerError) { return .success(try TokenizerFileReader.read(raw, source: source)) } catch { return .failure(error) }
        }
        try self.init(file: try read.get(), source: source)
    }

    init(file: TokenizerFile, source: String) throws(TokenizerError) {
        self.source = source
        let r = ComponentReader(source: source)
        let f = file.fields
        if let v = f["version"], v.stringValue != "1.0" {
            throw .unsupported(source: source, field: "version", what: "tokenizer.json version \(v.stringValue.map(quoted) ?? v.typeName)")
        }
        for key in ["truncation", "padding"] {
            if let v = f[key], !v.isNull { throw .unsupported(source: source, field: key, what: "\(key) inside the tokenizer") }
        }
        model = try BPEModel(file: file, source: source)
        normalizer = try r.normalizer(f["normalizer"] ?? .null, "normalizer")
        guard let pre = try r.preTokenizer(f["pre_tokenizer"] ?? .null, "pre_tokenizer") else {
            throw .unsupported(source: source, field: "pre_tokenizer", what: "byte-level BPE without a ByteLevel pre-tokenizer (null)")
        }
        let byteLevelCount = Tokenizer.countByteLevel(pre)
        guard byteLevelCount == 1 else {
            throw .unsupported(source: source, field: "pre_tokenizer",
                               what: byteLevelCount == 0 ? "BPE without a ByteLevel pre-tokenizer (only byte-level BPE is implemented)" : "more than one ByteLevel pre-tokenizer")
        }
        preTokenizer = pre
        byteLevelDecoder = try r.decoder(f["decoder"] ?? .null, "decoder")

        // Added tokens get their ids the way `tokenizers` assigns them on load: the model's id
        // when the content is in the vocabulary, else the next free id after the vocabulary.
        // A file whose ids disagree would load differently there, so it is refused.
        var added: [AddedToken] = []
        var byContent: [String: Int] = [:]
        if let list = f["added_tokens"], !list.isNull {
            guard let items = list.arrayValue else { throw .invalidField(source: source, field: "added_tokens", reason: "must be an array") }
            var nextId = model.entryIds.count
            for (i, item) in items.enumerated() {
                let path = "added_tokens[\(i)]"
                let o = try r.object(item, path)
                let content = try r.string(o, "content", path)
                guard let idValue = o["id"], let id = idValue.int64Value, id >= 0, id <= Int64(TokenizerFileReader.maxTokenId) else {
                    throw .invalidField(source: source, field: "\(path).id", reason: "must be a token id")
                }
                let isSpecial = try r.bool(o, "special", path, default: false)
                let token = AddedToken(
                    id: Int(id), content: content, special: isSpecial,
                    singleWord: try r.bool(o, "single_word", path, default: false),
                    lstrip: try r.bool(o, "lstrip", path, default: false),
                    rstrip: try r.bool(o, "rstrip", path, default: false),
                    normalized: try r.bool(o, "normalized", path, default: !isSpecial))
                if content.isEmpty { continue }
                let expected: Int
                if let existing = byContent[content] {
                    expected = existing
                } else if let modelId = model.id(forToken: Array(content.utf8)) {
                    expected = Int(modelId)
                } else {
                    expected = nextId
                    nextId += 1
                }
                guard expected == Int(id) else {
                    throw .invalidField(source: source, field: "\(path).id",
                                        reason: "\(quoted(content)) has id \(id) but would get id \(expected) when loaded (model vocabulary first, then added tokens in order)")
                }
                if let previous = added.firstIndex(where: { $0.content == content }) { added.remove(at: previous) }
                added.append(token)
                byContent[content] = Int(id)
            }
        }
        addedTokens = added
        addedByContent = byContent

        // Normalized tokens are searched for in normalized text, so their patterns are normalized too.
        var normalizedPatterns: [[UInt8]] = []
        let normalizedTokens = added.filter { $0.normalized }
        for t in normalizedTokens {
            normalizedPatterns.append(normalizer.map { Tokenizer.normalize(Array(t.content.utf8), $0) } ?? Array(t.content.utf8))
        }
        let rawTokens = added.filter { !$0.normalized }
        rawMatcher = AddedTokenMatcher(tokens: rawTokens, patterns: rawTokens.map { Array($0.content.utf8) })
        normalizedMatcher = AddedTokenMatcher(tokens: normalizedTokens, patterns: normalizedPatterns)

        template = try r.postProcessor(f["post_processor"] ?? .null, "post_processor") { name in nil }

        // Per-id decoding tables.
        var maxId = model.entryForId.count - 1
        for t in added { maxId = max(maxId, t.id) }
        var addedForId = [Int32](repeating: -1, count: maxId + 1)
        for (k, t) in added.enumerated() { addedForId[t.id] = Int32(k) }
        var arena: [UInt8] = []
        arena.reserveCapacity(model.strings.arena.count)
        var starts: [Int32] = [0]
        starts.reserveCapacity(maxId + 2)
        var special = [Bool](repeating: false, count: maxId + 1)
        var used = [Bool](repeating: false, count: maxId + 1)
        // `tokenizers` skips by content: an id is special when its string is a special token's.
        for t in added where t.special {
            special[t.id] = true
            if let modelId = model.id(forToken: Array(t.content.utf8)) { special[Int(modelId)] = true }
        }
        var normalizedIndex: [Int: Int] = [:]
        for (k, t) in normalizedTokens.enumerated() { normalizedIndex[t.id] = k }
        for id in 0..<(maxId + 1) {
            if addedForId[id] >= 0 {
                let t = added[Int(addedForId[id])]
                // An added token is decoded from its normalized form when it has one.
                let text = normalizedIndex[id].map { normalizedPatterns[$0] } ?? Array(t.content.utf8)
                used[id] = true
                if byteLevelDecoder {
                    text.withUnsafeBufferPointer { ByteLevel.decodeToken($0, into: &arena) }
                } else {
                    arena.append(contentsOf: text)
                }
            } else if id < model.entryForId.count, model.entryForId[id] >= 0 {
                used[id] = true
                let byteLevel = byteLevelDecoder
                model.strings.withEntry(Int(model.entryForId[id])) { entry in
                    if byteLevel { ByteLevel.decodeToken(entry, into: &arena) } else { arena.append(contentsOf: entry) }
                }
            }
            starts.append(Int32(truncatingIfNeeded: arena.count))
        }
        decodedArena = arena
        decodedStarts = starts
        self.special = special
        self.used = used
        // The template's special ids must exist.
        for item in template ?? [] {
            if case .specialToken(let ids) = item {
                for id in ids where !(Int(id) < used.count && used[Int(id)]) {
                    throw .invalidField(source: source, field: "post_processor", reason: "template token id \(id) is not in the vocabulary")
                }
            }
        }
    }

    private static func countByteLevel(_ p: PreTokenizerSpec) -> Int {
        switch p {
        case .byteLevel: return 1
        case .sequence(let items): return items.reduce(0) { $0 + countByteLevel($1) }
        default: return 0
        }
    }

    // MARK: - Lookup

    /// The id of a token string (an added token's content, or a vocabulary string as written in
    /// the file, e.g. `"Ġthe"`), or nil.
    public func tokenId(for token: String) -> Int? {
        if let id = addedByContent[token] { return id }
        return model.id(forToken: Array(token.utf8)).map(Int.init)
    }

    /// The token string of an id (added token content, or the vocabulary string), or nil.
    public func token(for id: Int) -> String? {
        if let t = addedTokens.last(where: { $0.id == id }) { return t.content }
        return model.tokenString(id)
    }

    /// True for ids that `decode(skipSpecialTokens: true)` drops.
    public func isSpecial(_ id: Int) -> Bool { id >= 0 && id < special.count && special[id] }

    // MARK: - Encode

    /// The ids of `text`. With `addSpecialTokens` the post-processor's template is applied (for
    /// Llama 3: `<|begin_of_text|>` first). Added tokens written inside the text become their ids.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [UInt32] = []
        var scratch = BPEScratch()
        var utf8 = Array(text.utf8)
        encodeSequence(&utf8, into: &ids, scratch: &scratch)
        guard addSpecialTokens, let template else { return ids.map(Int.init) }
        var out: [Int] = []
        out.reserveCapacity(ids.count + 4)
        for item in template {
            switch item {
            case .sequence: out.append(contentsOf: ids.map(Int.init))
            case .specialToken(let special): out.append(contentsOf: special.map(Int.init))
            }
        }
        return out
    }

    private func encodeSequence(_ text: inout [UInt8], into ids: inout [UInt32], scratch: inout BPEScratch) {
        let segments = text.withUnsafeBufferPointer { rawMatcher.split($0) }
        for segment in segments {
            if let t = segment.token {
                ids.append(UInt32(rawMatcher.tokens[t].id))
                continue
            }
            var piece = Array(text[segment.range])
            if let normalizer { piece = Tokenizer.normalize(piece, normalizer) }
            let inner = piece.withUnsafeBufferPointer { normalizedMatcher.split($0) }
            for part in inner {
                if let t = part.token {
                    ids.append(UInt32(normalizedMatcher.tokens[t].id))
                    continue
                }
                var list = PieceList(Array(piece[part.range]))
                preTokenize(&list, preTokenizer)
                bpe(list, into: &ids, scratch: &scratch)
            }
        }
    }

    private func bpe(_ list: PieceList, into ids: inout [UInt32], scratch: inout BPEScratch) {
        list.arena.withUnsafeBufferPointer { a in
            if !list.mapped {
                for piece in list.pieces { model.tokenize(UnsafeBufferPointer(rebasing: a[piece]), into: &ids, scratch: &scratch) }
                return
            }
            // Pieces in the byte-level alphabet go back to bytes first.
            var raw: [UInt8] = []
            for piece in list.pieces {
                raw.removeAll(keepingCapacity: true)
                ByteLevel.decodeToken(UnsafeBufferPointer(rebasing: a[piece]), into: &raw)
                raw.withUnsafeBufferPointer { model.tokenize($0, into: &ids, scratch: &scratch) }
            }
        }
    }

    private func preTokenize(_ list: inout PieceList, _ spec: PreTokenizerSpec) {
        switch spec {
        case .sequence(let steps):
            for step in steps { preTokenize(&list, step) }
        case .split(let pattern, let behavior, let invert):
            list.materialize()
            list.split { applyBehavior(patternMatches(pattern, in: $0, invert: invert), behavior) }
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace {
                var newPieces: [Range<Int>] = []
                for piece in list.pieces {
                    if list.arena[piece.lowerBound] == 0x20 {
                        newPieces.append(piece)
                    } else {
                        let start = list.arena.count
                        list.arena.append(0x20)
                        list.arena.append(contentsOf: list.arena[piece])
                        newPieces.append(start..<list.arena.count)
                    }
                }
                list.pieces = newPieces
            }
            if useRegex {
                let regex = Tokenizer.gpt2Regex
                list.split { applyBehavior(patternMatches(regex, in: $0), .isolated) }
            }
            list.mapToByteLevelLazily()
        case .digits(let individual):
            list.materialize()
            list.split { applyBehavior(characterMatches(in: $0, UnicodeText.isNumeric), individual ? .isolated : .contiguous) }
        case .punctuation(let behavior):
            list.materialize()
            list.split { applyBehavior(characterMatches(in: $0, UnicodeText.isPunctuation), behavior) }
        }
    }

    /// The GPT-2 pattern compiled once (it is a fixed, valid pattern).
    static let gpt2Regex: PatternSpec = {
        do { return .regex(try OnigRegex(pattern: gpt2Pattern)) } catch { return .literal([]) }
    }()

    // MARK: - Normalizers

    static func normalize(_ bytes: [UInt8], _ spec: NormalizerSpec) -> [UInt8] {
        switch spec {
        case .sequence(let steps):
            return steps.reduce(bytes) { normalize($0, $1) }
        case .lowercase:
            return Array(String(decoding: bytes, as: UTF8.self).lowercased().utf8)
        case .prepend(let prefix):
            return bytes.isEmpty ? bytes : prefix + bytes
        case .strip(let left, let right):
            var s = String(decoding: bytes, as: UTF8.self).unicodeScalars[...]
            if left { while let f = s.first, f.properties.isWhitespace { s.removeFirst() } }
            if right { while let l = s.last, l.properties.isWhitespace { s.removeLast() } }
            return Array(String(String.UnicodeScalarView(s)).utf8)
        case .replace(let pattern, let content):
            return bytes.withUnsafeBufferPointer { b in
                var out: [UInt8] = []
                for (r, isMatch) in patternMatches(pattern, in: b) {
                    if isMatch { out.append(contentsOf: content) } else { out.append(contentsOf: b[r]) }
                }
                return out
            }
        }
    }

    // MARK: - Decode

    /// The text of `ids`. Ids outside the vocabulary are an error (`tokenizers` silently skips them).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        var bytes: [UInt8] = []
        try appendBytes(of: ids, skipSpecialTokens: skipSpecialTokens, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the decoder's bytes for `ids` (before UTF-8 repair).
    func appendBytes(of ids: [Int], skipSpecialTokens: Bool, to bytes: inout [UInt8]) throws(TokenizerError) {
        for (k, id) in ids.enumerated() {
            guard id >= 0, id < used.count, used[id] else { throw .unknownId(id) }
            if skipSpecialTokens && special[id] { continue }
            // Without a decoder, `tokenizers` joins the token strings with spaces.
            if !byteLevelDecoder && k > 0 && !bytes.isEmpty { bytes.append(0x20) }
            bytes.append(contentsOf: decodedArena[Int(decodedStarts[id])..<Int(decodedStarts[id + 1])])
        }
    }
}

extension PieceList {
    /// After `ByteLevel` the pieces are logically in the byte-level alphabet; they are only
    /// rewritten if a later step needs to look at them (`materialize`).
    mutating func mapToByteLevelLazily() { pendingMap = true }

    mutating func materialize() {
        if pendingMap {
            pendingMap = false
            mapToByteLevel()
        }
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { i >= 0 && i < count ? self[i] : nil }
}

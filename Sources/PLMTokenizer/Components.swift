import PLMCore

/// How a `Split`-style step treats the pieces its pattern matches (`tokenizers`'
/// `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// What a `Split` pre-tokenizer or `Replace` normalizer looks for.
enum PatternSpec: Sendable {
    case literal([UInt8])
    case regex(OnigRegex)
}

enum NormalizerSpec: Sendable {
    case sequence([NormalizerSpec])
    case lowercase
    case replace(pattern: PatternSpec, content: [UInt8])
    case prepend([UInt8])
    case strip(left: Bool, right: Bool)
}

enum PreTokenizerSpec: Sendable {
    case sequence([PreTokenizerSpec])
    case split(pattern: PatternSpec, behavior: SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case digits(individualDigits: Bool)
    case punctuation(SplitBehavior)
}

/// One item of a `TemplateProcessing` template for single sequences.
enum TemplateItem: Sendable {
    case sequence
    case specialToken(ids: [UInt32])
}

/// Reads the component objects of tokenizer.json. Each reader names the JSON path it is at, so an
/// error says exactly which field is wrong.
struct ComponentReader {
    let source: String

    func object(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> JSONObject {
        guard let v else { throw .missingField(source: source, field: path) }
        guard let o = v.objectValue else { throw .invalidField(source: source, field: path, reason: "must be an object, not \(v.typeName)") }
        return o
    }

    func string(_ o: JSONObject, _ key: String, _ path: String) throws(TokenizerError) -> String {
        guard let v = o[key] else { throw .missingField(source: source, field: "\(path).\(key)") }
        guard let s = v.stringValue else { throw .invalidField(source: source, field: "\(path).\(key)", reason: "must be a string, not \(v.typeName)") }
        return s
    }

    func bool(_ o: JSONObject, _ key: String, _ path: String, default d: Bool? = nil) throws(TokenizerError) -> Bool {
        guard let v = o[key], !v.isNull else {
            if let d { return d }
            throw .missingField(source: source, field: "\(path).\(key)")
        }
        guard let b = v.boolValue else { throw .invalidField(source: source, field: "\(path).\(key)", reason: "must be true or false, not \(v.typeName)") }
        return b
    }

    func type(_ o: JSONObject, _ path: String) throws(TokenizerError) -> String { try string(o, "type", path) }

    func regex(_ pattern: String, _ path: String) throws(TokenizerError) -> OnigRegex {
        do {
            return try OnigRegex(pattern: pattern)
        } catch {
            throw .invalidRegex(source: source, field: path, pattern: pattern, reason: error.message)
        }
    }

    /// `{"String": "..."}` or `{"Regex": "..."}`.
    func pattern(_ v: JSONValue?, _ path: String) throws(TokenizerError) -> PatternSpec {
        let o = try object(v, path)
        guard o.count == 1, let key = o.keys.first, let value = o[key] else {
            throw .invalidField(source: source, field: path, reason: "must have exactly one of \"String\" or \"Regex\"")
        }
        guard let text = value.stringValue else { throw .invalidField(source: source, field: "\(path).\(key)", reason: "must be a string") }
        switch key {
        case "String": return .literal(Array(text.utf8))
        case "Regex": return .regex(try regex(text, "\(path).Regex"))
        default: throw .unsupported(source: source, field: path, what: "pattern kind \(quoted(key))")
        }
    }

    func behavior(_ o: JSONObject, _ path: String, default d: SplitBehavior? = nil) throws(TokenizerError) -> SplitBehavior {
        guard o["behavior"] != nil || d == nil else { return d ?? .isolated }
        let name = try string(o, "behavior", path)
        guard let b = SplitBehavior(rawValue: name) else {
            throw .invalidField(source: source, field: "\(path).behavior", reason: "unknown behavior \(quoted(name))")
        }
        return b
    }

    func normalizer(_ v: JSONValue, _ path: String) throws(TokenizerError) -> NormalizerSpec? {
        if v.isNull { return nil }
        let o = try object(v, path)
        let t = try type(o, path)
        switch t {
        case "Sequence":
            guard let items = o["normalizers"]?.arrayValue else { throw .missingField(source: source, field: "\(path).normalizers") }
            var out: [NormalizerSpec] = []
            for (i, item) in items.enumerated() {
                if let n = try normalizer(item, "\(path).normalizers[\(i)]") { out.append(n) }
            }
            return .sequence(out)
        case "Lowercase":
            return .lowercase
        case "Replace":
            let content = try string(o, "content", path)
            return .replace(pattern: try pattern(o["pattern"], "\(path).pattern"), content: Array(content.utf8))
        case "Prepend":
            return .prepend(Array(try string(o, "prepend", path).utf8))
        case "Strip":
            return .strip(left: try bool(o, "strip_left", path), right: try bool(o, "strip_right", path))
        default:
            // NFC/NFKC and friends, BertNormalizer, Precompiled, ByteLevel, StripAccents, ...
            throw .unsupported(source: source, field: "\(path).type", what: "normalizer \(quoted(t))")
        }
    }

    func preTokenizer(_ v: JSONValue, _ path: String) throws(TokenizerError) -> PreTokenizerSpec? {
        if v.isNull { return nil }
        let o = try object(v, path)
        let t = try type(o, path)
        switch t {
        case "Sequence":
            guard let items = o["pretokenizers"]?.arrayValue else { throw .missingField(source: source, field: "\(path).pretokenizers") }
            var out: [PreTokenizerSpec] = []
            for (i, item) in items.enumerated() {
                guard let p = try preTokenizer(item, "\(path).pretokenizers[\(i)]") else {
                    throw .invalidField(source: source, field: "\(path).pretokenizers[\(i)]", reason: "must be an object")
                }
                out.append(p)
            }
            return .sequence(out)
        case "Split":
            return .split(pattern: try pattern(o["pattern"], "\(path).pattern"), behavior: try behavior(o, path),
                          invert: try bool(o, "invert", path))
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try bool(o, "add_prefix_space", path),
                              useRegex: try bool(o, "use_regex", path, default: true))
        case "Digits":
            return .digits(individualDigits: try bool(o, "individual_digits", path, default: false))
        case "Punctuation":
            return .punctuation(try behavior(o, path, default: .isolated))
        default:
            // Whitespace, WhitespaceSplit, Metaspace, BertPreTokenizer, CharDelimiterSplit, UnicodeScripts, ...
            throw .unsupported(source: source, field: "\(path).type", what: "pre-tokenizer \(quoted(t))")
        }
    }

    /// The `single` template of the post-processor (what `add_special_tokens` adds around one
    /// sequence), or nil for none. `ByteLevel` post-processing only trims offsets and adds nothing.
    func postProcessor(_ v: JSONValue, _ path: String, tokenId: (String) -> UInt32?) throws(TokenizerError) -> [TemplateItem]? {
        if v.isNull { return nil }
        let o = try object(v, path)
        let t = try type(o, path)
        switch t {
        case "ByteLevel":
            return nil
        case "Sequence":
            guard let items = o["processors"]?.arrayValue else { throw .missingField(source: source, field: "\(path).processors") }
            var template: [TemplateItem]? = nil
            for (i, item) in items.enumerated() {
                if let next = try postProcessor(item, "\(path).processors[\(i)]", tokenId: tokenId) {
                    guard template == nil else {
                        throw .unsupported(source: source, field: "\(path).processors[\(i)]", what: "a second TemplateProcessing in one Sequence")
                    }
                    template = next
                }
            }
            return template
        case "TemplateProcessing":
            let specials = try object(o["special_tokens"], "\(path).special_tokens")
            guard let single = o["single"]?.arrayValue else { throw .missingField(source: source, field: "\(path).single") }
            var items: [TemplateItem] = []
            for (i, piece) in single.enumerated() {
                let p = "\(path).single[\(i)]"
                let po = try object(piece, p)
                if let seq = po["Sequence"] {
                    let so = try object(seq, "\(p).Sequence")
                    guard try string(so, "id", "\(p).Sequence") == "A" else {
                        throw .invalidField(source: source, field: "\(p).Sequence.id", reason: "a single-sequence template can only use sequence A")
                    }
                    items.append(.sequence)
                } else if let special = po["SpecialToken"] {
                    let so = try object(special, "\(p).SpecialToken")
                    let name = try string(so, "id", "\(p).SpecialToken")
                    let entry = try object(specials[name], "\(path).special_tokens[\(quoted(name))]")
                    guard let ids = entry["ids"]?.arrayValue else { throw .missingField(source: source, field: "\(path).special_tokens[\(quoted(name))].ids") }
                    var out: [UInt32] = []
                    for (k, idValue) in ids.enumerated() {
                        guard let id = idValue.int64Value, id >= 0, id <= Int64(TokenizerFileReader.maxTokenId) else {
                            throw .invalidField(source: source, field: "\(path).special_tokens[\(quoted(name))].ids[\(k)]", reason: "must be a token id")
                        }
                        out.append(UInt32(id))
                    }
                    items.append(.specialToken(ids: out))
                } else {
                    throw .invalidField(source: source, field: p, reason: "must hold \"Sequence\" or \"SpecialToken\"")
                }
            }
            return items
        default:
            // BertProcessing, RobertaProcessing, ...
            throw .unsupported(source: source, field: "\(path).type", what: "post-processor \(quoted(t))")
        }
    }

    /// Only the `ByteLevel` decoder (alone or as the only step of a `Sequence`) is implemented; it
    /// maps each token's characters back to bytes. Returns false for `null` (tokens are joined with
    /// spaces, as `tokenizers` does without a decoder).
    func decoder(_ v: JSONValue, _ path: String) throws(TokenizerError) -> Bool {
        if v.isNull { return false }
        let o = try object(v, path)
        let t = try type(o, path)
        switch t {
        case "ByteLevel": return true
        case "Sequence":
            guard let items = o["decoders"]?.arrayValue, items.count == 1 else {
                throw .unsupported(source: source, field: "\(path).decoders", what: "a decoder Sequence other than one ByteLevel step")
            }
            guard try decoder(items[0], "\(path).decoders[0]") else {
                throw .unsupported(source: source, field: "\(path).decoders[0]", what: "decoder null")
            }
            return true
        default:
            throw .unsupported(source: source, field: "\(path).type", what: "decoder \(quoted(t))")
        }
    }
}

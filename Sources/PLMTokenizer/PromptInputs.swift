import PLMCore

/// The named special tokens of tokenizer_config.json (`bos_token`, `eos_token`, `pad_token`,
/// `image_token`, …), which transformers passes to the chat template as variables. A value is a
/// string or, in older files, an AddedToken object with a `content` string.
public struct SpecialTokensMap: Sendable, Equatable {
    public var tokens: [String: String]

    public init(tokens: [String: String]) { self.tokens = tokens }

    public init(tokenizerConfig: JSONValue?, source: String = "tokenizer_config.json") throws(TokenizerError) {
        var tokens: [String: String] = [:]
        for (key, value) in tokenizerConfig?.objectValue?.entries ?? [] where key.hasSuffix("_token") {
            switch value {
            case .null: continue
            case .string(let s): tokens[key] = s
            case .object(let o):
                guard let s = o["content"]?.stringValue else { throw .invalidField(source: source, field: "\(key).content", reason: "must be a string") }
                tokens[key] = s
            default:
                throw .invalidField(source: source, field: key, reason: "must be a string or an object with a content string, not \(value.typeName)")
            }
        }
        self.tokens = tokens
    }

    public var bos: String? { tokens["bos_token"] }
    public var eos: String? { tokens["eos_token"] }

    /// The template variables besides `bos_token` and `eos_token`.
    public var extraVariables: [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for (k, v) in tokens where k != "bos_token" && k != "eos_token" { out[k] = .string(v) }
        return out
    }
}

extension PlaceholderConfig {
    /// Reads `patch_size`, `pooling_ratio` and the image processor's `tile_size` from
    /// processor_config.json (transformers 5 nests the image processor under `image_processor`;
    /// older preprocessor_config.json files have `tile_size` at the top).
    public init(processorConfig: JSONValue) throws(PromptExpansionError) {
        guard let o = processorConfig.objectValue else { throw .invalidConfig("must be a JSON object") }
        func positive(_ v: JSONValue?, _ name: String) throws(PromptExpansionError) -> Int {
            guard let v else { throw .invalidConfig("\(name) is missing") }
            guard let i = v.intValue, i > 0, i <= 1 << 16 else { throw .invalidConfig("\(name) must be a positive integer, not \(v.serialized())") }
            return i
        }
        let tile = o["image_processor"]?.objectValue?["tile_size"] ?? o["tile_size"]
        self.init(tileSize: try positive(tile, "image_processor.tile_size"),
                  patchSize: try positive(o["patch_size"], "patch_size"),
                  poolingRatio: try positive(o["pooling_ratio"] ?? .number("2"), "pooling_ratio"))
    }
}

/// One id with what it stands for, for listings such as `plmq tokenize`.
public struct TokenPiece: Sendable, Equatable {
    public var id: Int
    /// The id's own text (a piece that ends inside a UTF-8 sequence shows U+FFFD).
    public var text: String
    public var special: Bool
}

extension Tokenizer {
    public func pieces(_ ids: [Int]) throws(TokenizerError) -> [TokenPiece] {
        var out: [TokenPiece] = []
        out.reserveCapacity(ids.count)
        for id in ids { out.append(TokenPiece(id: id, text: try decode([id]), special: isSpecial(id))) }
        return out
    }
}

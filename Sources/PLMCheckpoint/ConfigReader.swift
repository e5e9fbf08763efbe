import PLMCore

/// Upper bounds on the sizes a config may declare. Each is far above any real model (PLM-8B:
/// hidden 4,096, 32 layers, 32 heads, vocabulary 128,256, intermediate 14,336, 131,072
/// positions; its vision tower: 448-pixel images, 14-pixel patches, width 1,536, depth 50,
/// mlp_ratio 5.83), yet small enough that every shape derived from them fits in an Int and the
/// per-layer loops end quickly: a config of 10^8 layers is refused, not walked. Formats/PLM.md
/// lists them.
public enum ConfigLimits {
    /// hidden_size, embed_dim, head_dim.
    public static let width = 65_536
    /// intermediate_size (also the vision MLP width that embed_dim × mlp_ratio gives).
    public static let intermediate = 1 << 20
    /// num_hidden_layers, depth.
    public static let layers = 1_024
    /// num_attention_heads, num_key_value_heads, num_heads.
    public static let heads = 1_024
    /// vocab_size (2^22).
    public static let vocabulary = 1 << 22
    /// max_position_embeddings, original_max_position_embeddings (2^24).
    public static let positions = 1 << 24
    /// img_size and ref_feat_shape, each side, in pixels.
    public static let imageSide = 16_384
    /// patch_size.
    public static let patch = 1_024
    /// mlp_ratio lies in (0, 64].
    public static let mlpRatio = 64.0
}
/// A config problem: which file, which field (a dotted path such as `text_config.head_dim`), what.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let field: String
    public let problem: String
    public var description: String { field.isEmpty ? "\(file): \(problem)" : "\(file): \(field): \(problem)" }
}

/// Typed access to one JSON object of a config file, with errors that name the field path.
struct ConfigReader {
    let file: String
    let path: String
    let object: JSONObject

    init(file: String, path: String = "", object: JSONObject) {
        self.file = file
        self.path = path
        self.object = object
    }

    func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String, _ problem: String) -> ConfigError {
        ConfigError(file: file, field: field(key), problem: problem)
    }

    /// The value, treating JSON null as absent (Python configs write None as null).
    func value(_ key: String) -> JSONValue? {
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    func int(_ key: String) throws(ConfigError) -> Int? {
        guard let v = value(key) else { return nil }
        guard case .number(let literal) = v, let i = Int(literal) else {
            throw error(key, "expected an integer, found \(Self.describe(v))")
        }
        return i
    }

    func int(_ key: String, default d: Int) throws(ConfigError) -> Int { try int(key) ?? d }

    func positiveInt(_ key: String, default d: Int? = nil) throws(ConfigError) -> Int {
        guard let v = try int(key) ?? d else { throw error(key, "required field is missing") }
        guard v > 0 else { throw error(key, "must be positive, found \(v)") }
        return v
    }

    /// A positive integer of at most `limit` (one of `ConfigLimits`).
    func positiveInt(_ key: String, default d: Int? = nil, max limit: Int) throws(ConfigError) -> Int {
        let v = try positiveInt(key, default: d)
        try check(key, v, atMost: limit)
        return v
    }

    func check(_ key: String, _ v: Int, atMost limit: Int) throws(ConfigError) {
        guard v <= limit else { throw error(key, "\(v) exceeds the limit of \(formatThousands(limit)) (far above any real model)") }
    }

    func double(_ key: String) throws(ConfigError) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw error(key, "expected a number, found \(Self.describe(v))") }
        return d
    }

    func double(_ key: String, default d: Double) throws(ConfigError) -> Double { try double(key) ?? d }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw error(key, "expected true or false, found \(Self.describe(v))") }
        return b
    }

    func bool(_ key: String, default d: Bool) throws(ConfigError) -> Bool { try bool(key) ?? d }

    func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw error(key, "expected a string, found \(Self.describe(v))") }
        return s
    }

    func object(_ key: String) throws(ConfigError) -> ConfigReader? {
        guard let v = value(key) else { return nil }
        guard let o = v.objectValue else { throw error(key, "expected an object, found \(Self.describe(v))") }
        return ConfigReader(file: file, path: field(key), object: o)
    }

    /// An int or a list of ints (generation_config's eos_token_id takes both forms).
    func intList(_ key: String) throws(ConfigError) -> [Int]? {
        guard let v = value(key) else { return nil }
        if case .number = v, let i = v.intValue { return [i] }
        guard let items = v.arrayValue else { throw error(key, "expected an integer or a list of integers") }
        var out: [Int] = []
        for item in items {
            guard let i = item.intValue else { throw error(key, "expected a list of integers") }
            out.append(i)
        }
        return out
    }

    /// An int or a pair of ints, as timm accepts for sizes (`img_size=448` or `(448, 448)`).
    func intPair(_ key: String) throws(ConfigError) -> (Int, Int)? {
        guard let v = value(key) else { return nil }
        if case .number = v {
            guard let i = v.intValue else { throw error(key, "expected an integer or a pair of integers") }
            return (i, i)
        }
        guard let items = v.arrayValue, items.count == 2, let a = items[0].intValue, let b = items[1].intValue else {
            throw error(key, "expected an integer or a pair of integers, found \(Self.describe(v))")
        }
        return (a, b)
    }

    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .number(let n): return n
        case .string(let s): return "\"\(s)\""
        case .bool(let b): return b ? "true" : "false"
        default: return v.typeName
        }
    }
}

import PLMCore
/// Activation functions named by `hidden_act`, as transformers' ACT2FN defines them.
public enum Activation: String, Sendable, Equatable {
    case silu
    case geluErf = "gelu"
    case geluTanh = "gelu_pytorch_tanh"
    case relu

    /// The config spellings accepted for each activation.
    static func parse(_ name: String) -> Activation? {
        switch name {
        case "silu", "swish": return .silu
        case "gelu": return .geluErf
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": return .geluTanh
        case "relu": return .relu
        default: return nil
        }
    }
}

/// How RoPE inverse frequencies are derived (transformers' `rope_type`).
public enum RopeScaling: Sendable, Equatable {
    case none
    case linear(factor: Double)
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
}

public struct RopeParameters: Sendable, Equatable {
    public var theta: Double
    public var scaling: RopeScaling

    public init(theta: Double, scaling: RopeScaling) {
        self.theta = theta
        self.scaling = scaling
    }
}

/// The Llama decoder's configuration (`text_config`).
public struct TextConfig: Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var hiddenAct: Activation
    public var rmsNormEps: Double
    public var rope: RopeParameters
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int

    /// Query heads per key/value head.
    public var groupSize: Int { numAttentionHeads / numKeyValueHeads }

    init(reader r: ConfigReader) throws(ConfigError) {
        if let type = try r.string("model_type"), type != "llama" {
            throw r.error("model_type", "unsupported text model \"\(type)\" (plmq runs Llama decoders)")
        }
        vocabSize = try r.positiveInt("vocab_size", default: 32000, max: ConfigLimits.vocabulary)
        hiddenSize = try r.positiveInt("hidden_size", default: 4096, max: ConfigLimits.width)
        intermediateSize = try r.positiveInt("intermediate_size", default: 11008, max: ConfigLimits.intermediate)
        numHiddenLayers = try r.positiveInt("num_hidden_layers", default: 32, max: ConfigLimits.layers)
        numAttentionHeads = try r.positiveInt("num_attention_heads", default: 32, max: ConfigLimits.heads)
        numKeyValueHeads = try r.positiveInt("num_key_value_heads", default: numAttentionHeads, max: ConfigLimits.heads)
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw r.error("num_key_value_heads", "\(numKeyValueHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        if let hd = try r.int("head_dim") {
            guard hd > 0, hd % 2 == 0 else { throw r.error("head_dim", "must be a positive even number, found \(hd)") }
            try r.check("head_dim", hd, atMost: ConfigLimits.width)
            headDim = hd
        } else {
            guard hiddenSize % numAttentionHeads == 0 else {
                throw r.error("hidden_size", "\(hiddenSize) is not divisible by num_attention_heads \(numAttentionHeads) and head_dim is not set")
            }
            headDim = hiddenSize / numAttentionHeads
            guard headDim % 2 == 0 else { throw r.error("hidden_size", "head dimension \(headDim) must be even for RoPE") }
        }
        let act = try r.string("hidden_act") ?? "silu"
        guard let a = Activation.parse(act) else { throw r.error("hidden_act", "unsupported activation \"\(act)\"") }
        hiddenAct = a
        rmsNormEps = try r.double("rms_norm_eps", default: 1e-6)
        guard rmsNormEps > 0 else { throw r.error("rms_norm_eps", "must be positive") }
        rope = try Self.readRope(r)
        attentionBias = try r.bool("attention_bias", default: false)
        mlpBias = try r.bool("mlp_bias", default: false)
        tieWordEmbeddings = try r.bool("tie_word_embeddings", default: false)
        maxPositionEmbeddings = try r.positiveInt("max_position_embeddings", default: 2048, max: ConfigLimits.positions)
        if try r.double("pretraining_tp").map({ $0 != 1 }) == true {
            throw r.error("pretraining_tp", "values other than 1 are not supported")
        }
    }

    /// Reads RoPE from the v5 `rope_parameters` object, or from the legacy `rope_theta` +
    /// `rope_scaling` pair that hub files written by transformers 4.x carry.
    static func readRope(_ r: ConfigReader) throws(ConfigError) -> RopeParameters {
        let legacyTheta = try r.double("rope_theta")
        let params: ConfigReader?
        let paramsKey: String
        if let p = try r.object("rope_parameters") {
            params = p
            paramsKey = "rope_parameters"
        } else {
            params = try r.object("rope_scaling")
            paramsKey = "rope_scaling"
        }
        let paramsTheta = try params?.double("rope_theta")
        let theta = paramsTheta ?? legacyTheta ?? 10000
        guard theta > 0 else { throw r.error(paramsKey, "rope_theta must be positive") }
        guard let p = params else { return RopeParameters(theta: theta, scaling: .none) }
        // 4.x used "type" before "rope_type".
        let ropeType = try p.string("rope_type")
        let legacyType = try p.string("type")
        let type = ropeType ?? legacyType ?? "default"
        switch type {
        case "default":
            return RopeParameters(theta: theta, scaling: .none)
        case "linear":
            let factor = try p.double("factor") ?? 1
            guard factor >= 1 else { throw p.error("factor", "must be at least 1") }
            return RopeParameters(theta: theta, scaling: .linear(factor: factor))
        case "llama3":
            guard let factor = try p.double("factor") else { throw p.error("factor", "llama3 RoPE needs 'factor'") }
            guard let low = try p.double("low_freq_factor") else { throw p.error("low_freq_factor", "llama3 RoPE needs 'low_freq_factor'") }
            guard let high = try p.double("high_freq_factor") else { throw p.error("high_freq_factor", "llama3 RoPE needs 'high_freq_factor'") }
            guard let original = try p.int("original_max_position_embeddings") else {
                throw p.error("original_max_position_embeddings", "llama3 RoPE needs 'original_max_position_embeddings'")
            }
            guard factor > 0, low > 0, high > low, original > 0 else {
                throw p.error("", "llama3 RoPE needs factor > 0 and 0 < low_freq_factor < high_freq_factor")
            }
            try p.check("original_max_position_embeddings", original, atMost: ConfigLimits.positions)
            return RopeParameters(theta: theta, scaling: .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: original))
        default:
            throw p.error("rope_type", "unsupported RoPE type \"\(type)\" (supported: default, linear, llama3)")
        }
    }
}

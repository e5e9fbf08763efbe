import PLMCore
/// `config.json` of a `PerceptionLMForConditionalGeneration` checkpoint.
public struct PerceptionLMConfig: Sendable, Equatable {
    public var text: TextConfig
    public var vision: VisionConfig
    public var visionUseClsToken: Bool
    public var projectorPoolingRatio: Int
    public var imageTokenId: Int
    public var videoTokenId: Int
    /// Whether `lm_head.weight` is `embed_tokens.weight`.
    public var tieWordEmbeddings: Bool

    /// Image tokens each tile contributes to the prompt (256 for the real 448-pixel towers).
    public var tokensPerTile: Int {
        (vision.gridHeight / projectorPoolingRatio) * (vision.gridWidth / projectorPoolingRatio)
    }

    public init(json: JSONValue, file: String) throws(ConfigError) {
        guard let root = json.objectValue else { throw ConfigError(file: file, field: "", problem: "not a JSON object") }
        let r = ConfigReader(file: file, object: root)
        guard let type = try r.string("model_type") else { throw r.error("model_type", "required field is missing") }
        guard type == "perception_lm" else {
            throw r.error("model_type", "unsupported model type \"\(type)\" (plmq reads perception_lm checkpoints)")
        }
        guard let tc = try r.object("text_config") else { throw r.error("text_config", "required field is missing") }
        guard let vc = try r.object("vision_config") else { throw r.error("vision_config", "required field is missing") }
        text = try TextConfig(reader: tc)
        vision = try VisionConfig(reader: vc)
        visionUseClsToken = try r.bool("vision_use_cls_token", default: true)
        projectorPoolingRatio = try r.positiveInt("projector_pooling_ratio", default: 1)
        imageTokenId = try r.int("image_token_id", default: 128002)
        videoTokenId = try r.int("video_token_id", default: 128003)
        tieWordEmbeddings = try r.bool("tie_word_embeddings") ?? text.tieWordEmbeddings

        if visionUseClsToken && !vision.classToken {
            throw r.error("vision_use_cls_token", "is true but the vision tower (\(vision.architecture)) has no CLS token")
        }
        guard vision.gridHeight % projectorPoolingRatio == 0, vision.gridWidth % projectorPoolingRatio == 0 else {
            throw r.error("projector_pooling_ratio", "\(projectorPoolingRatio) does not divide the \(vision.gridHeight)×\(vision.gridWidth) patch grid")
        }
        for (key, id) in [("image_token_id", imageTokenId), ("video_token_id", videoTokenId)] {
            guard id >= 0, id < text.vocabSize else {
                throw r.error(key, "\(id) is outside the vocabulary of \(text.vocabSize) tokens")
            }
        }
    }

    public static func load(path: String) throws(CheckpointError) -> PerceptionLMConfig {
        let json = try FileSystem.readJSON(path)
        do { return try PerceptionLMConfig(json: json, file: path) } catch { throw .config(error) }
    }
}

/// `generation_config.json`: the ids generation stops on, and the defaults a runner uses.
public struct GenerationConfig: Sendable, Equatable {
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var padTokenId: Int?
    public var maxNewTokens: Int?
    /// `max_length` counts prompt and answer together (transformers' default is 20).
    public var maxLength: Int?
    public var doSample: Bool
    /// Sampling defaults, used when `doSample` is true (transformers' defaults when absent).
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    public var minP: Double?
    public var repetitionPenalty: Double

    public init(bosTokenId: Int? = nil, eosTokenIds: [Int] = [], padTokenId: Int? = nil, maxNewTokens: Int? = nil, doSample: Bool = false) {
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        self.padTokenId = padTokenId
        self.maxNewTokens = maxNewTokens
        self.doSample = doSample
        temperature = 1
        topK = 50
        topP = 1
        repetitionPenalty = 1
    }

    public init(json: JSONValue, file: String) throws(ConfigError) {
        guard let root = json.objectValue else { throw ConfigError(file: file, field: "", problem: "not a JSON object") }
        let r = ConfigReader(file: file, object: root)
        bosTokenId = try r.int("bos_token_id")
        eosTokenIds = try r.intList("eos_token_id") ?? []
        padTokenId = try r.int("pad_token_id")
        maxNewTokens = try r.int("max_new_tokens")
        maxLength = try r.int("max_length")
        doSample = try r.bool("do_sample", default: false)
        temperature = try r.double("temperature", default: 1)
        topK = try r.int("top_k", default: 50)
        topP = try r.double("top_p", default: 1)
        minP = try r.double("min_p")
        repetitionPenalty = try r.double("repetition_penalty", default: 1)
        guard temperature >= 0, temperature.isFinite else { throw ConfigError(file: file, field: "temperature", problem: "must be a finite number ≥ 0") }
        guard topK >= 0 else { throw ConfigError(file: file, field: "top_k", problem: "must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ConfigError(file: file, field: "top_p", problem: "must be in (0, 1]") }
        guard repetitionPenalty > 0, repetitionPenalty.isFinite else { throw ConfigError(file: file, field: "repetition_penalty", problem: "must be a finite number > 0") }
        if let minP, !(0...1).contains(minP) { throw ConfigError(file: file, field: "min_p", problem: "must be in [0, 1]") }
    }
}

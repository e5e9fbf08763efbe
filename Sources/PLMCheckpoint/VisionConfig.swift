import PLMCore
/// The Perception Encoder tower's configuration, resolved the way `timm.create_model` does it:
/// timm's `Eva.__init__` defaults, overridden by the registered architecture's arguments,
/// overridden by `vision_config.model_args`. Only `architecture` and `model_args` reach timm;
/// other `vision_config` keys (`global_pool: "map"`, `label_names`, ...) do not change the model.
public struct VisionConfig: Sendable, Equatable {
    public var architecture: String
    public var imageHeight: Int
    public var imageWidth: Int
    public var patchSize: Int
    public var embedDim: Int
    public var depth: Int
    public var numHeads: Int
    public var mlpHidden: Int
    public var qkvBias: Bool
    public var classToken: Bool
    public var useAbsPosEmb: Bool
    public var useRotPosEmb: Bool
    /// 'xy' puts the column (x) angles first, 'ij' the row angles.
    public var ropeGridIndexingXY: Bool
    public var ropeGridOffset: Double
    public var ropeTemperature: Double
    /// timm's `ref_feat_shape` (rows, columns); nil means positions are not rescaled.
    public var refFeatShape: (Int, Int)?
    public var usePreTransformerNorm: Bool
    public var usePostTransformerNorm: Bool
    /// Layer-scale gammas exist when timm's `init_values` is set.
    public var layerScale: Bool
    public var normEps: Double
    /// timm's `global_pool`: with "map" timm builds an attention-pool head whose tensors PLM never uses.
    public var globalPool: String

    public var headDim: Int { embedDim / numHeads }
    public var gridHeight: Int { imageHeight / patchSize }
    public var gridWidth: Int { imageWidth / patchSize }
    public var patchCount: Int { gridHeight * gridWidth }
    public var prefixTokens: Int { classToken ? 1 : 0 }
    public var tokenCount: Int { patchCount + prefixTokens }
    /// Values per flattened patch: 3 channels × patch × patch (588 for 14-pixel patches).
    public var patchValues: Int { 3 * patchSize * patchSize }

    public static func == (a: VisionConfig, b: VisionConfig) -> Bool {
        a.architecture == b.architecture && a.imageHeight == b.imageHeight && a.imageWidth == b.imageWidth
            && a.patchSize == b.patchSize && a.embedDim == b.embedDim && a.depth == b.depth && a.numHeads == b.numHeads
            && a.mlpHidden == b.mlpHidden && a.qkvBias == b.qkvBias && a.classToken == b.classToken
            && a.useAbsPosEmb == b.useAbsPosEmb && a.useRotPosEmb == b.useRotPosEmb
            && a.ropeGridIndexingXY == b.ropeGridIndexingXY && a.ropeGridOffset == b.ropeGridOffset
            && a.ropeTemperature == b.ropeTemperature && a.refFeatShape?.0 == b.refFeatShape?.0
            && a.refFeatShape?.1 == b.refFeatShape?.1 && a.usePreTransformerNorm == b.usePreTransformerNorm
            && a.usePostTransformerNorm == b.usePostTransformerNorm && a.layerScale == b.layerScale
            && a.normEps == b.normEps && a.globalPool == b.globalPool
    }

    /// The timm architectures plmq knows, with their registered arguments (timm `models/eva.py`).
    public static let knownArchitectures = ["vit_pe_core_large_patch14_336", "vit_pe_core_gigantic_patch14_448"]

    private static func registeredArguments(_ architecture: String) -> JSONObject? {
        switch architecture {
        case "vit_pe_core_large_patch14_336":
            return JSONObject([
                ("patch_size", .int(14)), ("embed_dim", .int(1024)), ("depth", .int(24)), ("num_heads", .int(16)),
                ("mlp_ratio", .number("4.0")), ("global_pool", .string("map")), ("attn_type", .string("rope")),
                ("use_pre_transformer_norm", .bool(true)), ("use_rot_pos_emb", .bool(true)),
                ("ref_feat_shape", .array([.int(24), .int(24)])), ("rope_grid_offset", .number("1.0")),
                ("rope_grid_indexing", .string("xy")),
            ])
        case "vit_pe_core_gigantic_patch14_448":
            return JSONObject([
                ("patch_size", .int(14)), ("embed_dim", .int(1536)), ("depth", .int(50)), ("num_heads", .int(16)),
                ("mlp_ratio", .number("\(8960.0 / 1536.0)")), ("global_pool", .string("map")), ("attn_type", .string("rope")),
                ("class_token", .bool(false)), ("use_pre_transformer_norm", .bool(true)), ("use_rot_pos_emb", .bool(true)),
                ("ref_feat_shape", .array([.int(32), .int(32)])), ("rope_grid_indexing", .string("xy")),
            ])
        default:
            return nil
        }
    }

    /// Keywords of timm's `Eva.__init__` that are accepted in `model_args`, and the subset that
    /// must keep a given value because plmq implements only that variant.
    private static let evaKeywords: Set<String> = [
        "img_size", "patch_size", "in_chans", "num_classes", "global_pool", "embed_dim", "depth", "num_heads",
        "qkv_bias", "qkv_fused", "mlp_ratio", "swiglu_mlp", "swiglu_align_to", "scale_mlp", "scale_attn_inner",
        "attn_type", "drop_rate", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate", "attn_drop_rate",
        "drop_path_rate", "init_values", "class_token", "num_reg_tokens", "no_embed_class", "use_abs_pos_emb",
        "use_rot_pos_emb", "rope_type", "rope_grid_offset", "rope_grid_indexing", "rope_temperature",
        "rope_rotate_half", "use_post_norm", "use_pre_transformer_norm", "use_post_transformer_norm",
        "use_fc_norm", "attn_pool_num_heads", "attn_pool_mlp_ratio", "dynamic_img_size", "dynamic_img_pad",
        "ref_feat_shape", "head_init_scale", "pretrained_cfg_overlay",
    ]

    init(reader vc: ConfigReader) throws(ConfigError) {
        if let type = try vc.string("model_type"), type != "timm_wrapper" {
            throw vc.error("model_type", "unsupported vision model \"\(type)\" (PerceptionLM uses timm_wrapper)")
        }
        guard let arch = try vc.string("architecture") else { throw vc.error("architecture", "required field is missing") }
        guard var merged = Self.registeredArguments(arch) else {
            throw vc.error("architecture", "unknown timm architecture \"\(arch)\" (known: \(Self.knownArchitectures.joined(separator: ", ")))")
        }
        let argsReader = try vc.object("model_args")
        if let args = argsReader {
            for (k, v) in args.object.entries {
                guard Self.evaKeywords.contains(k) else { throw args.error(k, "not a keyword argument of timm's Eva") }
                merged[k] = v
            }
        }
        // Errors point at model_args when the key came from there, else at the architecture.
        let r = ConfigReader(file: vc.file, path: vc.field("model_args"), object: merged)
        architecture = arch

        let (ih, iw) = try r.intPair("img_size") ?? (224, 224)
        let (ph, pw) = try r.intPair("patch_size") ?? (16, 16)
        guard ph == pw, ph > 0 else { throw r.error("patch_size", "only square patches are supported") }
        try r.check("patch_size", ph, atMost: ConfigLimits.patch)
        patchSize = ph
        try r.check("img_size", max(ih, iw), atMost: ConfigLimits.imageSide)
        guard ih > 0, iw > 0, ih % ph == 0, iw % ph == 0 else {
            throw r.error("img_size", "\(ih)×\(iw) is not a whole number of \(ph)-pixel patches")
        }
        imageHeight = ih
        imageWidth = iw
        guard try r.int("in_chans", default: 3) == 3 else { throw r.error("in_chans", "only 3-channel images are supported") }
        embedDim = try r.positiveInt("embed_dim", default: 768, max: ConfigLimits.width)
        depth = try r.positiveInt("depth", default: 12, max: ConfigLimits.layers)
        numHeads = try r.positiveInt("num_heads", default: 12, max: ConfigLimits.heads)
        guard embedDim % numHeads == 0 else { throw r.error("num_heads", "\(numHeads) does not divide embed_dim \(embedDim)") }
        let ratio = try r.double("mlp_ratio", default: 4.0)
        guard ratio > 0, ratio <= ConfigLimits.mlpRatio else {
            throw r.error("mlp_ratio", "\(ratio) is outside (0, \(Int(ConfigLimits.mlpRatio))]")
        }
        mlpHidden = Int(Double(embedDim) * ratio)  // Python's int(): truncation; ≤ 2^22, so it fits
        guard mlpHidden > 0 else { throw r.error("mlp_ratio", "gives an empty MLP") }
        guard mlpHidden <= ConfigLimits.intermediate else {
            throw r.error("mlp_ratio", "gives an MLP width of \(mlpHidden), above the limit of \(formatThousands(ConfigLimits.intermediate))")
        }
        qkvBias = try r.bool("qkv_bias", default: true)
        classToken = try r.bool("class_token", default: true)
        useAbsPosEmb = try r.bool("use_abs_pos_emb", default: true)
        useRotPosEmb = try r.bool("use_rot_pos_emb", default: false)
        let indexing = try r.string("rope_grid_indexing") ?? "ij"
        guard indexing == "xy" || indexing == "ij" else { throw r.error("rope_grid_indexing", "must be \"xy\" or \"ij\"") }
        ropeGridIndexingXY = indexing == "xy"
        ropeGridOffset = try r.double("rope_grid_offset", default: 0)
        ropeTemperature = try r.double("rope_temperature", default: 10000)
        if let ref = try r.intPair("ref_feat_shape") {
            guard ref.0 > 0, ref.1 > 0 else { throw r.error("ref_feat_shape", "must be positive") }
            try r.check("ref_feat_shape", max(ref.0, ref.1), atMost: ConfigLimits.imageSide)
            refFeatShape = ref
        } else {
            refFeatShape = nil
        }
        usePreTransformerNorm = try r.bool("use_pre_transformer_norm", default: false)
        globalPool = try r.string("global_pool") ?? "avg"
        // timm: fc_norm defaults to (global_pool == 'avg'); the final norm defaults to !fc_norm.
        let useFcNorm = try r.bool("use_fc_norm") ?? (globalPool == "avg")
        usePostTransformerNorm = try r.bool("use_post_transformer_norm") ?? !useFcNorm
        layerScale = try r.double("init_values") != nil
        normEps = 1e-5  // both PE architectures register LayerNorm(eps=1e-5); JSON cannot override it

        // Variants of Eva that plmq does not implement are rejected, not silently mis-run.
        let unsupported: [(String, Bool)] = [
            ("attn_type", try r.string("attn_type") != "rope"),
            ("qkv_fused", try r.bool("qkv_fused", default: true) == false),
            ("swiglu_mlp", try r.bool("swiglu_mlp", default: false)),
            ("scale_mlp", try r.bool("scale_mlp", default: false)),
            ("scale_attn_inner", try r.bool("scale_attn_inner", default: false)),
            ("num_reg_tokens", try r.int("num_reg_tokens", default: 0) != 0),
            ("no_embed_class", try r.bool("no_embed_class", default: false)),
            ("rope_type", (try r.string("rope_type") ?? "cat") != "cat"),
            ("rope_rotate_half", try r.bool("rope_rotate_half", default: false)),
            ("use_post_norm", try r.bool("use_post_norm", default: false)),
            ("dynamic_img_size", try r.bool("dynamic_img_size", default: false)),
            ("use_rot_pos_emb", !useRotPosEmb),
        ]
        for (key, isUnsupported) in unsupported where isUnsupported {
            throw r.error(key, "this Eva variant is not supported by plmq (PerceptionLM towers use the registered value)")
        }
        guard headDim % 4 == 0 else { throw r.error("num_heads", "head dimension \(headDim) must be a multiple of 4 for 2D RoPE") }
    }
}

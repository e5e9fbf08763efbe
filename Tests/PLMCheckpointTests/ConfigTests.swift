import Testing
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

/// The config.json of PLM-1B as transformers 4.54 wrote it (legacy rope keys), from the public
/// mirror's field values; tokens lists are shortened.
let plm1BHubConfig = """
{
  "architectures": ["PerceptionLMForConditionalGeneration"],
  "image_token_id": 128002,
  "model_type": "perception_lm",
  "projector_pooling_ratio": 2,
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": [128001, 128009],
    "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 11520, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true,
    "vocab_size": 128256
  },
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.54.0",
  "video_token_id": 128003,
  "vision_config": {
    "architecture": "vit_pe_core_large_patch14_336",
    "do_pooling": true, "global_pool": "map", "initializer_range": 0.02, "label_names": ["LABEL_0", "LABEL_1"],
    "model_args": {"depth": 23, "embed_dim": 1024, "global_pool": "", "img_size": [448, 448], "init_values": 0.1,
                   "ref_feat_shape": [32, 32], "use_post_transformer_norm": false},
    "model_type": "timm_wrapper", "num_classes": 2, "num_features": 1024
  },
  "vision_use_cls_token": true
}
"""

func parseConfig(_ text: String) throws(ConfigError) -> PerceptionLMConfig {
    let json: JSONValue
    do { json = try JSONParser.parse(text) } catch { throw ConfigError(file: "config.json", field: "", problem: "\(error)") }
    return try PerceptionLMConfig(json: json, file: "config.json")
}

/// Replaces one substring, failing the test if it is absent (so edits cannot silently no-op).
func edited(_ text: String, _ old: String, _ new: String) -> String {
    precondition(text.contains(old), "test edit target missing: \(old)")
    return text.replacingOccurrences(of: old, with: new)
}

func configProblem(_ text: String) -> ConfigError? {
    do { _ = try parseConfig(text); return nil } catch { return error }
}

@Suite struct ConfigTests {
    @Test func legacyHubConfigOfPLM1B() throws {
        let c = try parseConfig(plm1BHubConfig)
        #expect(c.text.hiddenSize == 2048 && c.text.numHiddenLayers == 16 && c.text.numKeyValueHeads == 8 && c.text.headDim == 64)
        #expect(c.text.rmsNormEps == 1e-5)
        #expect(c.text.rope == RopeParameters(theta: 500000, scaling: .llama3(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192)))
        #expect(c.tieWordEmbeddings)
        let v = c.vision
        #expect(v.depth == 23 && v.embedDim == 1024 && v.numHeads == 16 && v.headDim == 64 && v.mlpHidden == 4096)
        #expect(v.imageHeight == 448 && v.gridWidth == 32 && v.classToken && v.ropeGridOffset == 1 && v.ropeGridIndexingXY)
        #expect(v.refFeatShape?.0 == 32 && v.refFeatShape?.1 == 32)
        #expect(v.usePreTransformerNorm && !v.usePostTransformerNorm && v.layerScale && v.normEps == 1e-5)
        #expect(c.projectorPoolingRatio == 2 && c.tokensPerTile == 256)
    }

    @Test func plm1BLayoutHas477TensorsAndTheKnownParameterCount() throws {
        let expected = try parseConfig(plm1BHubConfig).expectedTensors()
        #expect(expected.count == 477)
        #expect(expected.reduce(0) { $0 + $1.shape.reduce(1, *) } == 1_533_524_992)
        #expect(!expected.contains { $0.name == "lm_head.weight" })
    }

    @Test func v5RopeParametersEqualTheLegacyForm() throws {
        let withoutTheta = edited(plm1BHubConfig, #""rope_theta": 500000.0, "#, "")
        let v5 = edited(withoutTheta, #""rope_scaling": {"#, #""rope_parameters": {"rope_theta": 500000.0, "#)
        let a = try parseConfig(v5), b = try parseConfig(plm1BHubConfig)
        #expect(a.text == b.text, "\(a.text) vs \(b.text)")
        #expect(a == b)
    }

    @Test func legacyTypeKeyAndDefaultRope() throws {
        let oldType = edited(plm1BHubConfig, #""rope_type": "llama3""#, #""type": "llama3""#)
        #expect(try parseConfig(oldType).text.rope == parseConfig(plm1BHubConfig).text.rope)
        // Hide the scaling object under a key transformers does not read.
        let noScaling = edited(plm1BHubConfig, #""rope_scaling": {"#, #""unused_rope_scaling": {"#)
        #expect(try parseConfig(noScaling).text.rope == RopeParameters(theta: 500000, scaling: .none))
    }

    @Test func gigantic8BStyleTowerResolvesRegisteredDefaults() throws {
        let g = edited(edited(edited(plm1BHubConfig, "vit_pe_core_large_patch14_336", "vit_pe_core_gigantic_patch14_448"),
                              #""depth": 23, "embed_dim": 1024,"#, #""depth": 47, "embed_dim": 1536,"#),
                       #""vision_use_cls_token": true"#, #""vision_use_cls_token": false"#)
        let c = try parseConfig(g)
        #expect(c.vision.mlpHidden == 8960 && c.vision.headDim == 96 && !c.vision.classToken && c.vision.ropeGridOffset == 0)
        #expect(c.vision.tokenCount == 1024)
        #expect(!c.visionUseClsToken)
    }

    @Test func timmDefaultsApplyWhenModelArgsAreSparse() throws {
        // Without global_pool "" the registered "map" pool keeps fc_norm off, so timm adds a final norm.
        let sparse = edited(plm1BHubConfig, #""model_args": {"#, #""model_args": {"img_size": 448}, "unused_model_args": {"#)
        let v = try parseConfig(sparse).vision
        #expect(v.depth == 24 && v.refFeatShape?.0 == 24 && v.usePostTransformerNorm && !v.layerScale && v.globalPool == "map")
    }

    @Test func errorsNameTheField() throws {
        let cases: [(String, String, String)] = [
            (edited(plm1BHubConfig, #""model_type": "perception_lm""#, #""model_type": "llava""#), "model_type", "unsupported model type"),
            (edited(plm1BHubConfig, "vit_pe_core_large_patch14_336", "vit_huge"), "vision_config.architecture", "unknown timm architecture"),
            (edited(plm1BHubConfig, #""depth": 23,"#, #""depth": 23, "colour": 1,"#), "vision_config.model_args.colour", "not a keyword"),
            (edited(plm1BHubConfig, #""num_key_value_heads": 8"#, #""num_key_value_heads": 7"#), "text_config.num_key_value_heads", "does not divide"),
            (edited(plm1BHubConfig, #""hidden_act": "silu""#, #""hidden_act": "mish""#), "text_config.hidden_act", "unsupported activation"),
            (edited(plm1BHubConfig, #""rope_type": "llama3""#, #""rope_type": "yarn""#), "text_config.rope_scaling.rope_type", "unsupported RoPE type"),
            (edited(plm1BHubConfig, #""factor": 32.0, "#, ""), "text_config.rope_scaling.factor", "needs 'factor'"),
            (edited(plm1BHubConfig, #""hidden_size": 2048"#, #""hidden_size": "2048""#), "text_config.hidden_size", "expected an integer"),
            (edited(plm1BHubConfig, #""projector_pooling_ratio": 2"#, #""projector_pooling_ratio": 3"#), "projector_pooling_ratio", "does not divide"),
            (edited(plm1BHubConfig, #""image_token_id": 128002"#, #""image_token_id": 200000"#), "image_token_id", "outside the vocabulary"),
            (edited(plm1BHubConfig, #""img_size": [448, 448]"#, #""img_size": [450, 448]"#), "vision_config.model_args.img_size", "whole number"),
            (edited(plm1BHubConfig, #""model_type": "timm_wrapper""#, #""model_type": "siglip""#), "vision_config.model_type", "unsupported vision model"),
            (edited(plm1BHubConfig, #""init_values": 0.1"#, #""init_values": 0.1, "rope_rotate_half": true"#), "vision_config.model_args.rope_rotate_half", "not supported"),
        ]
        for (text, field, problem) in cases {
            guard let e = configProblem(text) else { Issue.record("accepted: \(field)"); continue }
            #expect(e.field == field, "\(e)")
            #expect(e.problem.contains(problem), "\(e)")
            #expect(e.description.hasPrefix("config.json: "))
        }
    }

    @Test func clsTokenFlagMustMatchTheTower() throws {
        let g = edited(plm1BHubConfig, "vit_pe_core_large_patch14_336", "vit_pe_core_gigantic_patch14_448")
        #expect(configProblem(g)?.field == "vision_use_cls_token")
    }

    @Test func generationConfigAcceptsIntOrListEos() throws {
        let a = try GenerationConfig(json: JSONParser.parse(#"{"bos_token_id": 1, "eos_token_id": 2}"#), file: "g.json")
        #expect(a.eosTokenIds == [2] && a.bosTokenId == 1)
        let b = try GenerationConfig(json: JSONParser.parse(#"{"eos_token_id": [128001, 128009], "do_sample": false}"#), file: "g.json")
        #expect(b.eosTokenIds == [128001, 128009])
        #expect(throws: ConfigError.self) { try GenerationConfig(json: JSONParser.parse(#"{"eos_token_id": "x"}"#), file: "g.json") }
    }

    @Test func layoutCheckReportsPreciseMismatches() throws {
        let c = try parseConfig(plm1BHubConfig)
        var stored = c.expectedTensors().map { TensorInfo(name: $0.name, dtype: .bf16, shape: $0.shape, dataRange: 0..<0) }
        #expect(c.checkLayout(stored: stored).isEmpty)
        let q = "model.language_model.layers.3.self_attn.q_proj.weight"
        let k = "model.language_model.layers.0.self_attn.k_proj.weight"
        stored.removeAll { $0.name == q }
        stored = stored.map { $0.name == k ? TensorInfo(name: k, dtype: .bf16, shape: [2048, 2048], dataRange: 0..<0) : $0 }
        stored.append(TensorInfo(name: "model.extra.weight", dtype: .bf16, shape: [3], dataRange: 0..<0))
        stored.append(TensorInfo(name: "lm_head.weight", dtype: .bf16, shape: [128256, 2048], dataRange: 0..<0))
        let issues = c.checkLayout(stored: stored)
        #expect(issues.contains(.missing(name: q, shape: [2048, 2048])))
        #expect(issues.contains(.shapeMismatch(name: k, expected: [512, 2048], actual: [2048, 2048])))
        #expect(issues.contains(.unexpected(name: "model.extra.weight", shape: [3])))
        #expect(issues.contains { if case .unused(name: "lm_head.weight", _) = $0 { return true } else { return false } })
        #expect(issues.filter(\.isError).count == 3)
    }

    @Test func tensorTableFoldsLayerIndices() throws {
        let entries = (0..<16).map { ("model.language_model.layers.\($0).self_attn.q_proj.weight", [2048, 2048], "bf16", 8) }
            + [("a.1.b.3.w", [1], "f32", 4), ("a.1.b.5.w", [1], "f32", 4), ("a.2.b.3.w", [1], "f32", 4)]
        let table = TensorTable(entries: entries)
        #expect(table.groups.map(\.pattern) == ["model.language_model.layers.{0..15}.self_attn.q_proj.weight", "a.{1,2}.b.{3,5}.w"])
        #expect(table.groups[0].count == 16 && table.groups[0].parameters == 16 * 2048 * 2048)
        #expect(table.total.tensors == 19)
        #expect(formatThousands(1_533_524_992) == "1,533,524,992")
    }
}

import Foundation
import Testing
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

@Suite struct CheckedArithmeticTests {
    @Test func overflowIsNilNotATrap() {
        #expect(Checked.add(Int.max, 1) == nil)
        #expect(Checked.add(Int.max - 1, 1) == Int.max)
        #expect(Checked.multiply(1 << 32, 1 << 31) == nil)
        #expect(Checked.multiply(1 << 31, 1 << 31) == 1 << 62)
        #expect(Checked.product(of: [2, 3, 7]) == 42)
        #expect(Checked.product(of: []) == 1)
        #expect(Checked.product(of: [1 << 62, 2]) == nil)
        #expect(Checked.product(of: [0, Int.max, Int.max]) == 0)  // readers bound the non-zero dimensions too
        #expect(Checked.product(of: [4, -1]) == nil)
        #expect(Checked.product(of: [1 << 24, 1 << 24], atMost: 1 << 48) == 1 << 48)
        #expect(Checked.product(of: [1 << 24, 1 << 25], atMost: 1 << 48) == nil)
        #expect(Checked.range(offset: 64, length: 10, within: 74) == 64..<74)
        #expect(Checked.range(offset: 64, length: 11, within: 74) == nil)
        #expect(Checked.range(offset: Int.max - 5, length: 64, within: Int.max) == nil)
        #expect(Checked.range(offset: -1, length: 1, within: 10) == nil)
        #expect(Checked.int(UInt64.max) == nil)
        #expect(Checked.int(UInt64(Int.max)) == Int.max)
    }
}

/// Config values against `ConfigLimits`, and wrongly typed values: each an error naming the
/// field, the same reader for a folder's config.json and one embedded in a `.plm`.
@Suite struct ConfigLimitTests {
    /// (edit of the PLM-1B config, field the error must name, text the message must contain).
    static let cases: [(String, String, String, String)] = [
        ("\"hidden_size\": 2048", "\"hidden_size\": 4611686018427387904", "text_config.hidden_size", "65,536"),
        ("\"num_hidden_layers\": 16", "\"num_hidden_layers\": 100000000", "text_config.num_hidden_layers", "1,024"),
        ("\"num_attention_heads\": 32", "\"num_attention_heads\": 4294967296", "text_config.num_attention_heads", "1,024"),
        ("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 4294967296", "text_config.num_key_value_heads", "1,024"),
        ("\"vocab_size\": 128256", "\"vocab_size\": 4194305", "text_config.vocab_size", "4,194,304"),
        ("\"intermediate_size\": 8192", "\"intermediate_size\": 1048577", "text_config.intermediate_size", "1,048,576"),
        ("\"head_dim\": 64", "\"head_dim\": 131072", "text_config.head_dim", "65,536"),
        ("\"max_position_embeddings\": 11520", "\"max_position_embeddings\": 16777217", "text_config.max_position_embeddings", "16,777,216"),
        ("\"original_max_position_embeddings\": 8192", "\"original_max_position_embeddings\": 9223372036854775807", "original_max_position_embeddings", "16,777,216"),
        ("\"embed_dim\": 1024", "\"embed_dim\": 4611686018427387904", "vision_config.model_args.embed_dim", "65,536"),
        ("\"depth\": 23", "\"depth\": 100000000", "vision_config.model_args.depth", "1,024"),
        ("\"img_size\": [448, 448]", "\"img_size\": [1099511627776, 1099511627776]", "vision_config.model_args.img_size", "16,384"),
        ("\"img_size\": [448, 448]", "\"img_size\": 1099511627776", "vision_config.model_args.img_size", "16,384"),
        ("\"ref_feat_shape\": [32, 32]", "\"ref_feat_shape\": [32, 4294967296]", "vision_config.model_args.ref_feat_shape", "16,384"),
        ("\"init_values\": 0.1", "\"init_values\": 0.1, \"mlp_ratio\": 1e300", "vision_config.model_args.mlp_ratio", "(0, 64]"),
        ("\"init_values\": 0.1", "\"init_values\": 0.1, \"mlp_ratio\": -4", "vision_config.model_args.mlp_ratio", "(0, 64]"),
        ("\"init_values\": 0.1", "\"init_values\": 0.1, \"num_heads\": 4294967296", "vision_config.model_args.num_heads", "1,024"),
        ("\"init_values\": 0.1", "\"init_values\": 0.1, \"patch_size\": 2048", "vision_config.model_args.patch_size", "1,024"),
        ("\"init_values\": 0.1", "\"init_values\": 0.1, \"mlp_ratio\": 1e400", "vision_config.model_args.mlp_ratio", "expected a number"),
        // Wrong types are errors, never the default.
        ("\"hidden_size\": 2048", "\"hidden_size\": \"2048\"", "text_config.hidden_size", "expected an integer"),
        ("\"hidden_size\": 2048", "\"hidden_size\": 2048.5", "text_config.hidden_size", "expected an integer"),
        ("\"num_hidden_layers\": 16", "\"num_hidden_layers\": 1e8", "text_config.num_hidden_layers", "expected an integer"),
        ("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"1e-05\"", "text_config.rms_norm_eps", "expected a number"),
        ("\"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"use_cache\"", "\"tie_word_embeddings\": 1, \"torch_dtype\": \"bfloat16\", \"use_cache\"", "text_config.tie_word_embeddings", "expected true or false"),
        ("\"depth\": 23", "\"depth\": [23]", "vision_config.model_args.depth", "expected an integer"),
        ("\"model_args\": {", "\"model_args\": {\"qkv_bias\": \"yes\", ", "vision_config.model_args.qkv_bias", "expected true or false"),
    ]

    @Test func everyLimitAndTypeIsANamedError() throws {
        for (old, new, field, text) in Self.cases {
            let e = try #require(configProblem(edited(plm1BHubConfig, old, new)), "\(new) was accepted")
            #expect(e.field.hasSuffix(field), "\(new): \(e)")
            #expect(e.description.contains(text), "\(new): \(e)")
        }
    }

    @Test func limitsAdmitTheLargestRealModels() throws {
        // PLM-8B's language model and the PE-G tower: well inside every limit.
        var text = edited(plm1BHubConfig, "\"hidden_size\": 2048", "\"hidden_size\": 4096")
        text = edited(text, "\"num_hidden_layers\": 16", "\"num_hidden_layers\": 32")
        text = edited(text, "\"intermediate_size\": 8192", "\"intermediate_size\": 14336")
        text = edited(text, "\"max_position_embeddings\": 11520", "\"max_position_embeddings\": 131072")
        text = edited(text, "\"vit_pe_core_large_patch14_336\"", "\"vit_pe_core_gigantic_patch14_448\"")
        text = edited(text, "\"depth\": 23, \"embed_dim\": 1024, ", "")
        text = edited(text, "\"vision_use_cls_token\": true", "\"vision_use_cls_token\": false")
        let c = try parseConfig(text)
        #expect(c.text.hiddenSize == 4096 && c.text.numHiddenLayers == 32 && c.vision.depth == 50 && c.vision.embedDim == 1536)
    }

    /// A folder whose config.json claims 10^8 layers is refused when the folder is opened,
    /// before any per-layer work.
    @Test func hugeLayerCountInAFolderIsRefusedAtOnce() throws {
        let folder = try TemporaryFolder("limits")
        let source = Fixtures.model("tiny-fp32-mha-tied")
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        let configPath = folder.path + "/config.json"
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        let layers = try #require(config.firstRange(of: #/"num_hidden_layers": *[0-9]+/#))
        try config.replacingCharacters(in: layers, with: "\"num_hidden_layers\": 100000000").write(toFile: configPath, atomically: true, encoding: .utf8)
        do {
            _ = try CheckpointFolder(path: folder.path)
            Issue.record("a config of 10^8 layers was accepted")
        } catch {
            guard case .config(let e) = error else { Issue.record("got \(error)"); return }
            #expect(e.file == configPath && e.field == "text_config.num_hidden_layers")
        }
    }

    @Test func oversizedJSONFileIsRefusedBeforeReading() throws {
        let folder = try TemporaryFolder("limits")
        let path = folder.write("tokenizer_config.json", text: "{}")
        // A sparse file: no disk space, and the reader must not touch its pages.
        #expect(truncate(path, off_t(FileSystem.maxJSONFileBytes + 1)) == 0)
        do {
            _ = try FileSystem.readJSON(path)
            Issue.record("a JSON file over the limit was read")
        } catch {
            guard case .fileAccess(let e) = error else { Issue.record("got \(error)"); return }
            #expect(e.path == path && e.reason.contains("256.00 MiB"))
        }
    }
}

@Suite struct SafetensorsLimitTests {
    @Test func shapeProductOverflowIsANamedError() throws {
        let header = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [])) == .sizeOverflow(tensor: "w"))
        let bits = #"{"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,0]}}"#  // 2^61 × 32 bits
        #expect(try safetensorsProblem(safetensorsBytes(header: bits, data: [])) == .sizeOverflow(tensor: "w"))
    }

    /// A zero dimension must not hide huge others: a quantizer would multiply them (K of [0, 2^40, 2^40]).
    @Test func zeroDimensionDoesNotHideHugeOnes() throws {
        let header = #"{"w":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}}"#
        #expect(try safetensorsProblem(safetensorsBytes(header: header, data: [])) == .sizeOverflow(tensor: "w"))
    }

    @Test func hugeOffsetsAreErrorsNotTraps() throws {
        let header = #"{"w":{"dtype":"U8","shape":[4],"data_offsets":[9223372036854775803,9223372036854775807]}}"#
        let problem = try safetensorsProblem(safetensorsBytes(header: header, data: [1, 2, 3, 4]))
        #expect(problem == .hole(tensor: "w", expectedBegin: 0, begin: 9223372036854775803))
    }
}

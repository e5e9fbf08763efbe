import Foundation
import Testing
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

@Suite struct CheckpointFolderTests {
    static let variants = ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3", "tiny-g-nocls", "tiny-bf16-gqa-llama3-sharded"]

    @Test(arguments: variants)
    func fixtureFoldersOpenWithConsistentLayouts(_ variant: String) throws {
        let folder = try CheckpointFolder(path: Fixtures.model(variant))
        #expect(folder.layoutIssues.filter(\.isError).isEmpty, "\(folder.layoutIssues)")
        #expect(folder.sideFiles.contains { $0.name == "tokenizer.json" })
        #expect(folder.generation.eosTokenIds.count == 2)
        #expect(folder.weights.tensors.count == folder.config.expectedTensors().count)
    }

    @Test func fixtureConfigsParseAsWritten() throws {
        let fp32 = try CheckpointFolder(path: Fixtures.model("tiny-fp32-mha-tied")).config
        #expect(fp32.tieWordEmbeddings && fp32.text.numKeyValueHeads == fp32.text.numAttentionHeads)
        #expect(fp32.text.rope.scaling == .none && fp32.vision.classToken && fp32.vision.refFeatShape?.0 == 32)
        let gqa = try CheckpointFolder(path: Fixtures.model("tiny-bf16-gqa-llama3")).config
        #expect(!gqa.tieWordEmbeddings && gqa.text.groupSize > 1)
        guard case .llama3 = gqa.text.rope.scaling else { Issue.record("expected llama3 RoPE"); return }
        let g = try CheckpointFolder(path: Fixtures.model("tiny-g-nocls")).config
        #expect(!g.vision.classToken && g.vision.ropeGridOffset == 0 && !g.visionUseClsToken)
    }

    @Test func shardedEqualsUnsharded() throws {
        let single = try CheckpointWeights(folder: Fixtures.model("tiny-bf16-gqa-llama3"))
        let sharded = try CheckpointWeights(folder: Fixtures.model("tiny-bf16-gqa-llama3-sharded"))
        #expect(sharded.shards.count >= 3 && sharded.indexPath != nil)
        #expect(Set(single.tensors.map(\.info.name)) == Set(sharded.tensors.map(\.info.name)))
        for loc in single.tensors {
            let a = try single.view(loc.info.name), b = try sharded.view(loc.info.name)
            #expect(a.shape == b.shape && a.dtype == b.dtype)
            #expect(Array(a.bytes) == Array(b.bytes), "\(loc.info.name)")
        }
    }

    /// Copies the sharded fixture and lets a test break it.
    func brokenShardedCopy(_ edit: (TemporaryFolder, inout JSONObject) throws -> Void) throws -> CheckpointError? {
        let source = Fixtures.model("tiny-bf16-gqa-llama3-sharded")
        let folder = try TemporaryFolder()
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        let indexPath = folder.path + "/" + CheckpointWeights.indexFileName
        var index = try #require(FileSystem.readJSON(indexPath).objectValue)
        try edit(folder, &index)
        folder.write(CheckpointWeights.indexFileName, text: JSONValue.object(index).serialized())
        do { _ = try CheckpointWeights(folder: folder.path); return nil } catch { return error }
    }

    func weightMap(_ index: JSONObject) -> JSONObject { index["weight_map"]!.objectValue! }

    @Test func missingShardIsAnError() throws {
        let e = try brokenShardedCopy { folder, index in
            let shard = weightMap(index).entries[0].value.stringValue!
            try FileManager.default.removeItem(atPath: folder.path + "/" + shard)
        }
        guard case .shardMissing = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(e!.description.contains("does not exist"))
    }

    @Test func tensorListedButAbsentIsAnError() throws {
        let e = try brokenShardedCopy { _, index in
            var map = weightMap(index)
            map["model.language_model.layers.9.ghost.weight"] = map.entries[0].value
            index["weight_map"] = .object(map)
        }
        guard case .tensorMissingFromShard(_, let tensor, _) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(tensor == "model.language_model.layers.9.ghost.weight")
    }

    @Test func tensorInTwoShardsIsAnError() throws {
        let e = try brokenShardedCopy { folder, index in
            // Put a copy of shard 1's first tensor into an extra shard listed in the index.
            let map = weightMap(index)
            let first = map.entries[0]
            let shard = try SafetensorsFile(path: folder.path + "/" + first.value.stringValue!)
            let view = try shard.view(first.key)
            let header = #"{"\#(first.key)":{"dtype":"\#(view.dtype.rawValue)","shape":[\#(view.shape.map(String.init).joined(separator: ","))],"data_offsets":[0,\#(view.bytes.count)]}}"#
            folder.write("extra.safetensors", safetensorsBytes(header: header, data: Array(view.bytes)))
            var newMap = map
            newMap["model.z.weight"] = .string("extra.safetensors")  // lists the extra shard so it is opened
            index["weight_map"] = .object(newMap)
        }
        guard case .tensorInTwoShards(let t, _, let second) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(second == "extra.safetensors")
        #expect(!t.isEmpty)
    }

    @Test func tensorMissingFromIndexIsAnError() throws {
        let e = try brokenShardedCopy { _, index in
            // Unlist a tensor whose shard stays listed through another tensor, so the shard is opened.
            var map = weightMap(index)
            let shards = map.entries.map { $0.value.stringValue! }
            let victim = map.keys.first { key in shards.filter { $0 == map[key]!.stringValue! }.count > 1 }!
            map[victim] = nil
            index["weight_map"] = .object(map)
        }
        guard case .tensorNotInIndex = e else { Issue.record("got \(String(describing: e))"); return }
    }

    @Test func shardNamesMustStayInTheFolder() throws {
        let e = try brokenShardedCopy { _, index in
            var map = weightMap(index)
            map[map.keys[0]] = .string("../elsewhere.safetensors")
            index["weight_map"] = .object(map)
        }
        guard case .indexInvalid(_, let detail) = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(detail.contains("plain file name"))
    }

    @Test func folderWithoutWeightsOrConfig() throws {
        let folder = try TemporaryFolder()
        #expect(throws: CheckpointError.noWeights(folder: folder.path)) { try CheckpointWeights(folder: folder.path) }
        do { _ = try CheckpointFolder(path: folder.path) } catch {
            #expect(error.description.contains("config.json"))
        }
        do { _ = try CheckpointFolder(path: folder.path + "/nope") } catch {
            #expect(error.description.contains("no such folder"))
        }
    }

    @Test func brokenSideFileIsReportedWithItsName() throws {
        let source = Fixtures.model("tiny-fp32-mha-tied")
        let folder = try TemporaryFolder()
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        folder.write("generation_config.json", text: "{\"eos_token_id\": [1,}")
        do {
            _ = try CheckpointFolder(path: folder.path)
            Issue.record("accepted a broken generation_config.json")
        } catch {
            #expect(error.description.contains("generation_config.json"))
            #expect(error.description.contains("invalid JSON"))
        }
    }

    @Test func layoutMismatchIsDetectedOnARealFolder() throws {
        let source = Fixtures.model("tiny-fp32-mha-tied")
        let folder = try TemporaryFolder()
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        let text = try String(contentsOfFile: folder.path + "/config.json", encoding: .utf8)
        folder.write("config.json", text: text.replacingOccurrences(of: "\"intermediate_size\": 160", with: "\"intermediate_size\": 161"))
        let opened = try CheckpointFolder(path: folder.path)
        #expect(opened.layoutIssues.filter(\.isError).count == 6)  // gate, up, down × 2 layers
        #expect(throws: CheckpointError.self) { try opened.requireConsistentLayout() }
    }
}

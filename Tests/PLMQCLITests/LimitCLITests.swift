import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMFormat
import PLMQuant

/// Hostile inputs through the commands: each ends with exit status 2 and a message naming the
/// file, never a trap (exit 132/134), a hang or a default.
@Suite(.serialized) struct LimitCLITests {
    static let dir: String = {
        let p = NSTemporaryDirectory() + "plmq-cli-limits-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }()

    /// An int8 file of the fp32 fixture, converted once.
    static func good() throws -> String {
        let path = dir + "/good.plm"
        if !FileManager.default.fileExists(atPath: path) {
            let r = try plmq("convert", Fixtures.model("tiny-fp32-mha-tied"), path, "--bits", "8", "--quiet")
            #expect(r.status == 0, "\(r.stderr)")
        }
        return path
    }

    static func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The good file with its header edited as JSON (fresh preamble and checksum).
    static func rewritten(_ name: String, _ edit: (inout JSONObject) throws -> Void) throws -> String {
        let bytes = try plmBytes(rewritingHeaderOf: try good(), edit)
        return try write(bytes, name)
    }

    /// The good file written again with another config.json embedded.
    static func withEmbeddedConfig(_ name: String, _ edit: (String) -> String) throws -> String {
        let file = try PLMFile(path: good())
        let path = dir + "/" + name
        let writer = try PLMWriter(path: path)
        for f in file.files {
            var contents = try #require(try file.sideFile(f.name))
            if f.name == "config.json" { contents = Array(edit(String(decoding: contents, as: UTF8.self)).utf8) }
            try writer.addFile(name: f.name, contents: contents)
        }
        for t in file.tensors {
            var parts: [(name: String, record: PartRecord)] = []
            for p in t.parts {
                let bytes = try file.bytes(t, part: p.name)
                let record = try bytes.withBytes { raw in try writer.writePart(raw) }
                parts.append((p.name, record))
            }
            writer.addTensor(name: t.name, shape: t.shape, type: t.type, parts: parts)
        }
        _ = try writer.finish(metadata: file.metadata)
        return path
    }

    static func expectBadInput(_ r: RunResult, naming file: String, _ label: String) {
        #expect(r.status == 2, "\(label): exit \(r.status), \(r.stderr)")
        #expect(r.stderr.contains(file), "\(label): \(r.stderr)")
    }

    @Test func hostilePreambleAndPartOffsetsFailCleanlyInInspectVerifyAndForward() throws {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.good())))
        let length = UInt64(try PLMFile(path: Self.good()).headerLength)
        withUnsafeBytes(of: (0 &- length &+ 5).littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }  // offset + length wraps to 5
        let preamble = try Self.write(bytes, "preamble.plm")
        let part = try Self.rewritten("part.plm") { h in
            var list = h["tensors"]!.arrayValue!
            var t = list[0].objectValue!
            var parts = t["parts"]!.objectValue!
            var data = parts["data"]!.objectValue!
            data["offset"] = .int(9_223_372_036_854_775_744)
            parts["data"] = .object(data); t["parts"] = .object(parts); list[0] = .object(t); h["tensors"] = .array(list)
        }
        let inputs = Fixtures.testCase("tiny-fp32-mha-tied", "text")
        for path in [preamble, part] {
            Self.expectBadInput(try plmq("inspect", path), naming: path, "inspect")
            Self.expectBadInput(try plmq("verify", path), naming: path, "verify")
            Self.expectBadInput(try plmq("forward", path, "--inputs", inputs, "--output", Self.dir + "/o.safetensors"), naming: path, "forward")
        }
    }

    @Test func wronglyTypedHeaderValuesFailCleanly() throws {
        let compression = try Self.rewritten("compression.plm") { h in
            var list = h["files"]!.arrayValue!
            var f = list[0].objectValue!
            f["compression"] = .int(5)
            list[0] = .object(f); h["files"] = .array(list)
        }
        let tensors = try Self.rewritten("tensors.plm") { h in h["tensors"] = .object(JSONObject()) }
        for path in [compression, tensors] {
            Self.expectBadInput(try plmq("inspect", path), naming: path, path)
            Self.expectBadInput(try plmq("verify", path), naming: path, path)
        }
    }

    /// 10^8 layers (and a 2^62 width) in a folder and embedded in a .plm: refused when the
    /// config is read, in well under a second, not walked layer by layer.
    @Test func hugeConfigValuesFailCleanlyInFoldersAndEmbeddedConfigs() throws {
        let edits: [(String, String)] = [
            (#""num_hidden_layers": *[0-9]+"#, "\"num_hidden_layers\": 100000000"),
            (#""embed_dim": *[0-9]+"#, "\"embed_dim\": 4611686018427387904"),
        ]
        for (i, (pattern, replacement)) in edits.enumerated() {
            let edit = { (text: String) -> String in text.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression) }
            let folder = try TemporaryFolder("cli-limits")
            let source = Fixtures.model("tiny-fp32-mha-tied")
            for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
            let config = folder.path + "/config.json"
            let original = try String(contentsOfFile: config, encoding: .utf8)
            #expect(edit(original) != original, "\(pattern) not found in the fixture config")
            try edit(original).write(toFile: config, atomically: true, encoding: .utf8)
            Self.expectBadInput(try plmq("inspect", folder.path), naming: config, "folder \(replacement)")
            Self.expectBadInput(try plmq("convert", folder.path, folder.path + "/o.plm"), naming: config, "convert \(replacement)")

            let plm = try Self.withEmbeddedConfig("config\(i).plm", edit)
            Self.expectBadInput(try plmq("inspect", plm), naming: plm + ":config.json", "embedded \(replacement)")
            Self.expectBadInput(try plmq("generate", plm, "--inputs", Fixtures.testCase("tiny-fp32-mha-tied", "text")), naming: plm, "generate \(replacement)")
        }
    }

    /// A NaN weight: convert refuses it naming the file and tensor; with --allow-nonfinite it
    /// converts, and generation stops with an error instead of inventing tokens.
    @Test func nonFiniteWeightsAreRefusedOrCarriedThroughAsNaN() throws {
        let folder = try TemporaryFolder("cli-nonfinite")
        let source = Fixtures.model("tiny-fp32-mha-tied")
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        let weights = folder.path + "/model.safetensors"
        let file = try SafetensorsFile(path: weights)
        let tensor = "model.language_model.layers.1.self_attn.v_proj.weight"
        let info = try #require(file.info(tensor))
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: weights)))
        let offset = file.dataOffset + info.dataRange.lowerBound + 4 * 70
        withUnsafeBytes(of: Float.infinity.bitPattern.littleEndian) { bytes.replaceSubrange(offset..<(offset + 4), with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: weights))

        let out = folder.path + "/out.plm"
        let refused = try plmq("convert", folder.path, out, "--quiet")
        Self.expectBadInput(refused, naming: weights, "convert")
        #expect(refused.stderr.contains(tensor) && refused.stderr.contains("[1, 6]") && refused.stderr.contains("--allow-nonfinite"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))

        let allowed = try plmq("convert", folder.path, out, "--quiet", "--allow-nonfinite")
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(try plmq("verify", out).status == 0)
        let generated = try plmq("generate", out, "--inputs", Fixtures.testCase("tiny-fp32-mha-tied", "text"), "--max-new-tokens", "3")
        #expect(generated.status == 2 && generated.stderr.contains("NaN or infinite"), "exit \(generated.status): \(generated.stderr)")
    }
}

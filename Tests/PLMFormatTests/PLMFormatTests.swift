import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMConvert
@testable import PLMFormat
import PLMQuant

func scratch() throws -> String {
    let path = NSTemporaryDirectory() + "plmq-format-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func convert(_ variant: String, to output: String, configure: (inout ConversionOptions) -> Void = { _ in }, dryRun: Bool = false) throws -> ConversionSummary {
    var options = ConversionOptions()
    options.threads = 2
    configure(&options)
    let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model(variant)), options: options)
    return try Converter(plan: plan, producer: "plmq test").run(output: output, dryRun: dryRun)
}

@Suite struct ChecksumTests {
    /// Reference digests from the xxhash Python package for bytes (31·i + 7) mod 256.
    @Test func xxh64MatchesTheReferenceImplementation() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        let expected: [(Int, String)] = [
            (0, "ef46db3751d8e999"), (1, "a96c7f0ce858bbb7"), (3, "56e6957632a487f9"), (4, "c60d15b1e3ff8f04"),
            (7, "afbefc3d6c6f9a8e"), (8, "3da5c7aa269683e0"), (31, "4a74f3a1a39ad4a1"), (32, "8d57d6a4671cc43d"),
            (33, "62c9fd21ed857664"), (63, "5c320a0d2707057f"), (64, "7bbabbc45729d17e"), (100, "efa0ad2d3e70c151"),
            (1000, "99594f4828043d35"),
        ]
        for (n, hex) in expected {
            #expect(XXH64.hex(XXH64.hash(Array(data.prefix(n)))) == hex, "length \(n)")
            // Streaming in uneven pieces gives the same digest.
            var h = XXH64()
            var offset = 0
            for piece in [1, 5, 13, 40, 2000] where offset < n {
                let end = min(n, offset + piece)
                Array(data[offset..<end]).withUnsafeBytes { h.update($0) }
                offset = end
            }
            #expect(XXH64.hex(h.digest) == hex, "streamed, length \(n)")
        }
    }

    @Test func zstdRoundTripsAndRejectsGarbage() throws {
        let text = Array(String(repeating: "tokenizer.json compresses well. ", count: 200).utf8)
        let packed = try #require(Zstd.compress(text, level: 19))
        #expect(packed.count < text.count / 10)
        #expect(try packed.withUnsafeBytes { try Zstd.decompress($0, size: text.count) } == text)
        #expect(throws: ZstdError.self) { try [UInt8](repeating: 7, count: 32).withUnsafeBytes { try Zstd.decompress($0, size: 10) } }
    }
}

@Suite(.serialized) struct PLMRoundTripTests {
    static let types: [String] = ["int8-sym", "int8-asym", "int4-sym", "int4-asym-f16", "int4-asym-k6"]

    /// Every storage type and group size through a real file: the reader's parts dequantize to
    /// exactly what the quantizer produced in memory, and every payload verifies.
    @Test(arguments: StorageType.groupSizes)
    func everyStorageTypeRoundTripsThroughAFile(_ g: Int) throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try CheckpointFolder(path: Fixtures.model("tiny-g-nocls"))
        for name in Self.types {
            let type = StorageType.parse(name + "-g\(g)")!
            let out = dir + "/\(name).plm"
            _ = try convert("tiny-g-nocls", to: out) { $0.keep = [KeepRule(pattern: "weight$", target: .type(type))] }
            let file = try PLMFile(path: out)
            try file.verify()
            // The patch embedding is [48, 3, 14, 14]: K = 588 has a short last group.
            let name = "model.vision_tower.timm_model.patch_embed.proj.weight"
            let t = try #require(file.tensor(name))
            #expect(t.type == type && t.layout.columns == 588)
            let view = try folder.weights.view(name)
            let (reference, _) = try Converter.quantize(view, layout: t.layout, threads: 1)
            for (partName, expected) in zip(t.layout.parts.map(\.name), reference.buffers) {
                try file.bytes(t, part: partName).withBytes { stored in #expect(Array(stored) == Array(expected), "\(type) \(partName)") }
            }
            let exact = try #require(file.tensor("model.language_model.norm.weight"))
            #expect(exact.type == .bf16)  // 1-D tensors are never quantized
        }
    }

    @Test func exactTypesAreBitExactAndSideFilesAreEmbedded() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/exact.plm"
        _ = try convert("tiny-fp32-mha-tied", to: out) { $0.keep = [KeepRule(pattern: ".", target: .exact)] }
        let file = try PLMFile(path: out)
        let weights = try CheckpointWeights(folder: Fixtures.model("tiny-fp32-mha-tied"))
        #expect(file.tensors.count == weights.tensors.count)
        for t in file.tensors {
            #expect(t.type == .f32)
            let source = try weights.view(t.name)
            try file.bytes(t, part: "data").withBytes { #expect(Array($0) == Array(source.bytes), "\(t.name)") }
        }
        for name in ["config.json", "tokenizer.json", "chat_template.jinja", "generation_config.json"] {
            let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.model("tiny-fp32-mha-tied") + "/" + name))
            #expect(try file.sideFile(name) == Array(original), "\(name)")
        }
        let sources = file.metadata["source"]?.objectValue?["files"]?.arrayValue ?? []
        #expect(sources.contains { $0.objectValue?["name"]?.stringValue == "model.safetensors" && $0.objectValue?["sha256"]?.stringValue?.count == 64 })
    }

    @Test(arguments: [false, true])
    func dryRunSizeEqualsTheRealFile(_ compress: Bool) throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for bits in [4, 8] {
            let out = dir + "/m\(bits).plm"
            let planned = try convert("tiny-bf16-gqa-llama3", to: out, configure: { $0.bits = bits; $0.compress = compress }, dryRun: true)
            #expect(!FileManager.default.fileExists(atPath: out))
            let real = try convert("tiny-bf16-gqa-llama3", to: out, configure: { $0.bits = bits; $0.compress = compress })
            let size = try FileManager.default.attributesOfItem(atPath: out)[.size] as! Int
            #expect(planned.fileBytes == size && real.fileBytes == size, "bits \(bits)")
        }
    }

    @Test func outputIsDeterministicAcrossThreadCounts() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try convert("tiny-bf16-gqa-llama3-sharded", to: dir + "/a.plm") { $0.threads = 1 }
        _ = try convert("tiny-bf16-gqa-llama3", to: dir + "/b.plm") { $0.threads = 3 }
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/a.plm")), b = try Data(contentsOf: URL(fileURLWithPath: dir + "/b.plm"))
        // The sharded source differs only in its source-file records; the tensors are identical.
        let fa = try PLMFile(path: dir + "/a.plm"), fb = try PLMFile(path: dir + "/b.plm")
        for (x, y) in zip(fa.tensors, fb.tensors) {
            for (px, py) in zip(x.parts, y.parts) { #expect(px.record.checksum == py.record.checksum, "\(x.name)") }
        }
        _ = try convert("tiny-bf16-gqa-llama3", to: dir + "/c.plm") { $0.threads = 1 }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/c.plm")) == b)
        #expect(a.count > 0)
    }

    @Test func policyKeepsNormsExactAndEmbeddingsAtInt8() throws {
        let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model("tiny-bf16-gqa-llama3")), options: ConversionOptions())
        let byName = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.name, $0) })
        #expect(byName["model.language_model.embed_tokens.weight"]?.type == .int8(.symmetric, groupSize: 32))
        #expect(byName["lm_head.weight"]?.type == .int8(.symmetric, groupSize: 32))
        #expect(byName["model.language_model.layers.0.mlp.up_proj.weight"]?.type == .int4(.asymmetric, groupSize: 32, scales: .k6))
        #expect(byName["model.vision_tower.timm_model.pos_embed"]?.type == .bf16)
        #expect(byName["model.vision_tower.timm_model.cls_token"]?.type == .bf16)
        #expect(byName["model.vision_tower.timm_model.blocks.0.gamma_1"]?.type == .bf16)
        #expect(byName["model.vision_tower.timm_model.patch_embed.proj.weight"]?.type.isQuantized == true)
        var options = ConversionOptions()
        options.recipe = .vision8
        let v8 = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model("tiny-bf16-gqa-llama3")), options: options)
        #expect(v8.tensors.first { $0.name.hasSuffix("blocks.0.attn.qkv.weight") }?.type == .int8(.symmetric, groupSize: 32))
        // Quantizing a 1-D tensor through --keep is refused, naming the rule.
        options.keep = [try KeepRule.parse("norm.weight=int4", defaultGroupSize: 32)]
        #expect(throws: ConversionError.self) { try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model("tiny-bf16-gqa-llama3")), options: options) }
        #expect(throws: ConversionError.self) { try KeepRule.parse("[=int4", defaultGroupSize: 32) }
        #expect(throws: ConversionError.self) { try KeepRule.parse("x=int5", defaultGroupSize: 32) }
    }
}

/// Damaged files must give clear errors naming what is wrong, never a crash.
@Suite(.serialized) struct PLMDamageTests {
    static let dir = NSTemporaryDirectory() + "plmq-format-damage-" + UUID().uuidString

    /// A good file, converted on first use (the suite is serialized, so once).
    static func good() throws -> String {
        let path = dir + "/good.plm"
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = try convert("tiny-fp32-mha-tied", to: path)
        }
        return path
    }

    func damaged(_ edit: (inout [UInt8]) -> Void) throws -> String {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.good())))
        edit(&bytes)
        let path = Self.dir + "/bad-\(UUID().uuidString).plm"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func openError(_ path: String) -> PLMError? {
        do { _ = try PLMFile(path: path); return nil } catch { return error }
    }

    @Test func truncatedFilesAreRejected() throws {
        let size = try FileManager.default.attributesOfItem(atPath: Self.good())[.size] as! Int
        for cut in [10, 64, size / 2, size - 1] {
            let path = try damaged { $0.removeSubrange(cut...) }
            let e = try #require(openError(path), "cut at \(cut)")
            #expect(e.description.hasPrefix(path))
        }
    }

    @Test func flippedHeaderBitIsCaughtByTheHeaderChecksum() throws {
        let file = try PLMFile(path: Self.good())
        let path = try damaged { $0[file.headerOffset + 40] ^= 0x04 }
        guard case .headerChecksum = openError(path) else { Issue.record("expected a header checksum error"); return }
    }

    @Test func flippedDataBitIsCaughtByVerifyNamingTheTensor() throws {
        let file = try PLMFile(path: Self.good())
        let t = try #require(file.tensor("model.language_model.layers.1.mlp.down_proj.weight"))
        let path = try damaged { $0[t.part("data")!.offset + 5] ^= 0x10 }
        let opened = try PLMFile(path: path)  // structure is intact
        do {
            try opened.verify()
            Issue.record("verify accepted a damaged payload")
        } catch {
            guard case .checksumMismatch(_, let item, let part, _, _) = error else { Issue.record("got \(error)"); return }
            #expect(item == t.name && part == "data")
        }
    }

    @Test func badMagicVersionAndFlags() throws {
        let badMagic = try damaged { $0[1] = 0x51 }
        #expect(openError(badMagic) == .badMagic(file: badMagic))
        if case .unsupportedVersion(_, let major, _) = openError(try damaged { $0[8] = 2 }) { #expect(major == 2) } else { Issue.record("expected a version error") }
        if case .unknownFlags = openError(try damaged { $0[12] = 1 }) {} else { Issue.record("expected a flags error") }
    }

    @Test func unknownStorageTypeIsAnErrorNamingTheTensor() throws {
        // Rewrite the header with one tensor's storage renamed, and a fresh header checksum.
        let file = try PLMFile(path: Self.good())
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.good())))
        var header = String(decoding: bytes[file.headerOffset...], as: UTF8.self)
        header = header.replacingOccurrences(of: "\"storage\":\"int4\"", with: "\"storage\":\"int3\"")
        let headerBytes = Array(header.utf8)
        bytes.removeSubrange(file.headerOffset...)
        bytes.append(contentsOf: headerBytes)
        let preamble = PLMWriter.preamble(headerOffset: file.headerOffset, header: headerBytes)
        bytes.replaceSubrange(0..<64, with: preamble)
        let path = Self.dir + "/int3.plm"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        guard case .unknownStorage(_, let tensor, let detail) = openError(path) else { Issue.record("expected unknownStorage"); return }
        #expect(detail.contains("int3") && !tensor.isEmpty)
    }

    @Test func interruptedWriteLeavesNoOutputAndKeepsTheOldFile() throws {
        let target = Self.dir + "/keep.plm"
        try Data("old contents".utf8).write(to: URL(fileURLWithPath: target))
        do {
            let writer = try PLMWriter(path: target)
            _ = try [UInt8](repeating: 1, count: 1000).withUnsafeBytes { try writer.writePart($0) }
            // The writer goes away without finish(): as after an error or an interrupt.
        }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "old contents")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: Self.dir).filter { $0.contains(AtomicFileWriter.temporarySuffix) }
        #expect(leftovers.isEmpty)
    }
}

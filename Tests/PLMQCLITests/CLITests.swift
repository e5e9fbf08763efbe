import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMModel
import PLMImage
import PLMCheckpoint
import PLMFormat

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// The `plmq` built next to this test bundle.
func plmqBinary() -> URL {
    let buildDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let binary = buildDir.appendingPathComponent("plmq")
    // On some layouts the test runner is inside an .xctest bundle folder.
    if FileManager.default.fileExists(atPath: binary.path) { return binary }
    return buildDir.deletingLastPathComponent().appendingPathComponent("plmq")
}

/// Runs the `plmq` built next to this test bundle.
func plmq(_ arguments: String..., stdin input: String? = nil) throws -> RunResult {
    try plmq(arguments: arguments, stdin: input)
}

func plmq(arguments: [String], stdin input: String? = nil) throws -> RunResult {
    let process = Process()
    process.executableURL = plmqBinary()
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
    try process.run()
    if let input {
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try inPipe.fileHandleForWriting.close()
    }
    let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
    let stderrData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return RunResult(status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
                     stderr: String(decoding: stderrData, as: UTF8.self))
}

func scratchFolder() throws -> String {
    let path = NSTemporaryDirectory() + "plmq-cli-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite(.serialized) struct CLITests {
    @Test func inspectPrintsArchitectureAndCounts() throws {
        let r = try plmq("inspect", Fixtures.model("tiny-bf16-gqa-llama3-sharded"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("8 heads / 2 kv heads × 16"))
        #expect(r.stdout.contains("model.language_model.layers.{0,1}.self_attn.q_proj.weight"))
        #expect(r.stdout.contains("layout: config.json matches all 72 stored tensors"))
    }

    @Test func inspectJSONCountsEqualTheHeaders() throws {
        let model = Fixtures.model("tiny-fp32-mha-tied")
        let r = try plmq("inspect", model, "--json")
        #expect(r.status == 0)
        let json = try JSONParser.parse(r.stdout)
        let total = try #require(json.objectValue?["total"]?.objectValue)
        let weights = try CheckpointWeights(folder: model)
        #expect(total["parameters"]?.intValue == weights.tensors.reduce(0) { $0 + $1.info.elementCount })
        #expect(total["tensors"]?.intValue == weights.tensors.count)
        #expect(json.objectValue?["tensors"]?.arrayValue?.count == weights.tensors.count)
    }

    @Test func inspectOfAMissingFolderFailsCleanly() throws {
        let r = try plmq("inspect", "/nonexistent/plm")
        #expect(r.status == 2)
        #expect(r.stderr.contains("/nonexistent/plm: no such folder"))
    }

    @Test func inspectOfATruncatedShardNamesTheFile() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let source = Fixtures.model("tiny-fp32-mha-tied")
        for name in ["config.json", "generation_config.json"] {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: folder + "/" + name)
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: source + "/model.safetensors"))
        try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
        let r = try plmq("inspect", folder)
        #expect(r.status == 2)
        #expect(r.stderr.contains(folder + "/model.safetensors"))
        #expect(r.stderr.contains("data section"))
    }

    @Test func forwardWritesTheSameLogitsAsTheFixture() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let output = folder + "/out.safetensors"
        let r = try plmq("forward", Fixtures.model("tiny-g-nocls"), "--inputs", Fixtures.testCase("tiny-g-nocls", "tile1"),
                         "--output", output, "--last", "2", "--threads", "1")
        #expect(r.status == 0, "\(r.stderr)")
        let out = try SafetensorsFile(path: output)
        let reference = try SafetensorsFile(path: Fixtures.testCase("tiny-g-nocls", "tile1"))
        let logits = try out.view("logits")
        let ref = try reference.view("logits")
        #expect(logits.shape == [1, 2, ref.shape[2]])
        let expected = Array(try ref.floats().suffix(2 * ref.shape[2]))
        let got = try logits.floats()
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-4 })
        #expect(out.info("image_features")?.shape == reference.info("image_features")?.shape)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty)
    }

    @Test func generatePrintsTheGreedyTokens() throws {
        let c = Fixtures.testCase("tiny-fp32-mha-tied", "tiles3")
        let expected = try SafetensorsFile(path: c).view("greedy_tokens").integers()
        let r = try plmq("generate", Fixtures.model("tiny-fp32-mha-tied"), "--inputs", c, "--max-new-tokens", String(expected.count), "--ignore-eos")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == expected.map(String.init).joined(separator: " "))
    }

    @Test func badInputsGiveClearErrors() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let model = Fixtures.model("tiny-fp32-mha-tied")
        // No input_ids.
        let noIds = folder + "/noids.safetensors"
        try SafetensorsWriter.write([TensorRecord(name: "x", shape: [1], floats: [0])], to: noIds)
        var r = try plmq("forward", model, "--inputs", noIds, "--output", folder + "/o.safetensors")
        #expect(r.status == 2 && r.stderr.contains("no 'input_ids' tensor"))
        // Image tokens without pixels.
        let config = try PerceptionLMConfig.load(path: model + "/config.json")
        let ids = folder + "/ids.safetensors"
        try SafetensorsWriter.write([TensorRecord(name: "input_ids", shape: [1, 3], int64s: [1, config.imageTokenId, 2])], to: ids)
        r = try plmq("forward", model, "--inputs", ids, "--output", folder + "/o.safetensors")
        #expect(r.status == 2 && r.stderr.contains("1 image tokens but the image inputs produce 0 features"))
        // Token id outside the vocabulary.
        let big = folder + "/big.safetensors"
        try SafetensorsWriter.write([TensorRecord(name: "input_ids", shape: [2], int64s: [1, 1_000_000])], to: big)
        r = try plmq("generate", model, "--inputs", big)
        #expect(r.status == 2 && r.stderr.contains("outside the vocabulary"))
        // Wrong tile size.
        let tiles = folder + "/tiles.safetensors"
        try SafetensorsWriter.write([
            TensorRecord(name: "input_ids", shape: [1], int64s: [1]),
            TensorRecord(name: "pixel_values", shape: [1, 3, 8, 8], floats: [Float](repeating: 0, count: 192)),
        ], to: tiles)
        r = try plmq("forward", model, "--inputs", tiles, "--output", folder + "/o.safetensors")
        #expect(r.status == 2 && r.stderr.contains("takes exactly"))
        #expect(!FileManager.default.fileExists(atPath: folder + "/o.safetensors"))
        // A file that is neither a checkpoint folder nor a .plm file.
        r = try plmq("forward", noIds, "--inputs", ids, "--output", folder + "/o.safetensors")
        #expect(r.status == 2 && r.stderr.contains("not a .plm file"))
    }

    @Test func convertVerifyInspectAndRunAPLMFile() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let plm = folder + "/m.plm"
        var r = try plmq("convert", Fixtures.model("tiny-fp32-mha-tied"), plm, "--bits", "8", "--quiet")
        #expect(r.status == 0, "\(r.stderr)")
        r = try plmq("verify", plm)
        #expect(r.status == 0 && r.stdout.contains("ok"))
        r = try plmq("inspect", plm)
        #expect(r.status == 0 && r.stdout.contains("int8-sym-g32"))
        let c = Fixtures.testCase("tiny-fp32-mha-tied", "tiles3")
        r = try plmq("forward", plm, "--inputs", c, "--output", folder + "/o.safetensors", "--kernel", "portable")
        #expect(r.status == 0, "\(r.stderr)")
        let logits = try SafetensorsFile(path: folder + "/o.safetensors").view("logits")
        #expect(logits.shape == (try SafetensorsFile(path: c).view("logits").shape))
        r = try plmq("generate", plm, "--inputs", c, "--max-new-tokens", "3", "--ignore-eos")
        #expect(r.status == 0 && r.stdout.split(separator: " ").count == 3)
        // Damage one byte of a payload: verify fails and names the tensor.
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: plm)))
        let file = try PLMFile(path: plm)
        let t = file.tensors.first { $0.type.isQuantized }!
        bytes[t.part("data")!.offset + 3] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: plm))
        r = try plmq("verify", plm)
        #expect(r.status == 1 && r.stderr.contains(t.name))
    }

    @Test func convertRejectsBadOptionsAndKeepsExistingOutput() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let out = folder + "/keep.plm"
        try Data("previous".utf8).write(to: URL(fileURLWithPath: out))
        var r = try plmq("convert", Fixtures.model("tiny-fp32-mha-tied"), out, "--bits", "3")
        #expect(r.status == 2 && r.stderr.contains("--bits must be 4 or 8"))
        r = try plmq("convert", Fixtures.model("tiny-fp32-mha-tied"), out, "--keep", "nothing_matches=int8")
        #expect(r.status == 2 && r.stderr.contains("matches no tensor"))
        r = try plmq("convert", folder + "/missing", out)
        #expect(r.status == 2 && r.stderr.contains("no such folder"))
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "previous")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(AtomicFileWriter.temporarySuffix) }.isEmpty)
    }

    @Test func badEngineOptionsAreUsageErrors() throws {
        let model = Fixtures.model("tiny-fp32-mha-tied"), inputs = Fixtures.testCase("tiny-fp32-mha-tied", "text")
        var r = try plmq("generate", model, "--inputs", inputs, "--kernel", "fastest")
        #expect(r.status == 2 && r.stderr.contains("--kernel"))
        r = try plmq("generate", model, "--inputs", inputs, "--threads", "0")
        #expect(r.status == 2 && r.stderr.contains("threads must be between 1 and"))
        // An explicit kernel the CPU cannot run is refused, never silently downgraded.
        let best = KernelImplementation.best
        if best != .avx512 {
            r = try plmq("generate", model, "--inputs", inputs, "--kernel", "avx512")
            #expect(r.status == 2 && r.stderr.contains("cannot run the avx512 kernels"))
        }
        r = try plmq("generate", model, "--inputs", inputs, "--kernel", best.rawValue, "--max-new-tokens", "2")
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// `plmq preprocess --preview` writes exactly the tiles transformers' processor makes (the
    /// fixture holds them as the uint8 values the pixels are an exact function of).
    @Test func preprocessPreviewShowsTransformersTiles() throws {
        let folder = try TemporaryFolder("cli-preprocess")
        let r = try plmq("preprocess", Fixtures.model("tiny-fp32-mha-tied"), "--image", Fixtures.root + "/images/inputs/astronaut.png",
                         "--preview", folder.path, "--output", folder.path + "/pv.safetensors")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("5 tiles of 56×56 (grid (2, 2)), 20 image tokens"))
        let expected = try ImageDecoder.decode(file: Fixtures.root + "/images/expected/astronaut_png.tiles.png")
        #expect(expected.width == 56 && expected.height == 5 * 56)
        for i in 0..<5 {
            let tile = try ImageDecoder.decode(file: folder.path + "/tile-0\(i).png")
            #expect(tile.pixels == Array(expected.pixels[(i * 56 * 56 * 3)..<((i + 1) * 56 * 56 * 3)]), "tile \(i)")
        }
        let pixels = try SafetensorsFile(path: folder.path + "/pv.safetensors")
        #expect(pixels.info("pixel_values")?.shape == [1, 5, 3, 56, 56])
        let missing = try plmq("preprocess", Fixtures.model("tiny-fp32-mha-tied"), "--image", folder.path + "/none.png")
        #expect(missing.status == 2 && missing.stderr.contains("none.png"))
    }

    /// Outputs never destroy inputs or devices, and a killed run's temporary file is cleaned by the
    /// next run to the same target.
    @Test func outputsNeverReplaceInputsOrDevices() throws {
        let folder = try TemporaryFolder("cli-outputs")
        let source = Fixtures.model("tiny-fp32-mha-tied")
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        let weights = folder.path + "/model.safetensors"
        let before = try Data(contentsOf: URL(fileURLWithPath: weights))
        var r = try plmq("convert", folder.path, weights)
        #expect(r.status == 2 && r.stderr.contains("is an input of this command"))
        r = try plmq("convert", folder.path, folder.path + "/config.json", "--dry-run")
        #expect(r.status == 2 && r.stderr.contains("is an input of this command"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: weights)) == before)
        // A symlink to an input is seen through.
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/link.plm", withDestinationPath: weights)
        r = try plmq("convert", folder.path, folder.path + "/link.plm")
        #expect(r.status == 2 && r.stderr.contains("is an input of this command"))
        // A device is never replaced by a regular file.
        r = try plmq("convert", folder.path, "/dev/null")
        #expect(r.status == 2 && r.stderr.contains("not a regular file"))
        var st = stat()
        #expect(stat("/dev/null", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR)
        // forward --output MODEL is refused.
        let plm = folder.path + "/m.plm"
        r = try plmq("convert", folder.path, plm, "--quiet")
        #expect(r.status == 0, "\(r.stderr)")
        r = try plmq("forward", plm, "--inputs", Fixtures.testCase("tiny-fp32-mha-tied", "text"), "--output", plm)
        #expect(r.status == 2 && r.stderr.contains("is an input of this command"))
        #expect(try PLMFile(path: plm).tensors.count > 0)
        // A temporary file of a process that no longer exists is removed by the next write.
        let stale = plm + AtomicFileWriter.temporarySuffix + "2147483646"
        folder.write(FileSystem.fileName(stale), text: "left by a killed run")
        r = try plmq("convert", folder.path + "/", folder.path + "/again.plm", "--quiet")
        #expect(r.status == 0)
        r = try plmq("convert", folder.path, plm, "--quiet")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale))
    }

    /// A FIFO in place of an input file is refused at once, never waited on.
    @Test func aFIFOInPlaceOfAnInputIsRefused() throws {
        let folder = try TemporaryFolder("cli-fifo")
        let source = Fixtures.model("tiny-fp32-mha-tied")
        for name in ["generation_config.json", "model.safetensors"] { try folder.copy(from: source, name) }
        #expect(mkfifo(folder.path + "/config.json", 0o644) == 0)
        let r = try plmq("inspect", folder.path)
        #expect(r.status == 2 && r.stderr.contains("not a regular file"))
        #expect(mkfifo(folder.path + "/fifo.png", 0o644) == 0)
        let p = try plmq("preprocess", source, "--image", folder.path + "/fifo.png")
        #expect(p.status == 2)
    }

    // MARK: run and chat

    static func runnerCase(_ variant: String, _ name: String) throws -> (text: String, ids: [Int]) {
        let root = try JSONParser.parse(try FileSystem.readBytes(Fixtures.root + "/runner/runner_cases.json"))
        for c in root.objectValue?["variants"]?.objectValue?[variant]?.arrayValue ?? [] where c.objectValue?["name"]?.stringValue == name {
            return (c.objectValue?["text"]?.stringValue ?? "", (c.objectValue?["greedy_ids"]?.arrayValue ?? []).compactMap(\.intValue))
        }
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "no runner case \(variant)/\(name)"])
    }

    /// `plmq run` prints exactly transformers' greedy text for an image and a question.
    @Test func runPrintsTransformersGreedyText() throws {
        let expected = try Self.runnerCase("tiny-fp32-mha-tied", "one_image")
        let r = try plmq("run", Fixtures.model("tiny-fp32-mha-tied"), "--image", Fixtures.root + "/cases/tiny-fp32-mha-tied/png.png",
                         "--prompt", "What shapes are in this image?", "--max-new-tokens", "10", "--stats")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == expected.text + "\n")
        #expect(r.stderr.contains("tokens/s") && r.stderr.contains("first token after"))
        let j = try plmq("run", Fixtures.model("tiny-fp32-mha-tied"), "--image", Fixtures.root + "/cases/tiny-fp32-mha-tied/png.png",
                         "--prompt", "What shapes are in this image?", "--max-new-tokens", "10", "--json")
        #expect(j.status == 0, "\(j.stderr)")
        let json = try JSONParser.parse(j.stdout)
        #expect(json.objectValue?["ids"]?.arrayValue?.compactMap(\.intValue) == expected.ids)
        #expect(json.objectValue?["finish_reason"]?.stringValue != nil)
    }

    /// Bad input is a clear error with exit status 2, before any compute.
    @Test func runRejectsBadInput() throws {
        let model = Fixtures.model("tiny-fp32-mha-tied")
        let folder = try TemporaryFolder("cli-run")
        var r = try plmq("run", model, "--image", folder.path + "/missing.png", "--prompt", "Hi")
        #expect(r.status == 2 && r.stderr.contains("missing.png"))
        let text = folder.write("not-an-image.png", text: "hello")
        r = try plmq("run", model, "--image", text, "--prompt", "Hi")
        #expect(r.status == 2 && r.stderr.contains("not-an-image.png"))
        r = try plmq("run", model, "--prompt", "  ")
        #expect(r.status == 2 && r.stderr.contains("prompt is empty"))
        r = try plmq("run", model, "--prompt", "Hi", "--max-new-tokens", "0")
        #expect(r.status == 2 && r.stderr.contains("--max-new-tokens"))
        // A model without a tokenizer or a chat template.
        let bare = try TemporaryFolder("cli-bare")
        for name in ["config.json", "generation_config.json", "model.safetensors", "processor_config.json"] { try bare.copy(from: model, name) }
        r = try plmq("run", bare.path, "--prompt", "Hi")
        #expect(r.status == 2 && r.stderr.contains("tokenizer.json"))
        try bare.copy(from: model, "tokenizer.json")
        r = try plmq("run", bare.path, "--prompt", "Hi")
        #expect(r.status == 2 && r.stderr.contains("chat template"))
        // Longer than the context (the fixture models have 11520 positions): refused before any compute.
        r = try plmq("run", model, "--prompt", String(repeating: "x y ", count: 7000))
        #expect(r.status == 2 && r.stderr.contains("context"))
    }

    /// `plmq chat` through a pipe: two turns about an image, /stats, /quit; the answers equal
    /// transformers' on the same conversation.
    @Test func chatThroughAPipe() throws {
        let first = try Self.runnerCase("tiny-fp32-mha-tied", "one_image")
        let second = try Self.runnerCase("tiny-fp32-mha-tied", "second_turn")
        let input = """
            /image \(Fixtures.root)/cases/tiny-fp32-mha-tied/png.png
            What shapes are in this image?
            And what colour are they?
            /stats
            /quit

            """
        let r = try plmq("chat", Fixtures.model("tiny-fp32-mha-tied"), "--max-new-tokens", "10", stdin: input)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == first.text + "\n" + second.text + "\n")
        #expect(r.stderr.contains("attached") && r.stderr.contains("positions cached"))
    }
}

import Foundation
import PLMQ

/// A fuzz target: takes any bytes, must never crash, hang or exhaust memory. Errors are the
/// expected outcome for almost every input and are ignored.
struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void
}

enum FuzzTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "safetensors", run: safetensors),
        FuzzTarget(name: "safetensors-index", run: safetensorsIndex),
        FuzzTarget(name: "plm", run: plm),
        FuzzTarget(name: "plm-engine", run: plmEngine),
        FuzzTarget(name: "config", run: config),
        FuzzTarget(name: "side-json", run: sideJSON),
        FuzzTarget(name: "tokenizer", run: tokenizer),
        FuzzTarget(name: "template", run: template),
        FuzzTarget(name: "image", run: image),
        FuzzTarget(name: "samples", run: samples),
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// A safetensors file: header, then every tensor read as floats (or integers).
    static func safetensors(_ bytes: UnsafeRawBufferPointer) {
        guard let file = try? SafetensorsFile(file: MappedFile(copying: bytes, path: "fuzz.safetensors")) else { return }
        for info in file.tensors {
            let view = file.view(info)
            _ = try? view.floats()
            _ = try? view.integers()
        }
    }

    /// model.safetensors.index.json in a folder of two small valid shards (written once; the
    /// generated seed names them).
    static func safetensorsIndex(_ bytes: UnsafeRawBufferPointer) {
        let folder = Scratch.folder("index") { folder in
            for (shard, tensors) in Seeds.shards {
                try SafetensorsWriter.write(tensors, to: FileSystem.join(folder, shard))
            }
        }
        Scratch.write(bytes, to: FileSystem.join(folder, CheckpointWeights.indexFileName))
        guard let weights = try? CheckpointWeights(folder: folder) else { return }
        for t in weights.tensors { _ = try? weights.view(t.info.name).floats() }
    }

    /// A `.plm` file: preamble, header and directory, every part's bytes (decompressing zstd
    /// ones), verify, the model bundle (embedded config and metadata), the processor and template.
    ///
    /// The header checksum is recomputed first when the preamble's header range is usable, or
    /// nearly every mutation of the header would stop at the checksum check.
    static func plm(_ bytes: UnsafeRawBufferPointer) {
        guard let file = openPLM(bytes) else { return }
        for side in file.files { _ = try? file.sideFile(side.name) }
        for tensor in file.tensors {
            for part in tensor.parts { _ = try? file.bytes(tensor, part: part.name).withBytes { $0.count } }
        }
        _ = try? file.verify()
        guard let bundle = try? ModelBundle(file: file) else { return }
        _ = try? bundle.tokenizerJSON
        _ = try? bundle.processorConfig
        _ = try? Processor(bundle: bundle)
        _ = try? VisionLanguageModel(bundle: bundle, options: EngineOptions(threads: 1))
    }

    /// A `.plm` file given to the engine: load (weights checked against the config) and one
    /// forward pass. Slower per input than `plm`, so a target of its own.
    static func plmEngine(_ bytes: UnsafeRawBufferPointer) {
        guard let file = openPLM(bytes), let bundle = try? ModelBundle(file: file),
              let engine = try? PerceptionLM.load(bundle, options: EngineOptions(threads: 1)) else { return }
        _ = try? engine.forward(inputIds: [1, 2, 3])
    }

    static func openPLM(_ bytes: UnsafeRawBufferPointer) -> PLMFile? {
        var data = [UInt8](bytes)
        fixHeaderChecksum(&data)
        return data.withUnsafeBytes { raw in try? PLMFile(file: MappedFile(copying: raw, path: "fuzz.plm")) }
    }

    static func fixHeaderChecksum(_ data: inout [UInt8]) {
        guard data.count >= PLMSpec.preambleSize else { return }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(data[at + $1]) << (8 * UInt64($1)) } }
        let offset = u64(16), length = u64(24)
        guard offset >= UInt64(PLMSpec.preambleSize), offset <= UInt64(data.count), length == UInt64(data.count) - offset else { return }
        let sum = data.withUnsafeBytes { XXH64.hash(UnsafeRawBufferPointer(rebasing: $0[Int(offset)...])) }
        for i in 0..<8 { data[32 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(i))) }
    }

    /// config.json: the typed config and the tensor layout it implies.
    static func config(_ bytes: UnsafeRawBufferPointer) {
        guard let json = try? JSONParser.parse(bytes),
              let config = try? PerceptionLMConfig(json: json, file: "config.json") else { return }
        let expected = config.expectedTensors()
        _ = config.checkLayout(stored: [])
        _ = expected.count
    }

    /// The other JSON side files, each reader given the same document: generation_config.json,
    /// processor_config.json (image, video and placeholder settings), tokenizer_config.json and
    /// special_tokens_map.json (special tokens), and `.plm` metadata.
    static func sideJSON(_ bytes: UnsafeRawBufferPointer) {
        guard let json = try? JSONParser.parse(bytes) else { return }
        _ = try? GenerationConfig(json: json, file: "generation_config.json")
        let array = [UInt8](bytes)
        if let images = try? ImageProcessorConfig.fromProcessorConfig(array) {
            _ = PerceptionLMImageProcessor.arrangement(width: 640, height: 480, tileSize: images.tileSize, maxTiles: images.maxNumTiles)
        }
        _ = try? VideoProcessorConfig.fromProcessorConfig(array)
        if let placeholders = try? PlaceholderConfig(processorConfig: json) { _ = placeholders }
        if let special = try? SpecialTokensMap(tokenizerConfig: json) { _ = special.extraVariables }
        if let object = json.objectValue { _ = try? PLMMetadata(json: object, file: "fuzz.plm") }
    }

    /// tokenizer.json: load, encode a fixed text (with special tokens, bytes and a long word),
    /// decode the ids back.
    static func tokenizer(_ bytes: UnsafeRawBufferPointer) {
        guard let tokenizer = try? Tokenizer(json: [UInt8](bytes)) else { return }
        let text = "<|begin_of_text|>Hello, wörld! 12345 <|image|>\n\n  tabs\tand émoji 🙂 " + String(repeating: "x", count: 300)
        let ids = tokenizer.encode(text)
        _ = try? tokenizer.decode(ids)
        _ = try? tokenizer.decode(ids, skipSpecialTokens: true)
        _ = try? tokenizer.decode([-1, 0, 1 << 40])
    }

    /// A chat template (the input is the template source) rendered over a fixed conversation.
    static func template(_ bytes: UnsafeRawBufferPointer) {
        let source = String(decoding: bytes, as: UTF8.self)
        guard let template = try? ChatTemplate(source: source) else { return }
        let messages = [
            ChatMessage(role: "system", text: "Answer briefly."),
            ChatMessage(role: "user", content: .parts([.image, .text("What is in this picture?")])),
            ChatMessage(role: "assistant", text: "A red square."),
            ChatMessage(role: "user", content: .parts([.video, .text("And here?")])),
        ]
        _ = try? template.render(messages: messages, addGenerationPrompt: true, bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>",
                                 extra: ["date_string": .string("01 Dec 2026")])
    }

    /// PNG or JPEG bytes: decode (default limits, as `run` does), then PerceptionLM's tiling at a
    /// small tile size.
    static let smallTiles = PerceptionLMImageProcessor(config: ImageProcessorConfig(tileSize: 28, maxNumTiles: 4, visionInputType: .thumbAndTiles,
                                                                                    doResize: true, normalization: .perceptionLM))
    static func image(_ bytes: UnsafeRawBufferPointer) {
        guard let decoded = try? ImageDecoder.decode(bytes, source: "fuzz-image") else { return }
        _ = try? smallTiles.preprocess(decoded)
        _ = try? smallTiles.preprocess(decoded, maxTiles: 1)
    }

    /// samples.jsonl in a folder holding small images under the names the seeds use.
    static func samples(_ bytes: UnsafeRawBufferPointer) {
        let folder = Scratch.folder("samples") { folder in
            try FileSystem.makeDirectory(FileSystem.join(folder, "images"))
            let png = Seeds.smallPNG()
            for name in Seeds.sampleImageNames { try Data(png).write(to: URL(fileURLWithPath: FileSystem.join(folder, "images/" + name))) }
        }
        Scratch.write(bytes, to: FileSystem.join(folder, "samples.jsonl"))
        guard let set = try? SampleSet(folder: folder) else { return }
        _ = try? set.datasetHash()
        _ = set.samples.count
    }
}

/// Per-process scratch folders under /dev/shm (or /tmp), made once per target.
enum Scratch {
    nonisolated(unsafe) static var folders: [String: String] = [:]

    static func folder(_ name: String, setUp: (String) throws -> Void) -> String {
        if let f = folders[name] { return f }
        let base = FileSystem.isDirectory("/dev/shm") ? "/dev/shm" : "/tmp"
        let f = "\(base)/plmq-fuzz-\(getpid())-\(name)"
        do {
            try? FileManager.default.removeItem(atPath: f)
            try FileSystem.makeDirectory(f)
            try setUp(f)
        } catch {
            complain("cannot set up \(f): \(error)")
            exit(2)
        }
        atexit { for f in Scratch.folders.values { try? FileManager.default.removeItem(atPath: f) } }
        folders[name] = f
        return f
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) {
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            complain("cannot write \(path): \(error)")
            exit(2)
        }
    }
}

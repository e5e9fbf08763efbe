import Foundation
import PLMQ

/// Generated seed inputs: small, valid files made with the library's own writers, so every
/// target starts from inputs that reach deep into its reader. `make fuzz` adds the fixtures.
enum Seeds {
    /// The shards the safetensors-index target's folder holds, and the seed index names.
    static var shards: [(String, [TensorRecord])] { [
        ("model-00001-of-00002.safetensors", [
            TensorRecord(name: "a.weight", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]),
            TensorRecord(name: "a.bias", shape: [2], floats: [0.5, -0.5]),
        ]),
        ("model-00002-of-00002.safetensors", [
            TensorRecord(name: "b.weight", dtype: .bf16, shape: [2, 2], bytes: [0x80, 0x3f, 0, 0x40, 0x40, 0x40, 0x80, 0xbf]),
            TensorRecord(name: "b.ids", shape: [3], int64s: [1, 2, 3]),
        ]),
    ] }

    /// The image names the samples seeds use.
    static let sampleImageNames = ["a.png", "b.png", "shapes.png", "coffee.png", "chelsea.png", "0001.png", "0002.png"]

    /// An 8×6 PNG with a gradient.
    static func smallPNG() -> [UInt8] {
        var pixels: [UInt8] = []
        for y in 0..<6 { for x in 0..<8 { pixels += [UInt8(x * 30), UInt8(y * 40), 128] } }
        guard let image = try? DecodedImage(width: 8, height: 6, pixels: pixels) else { return [] }
        return PNGWriter.encode(image)
    }

    /// Writes DIR/<target>/seed-* for every target with generated seeds. A tiny model converted
    /// from Tests/Fixtures (when the working directory is the repository) is the `.plm` seed that
    /// reaches the engine.
    static func write(into dir: String, fixtures: String = "Tests/Fixtures") -> Bool {
        do {
            try writeAll(into: dir, fixtures: fixtures)
            return true
        } catch {
            complain("writing seeds failed: \(error)")
            return false
        }
    }

    private static func save(_ bytes: [UInt8], _ dir: String, _ target: String, _ name: String) throws {
        let folder = FileSystem.join(dir, target)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: FileSystem.join(folder, name)))
    }

    private static func writeAll(into dir: String, fixtures: String) throws {
        let scratch = FileSystem.join(dir, ".scratch")
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        // safetensors: every shard, one file with metadata and several dtypes, an empty one.
        var tensorSets = shards.map(\.1)
        tensorSets.append([
            TensorRecord(name: "h", dtype: .f16, shape: [2, 2], bytes: [0, 0x3c, 0, 0xc0, 0, 0x7c, 1, 0]),
            TensorRecord(name: "u", dtype: .u8, shape: [4], bytes: [1, 2, 3, 4]),
            TensorRecord(name: "e", shape: [0, 3], floats: []),
        ])
        tensorSets.append([])
        for (i, tensors) in tensorSets.enumerated() {
            let path = FileSystem.join(scratch, "s\(i).safetensors")
            try SafetensorsWriter.write(tensors, metadata: i == 2 ? ["format": "pt"] : [:], to: path)
            try save(FileSystem.readBytes(path), dir, "safetensors", "seed-\(i).safetensors")
        }

        // safetensors-index: the index of `shards`, with and without metadata.
        var map = JSONObject()
        for (shard, tensors) in shards { for t in tensors { map[t.name] = .string(shard) } }
        let index = JSONValue.object(JSONObject([("metadata", .object(JSONObject([("total_size", .int(64))]))), ("weight_map", .object(map))]))
        try save(Array(index.serialized(pretty: true).utf8), dir, "safetensors-index", "seed-index.json")
        try save(Array(JSONValue.object(JSONObject([("weight_map", .object(map))])).serialized().utf8), dir, "safetensors-index", "seed-plain.json")

        // plm: a small hand-built file with every storage type, a compressed part and side files.
        let path = FileSystem.join(scratch, "small.plm")
        let writer = try PLMWriter(path: path)
        let config = Array(#"{"model_type": "perception_lm", "vision_use_cls_token": true}"#.utf8)
        try writer.addFile(name: "config.json", contents: config)
        try writer.addFile(name: "tokenizer_config.json", contents: Array(String(repeating: #"{"bos_token": "<s>"} "#, count: 1).utf8))
        let types: [StorageType] = [.f32, .f16, .bf16, .int8(.symmetric, groupSize: 32), .int4(.asymmetric, groupSize: 32, scales: .f16),
                                    .int4(.asymmetric, groupSize: 32, scales: .k6), .int4(.symmetric, groupSize: 64, scales: .f16)]
        for (i, type) in types.enumerated() {
            let shape = type.isQuantized ? [2, 64] : [3, 5]
            let layout = StorageLayout(shape: shape, type: type)
            var parts: [(name: String, record: PartRecord)] = []
            for (name, bytes) in layout.parts {
                let payload = [UInt8]((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) })
                let record = try payload.withUnsafeBytes { try writer.writePart($0, compressLevel: i == 0 ? nil : 3) }
                parts.append((name, record))
            }
            writer.addTensor(name: "t\(i).weight", shape: shape, type: type, parts: parts)
        }
        try writer.finish(metadata: JSONObject([("producer", .string("plmq-fuzz seeds"))]))
        try save(FileSystem.readBytes(path), dir, "plm", "seed-small.plm")

        // plm: a whole tiny model (4-bit), so the bundle, processor and engine are reached.
        let fixture = FileSystem.join(fixtures, "models/tiny-g-nocls")
        if FileSystem.isDirectory(fixture) {
            let model = FileSystem.join(scratch, "tiny.plm")
            let plan = try ConversionPlan(folder: CheckpointFolder(path: fixture), options: ConversionOptions())
            _ = try Converter(plan: plan, producer: "plmq-fuzz seeds").run(output: model, dryRun: false)
            try save(FileSystem.readBytes(model), dir, "plm", "seed-tiny-g-nocls-int4.plm")
            try save(FileSystem.readBytes(model), dir, "plm-engine", "seed-tiny-g-nocls-int4.plm")
        }

        // image: a generated PNG (the fixtures add real PNGs and JPEGs).
        try save(smallPNG(), dir, "image", "seed-small.png")

        // samples: one line of each kind, naming the images the target's folder holds.
        let lines = [
            #"{"id": "a", "images": ["images/a.png"], "prompt": "What is this?", "answer": "a square"}"#,
            #"{"id": "b", "images": ["images/a.png", "images/b.png"], "prompt": "Which one?"}"#,
            #"{"id": "c", "prompt": "Tell me a story."}"#,
            #"{"id": "d", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}], "images": ["images/b.png"], "answer": "x"}"#,
            #"{"id": "e", "video": "images", "prompt": "What happens?"}"#,
        ]
        try save(Array((lines.joined(separator: "\n") + "\n").utf8), dir, "samples", "seed-samples.jsonl")
    }
}

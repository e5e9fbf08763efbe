import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
import PLMConvert
import PLMFormat
@testable import PLMModel
import CPLMKernels

/// Converts a fixture once per (variant, bits) into a scratch folder.
actor ConvertedModels {
    static let shared = ConvertedModels()
    private var models: [String: PerceptionLM] = [:]
    private let folder: String = {
        let p = NSTemporaryDirectory() + "plmq-qparity-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }()

    private var paths: [String: String] = [:]

    /// The converted file (converted once).
    func path(_ variant: String, bits: Int) throws -> String {
        let key = "\(variant)-q\(bits)"
        if let p = paths[key] { return p }
        var options = ConversionOptions()
        options.bits = bits
        options.threads = 2
        let path = folder + "/\(key).plm"
        let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model(variant)), options: options)
        _ = try Converter(plan: plan, producer: "test").run(output: path, dryRun: false)
        paths[key] = path
        return path
    }

    func model(_ variant: String, bits: Int) throws -> PerceptionLM {
        let key = "\(variant)-q\(bits)"
        if let m = models[key] { return m }
        let m = try PerceptionLM.load(try path(variant, bits: bits), options: EngineOptions(threads: 2))
        models[key] = m
        return m
    }
}

struct QuantizedCase: CustomTestStringConvertible, Sendable {
    let variant: String, name: String, bits: Int
    var testDescription: String { "\(variant)/\(name) int\(bits)" }
}

/// Stated bounds on ‖logits − fp32 logits‖ / ‖fp32 logits‖ for the tiny random fixtures. Their
/// weights were scaled for decisive greedy margins (logits ~50), which also makes them far more
/// sensitive to weight noise than trained models; the numbers are reported on every run.
let quantizedBounds: [Int: Double] = [8: 0.05, 4: 0.35]

let quantizedCases: [QuantizedCase] = ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3", "tiny-g-nocls"].flatMap { v in
    [8, 4].flatMap { bits in ["text", "tiles3", "png"].map { QuantizedCase(variant: v, name: $0, bits: bits) } }
}

@Suite struct QuantizedParityTests {
    @Test(arguments: quantizedCases)
    func plmLogitsStayCloseToTheFP32Engine(_ c: QuantizedCase) async throws {
        let model = try await ConvertedModels.shared.model(c.variant, bits: c.bits)
        let file = try SafetensorsFile(path: Fixtures.testCase(c.variant, c.name))
        let (ids, images) = try caseInputs(file)
        let reference = try file.view("logits").floats()
        let logits = try model.forward(inputIds: ids, images: images).logits
        var num = 0.0, den = 0.0
        for i in reference.indices { num += Double(logits[i] - reference[i]) * Double(logits[i] - reference[i]); den += Double(reference[i]) * Double(reference[i]) }
        let relative = (num / den).squareRoot()
        let vocab = model.config.text.vocabSize
        var agree = 0
        for p in 0..<ids.count {
            let a = (0..<vocab).max { logits[p * vocab + $0] < logits[p * vocab + $1] }!
            let b = (0..<vocab).max { reference[p * vocab + $0] < reference[p * vocab + $1] }!
            if a == b { agree += 1 }
        }
        print("\(c.testDescription): logits relative RMS error \(relative), top-1 agreement \(agree)/\(ids.count)")
        #expect(relative <= quantizedBounds[c.bits]!, "\(c.testDescription): \(relative)")
    }
}

/// Splitting a matmul across two workers gives exactly the one-worker result, for every
/// storage type and for decode (1 row) and prefill (6 rows), on a model whose weight rows do
/// not fill whole tiles.
@Suite struct WorkerSplitTests {
    @Test(arguments: ["int8-sym", "int8-asym", "int4-sym", "int4-asym-f16", "int4-asym-k6"])
    func twoWorkersEqualOne(_ typeName: String) async throws {
        let folder = NSTemporaryDirectory() + "plmq-split-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = try tinyModel(weightsAs: typeName, in: folder)
        for name in ["model.language_model.layers.0.mlp.gate_proj.weight", "model.vision_tower.timm_model.patch_embed.proj.weight"] {
            let t = try #require(file.tensor(name))
            let linears = try [1, 2].map { threads in
                try PLMWeightSource(file: file, options: EngineOptions(threads: threads))
                    .linear(weight: name, bias: nil, outFeatures: t.layout.rows, inFeatures: t.layout.columns)
            }
            for rows in [1, 6] {
                let x = (0..<(rows * t.layout.columns)).map { Float(($0 * 37) % 101) / 50 - 1 }
                let one: [Float] = linears[0](x, rows: rows), two: [Float] = linears[1](x, rows: rows)
                #expect(one == two, "\(typeName) \(name) rows \(rows)")
            }
        }
    }
}

/// On AVX-512 machines the int8 kinds run from a huge-page copy of the file's levels: the copy
/// must hold the same bytes, and the products from it must equal the kernels' on the mapped file.
@Suite struct Int8LevelCopyTests {
    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"), arguments: ["int8-sym", "int8-asym"])
    func copyHoldsTheFileBytesAndGivesTheSameProducts(_ typeName: String) async throws {
        let folder = NSTemporaryDirectory() + "plmq-copy-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = try tinyModel(weightsAs: typeName, in: folder)
        let t = try #require(file.tensor("model.language_model.layers.0.mlp.gate_proj.weight"))
        let linear = try QuantizedLinear(file: file, tensor: t, bias: nil, options: EngineOptions(threads: 1, kernel: .avx512))
        let copy = try #require(linear.levelCopy)
        let mapped = try file.bytes(t, part: "data")
        try mapped.withBytes { fileBytes in
            let used = UnsafeRawPointer(linear.matrix.data)
            let fileStart = try #require(fileBytes.baseAddress)
            #expect(used == UnsafeRawPointer(copy.pointer))
            #expect(used != fileStart)
            #expect(memcmp(copy.pointer, fileStart, fileBytes.count) == 0)
            // The same AVX-512 kernel on a matrix that reads the mapped levels (one decode row).
            var onFile = linear.matrix
            onFile.data = fileBytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let k = t.layout.columns, n = t.layout.rows, blocks = (k + 31) / 32
            var x = [Float](repeating: 0, count: k)
            for i in 0..<k { x[i] = Float((i * 37) % 101) / 50 - 1 }
            var fromCopy = [Float](repeating: 0, count: n), expected = [Float](repeating: 0, count: n)
            var q = [Int16](repeating: 0, count: blocks * 32)
            var d = [Float](repeating: 0, count: blocks), sums = [Float](repeating: 0, count: blocks)
            plm_quantize_activations16(x, Int64(k), &q, &d, &sums, Int32(PLM_IMPL_AVX512))
            var act = plm_qact16(q: q, d: d, sum: sums, x: x, cols: Int64(k))
            plm_qgemv16(&onFile, &act, &expected, 0, Int64(n), Int32(PLM_IMPL_AVX512))
            x.withUnsafeBufferPointer { xp in
                fromCopy.withUnsafeMutableBufferPointer { yp in linear.apply(xp.baseAddress!, rows: 1, into: yp.baseAddress!) }
            }
            #expect(fromCopy == expected, "\(typeName): decode from the copy")
        }
    }
}

/// tiny-g-nocls converted with every weight stored as `typeName` (groups of 32) into `folder`.
func tinyModel(weightsAs typeName: String, in folder: String) throws -> PLMFile {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var options = ConversionOptions()
    options.keep = [try KeepRule.parse("weight$=\(typeName)", defaultGroupSize: 32)]
    let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model("tiny-g-nocls")), options: options)
    _ = try Converter(plan: plan, producer: "test").run(output: folder + "/m.plm", dryRun: false)
    return try PLMFile(path: folder + "/m.plm")
}

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

/// Splitting a matmul across two or three workers gives exactly the one-worker result, for every
/// storage type and for decode (1 row) and prefill (6 rows), on a model whose weight rows do
/// not fill whole tiles.
@Suite struct WorkerSplitTests {
    @Test(arguments: ["int8-sym", "int8-asym", "int4-sym", "int4-asym-f16", "int4-asym-k6"])
    func severalWorkersEqualOne(_ typeName: String) async throws {
        let folder = NSTemporaryDirectory() + "plmq-split-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = try tinyModel(weightsAs: typeName, in: folder)
        for name in ["model.language_model.layers.0.mlp.gate_proj.weight", "model.vision_tower.timm_model.patch_embed.proj.weight"] {
            let t = try #require(file.tensor(name))
            // Three workers: single rows hand out their tiles in chunks, more than one per worker.
            let linears = try [1, 2, 3].map { threads in
                try PLMWeightSource(file: file, options: EngineOptions(threads: threads))
                    .linear(weight: name, bias: nil, outFeatures: t.layout.rows, inFeatures: t.layout.columns)
            }
            for rows in [1, 6] {
                let x = (0..<(rows * t.layout.columns)).map { Float(($0 * 37) % 101) / 50 - 1 }
                let one: [Float] = linears[0](x, rows: rows)
                for (i, linear) in linears.enumerated().dropFirst() {
                    let several: [Float] = linear(x, rows: rows)
                    #expect(one == several, "\(typeName) \(name) rows \(rows), \(i + 1) threads")
                }
            }
        }
    }
}

/// A decoding step's fused q/k/v and gate/up sections give exactly each projection's own output,
/// back to back, for every storage type, a mix of types, and one to three workers.
@Suite struct FusedRowTests {
    @Test(arguments: ["int8-sym", "int8-asym", "int4-sym", "int4-asym-f16", "int4-asym-k6", "mixed"])
    func fusedRowsEqualTheMembers(_ typeName: String) async throws {
        let folder = NSTemporaryDirectory() + "plmq-fused-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // "mixed": v_proj and up_proj stay int8 while the others are int4, as a bit allocation may leave them.
        let file = try typeName == "mixed"
            ? tinyModel(rules: ["(v|up)_proj.weight$=int8-sym", "weight$=int4-asym-k6"], in: folder)
            : tinyModel(weightsAs: typeName, in: folder)
        let p = "model.language_model.layers.0."
        for threads in [1, 2, 3] {
            let source = try PLMWeightSource(file: file, options: EngineOptions(threads: threads))
            for names in [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["mlp.gate_proj", "mlp.up_proj"]] {
                let maps: [any LinearMap] = try names.map { name in
                    let t = try #require(file.tensor(p + name + ".weight"))
                    return try source.linear(weight: t.name, bias: nil, outFeatures: t.layout.rows, inFeatures: t.layout.columns)
                }
                let fused = try #require(FusedRowLinear(maps), "\(typeName): \(names) not fused")
                let x = (0..<fused.inFeatures).map { Float(($0 * 53) % 97) / 48 - 1 }
                let expected = maps.flatMap { $0(x, rows: 1) }
                var y = [Float](repeating: .nan, count: fused.outFeatures)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { fused.apply(xp.baseAddress!, into: $0.baseAddress!) } }
                #expect(y == expected, "\(typeName) \(names), \(threads) threads")
            }
        }
    }

    /// The fp32 reference engine's projections are not quantized: they are not fused.
    @Test func referenceLayersAreNotFused() throws {
        let linear = try DenseLinear(weight: FloatBuffer(count: 64), bias: nil, outFeatures: 2, inFeatures: 32, threads: 1)
        #expect(FusedRowLinear([linear, linear]) == nil)
    }
}

/// On AVX-512 machines as on AVX2 ones the int8 kinds decode from the four-row interleaved copy
/// (the mapped levels released); decode from it gives the file layout's exact int16 product (the
/// AVX-512 kernel on the mapped rows, within rounding), and a prefill, which reads the file's rows
/// on AVX-512, still gives the tile GEMM's values.
@Suite struct Int8DecodeLayoutTests {
    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"), arguments: ["int8-sym", "int8-asym"])
    func decodeReadsTheInterleavedCopy(_ typeName: String) async throws {
        let folder = NSTemporaryDirectory() + "plmq-tiles-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = try tinyModel(weightsAs: typeName, in: folder)
        let t = try #require(file.tensor("model.language_model.layers.0.mlp.gate_proj.weight"))
        let kernel: KernelImplementation = CPU.hasAVX512 ? .avx512 : .avx2
        let linear = try QuantizedLinear(file: file, tensor: t, bias: nil, options: EngineOptions(threads: 1, kernel: kernel))
        #expect(linear.int8Tiles != nil, "\(typeName): no interleaved copy on \(kernel)")
        var matrix = linear.matrix
        let k = t.layout.columns, n = t.layout.rows, blocks = (k + 31) / 32
        var x = [Float](repeating: 0, count: k)
        for i in 0..<k { x[i] = Float((i * 37) % 101) / 50 - 1 }
        var decoded = [Float](repeating: 0, count: n), expected = [Float](repeating: 0, count: n)
        var q = [Int16](repeating: 0, count: blocks * 32)
        var d = [Float](repeating: 0, count: blocks), sums = [Float](repeating: 0, count: blocks)
        plm_quantize_activations16(x, Int64(k), &q, &d, &sums, kernel.code)
        var act = plm_qact16(q: q, d: d, sum: sums, x: x, cols: Int64(k))
        plm_qgemv16(&matrix, &act, &expected, 0, Int64(n), kernel.code)
        x.withUnsafeBufferPointer { xp in
            decoded.withUnsafeMutableBufferPointer { yp in linear.apply(xp.baseAddress!, rows: 1, into: yp.baseAddress!) }
        }
        let scale = expected.map { abs($0) }.max() ?? 1
        let worst = zip(decoded, expected).map { abs($0 - $1) }.max() ?? .nan
        #expect(worst <= 1e-5 * scale, "\(typeName): decode from the copy vs the file's rows: \(worst) at scale \(scale)")
        // 40 rows: a prefill (the tile GEMM over the released file pages on AVX-512).
        let rows = 40
        let xs = (0..<rows * k).map { Float(($0 * 29) % 97) / 48 - 1 }
        var y = [Float](repeating: .nan, count: rows * n)
        xs.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in linear.apply(xp.baseAddress!, rows: rows, into: yp.baseAddress!) } }
        var row0 = [Float](repeating: 0, count: n)
        xs.withUnsafeBufferPointer { xp in
            row0.withUnsafeMutableBufferPointer { yp in linear.apply(xp.baseAddress!, rows: 1, into: yp.baseAddress!) }
        }
        let prefillScale = row0.map { abs($0) }.max() ?? 1
        let gap = zip(y.prefix(n), row0).map { abs($0 - $1) }.max() ?? .nan
        // int8 prefill activations against int16 decode ones: int8's rounding, ~1 % of the scale.
        #expect(y.allSatisfy(\.isFinite) && gap <= 0.03 * prefillScale, "\(typeName): prefill row 0 vs decode: \(gap) at scale \(prefillScale)")
        guard CPU.hasAVX512 else { return }
        // On AVX-512 the prefill is the int8 tile GEMM reading the rows from the copy: exactly
        // what it gives over the file's rows.
        #expect(matrix.q8_tiles != nil)
        var onFile = matrix
        onFile.q8_tiles = nil
        var aq = [Int8](repeating: 0, count: rows * blocks * 32)
        var ad = [Float](repeating: 0, count: rows * blocks), asum = ad
        for m in 0..<rows {
            xs.withUnsafeBufferPointer { xp in
                aq.withUnsafeMutableBufferPointer { qp in ad.withUnsafeMutableBufferPointer { dp in asum.withUnsafeMutableBufferPointer { sp in
                    plm_quantize_activations(xp.baseAddress! + m * k, Int64(k), qp.baseAddress! + m * blocks * 32, dp.baseAddress! + m * blocks,
                                             sp.baseAddress! + m * blocks, kernel.code)
                } } }
            }
        }
        var fromFile = [Float](repeating: .nan, count: rows * n)
        plm_qgemm(&onFile, aq, ad, asum, xs, Int64(rows), &fromFile, Int64(n), 0, Int64(n), kernel.code)
        #expect(y == fromFile, "\(typeName): the tile GEMM from the copy vs from the file's rows")
    }
}

/// tiny-g-nocls converted with every weight stored as `typeName` (groups of 32) into `folder`.
func tinyModel(weightsAs typeName: String, in folder: String) throws -> PLMFile {
    try tinyModel(rules: ["weight$=\(typeName)"], in: folder)
}

/// The tiny model converted with these keep rules (the first match wins).
func tinyModel(rules: [String], in folder: String) throws -> PLMFile {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var options = ConversionOptions()
    options.keep = try rules.map { try KeepRule.parse($0, defaultGroupSize: 32) }
    let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model("tiny-g-nocls")), options: options)
    _ = try Converter(plan: plan, producer: "test").run(output: folder + "/m.plm", dryRun: false)
    return try PLMFile(path: folder + "/m.plm")
}

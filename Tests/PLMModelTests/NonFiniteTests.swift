import CPLMKernels
import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
import PLMConvert
import PLMFormat
import PLMQuant
@testable import PLMModel

/// NaN and ±Inf weights: the quantizer never traps on them and stores their group as NaN; the
/// kernels carry NaN through instead of turning it into finite numbers; convert refuses such a
/// checkpoint unless asked, and a model converted with them gives NaN logits, not made-up ones.
@Suite struct NonFiniteTests {
    /// Rows 1–3 hold a NaN, +Inf and −Inf; rows 0 and 4 are clean.
    static let poisoned: [(row: Int, column: Int, value: Float)] = [(1, 40, .nan), (2, 300, .infinity), (3, 587, -.infinity)]

    /// The columns a poisoned element spoils: its group, or its 8-group super-block for k6.
    static func spoiled(_ column: Int, _ type: StorageType, columns: Int) -> Range<Int> {
        var span = type.groupSize!
        if case .int4(.asymmetric, _, .k6) = type { span *= 8 }
        let first = column / span * span
        return first..<min(first + span, columns)
    }

    @Test(arguments: kernelTypes)
    func quantizerStoresNonFiniteGroupsAsNaNAndKernelsKeepThemNaN(_ type: StorageType) throws {
        let rows = 5, k = 588
        var w = gaussian(rows * k, seed: 7, scale: 0.05)
        for p in Self.poisoned { w[p.row * k + p.column] = p.value }
        let layout = StorageLayout(shape: [rows, k], type: type)
        var data = [UInt8](repeating: 0, count: layout.dataBytes)
        var scales = [UInt8](repeating: 0, count: max(layout.scaleBytes, 1))
        var mins = [UInt8](repeating: 0, count: max(layout.minBytes, 1))
        var dense = [Float](repeating: 0, count: rows * k)
        let q = RowQuantizer(layout: layout)
        data.withUnsafeMutableBytes { d in scales.withUnsafeMutableBytes { s in mins.withUnsafeMutableBytes { m in
            let parts = RowQuantizer.RowParts(data: d.baseAddress!, scales: s.baseAddress, mins: m.baseAddress)
            w.withUnsafeBufferPointer { q.quantize($0.baseAddress!, rows: rows, into: parts) }  // traps on main
            dense.withUnsafeMutableBufferPointer { q.dequantize(parts, rows: rows, into: $0.baseAddress!) }
        } } }
        for r in 0..<rows {
            let bad = Self.poisoned.first { $0.row == r }.map { Self.spoiled($0.column, type, columns: k) } ?? 0..<0
            for c in 0..<k {
                #expect(dense[r * k + c].isNaN == bad.contains(c), "\(type) row \(r) column \(c): \(dense[r * k + c])")
            }
        }

        // The kernels: clean activations give NaN exactly in the poisoned rows, on every path.
        let x = gaussian(k, seed: 3, scale: 1)
        let impls = [PLM_IMPL_PORTABLE] + (CPU.hasAVX2 ? [PLM_IMPL_AVX2] : []) + (CPU.hasAVX512 ? [PLM_IMPL_AVX512] : [])
        for impl in impls {
            let y = gemv(layout, data, scales, mins, x, impl: impl)
            #expect(y.map(\.isNaN) == [false, true, true, true, false], "\(type) impl \(impl): \(y)")
        }
        // A NaN activation makes every output NaN; it is not rounded into a level.
        var xNaN = x
        xNaN[100] = .nan
        for impl in impls {
            let y = gemv(layout, data, scales, mins, xNaN, impl: impl)
            #expect(y.allSatisfy { $0.isNaN }, "\(type) impl \(impl): \(y)")
        }
    }

    @Test func activationQuantizationMarksNonFiniteBlocks() {
        var x = gaussian(96, seed: 5, scale: 1)
        x[33] = .infinity
        x[70] = .nan
        var q = [Int8](repeating: 0, count: 96), d = [Float](repeating: 0, count: 3), sum = d
        plm_quantize_activations(x, 96, &q, &d, &sum, Int32(plm_best_impl()))
        #expect(d[0].isFinite && d[1].isNaN && d[2].isNaN && sum[1].isNaN)
        #expect(q[32..<96].allSatisfy { $0 == 0 })
    }

    func gemv(_ layout: StorageLayout, _ data: [UInt8], _ scales: [UInt8], _ mins: [UInt8], _ x: [Float], impl: Int) -> [Float] {
        let k = layout.columns, rows = layout.rows
        let kind = layout.type.kernelKind ?? -1
        let blocks = (k + 31) / 32
        var aq = [Int8](repeating: 0, count: blocks * 32), ad = [Float](repeating: 0, count: blocks), asum = ad
        plm_quantize_activations(x, Int64(k), &aq, &ad, &asum, Int32(plm_best_impl()))
        var y = [Float](repeating: 0, count: rows)
        data.withUnsafeBytes { d in scales.withUnsafeBytes { s in mins.withUnsafeBytes { m in
            var matrix = plm_qmatrix(kind: kind, group: Int32(layout.type.groupSize!), rows: Int64(rows), cols: Int64(k),
                                     data: d.baseAddress!.assumingMemoryBound(to: UInt8.self), scales: s.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                     mins: m.baseAddress!.assumingMemoryBound(to: UInt8.self), data_row_bytes: Int64(layout.dataBytesPerRow),
                                     scale_row_bytes: Int64(layout.scaleBytesPerRow), min_row_bytes: Int64(layout.minBytesPerRow), q8_tiles: nil)
            x.withUnsafeBufferPointer { xp in aq.withUnsafeBufferPointer { qp in ad.withUnsafeBufferPointer { dp in asum.withUnsafeBufferPointer { sp in
                var act = plm_qact(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                plm_qgemv(&matrix, &act, &y, 0, Int64(rows), Int32(impl))
            } } } }
        } } }
        return y
    }

    /// A copy of the fp32 fixture with `value` written into one element of `tensor`.
    static func poisonedCheckpoint(_ folder: TemporaryFolder, tensor: String, element: Int, value: Float) throws -> String {
        let source = Fixtures.model("tiny-fp32-mha-tied")
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try folder.copy(from: source, name) }
        let path = folder.path + "/model.safetensors"
        let file = try SafetensorsFile(path: path)
        let info = try #require(file.info(tensor))
        let offset = file.dataOffset + info.dataRange.lowerBound + 4 * element
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.replaceSubrange(offset..<(offset + 4), with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func convert(_ folder: String, to output: String, allow: Bool) throws -> ConversionSummary {
        var options = ConversionOptions()
        options.threads = 2
        options.allowNonfinite = allow
        let plan = try ConversionPlan(folder: CheckpointFolder(path: folder), options: options)
        return try Converter(plan: plan, producer: "test").run(output: output, dryRun: false)
    }

    @Test func convertRefusesNonFiniteWeightsNamingFileTensorAndIndex() throws {
        // A quantized matrix [160, 64] (element 3·64 + 10 = [3, 10]) and an exact 1-D norm.
        let cases: [(String, Int, Float, [Int])] = [
            ("model.language_model.layers.0.mlp.up_proj.weight", 3 * 64 + 10, .nan, [3, 10]),
            ("model.language_model.norm.weight", 17, -.infinity, [17]),
        ]
        for (tensor, element, value, index) in cases {
            let folder = try TemporaryFolder("nonfinite")
            let weights = try Self.poisonedCheckpoint(folder, tensor: tensor, element: element, value: value)
            let output = folder.path + "/out.plm"
            do {
                _ = try Self.convert(folder.path, to: output, allow: false)
                Issue.record("\(tensor): a non-finite weight was converted")
            } catch let error as ConversionError {
                guard case .nonFinite(let file, let t, let i, let v) = error else { Issue.record("got \(error)"); continue }
                #expect(file == weights && t == tensor && i == index && (v.isNaN == value.isNaN) && (v.isNaN || v == value))
                #expect(error.description.contains("--allow-nonfinite"))
            }
            #expect(!FileManager.default.fileExists(atPath: output))
        }
    }

    @Test(arguments: [4, 8])
    func allowedNonFiniteWeightsGiveNaNLogitsNotMadeUpOnes(_ bits: Int) throws {
        let folder = try TemporaryFolder("nonfinite")
        _ = try Self.poisonedCheckpoint(folder, tensor: "model.language_model.layers.0.mlp.up_proj.weight", element: 3 * 64 + 10, value: .nan)
        let output = folder.path + "/out.plm"
        var options = ConversionOptions()
        options.threads = 2
        options.bits = bits
        options.allowNonfinite = true
        let plan = try ConversionPlan(folder: CheckpointFolder(path: folder.path), options: options)
        _ = try Converter(plan: plan, producer: "test").run(output: output, dryRun: false)
        let file = try PLMFile(path: output)
        try file.verify()
        #expect(file.metadata["options"]?.objectValue?["allow_nonfinite"] == .bool(true))
        let model = try PerceptionLM.load(output, options: EngineOptions(threads: 2))
        let logits = try InferenceContext(model: model).append([1, 17, 42, 99, 5], logits: .all)
        // Row 3 of up_proj feeds every position, so every logit downstream of it is NaN.
        #expect(logits.allSatisfy { $0.isNaN }, "\(logits.filter(\.isFinite).count) of \(logits.count) logits are finite")
    }
}

import CPLMKernels
import Foundation
import Testing
@testable import PLMModel
import PLMCheckpoint
import PLMTestSupport

/// Random bf16 weights (the top halves of Gaussian floats), stored from byte 1 of a buffer so the
/// kernels see the odd alignment a safetensors data section can have.
private struct BF16Matrix {
    let rows: Int, cols: Int
    let bytes: [UInt8]      // bytes[0] is padding
    let widened: [Float]    // the exact fp32 values

    init(rows: Int, cols: Int, seed: UInt64) {
        self.rows = rows
        self.cols = cols
        let values = gaussian(rows * cols, seed: seed, scale: 0.05)
        var bytes = [UInt8](repeating: 0, count: 1 + 2 * rows * cols)
        var widened = [Float](repeating: 0, count: rows * cols)
        for (i, v) in values.enumerated() {
            let h = UInt16(truncatingIfNeeded: v.bitPattern >> 16)
            bytes[1 + 2 * i] = UInt8(truncatingIfNeeded: h)
            bytes[2 + 2 * i] = UInt8(truncatingIfNeeded: h >> 8)
            widened[i] = FloatWidening.bf16ToFloat(h)
        }
        self.bytes = bytes
        self.widened = widened
    }

    func withWeights<R>(_ body: (UnsafeRawPointer) -> R) -> R { bytes.withUnsafeBytes { body($0.baseAddress! + 1) } }

    /// Σ w·x in double: what every implementation must approach.
    func exact(_ x: [Float], row r: Int) -> Double {
        (0..<cols).reduce(0.0) { $0 + Double(widened[r * cols + $1]) * Double(x[$1]) }
    }
    /// Σ |w·x|: the scale of fp32 rounding error in a row's sum.
    func magnitude(_ x: [Float], row r: Int) -> Double {
        (0..<cols).reduce(0.0) { $0 + abs(Double(widened[r * cols + $1]) * Double(x[$1])) }
    }
}

@Suite struct BF16KernelTests {
    static let impls: [Int32] = [Int32(PLM_IMPL_PORTABLE)] + (CPU.hasAVX2 ? [Int32(PLM_IMPL_AVX2)] : [])

    /// Widths with and without a 32-wide tail (588 is the patch embedding's).
    @Test(arguments: impls, [1, 31, 588, 1024, 2051])
    func gemvMatchesTheExactSum(impl: Int32, cols: Int) {
        let m = BF16Matrix(rows: 37, cols: cols, seed: UInt64(cols))
        let x = gaussian(cols, seed: 7, scale: 1)
        var y = [Float](repeating: .nan, count: 30)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            m.withWeights { plm_bf16_gemv($0, Int64(cols), xp.baseAddress!, yp.baseAddress!, 5, 35, impl) }
        } }
        for i in 0..<30 {
            let bound = 1e-6 * Double(cols).squareRoot() * m.magnitude(x, row: 5 + i) + 1e-30
            #expect(abs(Double(y[i]) - m.exact(x, row: 5 + i)) <= bound, "row \(5 + i)")
        }
    }

    @Test(arguments: impls)
    func widenIsExact(impl: Int32) {
        let m = BF16Matrix(rows: 3, cols: 333, seed: 3)
        var out = [Float](repeating: .nan, count: 999)
        out.withUnsafeMutableBufferPointer { o in m.withWeights { plm_bf16_widen($0, 999, o.baseAddress!, impl) } }
        #expect(out.map(\.bitPattern) == m.widened.map(\.bitPattern))
    }
}

@Suite struct BF16LinearTests {
    /// The in-place layer against DenseLinear on the widened weights (the previous engine), for
    /// decode (GEMV) and prefill (blocks + sgemm) row counts, with bias, on 1 and 2 workers.
    @Test(arguments: [1, 3, 4, 37], [1, 2])
    func matchesTheWidenedDenseLayer(rows: Int, threads: Int) throws {
        let out = 301, k = 200
        let m = BF16Matrix(rows: out, cols: k, seed: 11)
        let bias = gaussian(out, seed: 12, scale: 0.1)
        let x = gaussian(rows * k, seed: 13, scale: 1)
        let options = EngineOptions(threads: threads)
        let buffer = FloatBuffer(count: out * k)
        for i in 0..<(out * k) { buffer.buffer[i] = m.widened[i] }
        let dense = try DenseLinear(weight: buffer, bias: bias, outFeatures: out, inFeatures: k, threads: threads)
        let expected = dense(x, rows: rows)
        let actual = try m.bytes.withUnsafeBytes { raw in
            let layer = try BF16Linear(weights: raw.baseAddress! + 1, owner: m.bytes, bias: bias, outFeatures: out, inFeatures: k, options: options)
            return layer(x, rows: rows)
        }
        for r in 0..<rows {
            for o in 0..<out {
                let bound = 1e-5 * m.magnitude(Array(x[(r * k)..<((r + 1) * k)]), row: o) + 1e-6
                #expect(abs(Double(actual[r * out + o] - expected[r * out + o])) <= bound, "row \(r), output \(o)")
            }
        }
    }

    @Test func aBadBiasIsAnError() {
        #expect(throws: EngineError.self) {
            try BF16Linear(weights: UnsafeRawPointer(bitPattern: 64)!, owner: 0, bias: [1, 2], outFeatures: 3, inFeatures: 4, options: EngineOptions(threads: 1))
        }
    }

    /// A bf16 checkpoint's fp32 model computes from the mapping: its linear maps and embedding
    /// are the in-place kind (the fixture parity tests check their numbers against transformers).
    @Test func aBF16CheckpointIsUsedInPlace() throws {
        let folder = try CheckpointFolder(path: Fixtures.model("tiny-bf16-gqa-llama3"))
        let source = CheckpointWeightSource(weights: folder.weights, options: EngineOptions(threads: 1))
        let name = "model.language_model.layers.0.mlp.up_proj.weight"
        let shape = try #require(source.shape(of: name))
        let linear = try source.linear(weight: name, bias: nil, outFeatures: shape[0], inFeatures: shape[1])
        #expect(linear is BF16Linear)
        let embeddingShape = try #require(source.shape(of: "model.language_model.embed_tokens.weight"))
        let (table, _) = try source.embedding("model.language_model.embed_tokens.weight", vocab: embeddingShape[0], hidden: embeddingShape[1])
        #expect(table is BF16Embedding)
        let fp32 = try CheckpointFolder(path: Fixtures.model("tiny-fp32-mha-tied"))
        let fp32Source = CheckpointWeightSource(weights: fp32.weights, options: EngineOptions(threads: 1))
        let fp32Shape = try #require(fp32Source.shape(of: name))
        #expect(try fp32Source.linear(weight: name, bias: nil, outFeatures: fp32Shape[0], inFeatures: fp32Shape[1]) is DenseLinear)
    }
}

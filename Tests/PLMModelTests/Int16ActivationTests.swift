import CPLMKernels
import Testing
import PLMQuant
import PLMTestSupport
@testable import PLMModel

/// Activations quantized to int16 per block of 32, as the decode kernels read them.
struct Int16Activations {
    var q: [Int16], d: [Float], sum: [Float]
    init(_ x: [Float]) {
        let blocks = (x.count + 31) / 32
        q = [Int16](repeating: 0, count: blocks * 32); d = [Float](repeating: 0, count: blocks); sum = d
        plm_quantize_activations16(x, Int64(x.count), &q, &d, &sum)
    }
    func dequantized(_ n: Int) -> [Float] { (0..<n).map { d[$0 / 32] * Float(q[$0]) } }
}

@Suite struct Int16ActivationTests {
    @Test func quantizationIsWithinHalfAStepAndPadsWithZeros() {
        let x = gaussian(100, seed: 7, scale: 3) + [0, 0, 0]
        let a = Int16Activations(x)
        let back = a.dequantized(x.count)
        for j in x.indices { #expect(abs(back[j] - x[j]) <= a.d[j / 32] / 2 * 1.0001 + 1e-9, "value \(j)") }
        for b in a.d.indices {
            let total = (0..<32).reduce(0) { $0 + Int(a.q[b * 32 + $1]) }
            #expect(abs(a.sum[b] - a.d[b] * Float(total)) <= 1e-5 * max(1, abs(a.sum[b])))
            // The block's largest value uses the whole range.
            #expect((0..<32).map { abs(Int(a.q[b * 32 + $0])) }.max() == 32767)
        }
        #expect(a.q[103..<128].allSatisfy { $0 == 0 })
    }

    @Test func aNonFiniteValuePoisonsOnlyItsBlock() {
        var x = gaussian(96, seed: 3, scale: 1)
        x[40] = .nan
        let a = Int16Activations(x)
        #expect(a.d[1].isNaN && a.sum[1].isNaN)
        #expect(!a.d[0].isNaN && !a.d[2].isNaN)
        #expect(a.q[32..<64].allSatisfy { $0 == 0 })
    }

    @Test(arguments: kernelTypes)
    func portableGemvMatchesTheExactProduct(_ type: StorageType) { check(type, impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"), arguments: kernelTypes)
    func avx2GemvMatchesTheExactProduct(_ type: StorageType) { check(type, impl: PLM_IMPL_AVX2) }

    /// Each output equals the exact dot product of the dequantized weights with the int16
    /// activations the kernel reads (a short last group in fp32, by design), and is within
    /// 1e-4 of the fp32-activation product: int16 rounding is far below int8's.
    func check(_ type: StorageType, impl: Int) {
        for (rows, k) in [(19, 588), (5, 2048), (3, 96), (7, 128 * 3)] {
            let w = TestMatrix(rows: rows, columns: k, type: type, seed: UInt64(rows * k + 5))
            let x = gaussian(k, seed: 41, scale: 2)
            let a = Int16Activations(x)
            let xa = a.dequantized(k)
            let fullColumns = (k / type.groupSize!) * type.groupSize!
            var y = [Float](repeating: .nan, count: rows + 1)
            w.withMatrix { m in
                x.withUnsafeBufferPointer { xp in a.q.withUnsafeBufferPointer { qp in
                    a.d.withUnsafeBufferPointer { dp in a.sum.withUnsafeBufferPointer { sp in
                        var act = plm_qact16(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                        y.withUnsafeMutableBufferPointer { plm_qgemv16(&m, &act, $0.baseAddress!, 0, Int64(rows), Int32(impl)) }
                    } }
                } }
            }
            #expect(y[rows].isNaN, "writes only y[0 ..< r1 − r0]")
            var worstA8 = 0.0, worstA16 = 0.0
            let a8 = QuantizedActivations(x).dequantized(k)
            for r in 0..<rows {
                var exact16 = 0.0, exact32 = 0.0, exact8 = 0.0, norm = 0.0
                for j in 0..<k {
                    let wj = Double(w.dense[r * k + j])
                    exact16 += wj * Double(j < fullColumns ? xa[j] : x[j])
                    exact8 += wj * Double(j < fullColumns ? a8[j] : x[j])
                    exact32 += wj * Double(x[j])
                    norm += abs(wj * Double(x[j]))
                }
                #expect(abs(Double(y[r]) - exact16) <= 2e-5 * norm + 1e-6, "\(type) impl \(impl) K \(k) row \(r): \(y[r]) vs \(exact16)")
                #expect(abs(Double(y[r]) - exact32) <= 1e-4 * norm + 1e-6, "\(type) impl \(impl) K \(k) row \(r) against fp32 activations")
                worstA16 = max(worstA16, abs(exact16 - exact32) / norm)
                worstA8 = max(worstA8, abs(exact8 - exact32) / norm)
            }
            // The point of int16: its activation error is a small fraction of int8's (where
            // any group is full: a row of one short group runs fp32 on both).
            #expect(fullColumns == 0 || worstA16 < worstA8 / 20, "\(type) K \(k): int16 error \(worstA16) vs int8 \(worstA8)")
        }
    }

    /// `auto` runs decode on int16 activations and prefill on fp32 without AVX-512, and the int8
    /// VNNI kernels for both with it; the explicit choices apply at every row count.
    @Test func autoChoosesPerPhase() {
        let avx2 = EngineOptions(threads: 1, kernel: .avx2)
        #expect(QuantizedLinear.path(rows: 1, options: avx2) == .int16Gemv)
        #expect(QuantizedLinear.path(rows: 512, options: avx2) == .denseF32)
        let portable = EngineOptions(threads: 1, kernel: .portable)
        #expect(QuantizedLinear.path(rows: 1, options: portable) == .int16Gemv)
        var a16 = avx2
        a16.activations = .int16
        #expect(QuantizedLinear.path(rows: 512, options: a16) == .int16Gemv)
        if CPU.hasAVX512 {
            let avx512 = EngineOptions(threads: 1, kernel: .avx512)
            #expect(QuantizedLinear.path(rows: 1, options: avx512) == .int8)
            #expect(QuantizedLinear.path(rows: 512, options: avx512) == .int8)
        }
    }
}

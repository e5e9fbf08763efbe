import CPLMKernels
import Foundation
import Testing
import PLMQuant
import PLMTestSupport

/// A quantized matrix held in Swift arrays, with its plm_qmatrix view.
final class TestMatrix {
    let layout: StorageLayout
    var data: [UInt8], scales: [UInt8], mins: [UInt8]
    let dense: [Float]   // the dequantized weights (the format's definition)

    init(rows: Int, columns: Int, type: StorageType, seed: UInt64) {
        layout = StorageLayout(shape: [rows, columns], type: type)
        let w = gaussian(rows * columns, seed: seed, scale: 0.05)
        var data = [UInt8](repeating: 0, count: layout.dataBytes)
        var scales = [UInt8](repeating: 0, count: max(layout.scaleBytes, 1))
        var mins = [UInt8](repeating: 0, count: max(layout.minBytes, 1))
        let q = RowQuantizer(layout: layout)
        var out = [Float](repeating: 0, count: rows * columns)
        data.withUnsafeMutableBytes { d in scales.withUnsafeMutableBytes { s in mins.withUnsafeMutableBytes { m in
            let parts = RowQuantizer.RowParts(data: d.baseAddress!, scales: s.baseAddress, mins: m.baseAddress)
            w.withUnsafeBufferPointer { q.quantize($0.baseAddress!, rows: rows, into: parts) }
            out.withUnsafeMutableBufferPointer { q.dequantize(parts, rows: rows, into: $0.baseAddress!) }
        } } }
        self.data = data
        self.scales = scales
        self.mins = mins
        dense = out
    }

    var kind: Int32 { layout.type.kernelKind ?? -1 }

    func withMatrix<R>(_ body: (inout plm_qmatrix) -> R) -> R {
        data.withUnsafeBytes { d in scales.withUnsafeBytes { s in mins.withUnsafeBytes { m in
            var matrix = plm_qmatrix(kind: kind, group: Int32(layout.type.groupSize!), rows: Int64(layout.rows), cols: Int64(layout.columns),
                                     data: d.baseAddress!.assumingMemoryBound(to: UInt8.self), scales: s.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                     mins: m.baseAddress!.assumingMemoryBound(to: UInt8.self), data_row_bytes: Int64(layout.dataBytesPerRow),
                                     scale_row_bytes: Int64(layout.scaleBytesPerRow), min_row_bytes: Int64(layout.minBytesPerRow), q8_tiles: nil)
            return body(&matrix)
        } } }
    }

    /// The matrix repacked into the decode layout (int4 k6 g32 only), for `body`.
    func withRepacked<R>(_ body: (inout plm_q4k6_repacked) -> R) -> R {
        let rows = layout.rows, k = layout.columns, tiles = (rows + 15) / 16, tileBytes = plm_repacked_tile_bytes(Int64(k))
        var bytes = [UInt8](repeating: 0, count: tiles * Int(tileBytes))
        return withMatrix { m in
            bytes.withUnsafeMutableBytes { raw in
                var r = plm_q4k6_repacked(rows: Int64(rows), cols: Int64(k), tiles: Int64(tiles), tile_bytes: tileBytes,
                                          bytes: raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
                #expect(plm_repack_q4k6(&m, &r, 0, Int64(tiles)) == 1)
                return body(&r)
            }
        }
    }
}

struct QuantizedActivations {
    var q: [Int8], d: [Float], sum: [Float]
    init(_ x: [Float]) {
        let blocks = (x.count + 31) / 32
        q = [Int8](repeating: 0, count: blocks * 32); d = [Float](repeating: 0, count: blocks); sum = d
        plm_quantize_activations(x, Int64(x.count), &q, &d, &sum, Int32(plm_best_impl()))
    }
    /// The activations as the integer kernels see them: d·q.
    func dequantized(_ n: Int) -> [Float] { (0..<n).map { d[$0 / 32] * Float(q[$0]) } }
}

@Suite struct KernelTests {
    /// The C reference dequantization (the quantized-embedding lookup) gives exactly the Swift
    /// quantizer's own dequantization, for every type, on rows with a short last group.
    @Test(arguments: kernelTypes)
    func dequantizedRowsEqualTheQuantizersDefinition(_ type: StorageType) {
        for (rows, k) in [(3, 588), (2, 256), (4, 100)] {
            let w = TestMatrix(rows: rows, columns: k, type: type, seed: UInt64(rows * k + 1))
            w.withMatrix { m in
                var out = [Float](repeating: .nan, count: k)
                for r in 0..<rows {
                    plm_dequantize_row(&m, Int64(r), &out)
                    #expect(out == Array(w.dense[(r * k)..<((r + 1) * k)]), "\(type) K \(k) row \(r)")
                }
            }
        }
    }

    /// Every implementation, every type and group size, odd shapes (K = 588 with a short last
    /// group, row counts that are not multiples of anything): each output equals the exact
    /// dot product of the dequantized weights with the activations the kernel uses.
    @Test(arguments: kernelTypes)
    func portableGemvMatchesTheReference(_ type: StorageType) { checkGemv(type, impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"), arguments: kernelTypes)
    func avx2GemvMatchesTheReference(_ type: StorageType) { checkGemv(type, impl: PLM_IMPL_AVX2) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"), arguments: kernelTypes)
    func avx512GemvMatchesTheReference(_ type: StorageType) { checkGemv(type, impl: PLM_IMPL_AVX512) }

    func checkGemv(_ type: StorageType, impl: Int) {
        for (rows, k) in [(19, 588), (5, 2048), (3, 96), (7, 128 * 3)] {
            let w = TestMatrix(rows: rows, columns: k, type: type, seed: UInt64(rows * k))
            let x = gaussian(k, seed: 99, scale: 1)
            let a = QuantizedActivations(x)
            let xa = a.dequantized(k)
            let groupedTail = k % type.groupSize! != 0
            w.withMatrix { m in
                // fp32 activations: the reference and this implementation (AVX-512 runs AVX2's).
                var fp32 = [Float](repeating: 0, count: rows), fp32Impl = [Float](repeating: .nan, count: rows + 2)
                plm_qgemv_f32_ref(&m, x, &fp32, 0, Int64(rows))
                fp32Impl.withUnsafeMutableBufferPointer { plm_qgemv_f32(&m, x, $0.baseAddress! + 1, 1, Int64(rows), Int32(impl)) }
                #expect(fp32Impl[0].isNaN && fp32Impl[rows].isNaN && fp32Impl[rows + 1].isNaN, "writes only y[0 ..< r1 − r0]")
                do {
                    var y = [Float](repeating: 0, count: rows)
                    x.withUnsafeBufferPointer { xp in
                        a.q.withUnsafeBufferPointer { qp in a.d.withUnsafeBufferPointer { dp in a.sum.withUnsafeBufferPointer { sp in
                            var act = plm_qact(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                            plm_qgemv(&m, &act, &y, 0, Int64(rows), Int32(impl))
                        } } }
                    }
                    for r in 0..<rows {
                        var exactA8 = 0.0, exactF32 = 0.0, norm = 0.0
                        let fullColumns = groupedTail ? (k / type.groupSize!) * type.groupSize! : k
                        for j in 0..<k {
                            let wj = Double(w.dense[r * k + j])
                            // A short last group is computed with fp32 activations by design.
                            exactA8 += wj * Double(j < fullColumns ? xa[j] : x[j])
                            exactF32 += wj * Double(x[j])
                            norm += abs(wj * Double(x[j]))
                        }
                        #expect(abs(Double(y[r]) - exactA8) <= 2e-5 * norm + 1e-6, "\(type) impl \(impl) K \(k) row \(r): \(y[r]) vs \(exactA8)")
                        #expect(abs(Double(fp32[r]) - exactF32) <= 2e-5 * norm + 1e-6, "\(type) f32 reference K \(k) row \(r)")
                        if r >= 1 {
                            #expect(abs(Double(fp32Impl[r]) - exactF32) <= 2e-5 * norm + 1e-6, "\(type) f32 impl \(impl) K \(k) row \(r): \(fp32Impl[r]) vs \(exactF32)")
                        }
                    }
                }
            }
        }
    }

    @Test func activationQuantizationIsWithinHalfAStep() {
        let x = gaussian(100, seed: 5, scale: 3) + [0, 0, 0]
        let a = QuantizedActivations(x)
        let back = a.dequantized(x.count)
        for j in x.indices { #expect(abs(back[j] - x[j]) <= a.d[j / 32] / 2 * 1.0001 + 1e-7) }
        for b in a.d.indices {
            let total = (0..<32).reduce(0) { $0 + Int(a.q[b * 32 + $1]) }
            #expect(abs(a.sum[b] - a.d[b] * Float(total)) <= 1e-4 * max(1, abs(a.sum[b])))
        }
        #expect(a.q[100..<128].allSatisfy { $0 == 0 })  // padding of the last block
    }

    @Test func dispatchReportsTheMachine() {
        let best = plm_best_impl()
        #expect(best >= PLM_IMPL_PORTABLE && best <= PLM_IMPL_AVX512)
        print("best kernel implementation on this machine: \(best) (0 portable, 1 AVX2, 2 AVX-512 VNNI)")
    }
}

@Suite struct GemmTests {
    /// The tile GEMM (several activation rows) equals per-row exact A8 dot products, for every
    /// type, with row counts that exercise the 4-row and 1-row loops and a partial weight tile.
    @Test(arguments: kernelTypes)
    func portableGemmMatchesTheReference(_ type: StorageType) { checkGemm(type, impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"), arguments: kernelTypes)
    func avx2GemmMatchesTheReference(_ type: StorageType) { checkGemm(type, impl: PLM_IMPL_AVX2) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"), arguments: kernelTypes)
    func avx512GemmMatchesTheReference(_ type: StorageType) { checkGemm(type, impl: PLM_IMPL_AVX512) }

    /// Enough activation rows that the AVX-512 tile GEMMs take them in several passes (about 512
    /// KiB of activations each; the last pass shorter): int8 and split int16 activations, over
    /// the file layout (int8 weights) and the repacked int4 layout.
    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"))
    func manyRowsRunInPassesThatFitTheCache() {
        let (n, k, m) = (20, 4096, 200)
        let xs = (0..<m).map { gaussian(k, seed: UInt64(500 + $0), scale: 1) }
        let a8 = xs.map { QuantizedActivations($0) }, a16 = xs.map { Int16Activations($0) }
        let x = xs.flatMap { $0 }
        for type in [StorageType.int8(.symmetric, groupSize: 32), .int4(.asymmetric, groupSize: 32, scales: .k6)] {
            let w = TestMatrix(rows: n, columns: k, type: type, seed: 77)
            var y8 = [Float](repeating: .nan, count: m * n), y16 = y8
            w.withMatrix { mat in
                plm_qgemm(&mat, a8.flatMap(\.q), a8.flatMap(\.d), a8.flatMap(\.sum), x, Int64(m), &y8, Int64(n), 0, Int64(n), Int32(PLM_IMPL_AVX512))
                if type.description.hasPrefix("int4") {
                    #expect(w.withRepacked { plm_qgemm16_repacked(&$0, a16.flatMap(\.q), a16.flatMap(\.d), a16.flatMap(\.sum), Int64(m), &y16, Int64(n), 0, $0.tiles, Int32(PLM_IMPL_AVX512)) } == 1)
                } else {
                    plm_qgemm16(&mat, a16.flatMap(\.q), a16.flatMap(\.d), a16.flatMap(\.sum), x, Int64(m), &y16, Int64(n), 0, Int64(n), Int32(PLM_IMPL_AVX512))
                }
            }
            for row in stride(from: 0, to: m, by: 7) + [m - 1] {
                let d8 = a8[row].dequantized(k), d16 = a16[row].dequantized(k)
                for r in 0..<n {
                    var e8 = 0.0, e16 = 0.0, norm = 0.0
                    for j in 0..<k {
                        let wj = Double(w.dense[r * k + j])
                        e8 += wj * Double(d8[j]); e16 += wj * Double(d16[j]); norm += abs(wj * Double(xs[row][j]))
                    }
                    #expect(abs(Double(y8[row * n + r]) - e8) <= 2e-5 * norm + 1e-6, "\(type) int8 m \(row) r \(r)")
                    #expect(abs(Double(y16[row * n + r]) - e16) <= 2e-5 * norm + 1e-6, "\(type) int16 m \(row) r \(r)")
                }
            }
        }
    }

    /// The AVX-512 tile GEMM quantizes a short last group's activations too; the row-wise paths
    /// take it in fp32.
    func checkGemm(_ type: StorageType, impl: Int) {
        // m 13: the AVX-512 kernel's eight-row, four-row and single-row loops in one call.
        for (n, k, m) in [(37, 588, 6), (16, 256, 4), (5, 128 * 3, 9), (24, 512, 13)] {
            let w = TestMatrix(rows: n, columns: k, type: type, seed: UInt64(n + k))
            let xs = (0..<m).map { gaussian(k, seed: UInt64(100 + $0), scale: 1) }
            let acts = xs.map { QuantizedActivations($0) }
            let blocks = (k + 31) / 32
            let q = acts.flatMap(\.q), d = acts.flatMap(\.d), sums = acts.flatMap(\.sum), x = xs.flatMap { $0 }
            do {
                var y = [Float](repeating: .nan, count: m * n)
                w.withMatrix { mat in plm_qgemm(&mat, q, d, sums, x, Int64(m), &y, Int64(n), 0, Int64(n), Int32(impl)) }
                for row in 0..<m {
                    let xa = acts[row].dequantized(k)
                    let tailStart = impl == PLM_IMPL_AVX512 ? k : (k / type.groupSize!) * type.groupSize!
                    for r in 0..<n {
                        var exact = 0.0, norm = 0.0
                        for j in 0..<k {
                            let wj = Double(w.dense[r * k + j]), a = Double(j < tailStart ? xa[j] : xs[row][j])
                            exact += wj * a
                            norm += abs(wj * a)
                        }
                        #expect(abs(Double(y[row * n + r]) - exact) <= 2e-5 * norm + 1e-6, "\(type) impl \(impl) n \(n) k \(k) m \(row) r \(r)")
                    }
                }
                _ = blocks
            }
        }
    }
}

@Suite struct VectorMathTests {
    /// The AVX-512 and AVX2 silu-and-multiply equal libm's within the polynomial exp's error, on
    /// a range that covers both saturated tails, with a length that leaves a tail.
    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512")) func avx512SiluMulMatchesLibm() { checkSilu(impl: PLM_IMPL_AVX512) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2")) func avx2SiluMulMatchesLibm() { checkSilu(impl: PLM_IMPL_AVX2) }

    func checkSilu(impl: Int) {
        let gate = (0..<1003).map { Float($0) * 0.2 - 100 }
        let up = gaussian(gate.count, seed: 5, scale: 2)
        var fast = gate, slow = gate
        plm_silu_mul(&fast, up, Int64(gate.count), Int32(impl))
        plm_silu_mul_ref(&slow, up, Int64(gate.count))
        for i in gate.indices { #expect(abs(fast[i] - slow[i]) <= 1e-6 * abs(slow[i]) + 1e-30, "x = \(gate[i])") }
    }

    /// The register-only int8 peak that `plmq bench` reports: measured for every SIMD family this
    /// CPU runs (a positive rate; its size depends on the build: the C target is unoptimised in
    /// debug builds), and 0 for portable C.
    @Test func int8PeakIsMeasuredPerFamily() {
        #expect(plm_int8_dot_peak(1000, Int32(PLM_IMPL_PORTABLE)) == 0)
        if CPU.hasAVX2 { #expect(plm_int8_dot_peak(2_000_000, Int32(PLM_IMPL_AVX2)) > 0) }
        if CPU.hasAVX512 { #expect(plm_int8_dot_peak(2_000_000, Int32(PLM_IMPL_AVX512)) > 0) }
    }

    /// The kernel families this CPU can run: each is tested, not just the one dispatch picks.
    static var implementations: [Int32] {
        [Int32(PLM_IMPL_PORTABLE)] + (CPU.hasAVX2 ? [Int32(PLM_IMPL_AVX2)] : []) + (CPU.hasAVX512 ? [Int32(PLM_IMPL_AVX512)] : [])
    }

    /// Every activation quantizer path (portable, AVX2, AVX-512 as the CPU allows) gives the
    /// reference's bytes, scales and sums exactly: every length class (whole and partial 8-lane
    /// chunks), zero, NaN, ±Inf, huge and subnormal blocks, and values halfway between levels
    /// (rounding to even).
    @Test func activationQuantizersMatchTheReferenceBitForBit() {
        var cases: [[Float]] = [1, 8, 9, 17, 24, 25, 31, 32, 33, 100, 588, 2048].map { gaussian($0, seed: UInt64($0), scale: 3) }
        var special = gaussian(256, seed: 9, scale: 1)
        for j in 32..<64 { special[j] = 0 }
        special[70] = .nan; special[100] = .infinity; special[140] = -.infinity
        for j in 160..<192 { special[j] = Float(j) * 1e30 }
        for j in 192..<224 { special[j] = Float(j - 191) * 1e-44 }
        for j in 224..<256 { special[j] = Float(j - 224) - 15.5 }   // .5 steps: ties at scale 1
        cases.append(special)
        var shortPoisoned = gaussian(45, seed: 4, scale: 2)
        shortPoisoned[43] = .nan  // in the short last block, past its first 8-lane chunk
        cases.append(shortPoisoned)
        for impl in Self.implementations {
            for x in cases {
                let blocks = (x.count + 31) / 32
                var q = [Int8](repeating: 1, count: blocks * 32), qr = q
                var d = [Float](repeating: 1, count: blocks), dr = d, s = d, sr = d
                plm_quantize_activations(x, Int64(x.count), &q, &d, &s, impl)
                plm_quantize_activations_ref(x, Int64(x.count), &qr, &dr, &sr)
                #expect(q == qr, "impl \(impl): int8 levels, \(x.count) values")
                #expect(d.map(\.bitPattern) == dr.map(\.bitPattern) && s.map(\.bitPattern) == sr.map(\.bitPattern),
                        "impl \(impl): int8 scales, \(x.count) values")
                var q16 = [Int16](repeating: 1, count: blocks * 32), q16r = q16
                plm_quantize_activations16(x, Int64(x.count), &q16, &d, &s, impl)
                plm_quantize_activations16_ref(x, Int64(x.count), &q16r, &dr, &sr)
                #expect(q16 == q16r, "impl \(impl): int16 levels, \(x.count) values")
                if x.count == 256 {
                    // The subnormal block is quantized like any other (its largest value at ±32767).
                    #expect(q16r[223] == 32767)
                }
                #expect(d.map(\.bitPattern) == dr.map(\.bitPattern) && s.map(\.bitPattern) == sr.map(\.bitPattern),
                        "impl \(impl): int16 scales, \(x.count) values")
            }
        }
    }

    /// Every maximum path equals the reference loop on every length around the vector widths.
    @Test func maximumMatchesTheReference() {
        for impl in Self.implementations {
            for n in [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 1025] {
                let x = gaussian(n, seed: UInt64(n + 3), scale: 5)
                #expect(plm_max(x, Int64(n), impl) == plm_max_ref(x, Int64(n)), "impl \(impl), n = \(n)")
                var last = x
                last[n - 1] = 1000  // the largest in the scalar tail
                #expect(plm_max(last, Int64(n), impl) == 1000, "impl \(impl), n = \(n)")
                let negative = [Float](repeating: -.infinity, count: n)
                #expect(plm_max(negative, Int64(n), impl) == -.infinity)
            }
        }
    }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512")) func avx512ExpMatchesLibm() { checkExp(impl: PLM_IMPL_AVX512) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2")) func avx2ExpMatchesLibm() { checkExp(impl: PLM_IMPL_AVX2) }

    func checkExp(impl: Int) {
        let values = (0..<1000).map { Float($0) * -0.087 + 3 } + [-87, -100, 0, 0.5]
        for n in [1, 7, 8, 9, 15, 16, 17, values.count] {
            var fast = Array(values.prefix(n)), slow = fast
            let a = plm_exp_shift_sum(&fast, Int64(n), 1.25, Int32(impl))
            let b = plm_exp_shift_sum(&slow, Int64(n), 1.25, Int32(PLM_IMPL_PORTABLE))
            // Subnormal results (x near −87) may differ in their last bits.
            for i in 0..<n { #expect(abs(fast[i] - slow[i]) <= 4e-7 * slow[i] + 1e-37, "x = \(values[i])") }
            #expect(abs(a - b) <= 1e-6 * b)
        }
    }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512")) func avx512GeluMatchesLibm() { checkGelu(impl: PLM_IMPL_AVX512) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2")) func avx2GeluMatchesLibm() { checkGelu(impl: PLM_IMPL_AVX2) }

    func checkGelu(impl: Int) {
        let values = (0..<2001).map { Float($0 - 1000) * 0.006 } + [-20, 20, 0]
        var fast = values, slow = values
        plm_gelu_erf(&fast, Int64(values.count), Int32(impl))
        plm_gelu_erf(&slow, Int64(values.count), Int32(PLM_IMPL_PORTABLE))
        for i in values.indices { #expect(abs(fast[i] - slow[i]) <= 4e-7 * max(1, abs(values[i])), "x = \(values[i])") }
    }
}

@Suite struct RepackedKernelTests {
    /// The decode kernel over the repacked layout equals the exact A8 dot products, on each
    /// implementation (partial last tiles, several super-blocks).
    @Test func portableRepackedGemvMatchesTheReference() { checkGemv(impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"))
    func avx2RepackedGemvMatchesTheReference() { checkGemv(impl: PLM_IMPL_AVX2) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"))
    func avx512RepackedGemvMatchesTheReference() { checkGemv(impl: PLM_IMPL_AVX512) }

    func checkGemv(impl: Int) {
        for (rows, k) in [(37, 512), (16, 2048), (5, 256)] {
            let w = TestMatrix(rows: rows, columns: k, type: .int4(.asymmetric, groupSize: 32, scales: .k6), seed: UInt64(rows + k))
            let x = gaussian(k, seed: 7, scale: 1)
            let a = QuantizedActivations(x)
            let xa = a.dequantized(k)
            var y = [Float](repeating: .nan, count: (rows + 15) / 16 * 16)
            w.withRepacked { r in
                a.q.withUnsafeBufferPointer { qp in a.d.withUnsafeBufferPointer { dp in a.sum.withUnsafeBufferPointer { sp in x.withUnsafeBufferPointer { xp in
                    var act = plm_qact(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                    plm_qgemv_repacked(&r, &act, &y, 0, r.tiles, Int32(impl))
                } } } }
            }
            for r in 0..<rows {
                var exact = 0.0, norm = 0.0
                for j in 0..<k { exact += Double(w.dense[r * k + j]) * Double(xa[j]); norm += abs(Double(w.dense[r * k + j]) * Double(xa[j])) }
                #expect(abs(Double(y[r]) - exact) <= 2e-5 * norm + 1e-6, "impl \(impl) rows \(rows) k \(k) row \(r)")
            }
            #expect(y[rows...].allSatisfy { $0.isNaN }, "writes only the matrix's rows")
        }
    }

    /// The prefill GEMM over the repacked layout equals the exact A8 dot products too (the
    /// AVX-512 tile kernel, and one repacked GEMV per row elsewhere).
    @Test func portableRepackedGemmMatchesTheReference() { checkGemm(impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"))
    func avx2RepackedGemmMatchesTheReference() { checkGemm(impl: PLM_IMPL_AVX2) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"))
    func avx512RepackedGemmMatchesTheReference() { checkGemm(impl: PLM_IMPL_AVX512) }

    func checkGemm(impl: Int) {
        let (rows, k, m) = (21, 512, 13)  // the eight-, four- and one-row loops of the AVX-512 kernel
        let w = TestMatrix(rows: rows, columns: k, type: .int4(.asymmetric, groupSize: 32, scales: .k6), seed: 11)
        let xs = (0..<m).map { gaussian(k, seed: UInt64(200 + $0), scale: 1) }
        let acts = xs.map { QuantizedActivations($0) }
        let q = acts.flatMap(\.q), d = acts.flatMap(\.d), sums = acts.flatMap(\.sum)
        var y = [Float](repeating: .nan, count: m * rows)
        w.withRepacked { plm_qgemm_repacked(&$0, q, d, sums, Int64(m), &y, Int64(rows), 0, $0.tiles, Int32(impl)) }
        for row in 0..<m {
            let xa = acts[row].dequantized(k)
            for r in 0..<rows {
                var exact = 0.0, norm = 0.0
                for j in 0..<k { exact += Double(w.dense[r * k + j]) * Double(xa[j]); norm += abs(Double(w.dense[r * k + j]) * Double(xa[j])) }
                #expect(abs(Double(y[row * rows + r]) - exact) <= 2e-5 * norm + 1e-6, "impl \(impl) m \(row) r \(r)")
            }
        }
    }

    /// The fp32 prefill path dequantizes from the repacked copy (the mapped levels are released):
    /// every row equals the file layout's reference dequantization bit for bit.
    @Test func repackedRowsDequantizeToTheFilesValues() {
        for (rows, k) in [(37, 512), (3, 256)] {
            let w = TestMatrix(rows: rows, columns: k, type: .int4(.asymmetric, groupSize: 32, scales: .k6), seed: UInt64(5 * rows + k))
            w.withRepacked { r in
                w.withMatrix { m in
                    var fromFile = [Float](repeating: .nan, count: k), fromRepacked = fromFile
                    for row in 0..<rows {
                        plm_dequantize_row(&m, Int64(row), &fromFile)
                        plm_repacked_dequantize_row(&r, Int64(row), &fromRepacked)
                        #expect(fromFile.map(\.bitPattern) == fromRepacked.map(\.bitPattern), "rows \(rows) k \(k) row \(row)")
                    }
                }
            }
        }
    }
}

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
        plm_quantize_activations16(x, Int64(x.count), &q, &d, &sum, Int32(plm_best_impl()))
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

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"), arguments: kernelTypes)
    func avx512GemvMatchesTheExactProduct(_ type: StorageType) { check(type, impl: PLM_IMPL_AVX512) }

    /// The decode kernels over the repacked int4 layout (activations split into high and low
    /// bytes) give the exact int16 product too, including activations at ±32767 where the high
    /// byte is largest and the low byte's sums come nearest int16 saturation on AVX2, and a
    /// partial last tile.
    @Test func portableRepackedGemvMatchesTheExactProduct() { checkRepacked(impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"))
    func avx2RepackedGemvMatchesTheExactProduct() { checkRepacked(impl: PLM_IMPL_AVX2) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"))
    func avx512RepackedGemvMatchesTheExactProduct() { checkRepacked(impl: PLM_IMPL_AVX512) }

    /// The AVX2 kernel adds vpmaddubsw pairs in int16 before widening them. With every level at
    /// 15 and activations at the split's extreme bytes (q = −1: low byte 255; q = −32767: high
    /// byte −128) the int16 sums reach their bounds, and must still equal the C reference's
    /// int32 sums over the same bytes.
    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"))
    func repackedSumsStayExactAtTheirBounds() {
        let (rows, k) = (16, 512)
        let w = TestMatrix(rows: rows, columns: k, type: .int4(.asymmetric, groupSize: 32, scales: .k6), seed: 9)
        var lowBytes = [Float](repeating: -1 / 32767, count: k)
        for b in 0..<k / 32 { lowBytes[32 * b] = 1 }   // block maximum 1: the rest quantize to −1
        let highBytes = [Float](repeating: -1, count: k)   // every value −32767
        for (name, x, level) in [("low bytes 255", lowBytes, Int16(-1)), ("high bytes −128", highBytes, Int16(-32767))] {
            let a = Int16Activations(x)
            #expect(a.q.filter { $0 == level }.count >= k - k / 32, "\(name)")
            var fast = [Float](repeating: .nan, count: rows), reference = fast
            w.withRepacked { r in
                for t in 0..<Int(r.tiles) {
                    for sb in 0..<Int(r.cols) / Int(PLM_RP_SUPERBLOCK_COLUMNS) {
                        for j in 0..<8 {
                            let offset = t * Int(r.tile_bytes) + sb * Int(PLM_RP_SUPERBLOCK_BYTES) + Int(PLM_RP_HEADER_BYTES)
                                + j * Int(PLM_RP_BLOCK_BYTES) + Int(PLM_RP_BLOCK_NIBBLES)
                            (r.bytes + offset).update(repeating: 0xFF, count: 4 * Int(PLM_RP_NIBBLES_PER_8_COLUMNS))
                        }
                    }
                }
                a.q.withUnsafeBufferPointer { qp in a.d.withUnsafeBufferPointer { dp in a.sum.withUnsafeBufferPointer { sp in x.withUnsafeBufferPointer { xp in
                    var act = plm_qact16(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                    plm_qgemv16_repacked(&r, &act, &fast, 0, r.tiles, Int32(PLM_IMPL_AVX2))
                    plm_qgemv16_repacked(&r, &act, &reference, 0, r.tiles, Int32(PLM_IMPL_PORTABLE))
                } } } }
            }
            for i in 0..<rows {
                #expect(abs(fast[i] - reference[i]) <= 1e-5 * abs(reference[i]) + 1e-6, "\(name) row \(i): \(fast[i]) vs \(reference[i])")
            }
        }
    }

    func checkRepacked(impl: Int) {
        for (rows, k) in [(37, 512), (16, 2048), (5, 256)] {
            let w = TestMatrix(rows: rows, columns: k, type: .int4(.asymmetric, groupSize: 32, scales: .k6), seed: UInt64(3 * rows + k))
            var x = gaussian(k, seed: UInt64(k), scale: 2)
            x[3] = 40; x[70] = -40   // block maxima: levels +32767 and −32767
            let a = Int16Activations(x)
            #expect(a.q.contains(32767) && a.q.contains(-32767))
            let xa = a.dequantized(k)
            var y = [Float](repeating: .nan, count: (rows + 15) / 16 * 16)
            w.withRepacked { r in
                a.q.withUnsafeBufferPointer { qp in a.d.withUnsafeBufferPointer { dp in a.sum.withUnsafeBufferPointer { sp in x.withUnsafeBufferPointer { xp in
                    var act = plm_qact16(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                    plm_qgemv16_repacked(&r, &act, &y, 0, r.tiles, Int32(impl))
                } } } }
            }
            for r in 0..<rows {
                var exact = 0.0, norm = 0.0
                for j in 0..<k { exact += Double(w.dense[r * k + j]) * Double(xa[j]); norm += abs(Double(w.dense[r * k + j]) * Double(xa[j])) }
                #expect(abs(Double(y[r]) - exact) <= 2e-5 * norm + 1e-6, "impl \(impl) rows \(rows) k \(k) row \(r): \(y[r]) vs \(exact)")
            }
        }
    }

    /// Each output equals the exact dot product of the dequantized weights with the int16
    /// activations the kernel reads (a short last group in fp32, by design), and is within
    /// 1e-4 of the fp32-activation product: int16 rounding is far below int8's.
    /// The int8 kinds over the four-row interleaved copy (the AVX2 decode layout) give the file
    /// layout's exact int16 products, with a short last tile (rows not a multiple of 4), every
    /// group size, and several row ranges the way the workers split them; and the copy's rows
    /// dequantize bit for bit to the file's.
    @Test(arguments: kernelTypes.filter { $0.description.hasPrefix("int8") })
    func portableInterleavedInt8MatchesTheExactProduct(_ type: StorageType) { checkTiles(type, impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"), arguments: kernelTypes.filter { $0.description.hasPrefix("int8") })
    func avx2InterleavedInt8MatchesTheExactProduct(_ type: StorageType) { checkTiles(type, impl: PLM_IMPL_AVX2) }

    func checkTiles(_ type: StorageType, impl: Int) {
        for (rows, k) in [(19, 768), (4, 2048), (1, 384)] {
            let w = TestMatrix(rows: rows, columns: k, type: type, seed: UInt64(rows * k + 9))
            let x = gaussian(k, seed: 43, scale: 2)
            let a = Int16Activations(x)
            let xa = a.dequantized(k)
            var y = [Float](repeating: .nan, count: rows + 1)
            w.withMatrix { m in
                var tiles = [UInt8](repeating: 0xAA, count: Int(plm_q8_tiles_bytes(&m)))
                let tileCount = Int64((rows + 3) / 4)
                #expect(plm_interleave_q8(&m, &tiles, 0, tileCount) == 1)
                x.withUnsafeBufferPointer { xp in a.q.withUnsafeBufferPointer { qp in
                    a.d.withUnsafeBufferPointer { dp in a.sum.withUnsafeBufferPointer { sp in
                        var act = plm_qact16(q: qp.baseAddress, d: dp.baseAddress, sum: sp.baseAddress, x: xp.baseAddress, cols: Int64(k))
                        y.withUnsafeMutableBufferPointer { out in
                            // Two ranges, split at a tile boundary, as two workers would call it.
                            let split = Int64(min(rows, 8))
                            plm_qgemv16_q8tiles(&m, tiles, &act, out.baseAddress!, 0, split, Int32(impl))
                            plm_qgemv16_q8tiles(&m, tiles, &act, out.baseAddress! + Int(split), split, Int64(rows), Int32(impl))
                        }
                    } }
                } }
                var fromFile = [Float](repeating: .nan, count: k), fromTiles = fromFile
                for r in 0..<rows {
                    plm_dequantize_row(&m, Int64(r), &fromFile)
                    plm_q8tiles_dequantize_row(&m, tiles, Int64(r), &fromTiles)
                    #expect(fromFile.map(\.bitPattern) == fromTiles.map(\.bitPattern), "\(type) K \(k) row \(r)")
                }
            }
            #expect(y[rows].isNaN, "writes only y[0 ..< r1 − r0]")
            for r in 0..<rows {
                var exact = 0.0, norm = 0.0
                for j in 0..<k {
                    let wj = Double(w.dense[r * k + j])
                    exact += wj * Double(xa[j])
                    norm += abs(wj * Double(x[j]))
                }
                #expect(abs(Double(y[r]) - exact) <= 2e-5 * norm + 1e-6, "\(type) impl \(impl) K \(k) row \(r): \(y[r]) vs \(exact)")
            }
        }
    }

    /// Only whole int8 blocks and groups interleave: a matrix with a short last group keeps the
    /// file layout.
    @Test func interleavingRefusesShortGroups() {
        let w = TestMatrix(rows: 5, columns: 588, type: .int8(.symmetric, groupSize: 32), seed: 3)
        w.withMatrix { m in
            var tiles = [UInt8](repeating: 0, count: Int(plm_q8_tiles_bytes(&m)))
            #expect(plm_interleave_q8(&m, &tiles, 0, 2) == 0)
        }
    }

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

    @Test(arguments: kernelTypes)
    func portableGemmMatchesTheExactProduct(_ type: StorageType) { checkGemm(type, impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"), arguments: kernelTypes)
    func avx512GemmMatchesTheExactProduct(_ type: StorageType) { checkGemm(type, impl: PLM_IMPL_AVX512) }

    /// plm_qgemm16 (prefill with int16 activations) against the exact products: row counts that
    /// exercise the 4-row loop and a last group of 1 or 2 rows, a partial weight tile, and K with
    /// a short last group (the AVX-512 tile GEMM takes it quantized, the row-wise path in fp32).
    /// Every block holds ±32767, the split's extreme bytes.
    func checkGemm(_ type: StorageType, impl: Int) {
        for (n, k, m) in [(37, 588, 6), (16, 256, 4), (5, 128 * 3, 9)] {
            let w = TestMatrix(rows: n, columns: k, type: type, seed: UInt64(n + k + 1))
            let xs = (0..<m).map { gaussian(k, seed: UInt64(300 + $0), scale: 1) }
            let acts = xs.map { Int16Activations($0) }
            let q = acts.flatMap(\.q), d = acts.flatMap(\.d), sums = acts.flatMap(\.sum), x = xs.flatMap { $0 }
            var y = [Float](repeating: .nan, count: m * n + 1)
            w.withMatrix { mat in plm_qgemm16(&mat, q, d, sums, x, Int64(m), &y, Int64(n), 0, Int64(n), Int32(impl)) }
            #expect(y[m * n].isNaN)
            let tailStart = impl == PLM_IMPL_AVX512 ? k : (k / type.groupSize!) * type.groupSize!
            for row in 0..<m {
                let xa = acts[row].dequantized(k)
                for r in 0..<n {
                    var exact = 0.0, norm = 0.0
                    for j in 0..<k {
                        let wj = Double(w.dense[r * k + j]), a = Double(j < tailStart ? xa[j] : xs[row][j])
                        exact += wj * a
                        norm += abs(wj * a)
                    }
                    #expect(abs(Double(y[row * n + r]) - exact) <= 2e-5 * norm + 1e-6, "\(type) impl \(impl) n \(n) k \(k) m \(row) r \(r): \(y[row * n + r]) vs \(exact)")
                }
            }
        }
    }

    /// The int16 GEMM over the repacked int4 layout equals the exact products (the AVX-512 tile
    /// kernel; elsewhere one repacked GEMV per row).
    @Test func portableRepackedGemmMatchesTheExactProduct() { checkRepackedGemm(impl: PLM_IMPL_PORTABLE) }

    @Test(.enabled(if: CPU.hasAVX2, "this CPU has no AVX2"))
    func avx2RepackedGemmMatchesTheExactProduct() { checkRepackedGemm(impl: PLM_IMPL_AVX2) }

    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512"))
    func avx512RepackedGemmMatchesTheExactProduct() { checkRepackedGemm(impl: PLM_IMPL_AVX512) }

    func checkRepackedGemm(impl: Int) {
        let (rows, k, m) = (21, 512, 7)
        let w = TestMatrix(rows: rows, columns: k, type: .int4(.asymmetric, groupSize: 32, scales: .k6), seed: 12)
        let xs = (0..<m).map { gaussian(k, seed: UInt64(400 + $0), scale: 3) }
        let acts = xs.map { Int16Activations($0) }
        let q = acts.flatMap(\.q), d = acts.flatMap(\.d), sums = acts.flatMap(\.sum)
        var y = [Float](repeating: .nan, count: m * rows)
        let ran = w.withRepacked { plm_qgemm16_repacked(&$0, q, d, sums, Int64(m), &y, Int64(rows), 0, $0.tiles, Int32(impl)) }
        #expect(ran == 1)
        for row in 0..<m {
            let xa = acts[row].dequantized(k)
            for r in 0..<rows {
                var exact = 0.0, norm = 0.0
                for j in 0..<k { exact += Double(w.dense[r * k + j]) * Double(xa[j]); norm += abs(Double(w.dense[r * k + j]) * Double(xa[j])) }
                #expect(abs(Double(y[row * rows + r]) - exact) <= 2e-5 * norm + 1e-6, "m \(row) r \(r)")
            }
        }
    }

    /// `auto` runs decode on int16 activations everywhere, and prefill on the int8 tile GEMMs
    /// where they exist (AVX-512 for every type, AVX2 over repacked int4), fp32 elsewhere; the
    /// explicit choices apply at every row count.
    @Test func autoChoosesPerPhase() {
        let avx2 = EngineOptions(threads: 1, kernel: .avx2)
        #expect(QuantizedLinear.path(rows: 1, options: avx2) == .int16Gemv)
        #expect(QuantizedLinear.path(rows: 512, options: avx2) == .denseF32)
        #expect(QuantizedLinear.path(rows: 512, options: avx2, repackedInt4: true) == .int8)
        #expect(QuantizedLinear.path(rows: 1, options: avx2, repackedInt4: true) == .int16Gemv)
        let portable = EngineOptions(threads: 1, kernel: .portable)
        #expect(QuantizedLinear.path(rows: 1, options: portable) == .int16Gemv)
        var a16 = avx2
        a16.activations = .int16
        #expect(QuantizedLinear.path(rows: 512, options: a16) == .int16Gemv)
        if CPU.hasAVX512 {
            let avx512 = EngineOptions(threads: 1, kernel: .avx512)
            #expect(QuantizedLinear.path(rows: 1, options: avx512) == .int16Gemv)
            #expect(QuantizedLinear.path(rows: 512, options: avx512) == .int8)
        }
    }
}

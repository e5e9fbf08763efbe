import Foundation
import Testing
import CPLMKernels
@testable import PLMModel

/// The bf16 attention products (attn_bf16.c): the reference rounding against hand-worked values,
/// the reference packs and products against their definition, the AVX512-BF16 twins against the
/// references, and BlockedAttention in bf16 against a plain softmax in doubles.
@Suite struct BF16AttentionTests {
    static let hasBF16 = plm_cpu_has_avx512_bf16() != 0
    static let best = Int32(PLM_IMPL_AVX512)

    static func bits(_ x: Float) -> UInt16 {
        var out: UInt16 = 0xFFFF
        var v = x
        plm_bf16_round_rows_ref(&v, 1, 1, 1, &out, 1)
        return out
    }

    static func value(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    @Test func referenceRoundingIsNearestEvenWithDenormalsFlushed() {
        #expect(Self.bits(1) == 0x3F80)
        #expect(Self.bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie, even stays
        #expect(Self.bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie, odd rounds up
        #expect(Self.bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)  // above the tie
        #expect(Self.bits(-2.5) == 0xC020)
        #expect(Self.bits(1e-40) == 0x0000)
        #expect(Self.bits(-1e-40) == 0x8000)
        #expect(Self.bits(.greatestFiniteMagnitude) == 0x7F80)  // rounds to +Inf, as the hardware does
        #expect(Self.bits(.infinity) == 0x7F80)
        #expect(Self.bits(.nan) & 0x7FC0 == 0x7FC0)
    }

    /// Values with every kind of rounding case: random, ties, denormals, huge, signed zeros.
    static func awkwardValues(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let r = UInt32(truncatingIfNeeded: state >> 32)
            switch i % 7 {
            case 0: return Float(bitPattern: (r & 0xFFFF_0000) | 0x8000)  // exact tie
            case 1: return Float(bitPattern: r & 0x807F_FFFF)             // denormal
            case 2: return Float(bitPattern: r | 0x7F00_0000) * (r & 1 == 0 ? 1 : -1)  // huge
            case 3: return i % 2 == 0 ? 0 : -0.0
            default: return Float(Int32(bitPattern: r) % 100_000) / 7919
            }
        }
    }

    @Test(.enabled(if: hasBF16)) func roundingTwinGivesTheReferenceBits() {
        for cols in [1, 15, 16, 17, 31, 32, 33, 100] {
            let rows = 3, stride = cols + 5, outStride = cols + 3
            let x = Self.awkwardValues(rows * stride, seed: UInt64(cols))
            var fast = [UInt16](repeating: 0xAAAA, count: rows * outStride), ref = fast
            plm_bf16_round_rows(x, Int64(stride), Int64(rows), Int64(cols), &fast, Int64(outStride), Self.best)
            plm_bf16_round_rows_ref(x, Int64(stride), Int64(rows), Int64(cols), &ref, Int64(outStride))
            #expect(fast == ref, "cols \(cols)")
        }
    }

    /// The reference packs hold every key's and value's rounded element where plm_layout.h says.
    @Test(arguments: [16, 64, 96])
    func packsFollowTheLayoutOnEveryPath(dim: Int) {
        for keys in [1, 2, 15, 16, 17, 33, 100] {
            let stride = dim + 8
            let x = AttentionTests.values(keys * stride, seed: UInt64(keys * dim))
            var k = [UInt16](repeating: 0xAAAA, count: Int(plm_bf16_keys_count(Int64(keys), Int64(dim))))
            var v = [UInt16](repeating: 0xAAAA, count: Int(plm_bf16_values_count(Int64(keys), Int64(dim))))
            plm_bf16_pack_keys_ref(x, Int64(stride), Int64(keys), Int64(dim), &k)
            plm_bf16_pack_values_ref(x, Int64(stride), Int64(keys), Int64(dim), &v)
            var misplaced = 0
            for j in 0..<(keys + 15) / 16 * 16 {
                for c in 0..<dim {
                    let want = j < keys ? Self.bits(x[j * stride + c]) : 0
                    if k[(j / 16) * 16 * dim + (c / 2) * 32 + (j % 16) * 2 + c % 2] != want { misplaced += 1 }
                    if j < (keys + 1) / 2 * 2, v[(j / 2) * 2 * dim + 2 * c + j % 2] != want { misplaced += 1 }
                }
            }
            #expect(misplaced == 0, "keys \(keys), dim \(dim)")
            guard Self.hasBF16 else { continue }
            var kFast = [UInt16](repeating: 0x5555, count: k.count), vFast = [UInt16](repeating: 0x5555, count: v.count)
            plm_bf16_pack_keys(x, Int64(stride), Int64(keys), Int64(dim), &kFast, Self.best)
            plm_bf16_pack_values(x, Int64(stride), Int64(keys), Int64(dim), &vFast, Self.best)
            #expect(kFast == k && vFast == v, "AVX-512 packs, keys \(keys), dim \(dim)")
        }
    }

    /// Rounded operands for the products: q [rows, dim], the packs of `keys` keys, p [rows, ldp].
    struct Operands {
        let rows: Int, keys: Int, dim: Int, ldp: Int
        let q: [UInt16], k: [UInt16], v: [UInt16], p: [UInt16]
        let kFloats: [Float], vFloats: [Float]

        init(rows: Int, keys: Int, dim: Int) {
            (self.rows, self.keys, self.dim) = (rows, keys, dim)
            ldp = (keys + 1) / 2 * 2
            let qf = AttentionTests.values(rows * dim, seed: 11), pf = AttentionTests.values(rows * keys, seed: 13).map { abs($0) / 3 }
            kFloats = AttentionTests.values(keys * dim, seed: 17)
            vFloats = AttentionTests.values(keys * dim, seed: 19)
            var q = [UInt16](repeating: 0, count: rows * dim), p = [UInt16](repeating: 0, count: rows * ldp)
            var k = [UInt16](repeating: 0, count: Int(plm_bf16_keys_count(Int64(keys), Int64(dim))))
            var v = [UInt16](repeating: 0, count: Int(plm_bf16_values_count(Int64(keys), Int64(dim))))
            plm_bf16_round_rows_ref(qf, Int64(dim), Int64(rows), Int64(dim), &q, Int64(dim))
            plm_bf16_round_rows_ref(pf, Int64(keys), Int64(rows), Int64(keys), &p, Int64(ldp))
            plm_bf16_pack_keys_ref(kFloats, Int64(dim), Int64(keys), Int64(dim), &k)
            plm_bf16_pack_values_ref(vFloats, Int64(dim), Int64(keys), Int64(dim), &v)
            (self.q, self.k, self.v, self.p) = (q, k, v, p)
        }

        /// Σ over dims of q·key in doubles from the rounded values, and Σ |terms| for the bound.
        func score(_ i: Int, _ j: Int) -> (Double, Double) {
            var s = 0.0, mag = 0.0
            for c in 0..<dim {
                let t = Double(value(q[i * dim + c])) * Double(value(bits(kFloats[j * dim + c])))
                s += t; mag += abs(t)
            }
            return (s, mag)
        }

        func output(_ i: Int, _ c: Int, from k0: Int, count nk: Int) -> (Double, Double) {
            var s = 0.0, mag = 0.0
            for j in k0..<(k0 + nk) {
                let t = Double(value(p[i * ldp + j])) * Double(value(bits(vFloats[j * dim + c])))
                s += t; mag += abs(t)
            }
            return (s, mag)
        }
    }

    @Test(arguments: [Int32(PLM_IMPL_PORTABLE), Int32(PLM_IMPL_AVX512)])
    func productsEqualTheirDefinition(impl: Int32) {
        guard impl == Int32(PLM_IMPL_PORTABLE) || Self.hasBF16 else { return }
        let scale: Float = 0.125
        for (rows, keys, dim) in [(1, 1, 16), (5, 17, 64), (9, 100, 64), (4, 48, 96), (3, 33, 128)] {
            let o = Operands(rows: rows, keys: keys, dim: dim)
            // Key ranges starting at a multiple of 16 (scores) and an even key (P·V), odd counts too.
            for (k0, nk) in [(0, keys), (keys > 16 ? 16 : 0, keys > 16 ? keys - 16 : keys), (0, min(keys, 31))] {
                var s = [Float](repeating: .nan, count: rows * nk)
                plm_bf16_scores(o.q, Int64(rows), o.k, Int64(k0), Int64(nk), Int64(dim), scale, &s, Int64(nk), impl)
                var worst = 0.0
                for i in 0..<rows {
                    for j in 0..<nk {
                        let (want, mag) = o.score(i, k0 + j)
                        worst = max(worst, abs(Double(s[i * nk + j]) - want * Double(scale)) / (mag * Double(scale) + 1e-30))
                    }
                }
                #expect(worst < 1e-5, "scores impl \(impl), \(rows)×\(keys)×\(dim) from \(k0): relative error \(worst)")
                // P·V adds to what acc holds (1 everywhere here); an odd nk reads p's zero pad.
                var p = o.p
                if nk % 2 == 1 { for i in 0..<rows { p[i * o.ldp + k0 + nk] = 0 } }
                var acc = [Float](repeating: 1, count: rows * (dim + 3))
                p.withUnsafeBufferPointer { pp in
                    plm_bf16_pv(pp.baseAddress! + k0, Int64(o.ldp), Int64(rows), o.v, Int64(k0), Int64(nk), Int64(dim), &acc, Int64(dim + 3), impl)
                }
                worst = 0
                for i in 0..<rows {
                    for c in 0..<dim {
                        let (want, mag) = o.output(i, c, from: k0, count: nk)
                        worst = max(worst, abs(Double(acc[i * (dim + 3) + c]) - 1 - want) / (mag + 1))
                    }
                    #expect(acc[i * (dim + 3) + dim] == 1, "P·V wrote past dim")
                }
                #expect(worst < 1e-5, "P·V impl \(impl), \(rows)×\(keys)×\(dim) from \(k0): relative error \(worst)")
            }
        }
    }

    /// bf16 attention over 700 keys (two key blocks) with causal and bidirectional masks, against
    /// softmax in doubles from the unrounded inputs: the error is bf16's, about 2⁻⁹ of the inputs,
    /// and about half with fp32 scores (`auto`; on a trained model far less, see EngineOptions).
    @Test(.enabled(if: hasBF16), arguments: [1, 2], [AttentionPrecision.bf16, .auto])
    func blockedAttentionInBF16IsCloseToExact(threads: Int, precision: AttentionPrecision) throws {
        let (heads, kvHeads, d) = (4, 2, 64)
        let options = EngineOptions(threads: threads, attention: precision)
        try options.validate()
        let attention = BlockedAttention(options: options)
        #expect(attention.products == (precision == .bf16 ? .bf16 : .bf16Values))
        let (worstBound, meanBound) = precision == .bf16 ? (0.03, 0.004) : (0.015, 0.002)
        for (queries, keys, causal) in [(300, 700, true), (40, 40, false), (16, 529, true)] {
            #expect(attention.usesBF16(queries: queries, headDim: d))
            let offset = causal ? keys - queries : keys
            let q = AttentionTests.values(queries * heads * d, seed: 3), k = AttentionTests.values(keys * kvHeads * d, seed: 5)
            let v = AttentionTests.values(keys * kvHeads * d, seed: 7)
            let out = AttentionTests.run(attention, q: q, k: k, v: v, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads,
                                         d: d, causalOffset: causal ? offset : nil)
            let expected = AttentionTests.reference(q: q, k: k, v: v, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads,
                                                    d: d, offset: offset)
            let errors = zip(out, expected).map { Double(abs($0 - $1)) }
            let worst = errors.max() ?? .nan, mean = errors.reduce(0, +) / Double(errors.count)
            // Scores reach about ±20 here (|q|, |k| ≤ 2.5, 64 dims, /8), so bf16's 2⁻⁹ of the inputs
            // moves a score by up to ~0.1; outputs lie within ±2.5. Measured on Zen 4: max |Δ|
            // 0.011–0.014, mean 0.0011–0.0020; bf16 values only (`auto`): max 0.004–0.007, mean
            // 0.0005–0.0009 (the fp32 path: below 1e-4).
            #expect(worst < worstBound && mean < meanBound, "\(precision) \(queries)×\(keys), causal \(causal): max |Δ| \(worst), mean \(mean)")
        }
    }

    @Test func optionsResolvePerSourceAndRefuseWhatTheCPUCannotRun() {
        let auto = EngineOptions(threads: 1)
        #expect(auto.attentionProducts(reference: true) == .f32)
        #expect(auto.attentionProducts(reference: false) == (Self.hasBF16 ? .bf16Values : .f32))
        #expect(EngineOptions(threads: 1, attention: .f32).attentionProducts(reference: false) == .f32)
        #expect(EngineOptions(threads: 1, attention: .bf16).attentionProducts(reference: true) == (Self.hasBF16 ? .bf16 : .f32))
        #expect(EngineOptions(threads: 1, kernel: .avx2, attention: .bf16).attentionProducts(reference: false) == .f32)
        #expect(throws: EngineError.self) { try EngineOptions(threads: 1, kernel: .portable, attention: .bf16).validate() }
        if Self.hasBF16 {
            #expect(throws: Never.self) { try EngineOptions(threads: 1, attention: .bf16).validate() }
        } else {
            #expect(throws: EngineError.self) { try EngineOptions(threads: 1, attention: .bf16).validate() }
        }
        // Short calls stay fp32 whatever the option.
        let attention = BlockedAttention(options: EngineOptions(threads: 1, attention: .bf16))
        #expect(!attention.usesBF16(queries: BlockedAttention.bf16MinimumQueries - 1, headDim: 64))
        #expect(!attention.usesBF16(queries: 64, headDim: 24))
    }
}

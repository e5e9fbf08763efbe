import Testing
import CPLMKernels
import PLMTestSupport
@testable import PLMModel

/// The fp32 attention scores over packed keys (attn_f32.c): the packing against its layout, the
/// plain C scores against a dot product in doubles, and the AVX-512 kernel against the plain C
/// one bit for bit (both sum one fused multiply-add per dimension in order).
@Suite struct F32ScoresTests {
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<n).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Float(Int(state % 20_001) - 10_000) / 3_000
        }
    }

    @Test(arguments: [16, 64, 96])
    func packedKeysFollowTheLayout(dim: Int) {
        let keys = 37, stride = dim + 5
        let k = Self.values(keys * stride, seed: UInt64(dim))
        var packed = [Float](repeating: .nan, count: Int(plm_f32_keys_count(Int64(keys), Int64(dim))))
        #expect(packed.count == 48 * dim)
        plm_f32_pack_keys(k, Int64(stride), Int64(keys), Int64(dim), &packed)
        for j in 0..<48 {
            for d in 0..<dim {
                let expected: Float = j < keys ? k[j * stride + d] : 0
                #expect(packed[(j / 16) * 16 * dim + d * 16 + j % 16] == expected, "key \(j) dim \(d)")
            }
        }
    }

    @Test(arguments: [16, 64, 96])
    func scoresEqualTheirDefinitionOnEveryPath(dim: Int) {
        let keys = 165, ldq = dim + 3, scale = 1 / Float(dim).squareRoot()
        let k = Self.values(keys * dim, seed: 7 + UInt64(dim))
        var packed = [Float](repeating: .nan, count: Int(plm_f32_keys_count(Int64(keys), Int64(dim))))
        plm_f32_pack_keys(k, Int64(dim), Int64(keys), Int64(dim), &packed)
        let q = Self.values(6 * ldq, seed: 99 + UInt64(dim))
        for rows in 1...6 {
            for (k0, nk) in [(0, 1), (0, 15), (16, 16), (16, 17), (48, 63), (0, 64), (32, 65), (64, 100), (0, 165)] {
                let lds = nk + 2
                var reference = [Float](repeating: .nan, count: rows * lds), fast = reference
                plm_f32_scores_ref(q, Int64(ldq), Int64(rows), packed, Int64(k0), Int64(nk), Int64(dim), scale, &reference, Int64(lds))
                plm_f32_scores(q, Int64(ldq), Int64(rows), packed, Int64(k0), Int64(nk), Int64(dim), scale, &fast, Int64(lds),
                               CPU.hasAVX512 ? Int32(PLM_IMPL_AVX512) : Int32(PLM_IMPL_PORTABLE))
                for i in 0..<rows {
                    for j in 0..<nk {
                        var exact = 0.0, norm = 0.0
                        for d in 0..<dim {
                            let p = Double(q[i * ldq + d]) * Double(k[(k0 + j) * dim + d])
                            exact += p; norm += abs(p)
                        }
                        exact *= Double(scale); norm *= Double(scale)
                        let r = reference[i * lds + j]
                        #expect(abs(Double(r) - exact) <= 1e-6 * norm + 1e-7, "dim \(dim) rows \(rows) k0 \(k0) nk \(nk) (\(i), \(j))")
                        #expect(fast[i * lds + j].bitPattern == r.bitPattern, "dim \(dim) rows \(rows) k0 \(k0) nk \(nk) (\(i), \(j))")
                    }
                    // Nothing past nk is written.
                    #expect(reference[i * lds + nk].isNaN && fast[i * lds + nk].isNaN)
                }
            }
        }
    }
}

import Foundation
import Testing
import CPLMKernels
import PLMTestSupport
@testable import PLMModel

/// The KV cache (kvcache.c): f16 rounding against hand-worked bits and Swift's Float16, the
/// layout's store and widen on every path, a decoding step's attention on every path against a
/// softmax in doubles, and a model's decode against its prefill with either element kind.
@Suite struct KVCacheTests {
    static let impls: [Int32] = [Int32(PLM_IMPL_PORTABLE), Int32(PLM_IMPL_AVX2), Int32(PLM_IMPL_AVX512)].filter { $0 <= plm_best_impl() }
    static let kinds: [Int32] = [Int32(PLM_KV_F32), Int32(PLM_KV_F16)]

    @Test func f16RoundingIsNearestEven() {
        #expect(plm_f16_round(1) == 0x3C00)
        #expect(plm_f16_round(-2) == 0xC000)
        #expect(plm_f16_round(-0.0) == 0x8000)
        #expect(plm_f16_round(1 + 0x1p-11) == 0x3C00)        // tie, even stays
        #expect(plm_f16_round(1 + 3 * 0x1p-11) == 0x3C02)    // tie, odd rounds up
        #expect(plm_f16_round(65504) == 0x7BFF)
        #expect(plm_f16_round(65519.996) == 0x7BFF)          // below the tie at 65520
        #expect(plm_f16_round(65520) == 0x7C00)              // the tie rounds to odd's neighbour: +inf
        #expect(plm_f16_round(-1e30) == 0xFC00)
        #expect(plm_f16_round(0x1p-24) == 0x0001)            // smallest subnormal
        #expect(plm_f16_round(0x1p-25) == 0x0000)            // tie between 0 and it: even
        #expect(plm_f16_round(3 * 0x1p-25) == 0x0002)        // tie, odd rounds up
        #expect(plm_f16_round(0x1p-14 - 0x1p-26) == 0x0400)  // rounds up into the smallest normal
        #expect(plm_f16_round(.nan) & 0x7E00 == 0x7E00)
        #expect(plm_f16_value(0x7BFF) == 65504)
        #expect(plm_f16_value(0x0001) == 0x1p-24)
    }

    @Test func f16RoundingMatchesSwiftFloat16() {
        var state: UInt64 = 7
        for i in 0..<200_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let bits = UInt32(truncatingIfNeeded: state >> 32)
            // Every exponent f16 can reach (and beyond it) half the time, any float otherwise.
            let x = i % 2 == 0 ? Float(bitPattern: bits) : Float(bitPattern: (bits & 0x807F_FFFF) | ((100 + bits % 50) << 23))
            if x.isNaN { continue }
            #expect(plm_f16_round(x) == Float16(x).bitPattern, "\(x)")
        }
    }

    @Test func autoIsF16ForAPLMFileAndF32ForTheReference() {
        #expect(EngineOptions().kvCacheKind(reference: false) == PLM_KV_F16)
        #expect(EngineOptions().kvCacheKind(reference: true) == PLM_KV_F32)
        #expect(EngineOptions(kvCache: .f32).kvCacheKind(reference: false) == PLM_KV_F32)
        #expect(EngineOptions(kvCache: .f16).kvCacheKind(reference: true) == PLM_KV_F16)
    }

    static func layout(_ kind: Int32, heads: Int, dim: Int) -> plm_kv_layout {
        plm_kv_layout(kind: kind, kv_heads: Int32(heads), head_dim: Int32(dim))
    }

    /// Element i of a layer's keys (true) or values, as fp32.
    static func element(_ buffer: [UInt8], _ kind: Int32, _ i: Int) -> Float {
        buffer.withUnsafeBytes { b in
            kind == PLM_KV_F16 ? plm_f16_value(b.load(fromByteOffset: 2 * i, as: UInt16.self)) : b.load(fromByteOffset: 4 * i, as: Float.self)
        }
    }

    @Test func storeWritesTheLayoutAndWidenReadsItBackOnEveryPath() {
        let heads = 3, dim = 16, width = heads * dim, positions = 37
        for kind in Self.kinds {
            var l = Self.layout(kind, heads: heads, dim: dim)
            let bytes = Int(plm_kv_elements(&l, Int64(positions))) * (kind == PLM_KV_F16 ? 2 : 4)
            let k = AttentionTests.values(positions * width, seed: 3), v = AttentionTests.values(positions * width, seed: 5)
            var reference: (keys: [UInt8], values: [UInt8])?
            for impl in Self.impls {
                var keys = [UInt8](repeating: 0, count: bytes), values = keys
                // Two stores, the second starting inside a key block and crossing two.
                plm_kv_store(&l, &keys, &values, 0, 5, k, Int64(width), v, Int64(width), impl)
                k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in
                    plm_kv_store(&l, &keys, &values, 5, Int64(positions - 5), kb.baseAddress! + 5 * width, Int64(width),
                                 vb.baseAddress! + 5 * width, Int64(width), impl)
                } }
                for p in [0, 4, 5, 15, 16, 36] {
                    for h in 0..<heads {
                        for d in [0, 7, 15] {
                            let keyAt = ((p / 16 * heads + h) * dim + d) * 16 + p % 16, valueAt = (p * heads + h) * dim + d
                            let x = k[p * width + h * dim + d], y = v[p * width + h * dim + d]
                            let rounded = { (x: Float) in kind == PLM_KV_F16 ? plm_f16_value(plm_f16_round(x)) : x }
                            #expect(Self.element(keys, kind, keyAt) == rounded(x), "kind \(kind) impl \(impl) key p \(p) h \(h) d \(d)")
                            #expect(Self.element(values, kind, valueAt) == rounded(y), "kind \(kind) impl \(impl) value p \(p)")
                        }
                    }
                }
                if let reference {
                    #expect(keys == reference.keys && values == reference.values, "kind \(kind) impl \(impl): other bytes than portable")
                } else {
                    reference = (keys, values)
                }
                var wk = [Float](repeating: .nan, count: positions * width), wv = wk
                plm_kv_widen(&l, keys, values, Int64(positions), &wk, &wv, impl)
                #expect(wk == k.map { kind == PLM_KV_F16 ? plm_f16_value(plm_f16_round($0)) : $0 }, "kind \(kind) impl \(impl) widened keys")
                #expect(wv == v.map { kind == PLM_KV_F16 ? plm_f16_value(plm_f16_round($0)) : $0 }, "kind \(kind) impl \(impl) widened values")
            }
        }
    }

    @Test func decodingAttentionMatchesASoftmaxInDoublesOnEveryPath() {
        for (dim, heads) in [(64, 2), (80, 1), (128, 1), (8, 2)] {
            for count in [1, 15, 16, 17, 100, 611] {
                for group in [1, 3, 4, 6] {
                    for kind in Self.kinds {
                        var l = Self.layout(kind, heads: heads, dim: dim)
                        let width = heads * dim
                        let bytes = Int(plm_kv_elements(&l, Int64(count))) * (kind == PLM_KV_F16 ? 2 : 4)
                        var keys = [UInt8](repeating: 0, count: bytes), values = keys
                        let k = AttentionTests.values(count * width, seed: UInt64(count)).map { $0 * 0.7 }
                        let v = AttentionTests.values(count * width, seed: UInt64(count + 1))
                        plm_kv_store_ref(&l, &keys, &values, 0, Int64(count), k, Int64(width), v, Int64(width))
                        var wk = [Float](repeating: 0, count: count * width), wv = wk
                        plm_kv_widen_ref(&l, keys, values, Int64(count), &wk, &wv)
                        let q = AttentionTests.values(group * dim, seed: UInt64(group * 31 + dim))
                        let head = heads - 1, scale = 1 / Float(dim).squareRoot()
                        // The definition over the cache's (rounded) elements, in doubles.
                        var expected = [Double](repeating: 0, count: group * dim)
                        for i in 0..<group {
                            let s = (0..<count).map { j in
                                Double(scale) * (0..<dim).reduce(0.0) { $0 + Double(q[i * dim + $1]) * Double(wk[j * width + head * dim + $1]) }
                            }
                            let m = s.max() ?? 0, e = s.map { exp($0 - m) }, total = e.reduce(0, +)
                            for d in 0..<dim {
                                expected[i * dim + d] = (0..<count).reduce(0.0) { $0 + e[$1] * Double(wv[$1 * width + head * dim + d]) } / total
                            }
                        }
                        for impl in Self.impls {
                            var scratch = [Float](repeating: .nan, count: Int(plm_kv_attend_scratch(Int64(group), Int64(count))))
                            var out = [Float](repeating: .nan, count: group * dim)
                            plm_kv_attend(&l, keys, values, Int64(count), Int64(head), q, Int64(group), scale, &scratch, &out, impl)
                            let worst = zip(out, expected).map { abs(Double($0) - $1) }.max() ?? .nan
                            #expect(worst < 2e-5, "dim \(dim) count \(count) group \(group) kind \(kind) impl \(impl): \(worst)")
                        }
                    }
                }
            }
        }
    }

    /// Decode steps after a prefill equal a prefill of every token (the same rounding of the new
    /// positions both ways), and f16 elements stay close to fp32 ones.
    @Test func decodeAgreesWithPrefillForEitherElementKind() throws {
        let folder = Fixtures.model("tiny-bf16-gqa-llama3")
        var last: [KVCachePrecision: [Float]] = [:]
        for kv in [KVCachePrecision.f32, .f16] {
            let model = try PerceptionLM.load(folder, options: EngineOptions(threads: 2, kvCache: kv))
            let d = model.decoder
            let ids = [5, 17, 3, 99, 42, 8, 23, 61, 4, 77, 12, 30, 2, 9, 55, 14, 70, 21]
            let full = d.forward(d.embed(ids), rows: ids.count, cache: d.newCache())
            let expectedLogits = d.logits(full[((ids.count - 1) * d.config.hiddenSize)...], rows: 1)
            let cache = d.newCache(reserve: ids.count)
            _ = d.forward(d.embed(Array(ids.prefix(10))), rows: 10, cache: cache)
            let state = DecodeState(config: d.config)
            for id in ids.dropFirst(10) { d.step(token: id, cache: cache, state: state) }
            let stepped = Array(UnsafeBufferPointer(start: state.logits, count: d.config.vocabSize))
            let worst = zip(stepped, expectedLogits).map { abs($0 - $1) }.max() ?? .nan
            #expect(worst < 1e-3, "\(kv): decode vs prefill \(worst)")
            last[kv] = stepped
        }
        if let a = last[.f32], let b = last[.f16] {
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .nan
            #expect(worst > 0 && worst < 0.05, "f16 vs f32 cache: \(worst)")
        }
    }
}

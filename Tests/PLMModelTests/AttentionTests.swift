import Foundation
import Testing
@testable import PLMModel

/// The blocked attention against a plain softmax(q·kᵀ/√d)·v in doubles, for the decoding step
/// (one query, whose query heads share key/value heads and run as rows of one product) and for
/// blocks of queries, on thread counts whose head ranges split a group.
@Suite struct AttentionTests {
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 400
        }
    }

    /// Query i sees keys j ≤ i + offset; the result row-major, queries × (heads · d).
    static func reference(q: [Float], k: [Float], v: [Float], queries: Int, keys: Int, heads: Int, kvHeads: Int, d: Int,
                          offset: Int) -> [Float] {
        var out = [Float](repeating: 0, count: queries * heads * d)
        let group = heads / kvHeads
        for i in 0..<queries {
            for h in 0..<heads {
                let kvh = h / group, visible = min(keys, i + offset + 1)
                var scores = [Double](repeating: 0, count: visible)
                for j in 0..<visible {
                    var s = 0.0
                    for c in 0..<d { s += Double(q[i * heads * d + h * d + c]) * Double(k[j * kvHeads * d + kvh * d + c]) }
                    scores[j] = s / Double(d).squareRoot()
                }
                let m = scores.max() ?? 0
                let e = scores.map { exp($0 - m) }, total = e.reduce(0, +)
                for c in 0..<d {
                    var acc = 0.0
                    for j in 0..<visible { acc += e[j] * Double(v[j * kvHeads * d + kvh * d + c]) }
                    out[i * heads * d + h * d + c] = Float(acc / total)
                }
            }
        }
        return out
    }

    /// attention.run over packed rows (q: queries × heads·d, k and v: keys × kvHeads·d).
    static func run(_ attention: BlockedAttention, q: [Float], k: [Float], v: [Float], queries: Int, keys: Int, heads: Int,
                    kvHeads: Int, d: Int, causalOffset: Int?) -> [Float] {
        var out = [Float](repeating: .nan, count: queries * heads * d)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        attention.run(q: qp.baseAddress!, qStride: heads * d, k: kp.baseAddress!, kStride: kvHeads * d,
                                      v: vp.baseAddress!, vStride: kvHeads * d, out: op.baseAddress!, outStride: heads * d,
                                      queries: queries, keys: keys, heads: heads, kvHeads: kvHeads, headDim: d, causalOffset: causalOffset)
                    }
                }
            }
        }
        return out
    }

    @Test(arguments: [1, 2, 4])
    func decodingAndBlocksMatchThePlainSoftmax(threads: Int) {
        let (heads, kvHeads, d) = (6, 2, 16)
        // 700 keys: more than one key block (512), so the running maximum is corrected too.
        for (queries, keys) in [(1, 700), (1, 1), (5, 700)] {
            let offset = keys - queries
            let q = Self.values(queries * heads * d, seed: 3), k = Self.values(keys * kvHeads * d, seed: 5)
            let v = Self.values(keys * kvHeads * d, seed: 7)
            let attention = BlockedAttention(options: EngineOptions(threads: threads))
            let out = Self.run(attention, q: q, k: k, v: v, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads, d: d,
                               causalOffset: offset)
            let expected = Self.reference(q: q, k: k, v: v, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads, d: d, offset: offset)
            let worst = zip(out, expected).map { abs($0 - $1) }.max() ?? .nan
            #expect(worst < 1e-4, "threads \(threads), \(queries) queries × \(keys) keys: max |Δ| \(worst)")
        }
    }
}

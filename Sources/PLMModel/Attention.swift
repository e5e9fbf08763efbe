import CPLMKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Scaled dot-product attention in blocks with an online softmax, so memory grows linearly with
/// the sequence: a 9.5k-token image prompt never materialises a 9.5k × 9.5k score matrix.
///
/// For query block Qb and key block Kb: S = Qb·Kbᵀ·scale; per row, the running maximum m and sum
/// l are updated (l ← l·e^(m_old−m) + Σ e^(S−m)) and the output accumulator is rescaled by the
/// same factor before adding e^(S−m)·Vb. The result is acc / l, equal to softmax(QKᵀ)V.
struct BlockedAttention: Sendable {
    var queryBlock = 128
    var keyBlock = 512

    /// - Parameters:
    ///   - q: queries × (heads · headDim) at row stride `qStride`.
    ///   - k, v: keys × (kvHeads · headDim) at row strides `kStride`, `vStride`.
    ///   - causalOffset: nil for bidirectional attention; otherwise query i sees keys j ≤ i + offset.
    ///   - out: queries × (heads · headDim) at row stride `outStride`.
    func run(q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, kStride: Int,
             v: UnsafePointer<Float>, vStride: Int, out: UnsafeMutablePointer<Float>, outStride: Int,
             queries: Int, keys: Int, heads: Int, kvHeads: Int, headDim: Int, causalOffset: Int?) {
        // Heads run in parallel on plmq's own workers, each calling a single-threaded sgemm:
        // OpenBLAS's own pool would otherwise spin in sched_yield next to the quantized kernels
        // (measured: a quarter of a 1B forward pass).
        let workers = max(1, min(KernelSettings.threads, heads))
        let previous = BLAS.threads
        if workers > 1 { BLAS.setThreads(1) }
        defer { if workers > 1 { BLAS.setThreads(previous) } }
        nonisolated(unsafe) let (qp, kp, vp, op) = (q, k, v, out)
        let body: @Sendable (Int) -> Void = { worker in
            let first = worker * heads / workers, last = (worker + 1) * heads / workers
            self.runHeads(first..<last, q: qp, qStride: qStride, k: kp, kStride: kStride, v: vp, vStride: vStride,
                          out: op, outStride: outStride, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads,
                          headDim: headDim, causalOffset: causalOffset)
        }
        if workers == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: body) }
    }

    private func runHeads(_ range: Range<Int>, q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, kStride: Int,
                          v: UnsafePointer<Float>, vStride: Int, out: UnsafeMutablePointer<Float>, outStride: Int,
                          queries: Int, keys: Int, heads: Int, kvHeads: Int, headDim: Int, causalOffset: Int?) {
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        let impl = KernelSettings.implementation.code
        let bq = min(queryBlock, queries), bk = min(keyBlock, keys)
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: bq * headDim)
        let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: bq)
        let rowSum = UnsafeMutablePointer<Float>.allocate(capacity: bq)
        defer { scores.deallocate(); acc.deallocate(); rowMax.deallocate(); rowSum.deallocate() }

        for h in range {
            let kvh = h / group
            let qh = q + h * headDim, kh = k + kvh * headDim, vh = v + kvh * headDim
            var q0 = 0
            while q0 < queries {
                let nq = min(bq, queries - q0)
                acc.initialize(repeating: 0, count: nq * headDim)
                rowMax.initialize(repeating: -.infinity, count: nq)
                rowSum.initialize(repeating: 0, count: nq)
                // Keys beyond the last query's horizon are masked for every row of the block.
                let keyLimit = causalOffset.map { min(keys, q0 + nq - 1 + $0 + 1) } ?? keys
                var k0 = 0
                while k0 < keyLimit {
                    let nk = min(bk, keyLimit - k0)
                    BLAS.gemmABt(m: nq, n: nk, k: headDim, alpha: scale, a: qh + q0 * qStride, lda: qStride,
                                 b: kh + k0 * kStride, ldb: kStride, c: scores, ldc: nk)
                    for i in 0..<nq {
                        let row = scores + i * nk
                        // Causal: key j visible to query q0+i when j ≤ q0+i+offset.
                        let visible = causalOffset.map { max(0, min(nk, q0 + i + $0 + 1 - k0)) } ?? nk
                        var m = rowMax[i]
                        if visible > 0 { m = max(m, plm_max(row, Int64(visible))) }
                        let correction = m == -.infinity ? 0 : expf(rowMax[i] - m)
                        let sum = visible > 0 ? plm_exp_shift_sum(row, Int64(visible), m, impl) : 0
                        for j in visible..<nk { row[j] = 0 }
                        rowSum[i] = rowSum[i] * correction + sum
                        rowMax[i] = m
                        if correction != 1 {
                            let a = acc + i * headDim
                            for c in 0..<headDim { a[c] *= correction }
                        }
                    }
                    BLAS.gemmAB(m: nq, n: headDim, k: nk, a: scores, lda: nk, b: vh + k0 * vStride, ldb: vStride,
                                beta: 1, c: acc, ldc: headDim)
                    k0 += nk
                }
                for i in 0..<nq {
                    let o = out + (q0 + i) * outStride + h * headDim
                    let inv = 1 / rowSum[i]
                    for c in 0..<headDim { o[c] = acc[i * headDim + c] * inv }
                }
                q0 += nq
            }
        }
    }
}

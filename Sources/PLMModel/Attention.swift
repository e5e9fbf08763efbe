import CPLMKernels
import Dispatch
import Synchronization
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
final class BlockedAttention: @unchecked Sendable {
    // The scratch is reused by every call (one per worker), so a decode step allocates nothing;
    // calls must not overlap (a model instance runs one pass at a time).
    let queryBlock = 128
    let keyBlock = 512
    let threads: Int
    let impl: Int32
    fileprivate var scratch: [UnsafeMutablePointer<Float>] = []
    private var scratchFloats = 0
    /// Several threads may share a model; they take turns on the scratch.
    private let lock = Mutex(())

    /// Which products prefill and vision calls run in bf16 (EngineOptions.attention), fixed at init.
    let products: AttentionProducts
    /// Packed bf16 operands, one per worker (only when `bf16`).
    fileprivate var packs: [BF16Operands] = []

    /// From this many queries per head on, a call takes the bf16 products: every key and value of
    /// a head is rounded and packed once per call, which costs about what a few queries' products
    /// cost, and a decoding step (one query) is bound by reading the cache, not by arithmetic.
    static let bf16MinimumQueries = 16

    /// `reference`: the source is the fp32 reference engine (`auto` keeps it fp32).
    init(options: EngineOptions, reference: Bool = false) {
        BLAS.useSingleThreadedKernels()
        threads = max(1, options.threads)
        impl = options.implCode
        products = options.attentionProducts(reference: reference)
    }

    deinit { scratch.forEach { $0.deallocate() } }

    /// Whether a call of this shape runs bf16 products (`products` says which).
    func usesBF16(queries: Int, headDim: Int) -> Bool {
        products != .f32 && queries >= Self.bf16MinimumQueries && headDim % 16 == 0 && headDim > 0
    }

    /// Per-worker buffers of at least `floats` floats for `workers` workers.
    private func reserve(workers: Int, floats: Int) {
        guard workers > scratch.count || floats > scratchFloats else { return }
        scratch.forEach { $0.deallocate() }
        scratchFloats = max(floats, scratchFloats)
        scratch = (0..<max(workers, scratch.count)).map { _ in .allocate(capacity: scratchFloats) }
    }

    /// - Parameters:
    ///   - q: queries × (heads · headDim) at row stride `qStride`.
    ///   - k, v: keys × (kvHeads · headDim) at row strides `kStride`, `vStride`.
    ///   - causalOffset: nil for bidirectional attention; otherwise query i sees keys j ≤ i + offset.
    ///   - out: queries × (heads · headDim) at row stride `outStride`.
    func run(q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, kStride: Int,
             v: UnsafePointer<Float>, vStride: Int, out: UnsafeMutablePointer<Float>, outStride: Int,
             queries: Int, keys: Int, heads: Int, kvHeads: Int, headDim: Int, causalOffset: Int?) {
        lock.withLock { _ in
            runLocked(q: q, qStride: qStride, k: k, kStride: kStride, v: v, vStride: vStride, out: out, outStride: outStride,
                      queries: queries, keys: keys, heads: heads, kvHeads: kvHeads, headDim: headDim, causalOffset: causalOffset)
        }
    }

    private func runLocked(q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, kStride: Int,
                           v: UnsafePointer<Float>, vStride: Int, out: UnsafeMutablePointer<Float>, outStride: Int,
                           queries: Int, keys: Int, heads: Int, kvHeads: Int, headDim: Int, causalOffset: Int?) {
        // Heads run in parallel on plmq's own workers, each calling a single-threaded sgemm:
        // OpenBLAS's own pool would otherwise spin in sched_yield next to the quantized kernels
        // (measured: a quarter of a 1B forward pass).
        let workers = max(1, min(threads, heads))
        let bq = Self.blockRows(queries: queries, group: heads / max(kvHeads, 1), queryBlock: queryBlock)
        // Sized for a full key block (not the current key count, which grows by one per decode step).
        reserve(workers: workers, floats: bq * keyBlock + bq * headDim + 2 * bq)
        let buffers = scratch
        let bf16Call = usesBF16(queries: queries, headDim: headDim)
        if bf16Call {
            while packs.count < workers { packs.append(BF16Operands()) }
            for p in packs.prefix(workers) {
                p.reserve(keys: keys, headDim: headDim, queryRows: bq, keyBlock: keyBlock, scores: products == .bf16)
            }
        }
        if workers == 1 {
            // Called directly: building the worker closure would allocate its context every call.
            runHeads(0..<heads, q: q, qStride: qStride, k: k, kStride: kStride, v: v, vStride: vStride, out: out,
                     outStride: outStride, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads, headDim: headDim,
                     causalOffset: causalOffset, scratch: buffers[0], packed: bf16Call ? packs[0] : nil)
            return
        }
        var job = HeadsJob(attention: Unmanaged.passUnretained(self), q: q, qStride: qStride, k: k, kStride: kStride, v: v, vStride: vStride,
                           out: out, outStride: outStride, queries: queries, keys: keys, heads: heads, kvHeads: kvHeads,
                           headDim: headDim, causalOffset: causalOffset, workers: workers, bf16: bf16Call)
        WorkerPool.run(workers, &job) { context, worker in
            guard let j = context?.assumingMemoryBound(to: HeadsJob.self).pointee else { return }
            let attention = j.attention.takeUnretainedValue()
            let first = Int(worker) * j.heads / j.workers, last = (Int(worker) + 1) * j.heads / j.workers
            attention.runHeads(first..<last, q: j.q, qStride: j.qStride, k: j.k, kStride: j.kStride, v: j.v, vStride: j.vStride,
                               out: j.out, outStride: j.outStride, queries: j.queries, keys: j.keys, heads: j.heads, kvHeads: j.kvHeads,
                               headDim: j.headDim, causalOffset: j.causalOffset, scratch: attention.scratch[Int(worker)],
                               packed: j.bf16 ? attention.packs[Int(worker)] : nil)
        }
    }

    /// One decoding query per head over the cache's positions 0 ..< keys of `layer`: q and out
    /// [heads · headDim]. Key/value heads split over the workers; each runs plm_kv_attend for
    /// the query heads that share it (they lie next to each other in q).
    func decode(q: UnsafePointer<Float>, cache: KVCache, layer: Int, keys: Int, out: UnsafeMutablePointer<Float>, heads: Int) {
        lock.withLock { _ in
            let kvHeads = Int(cache.layout.kv_heads), headDim = Int(cache.layout.head_dim)
            let group = heads / max(kvHeads, 1)
            let workers = max(1, min(threads, kvHeads))
            // Sized by the cache's capacity, which doubles, so steps into reserved room never allocate.
            reserve(workers: workers, floats: Int(plm_kv_attend_scratch(Int64(group), Int64(max(keys, cache.capacity)))))
            var job = DecodeJob(q: q, out: out, keys: cache.keys(layer), values: cache.values(layer), layout: cache.layout,
                                count: keys, kvHeads: kvHeads, group: group, scale: 1 / Float(headDim).squareRoot(),
                                workers: workers, impl: impl, scratch: scratch)
            if workers == 1 {
                job.run(worker: 0)
                return
            }
            WorkerPool.run(workers, &job) { context, worker in
                context?.assumingMemoryBound(to: DecodeJob.self).pointee.run(worker: Int(worker))
            }
        }
    }

    fileprivate func runHeads(_ range: Range<Int>, q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, kStride: Int,
                          v: UnsafePointer<Float>, vStride: Int, out: UnsafeMutablePointer<Float>, outStride: Int,
                          queries: Int, keys: Int, heads: Int, kvHeads: Int, headDim: Int, causalOffset: Int?,
                          scratch: UnsafeMutablePointer<Float>, packed: BF16Operands?) {
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        let bq = Self.blockRows(queries: queries, group: group, queryBlock: queryBlock), bk = min(keyBlock, keys)
        let scores = scratch, acc = scratch + bq * bk
        let rowMax = acc + bq * headDim, rowSum = rowMax + bq

        // One decoding query: the query heads that share a key/value head are the rows of one
        // product (their rows lie headDim apart), so each key and value block is read once per
        // group instead of once per head, and sgemm gets several rows. Otherwise a block of one
        // head's queries.
        // bf16 calls have many queries (bf16MinimumQueries), so never stack.
        let stacked = queries == 1 && group > 1
        var h = range.lowerBound
        var packedHead = -1
        let bf16Scores = packed != nil && products == .bf16
        while h < range.upperBound {
            let kvh = h / group
            let count = stacked ? min(range.upperBound, (kvh + 1) * group) - h : 1  // query heads in this pass
            let qh = q + h * headDim, kh = k + kvh * headDim, vh = v + kvh * headDim
            let lda = stacked ? headDim : qStride
            if let packed, kvh != packedHead {
                // Once per key/value head and worker: the query heads of a group follow each other.
                if bf16Scores {
                    plm_bf16_pack_keys(kh, Int64(kStride), Int64(keys), Int64(headDim), packed.keys, impl)
                } else {
                    plm_f32_pack_keys(kh, Int64(kStride), Int64(keys), Int64(headDim), packed.f32Keys)
                }
                plm_bf16_pack_values(vh, Int64(vStride), Int64(keys), Int64(headDim), packed.values, impl)
                packedHead = kvh
            }
            var q0 = 0
            while q0 < queries {
                let nq = min(bq, queries - q0), rows = stacked ? count : nq
                if let packed, bf16Scores {
                    plm_bf16_round_rows(qh + q0 * qStride, Int64(qStride), Int64(nq), Int64(headDim), packed.queries, Int64(headDim), impl)
                }
                acc.initialize(repeating: 0, count: rows * headDim)
                rowMax.initialize(repeating: -.infinity, count: rows)
                rowSum.initialize(repeating: 0, count: rows)
                // Keys beyond the last query's horizon are masked for every row of the block.
                let keyLimit = causalOffset.map { min(keys, q0 + nq - 1 + $0 + 1) } ?? keys
                var k0 = 0
                while k0 < keyLimit {
                    let nk = min(bk, keyLimit - k0)
                    if let packed, bf16Scores {
                        // k0 is a multiple of keyBlock (or 0), so of the packed key blocks' 16.
                        plm_bf16_scores(packed.queries, Int64(rows), packed.keys, Int64(k0), Int64(nk), Int64(headDim), scale,
                                        scores, Int64(nk), impl)
                    } else if let packed {
                        // fp32 scores beside bf16 values: 512-bit FMAs over the packed keys, where
                        // Debian's OpenBLAS ran its 256-bit Haswell kernels on a Zen 5 (CHANGELOG).
                        plm_f32_scores(qh + q0 * qStride, Int64(lda), Int64(rows), packed.f32Keys, Int64(k0), Int64(nk), Int64(headDim),
                                       scale, scores, Int64(nk), impl)
                    } else {
                        BLAS.gemmABt(m: rows, n: nk, k: headDim, alpha: scale, a: qh + q0 * qStride, lda: lda,
                                     b: kh + k0 * kStride, ldb: kStride, c: scores, ldc: nk)
                    }
                    for i in 0..<rows {
                        let row = scores + i * nk
                        // Causal: key j visible to query qi when j ≤ qi+offset (stacked rows: query 0).
                        let qi = stacked ? 0 : q0 + i
                        let visible = causalOffset.map { max(0, min(nk, qi + $0 + 1 - k0)) } ?? nk
                        var m = rowMax[i]
                        if visible > 0 { m = max(m, plm_max(row, Int64(visible), impl)) }
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
                    if let packed {
                        // Masked probabilities are zeros, and a zero pads an odd nk (the values' pairs).
                        let ldp = (nk + 1) / 2 * 2
                        plm_bf16_round_rows(scores, Int64(nk), Int64(rows), Int64(nk), packed.probabilities, Int64(ldp), impl)
                        plm_bf16_pv(packed.probabilities, Int64(ldp), Int64(rows), packed.values, Int64(k0), Int64(nk), Int64(headDim),
                                    acc, Int64(headDim), impl)
                    } else {
                        BLAS.gemmAB(m: rows, n: headDim, k: nk, a: scores, lda: nk, b: vh + k0 * vStride, ldb: vStride,
                                    beta: 1, c: acc, ldc: headDim)
                    }
                    k0 += nk
                }
                for i in 0..<rows {
                    let o = stacked ? out + (h + i) * headDim : out + (q0 + i) * outStride + h * headDim
                    let inv = 1 / rowSum[i]
                    for c in 0..<headDim { o[c] = acc[i * headDim + c] * inv }
                }
                q0 += nq
            }
            h += count
        }
    }

    /// Rows of one product: a block of queries, or the stacked query heads of a decoding step.
    static func blockRows(queries: Int, group: Int, queryBlock: Int) -> Int {
        max(min(queryBlock, queries), queries == 1 ? group : 1)
    }
}

/// One decoding step's attention for one layer, shared by the workers (each runs a contiguous
/// range of key/value heads with its own scratch).
fileprivate struct DecodeJob {
    let q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>
    let keys: UnsafeRawPointer, values: UnsafeRawPointer
    let layout: plm_kv_layout
    let count: Int, kvHeads: Int, group: Int
    let scale: Float
    let workers: Int
    let impl: Int32
    let scratch: [UnsafeMutablePointer<Float>]

    func run(worker: Int) {
        var l = layout
        let d = Int(layout.head_dim)
        for h in (worker * kvHeads / workers)..<((worker + 1) * kvHeads / workers) {
            plm_kv_attend(&l, keys, values, Int64(count), Int64(h), q + h * group * d, Int64(group), scale, scratch[worker],
                          out + h * group * d, impl)
        }
    }
}

/// One attention call's inputs, shared by the workers (each runs its own heads).
fileprivate struct HeadsJob {
    let attention: Unmanaged<BlockedAttention>
    let q: UnsafePointer<Float>, qStride: Int
    let k: UnsafePointer<Float>, kStride: Int
    let v: UnsafePointer<Float>, vStride: Int
    let out: UnsafeMutablePointer<Float>, outStride: Int
    let queries: Int, keys: Int, heads: Int, kvHeads: Int, headDim: Int
    let causalOffset: Int?
    let workers: Int
    let bf16: Bool
}

/// One worker's bf16 operands (layouts in plm_layout.h): a head's packed keys and values, a block
/// of rounded queries and one of probabilities. Grown as calls need, never shrunk.
fileprivate final class BF16Operands {
    private(set) var keys = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
    private(set) var values = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
    private(set) var queries = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
    private(set) var probabilities = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
    /// fp32 keys in blocks of 16 for the fp32 scores beside bf16 values (plm_f32_scores).
    private(set) var f32Keys = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var capacities = [1, 1, 1, 1]
    private var f32KeysCapacity = 1

    deinit { [keys, values, queries, probabilities].forEach { $0.deallocate() }; f32Keys.deallocate() }

    /// `scores`: the scores run in bf16 too, so keys and queries are packed in bf16 (else the
    /// keys in fp32 blocks, the values and the probabilities).
    func reserve(keys count: Int, headDim: Int, queryRows: Int, keyBlock: Int, scores: Bool) {
        let needs = [scores ? Int(plm_bf16_keys_count(Int64(count), Int64(headDim))) : 1,
                     Int(plm_bf16_values_count(Int64(count), Int64(headDim))),
                     scores ? queryRows * headDim : 1, queryRows * ((keyBlock + 1) / 2 * 2)]
        func grow(_ p: inout UnsafeMutablePointer<UInt16>, _ i: Int) {
            guard needs[i] > capacities[i] else { return }
            p.deallocate()
            p = .allocate(capacity: needs[i])
            capacities[i] = needs[i]
        }
        grow(&keys, 0); grow(&values, 1); grow(&queries, 2); grow(&probabilities, 3)
        let f32Needs = scores ? 1 : Int(plm_f32_keys_count(Int64(count), Int64(headDim)))
        if f32Needs > f32KeysCapacity {
            f32Keys.deallocate()
            f32Keys = .allocate(capacity: f32Needs)
            f32KeysCapacity = f32Needs
        }
    }
}

import CPLMKernels

/// y = x·Wᵀ + b with W exact bf16 in a mapped file, used in place. bf16 → fp32 is exact, so this
/// is the fp32 model's product (up to the order of the additions) without an fp32 copy of the
/// weights: a bf16 checkpoint's reference model needs about the file's size in memory, not twice
/// it (PLM-1B's forward pass widened 3 GB of bf16 into 6 GB of fp32; PLM-8B could not be widened
/// on a 24 GiB machine at all).
///
/// One or a few input rows (decode) run a bf16 GEMV that streams the weights once at memory
/// speed. More rows (prefill, vision tiles) are compute-bound: each worker widens blocks of
/// weight rows and multiplies them with sgemm (`BlockedDense`).
public struct BF16Linear: LinearMap, @unchecked Sendable {
    // `weights` points into memory that `owner` (a mapped file or part) keeps alive and never
    // changes; the struct only reads it.
    private let owner: any Sendable
    let weights: UnsafeRawPointer
    public let bias: [Float]?
    public let inFeatures: Int
    public let outFeatures: Int
    let threads: Int
    let impl: Int32

    /// From this many input rows on, widened blocks + sgemm beat one GEMV per row (the GEMV
    /// re-reads the weights for every row).
    static let gemmRows = 4
    /// Output rows per worker slice (a multiple of the vector width).
    static let sliceRows = 16

    /// `weights` holds outFeatures × inFeatures bf16 values, row-major, at any byte alignment.
    public init(weights: UnsafeRawPointer, owner: any Sendable, bias: [Float]?, outFeatures: Int, inFeatures: Int,
                options: EngineOptions) throws(EngineError) {
        guard outFeatures > 0, inFeatures > 0, !outFeatures.multipliedReportingOverflow(by: inFeatures).overflow,
              bias.map({ $0.count == outFeatures }) ?? true else {
            throw .invalidInput("a bf16 layer of \(outFeatures)×\(inFeatures) got \(bias?.count ?? 0) biases")
        }
        BLAS.useSingleThreadedKernels()
        self.owner = owner
        self.weights = weights
        self.bias = bias
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        threads = max(1, options.threads)
        impl = options.implCode
    }

    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let slices = (outFeatures + Self.sliceRows - 1) / Self.sliceRows
        // Under ~64K multiply-adds per worker the hand-off costs more than it saves.
        let workers = max(1, min(threads, slices, rows * outFeatures * inFeatures / (1 << 16)))
        var job = BF16Job(w: weights, x: x, y: y, rows: rows, n: outFeatures, k: inFeatures, slices: slices,
                          workers: workers, impl: impl)
        WorkerPool.run(workers, &job) { context, worker in
            guard let j = context?.assumingMemoryBound(to: BF16Job.self).pointee else { return }
            let first = Int(worker) * j.slices / j.workers * BF16Linear.sliceRows
            let last = min(j.n, (Int(worker) + 1) * j.slices / j.workers * BF16Linear.sliceRows)
            guard first < last else { return }
            if j.rows < BF16Linear.gemmRows {
                for m in 0..<j.rows {
                    plm_bf16_gemv(j.w, Int64(j.k), j.x + m * j.k, j.y + m * j.n + first, Int64(first), Int64(last), j.impl)
                }
                return
            }
            BlockedDense.multiply(j.x, rows: j.rows, columns: j.k, into: j.y, ldy: j.n, weightRows: first..<last) { r, count, out in
                plm_bf16_widen(j.w + 2 * r * j.k, Int64(count * j.k), out, j.impl)
            }
        }
        if let bias {
            for r in 0..<rows { for o in 0..<outFeatures { y[r * outFeatures + o] += bias[o] } }
        }
    }
}

/// One bf16 product's inputs, shared by the workers (each writes its own columns of y).
private struct BF16Job {
    let w: UnsafeRawPointer
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    let rows: Int, n: Int, k: Int, slices: Int, workers: Int
    let impl: Int32
}

/// A bf16 token-embedding table used in place; rows are widened on lookup.
struct BF16Embedding: TokenEmbedding, @unchecked Sendable {
    // Points into the same kept-alive memory as the tied head's `BF16Linear`.
    let head: BF16Linear
    func row(_ id: Int, into out: UnsafeMutablePointer<Float>) {
        plm_bf16_widen(head.weights + 2 * id * head.inFeatures, Int64(head.inFeatures), out, head.impl)
    }
}

import PLMCore
/// y = x · Wᵀ + b for a batch of rows. The model graph only sees this protocol, so the same graph
/// runs over fp32 weights or, later, quantized ones.
public protocol LinearMap: Sendable {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// x: rows × inFeatures, y: rows × outFeatures (overwritten).
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>)
}

/// An fp32 weight [out, in] with an optional bias, multiplied through OpenBLAS. The output
/// columns are split across plmq's workers, each running a single-threaded sgemm on its slice of
/// the weight rows: one threading model for the whole engine, and no process-wide OpenBLAS
/// thread count that two models could fight over.
public struct DenseLinear: LinearMap {
    public let weight: FloatBuffer
    public let bias: [Float]?
    public let inFeatures: Int
    public let outFeatures: Int
    let threads: Int
    /// Output columns per worker slice, a multiple of 16 so that slices stay vector-aligned.
    static let sliceAlignment = 16

    public init(weight: FloatBuffer, bias: [Float]?, outFeatures: Int, inFeatures: Int, threads: Int) throws(EngineError) {
        guard outFeatures > 0, inFeatures > 0, let count = Checked.multiply(outFeatures, inFeatures), weight.count == count, bias.map({ $0.count == outFeatures }) ?? true else {
            throw .invalidInput("a dense layer of \(outFeatures)×\(inFeatures) got \(weight.count) weights and \(bias?.count ?? 0) biases")
        }
        BLAS.useSingleThreadedKernels()
        self.weight = weight
        self.bias = bias
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.threads = max(1, threads)
    }

    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        // Small products are not worth waking the workers for (measured: under ~64 columns of
        // work per worker the hand-off costs more than it saves).
        let slices = (outFeatures + Self.sliceAlignment - 1) / Self.sliceAlignment
        let workers = max(1, min(threads, slices, rows * outFeatures * inFeatures / (1 << 16)))
        var job = DenseJob(x: x, y: y, w: weight.pointer, rows: rows, n: outFeatures, k: inFeatures, slices: slices, workers: workers)
        WorkerPool.run(workers, &job) { context, worker in
            guard let j = context?.assumingMemoryBound(to: DenseJob.self).pointee else { return }
            let first = Int(worker) * j.slices / j.workers * DenseLinear.sliceAlignment
            let last = min(j.n, (Int(worker) + 1) * j.slices / j.workers * DenseLinear.sliceAlignment)
            guard first < last else { return }
            BLAS.gemmABt(m: j.rows, n: last - first, k: j.k, a: j.x, lda: j.k, b: j.w + first * j.k, ldb: j.k,
                         c: j.y + first, ldc: j.n)
        }
        if let bias {
            for r in 0..<rows { for o in 0..<outFeatures { y[r * outFeatures + o] += bias[o] } }
        }
    }
}

/// One dense product's inputs, shared by the workers (each writes its own columns of y).
private struct DenseJob {
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    let w: UnsafePointer<Float>
    let rows: Int, n: Int, k: Int, slices: Int, workers: Int
}

extension LinearMap {
    /// Convenience for arrays: returns rows × outFeatures.
    func callAsFunction(_ x: [Float], rows: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outFeatures)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in apply(xp.baseAddress!, rows: rows, into: yp.baseAddress!) }
        }
        return y
    }
}

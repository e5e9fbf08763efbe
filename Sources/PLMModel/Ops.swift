import PLMCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPLMKernels
import PLMCheckpoint

/// Row-wise and element-wise operations of the forward pass, written as plain loops so anyone
/// can check them against the PyTorch definitions by eye.
enum Ops {
    /// LayerNorm over the last dimension: (x − mean) / sqrt(biased var + eps) · w + b.
    /// Statistics are accumulated in Double so the result matches PyTorch's fp32 kernel to rounding.
    static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, width: Int, weight: [Float], bias: [Float], eps: Float,
                          into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let row = x + r * width, out = y + r * width
            var sum = 0.0
            for i in 0..<width { sum += Double(row[i]) }
            let mean = sum / Double(width)
            var sq = 0.0
            for i in 0..<width { let d = Double(row[i]) - mean; sq += d * d }
            let inv = Float(1 / (sq / Double(width) + Double(eps)).squareRoot())
            let m = Float(mean)
            for i in 0..<width { out[i] = (row[i] - m) * inv * weight[i] + bias[i] }
        }
    }

    /// RMSNorm as transformers' LlamaRMSNorm: x · rsqrt(mean(x²) + eps), then · w.
    static func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, width: Int, weight: [Float], eps: Float,
                        into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let row = x + r * width, out = y + r * width
            var sq = 0.0
            for i in 0..<width { sq += Double(row[i]) * Double(row[i]) }
            let variance = Float(sq / Double(width))
            let inv = 1 / (variance + eps).squareRoot()
            for i in 0..<width { out[i] = weight[i] * (row[i] * inv) }
        }
    }

    @inline(__always) static func geluTanh(_ x: Float) -> Float {
        0.5 * x * (1 + tanhf(0.79788456080286536 * (x + 0.044715 * x * x * x)))
    }
    @inline(__always) static func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }

    static func activate(_ x: UnsafeMutablePointer<Float>, count: Int, _ act: Activation, impl: Int32) {
        switch act {
        case .geluErf: plm_gelu_erf(x, Int64(count), impl)
        case .geluTanh: for i in 0..<count { x[i] = geluTanh(x[i]) }
        case .silu: for i in 0..<count { x[i] = silu(x[i]) }
        case .relu: for i in 0..<count { x[i] = max(0, x[i]) }
        }
    }

    /// `activate` over `count` values split across `threads` workers (a vision tile's MLP hidden
    /// state is 1,025 × 4,096 values).
    static func activate(_ x: UnsafeMutablePointer<Float>, count: Int, _ act: Activation, impl: Int32, threads: Int) {
        var job = ElementwiseJob(x: x, up: nil, count: count, act: act, impl: impl, threads: threads)
        job.run()
    }

    /// gate = silu(gate) ⊙ up over `count` values, split across `threads` workers (the Llama MLP:
    /// a 512-token prefill has 4.2 M of them per layer, which a serial libm loop took 6 % of
    /// a two-thread prefill to do).
    static func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, impl: Int32, threads: Int) {
        var job = ElementwiseJob(x: gate, up: up, count: count, act: .silu, impl: impl, threads: threads)
        job.run()
    }

    /// x += s ⊙ y, row-wise with a per-column scale (layer-scale gammas); s nil means 1.
    static func addScaled(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, rows: Int, width: Int, scale: [Float]?) {
        if let scale {
            for r in 0..<rows { for i in 0..<width { x[r * width + i] += scale[i] * y[r * width + i] } }
        } else {
            for i in 0..<(rows * width) { x[i] += y[i] }
        }
    }

    /// Index of the largest value; the first one on ties, as torch.argmax.
    static func argmax(_ x: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<x.count where x[i] > x[best] { best = i }
        return best
    }
}

/// One parallel elementwise pass: `act` on x, or with `up` silu(x) ⊙ up. Contiguous ranges of
/// at least 16 Ki values per worker.
private struct ElementwiseJob {
    let x: UnsafeMutablePointer<Float>
    let up: UnsafePointer<Float>?
    let count: Int
    let act: Activation
    let impl: Int32
    let workers: Int

    init(x: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>?, count: Int, act: Activation, impl: Int32, threads: Int) {
        self.x = x; self.up = up; self.count = count; self.act = act; self.impl = impl
        workers = max(1, min(threads, count / 16384))
    }

    mutating func run() {
        WorkerPool.run(workers, &self) { context, worker in
            guard let j = context?.assumingMemoryBound(to: ElementwiseJob.self).pointee else { return }
            let first = Int(worker) * j.count / j.workers, last = (Int(worker) + 1) * j.count / j.workers
            if let up = j.up {
                plm_silu_mul(j.x + first, up + first, Int64(last - first), j.impl)
            } else {
                Ops.activate(j.x + first, count: last - first, j.act, impl: j.impl)
            }
        }
    }
}

/// y = x · Wᵀ + b for a batch of rows. The model graph only sees this protocol, so the same graph
/// runs over fp32 weights or, later, quantized ones.
public protocol LinearMap: Sendable {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// x: rows × inFeatures, y: rows × outFeatures (overwritten).
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>)
}

/// An fp32 weight [out, in] with an optional bias, multiplied through OpenBLAS.
public struct DenseLinear: LinearMap {
    public let weight: FloatBuffer
    public let bias: [Float]?
    public let inFeatures: Int
    public let outFeatures: Int

    public init(weight: FloatBuffer, bias: [Float]?, outFeatures: Int, inFeatures: Int) {
        precondition(weight.count == outFeatures * inFeatures && (bias == nil || bias!.count == outFeatures))
        self.weight = weight
        self.bias = bias
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    public init(weight: [Float], bias: [Float]?, outFeatures: Int, inFeatures: Int) {
        let buffer = FloatBuffer(count: weight.count)
        _ = buffer.buffer.initialize(from: weight)
        self.init(weight: buffer, bias: bias, outFeatures: outFeatures, inFeatures: inFeatures)
    }

    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        BLAS.setThreads(KernelSettings.threads)  // attention may have set OpenBLAS to one thread
        BLAS.gemmABt(m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures, b: weight.pointer, ldb: inFeatures,
                     c: y, ldc: outFeatures)
        if let bias {
            for r in 0..<rows { for o in 0..<outFeatures { y[r * outFeatures + o] += bias[o] } }
        }
    }
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

import PLMCore
import PLMCheckpoint

/// `PerceptionLMMultiModalProjector` + `PerceptionLMAdaptiveAvgPooling`: linear_1 → GELU(erf) →
/// linear_2 per token, then an r×r average over the token grid.
struct Projector: Sendable {
    let linear1: any LinearMap
    let linear2: any LinearMap
    let poolingRatio: Int
    let gridHeight: Int
    let gridWidth: Int
    let impl: Int32

    init(source: WeightSource, config c: PerceptionLMConfig) throws(EngineError) {
        let p = Component.projectorPrefix, h = c.text.hiddenSize
        linear1 = try source.linear(p + "linear_1", outFeatures: h, inFeatures: c.vision.embedDim, bias: true)
        linear2 = try source.linear(p + "linear_2", outFeatures: h, inFeatures: h, bias: true)
        poolingRatio = c.projectorPoolingRatio
        gridHeight = c.vision.gridHeight
        gridWidth = c.vision.gridWidth
        impl = source.options.implCode
    }

    /// patchFeatures: [gridHeight·gridWidth, Dv] in row-major grid order → [tokensPerTile, H].
    func forward(_ patchFeatures: [Float]) -> [Float] {
        let n = gridHeight * gridWidth, h = linear2.outFeatures
        var hidden = linear1(patchFeatures, rows: n)
        hidden.withUnsafeMutableBufferPointer { Ops.activate($0.baseAddress!, count: $0.count, .geluErf, impl: impl) }
        let y = linear2(hidden, rows: n)
        let r = poolingRatio
        guard r > 1 else { return y }
        let oh = gridHeight / r, ow = gridWidth / r
        var pooled = [Float](repeating: 0, count: oh * ow * h)
        let inv = 1 / Float(r * r)
        for i in 0..<oh {
            for j in 0..<ow {
                let out = (i * ow + j) * h
                for di in 0..<r {
                    for dj in 0..<r {
                        let src = ((i * r + di) * gridWidth + (j * r + dj)) * h
                        for c in 0..<h { pooled[out + c] += y[src + c] }
                    }
                }
                for c in 0..<h { pooled[out + c] *= inv }
            }
        }
        return pooled
    }
}

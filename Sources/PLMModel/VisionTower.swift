import PLMCore
import PLMCheckpoint

/// One Perception Encoder block (timm `EvaBlock` with `AttentionRope`): pre-norm attention with
/// fused qkv and 2D RoPE on patch tokens, then a GELU MLP; both branches layer-scaled.
struct VisionBlock: Sendable {
    let norm1Weight: [Float], norm1Bias: [Float]
    let qkv: any LinearMap          // "attn.qkv": rows [q; k; v], each head-major
    let proj: any LinearMap         // "attn.proj"
    let gamma1: [Float]?
    let norm2Weight: [Float], norm2Bias: [Float]
    let fc1: any LinearMap          // "mlp.fc1"
    let fc2: any LinearMap          // "mlp.fc2"
    let gamma2: [Float]?

    init(source: WeightSource, prefix p: String, config v: VisionConfig) throws(EngineError) {
        let d = v.embedDim
        norm1Weight = try source.floats(p + "norm1.weight", shape: [d])
        norm1Bias = try source.floats(p + "norm1.bias", shape: [d])
        qkv = try source.linear(p + "attn.qkv", outFeatures: 3 * d, inFeatures: d, bias: v.qkvBias)
        proj = try source.linear(p + "attn.proj", outFeatures: d, inFeatures: d, bias: true)
        gamma1 = v.layerScale ? try source.floats(p + "gamma_1", shape: [d]) : nil
        norm2Weight = try source.floats(p + "norm2.weight", shape: [d])
        norm2Bias = try source.floats(p + "norm2.bias", shape: [d])
        fc1 = try source.linear(p + "mlp.fc1", outFeatures: v.mlpHidden, inFeatures: d, bias: true)
        fc2 = try source.linear(p + "mlp.fc2", outFeatures: d, inFeatures: v.mlpHidden, bias: true)
        gamma2 = v.layerScale ? try source.floats(p + "gamma_2", shape: [d]) : nil
    }
}

/// The vision tower: patch embedding, CLS token, absolute positions, pre-norm, blocks, optional
/// final norm. Its output is the hidden state of the last block (timm `forward_features`).
public struct VisionTower: Sendable {
    public let config: VisionConfig
    let patchEmbed: any LinearMap   // conv weight [D, 3, p, p] viewed as [D, 3·p·p]
    let clsToken: [Float]?
    let posEmbed: [Float]?
    let normPre: (weight: [Float], bias: [Float])?
    let blocks: [VisionBlock]
    let normPost: (weight: [Float], bias: [Float])?
    let rope: VisionRope
    let attention: BlockedAttention
    let impl: Int32
    let threads: Int

    init(source: WeightSource, config v: VisionConfig) throws(EngineError) {
        let p = Component.visionPrefix, d = v.embedDim
        config = v
        // The conv as a linear map over flattened patches: quantized when the file stores it so.
        let convShape = [d, 3, v.patchSize, v.patchSize]
        if let stored = source.shape(of: p + "patch_embed.proj.weight"), stored != convShape {
            throw .tensorShape(source: source.sourceName, tensor: p + "patch_embed.proj.weight", expected: convShape, actual: stored)
        }
        patchEmbed = try source.linear(weight: p + "patch_embed.proj.weight",
                                       bias: v.usePreTransformerNorm ? nil : p + "patch_embed.proj.bias",
                                       outFeatures: d, inFeatures: v.patchValues)
        clsToken = v.classToken ? try source.floats(p + "cls_token", shape: [1, 1, d]) : nil
        posEmbed = v.useAbsPosEmb ? try source.floats(p + "pos_embed", shape: [1, v.tokenCount, d]) : nil
        normPre = v.usePreTransformerNorm
            ? (try source.floats(p + "norm_pre.weight", shape: [d]), try source.floats(p + "norm_pre.bias", shape: [d])) : nil
        var blocks: [VisionBlock] = []
        for i in 0..<v.depth { blocks.append(try VisionBlock(source: source, prefix: p + "blocks.\(i).", config: v)) }
        self.blocks = blocks
        normPost = v.usePostTransformerNorm
            ? (try source.floats(p + "norm.weight", shape: [d]), try source.floats(p + "norm.bias", shape: [d])) : nil
        rope = VisionRope(config: v)
        attention = BlockedAttention(options: source.options, reference: source.isReference)
        impl = source.options.implCode
        threads = source.options.threads
    }

    /// Runs one image tile [3, H, W] (normalised pixels) and returns [tokens, D].
    /// `onBlock(i, hidden)`: the hidden state [tokens, D] after block i (per-layer error taps).
    public func forward(tile: UnsafePointer<Float>, onBlock: ((Int, [Float]) -> Void)? = nil) -> [Float] {
        let v = config, d = v.embedDim, t = v.tokenCount, prefix = v.prefixTokens
        let ps = v.patchSize, h = v.imageHeight, w = v.imageWidth

        // Patches in (channel, y, x) order, row-major over the grid: the conv as one matmul.
        var patches = [Float](repeating: 0, count: v.patchCount * v.patchValues)
        for r in 0..<v.gridHeight {
            for c in 0..<v.gridWidth {
                let base = (r * v.gridWidth + c) * v.patchValues
                for ch in 0..<3 {
                    for dy in 0..<ps {
                        let src = tile + ch * h * w + (r * ps + dy) * w + c * ps
                        let dst = base + ch * ps * ps + dy * ps
                        for dx in 0..<ps { patches[dst + dx] = src[dx] }
                    }
                }
            }
        }
        var x = [Float](repeating: 0, count: t * d)
        let embedded = patchEmbed(patches, rows: v.patchCount)
        if let clsToken { for i in 0..<d { x[i] = clsToken[i] } }
        for i in 0..<(v.patchCount * d) { x[prefix * d + i] = embedded[i] }
        if let posEmbed { for i in 0..<(t * d) { x[i] += posEmbed[i] } }

        var normed = [Float](repeating: 0, count: t * d)
        if let normPre {
            x.withUnsafeBufferPointer { xp in
                normed.withUnsafeMutableBufferPointer { np in
                    Ops.layerNorm(xp.baseAddress!, rows: t, width: d, weight: normPre.weight, bias: normPre.bias, eps: Float(v.normEps), into: np.baseAddress!)
                }
            }
            swap(&x, &normed)
        }
        // The blocks' intermediate outputs, allocated once per tile: fresh arrays per block cost
        // a tile 6 % of its time in page faults and zeroing, outside the parallel kernels.
        var buffers = BlockBuffers(tokens: t, width: d, hidden: v.mlpHidden)
        for (i, block) in blocks.enumerated() {
            run(block, &x, scratch: &normed, buffers: &buffers)
            onBlock?(i, x)
        }
        if let normPost {
            x.withUnsafeBufferPointer { xp in
                normed.withUnsafeMutableBufferPointer { np in
                    Ops.layerNorm(xp.baseAddress!, rows: t, width: d, weight: normPost.weight, bias: normPost.bias, eps: Float(v.normEps), into: np.baseAddress!)
                }
            }
            swap(&x, &normed)
        }
        return x
    }

    /// One block's intermediate outputs: qkv [t, 3d], the attention or MLP output [t, d], the MLP
    /// hidden state [t, mlpHidden].
    struct BlockBuffers {
        var qkv: [Float], branch: [Float], hidden: [Float]
        init(tokens t: Int, width d: Int, hidden h: Int) {
            qkv = [Float](repeating: 0, count: t * 3 * d)
            branch = [Float](repeating: 0, count: t * d)
            hidden = [Float](repeating: 0, count: t * h)
        }
    }

    private func run(_ b: VisionBlock, _ x: inout [Float], scratch a: inout [Float], buffers f: inout BlockBuffers) {
        let v = config, d = v.embedDim, t = v.tokenCount, eps = Float(v.normEps)
        x.withUnsafeBufferPointer { xp in
            a.withUnsafeMutableBufferPointer { ap in
                Ops.layerNorm(xp.baseAddress!, rows: t, width: d, weight: b.norm1Weight, bias: b.norm1Bias, eps: eps, into: ap.baseAddress!)
            }
        }
        apply(b.qkv, a, rows: t, into: &f.qkv)
        f.qkv.withUnsafeMutableBufferPointer { qp in
            let base = qp.baseAddress!
            for tok in v.prefixTokens..<t {
                let row = base + tok * 3 * d
                rope.rotate(row, heads: v.numHeads, patch: tok - v.prefixTokens)        // q
                rope.rotate(row + d, heads: v.numHeads, patch: tok - v.prefixTokens)    // k
            }
            a.withUnsafeMutableBufferPointer { op in
                attention.run(q: base, qStride: 3 * d, k: base + d, kStride: 3 * d, v: base + 2 * d, vStride: 3 * d,
                              out: op.baseAddress!, outStride: d, queries: t, keys: t,
                              heads: v.numHeads, kvHeads: v.numHeads, headDim: v.headDim, causalOffset: nil)
            }
        }
        apply(b.proj, a, rows: t, into: &f.branch)
        addScaled(&x, f.branch, rows: t, width: d, scale: b.gamma1)
        x.withUnsafeBufferPointer { xp in
            a.withUnsafeMutableBufferPointer { ap in
                Ops.layerNorm(xp.baseAddress!, rows: t, width: d, weight: b.norm2Weight, bias: b.norm2Bias, eps: eps, into: ap.baseAddress!)
            }
        }
        apply(b.fc1, a, rows: t, into: &f.hidden)
        f.hidden.withUnsafeMutableBufferPointer {
            Ops.activate($0.baseAddress!, count: $0.count, .geluErf, impl: impl, threads: threads)
        }
        apply(b.fc2, f.hidden, rows: t, into: &f.branch)
        addScaled(&x, f.branch, rows: t, width: d, scale: b.gamma2)
    }
}

/// y = layer(x) into an existing buffer of rows × outFeatures.
private func apply(_ layer: any LinearMap, _ x: [Float], rows: Int, into y: inout [Float]) {
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in layer.apply(xp.baseAddress!, rows: rows, into: yp.baseAddress!) }
    }
}

func addScaled(_ x: inout [Float], _ y: [Float], rows: Int, width: Int, scale: [Float]?) {
    x.withUnsafeMutableBufferPointer { xp in
        y.withUnsafeBufferPointer { yp in Ops.addScaled(xp.baseAddress!, yp.baseAddress!, rows: rows, width: width, scale: scale) }
    }
}

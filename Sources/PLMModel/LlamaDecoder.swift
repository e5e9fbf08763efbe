import PLMCheckpoint

/// Keys (after RoPE) and values of every layer for the positions seen so far.
public struct KVCache {
    public private(set) var length = 0
    let kvDim: Int
    var keys: [[Float]]
    var values: [[Float]]

    public init(layers: Int, kvDim: Int, reserve: Int = 0) {
        self.kvDim = kvDim
        keys = Array(repeating: [], count: layers)
        values = Array(repeating: [], count: layers)
        for l in 0..<layers { keys[l].reserveCapacity(reserve * kvDim); values[l].reserveCapacity(reserve * kvDim) }
    }

    mutating func append(layer: Int, keys k: UnsafeBufferPointer<Float>, values v: UnsafeBufferPointer<Float>) {
        keys[layer].append(contentsOf: k)
        values[layer].append(contentsOf: v)
    }

    mutating func advance(by n: Int) { length += n }
}

/// Buffers for one decode step, allocated once per generation: a step allocates nothing.
public final class DecodeState {
    let hidden: Int, qDim: Int, kvDim: Int, intermediate: Int, vocab: Int
    let x, normed, q, k, v, attended, projected, gate, up, down, logits: UnsafeMutablePointer<Float>

    init(config t: TextConfig) {
        hidden = t.hiddenSize
        qDim = t.numAttentionHeads * t.headDim
        kvDim = t.numKeyValueHeads * t.headDim
        intermediate = t.intermediateSize
        vocab = t.vocabSize
        x = .allocate(capacity: hidden); normed = .allocate(capacity: hidden); projected = .allocate(capacity: hidden)
        q = .allocate(capacity: qDim); attended = .allocate(capacity: qDim)
        k = .allocate(capacity: kvDim); v = .allocate(capacity: kvDim)
        gate = .allocate(capacity: intermediate); up = .allocate(capacity: intermediate)
        down = .allocate(capacity: hidden); logits = .allocate(capacity: vocab)
    }

    deinit {
        for p in [x, normed, projected, q, attended, k, v, gate, up, down, logits] { p.deallocate() }
    }
}

/// One Llama decoder layer, named after transformers' module tree.
struct DecoderLayer {
    let inputLayernorm: [Float]
    let qProj: any LinearMap, kProj: any LinearMap, vProj: any LinearMap, oProj: any LinearMap
    let postAttentionLayernorm: [Float]
    let gateProj: any LinearMap, upProj: any LinearMap, downProj: any LinearMap

    init(source: WeightSource, prefix p: String, config t: TextConfig) throws(EngineError) {
        let h = t.hiddenSize, q = t.numAttentionHeads * t.headDim, kv = t.numKeyValueHeads * t.headDim
        inputLayernorm = try source.floats(p + "input_layernorm.weight", shape: [h])
        qProj = try source.linear(p + "self_attn.q_proj", outFeatures: q, inFeatures: h, bias: t.attentionBias)
        kProj = try source.linear(p + "self_attn.k_proj", outFeatures: kv, inFeatures: h, bias: t.attentionBias)
        vProj = try source.linear(p + "self_attn.v_proj", outFeatures: kv, inFeatures: h, bias: t.attentionBias)
        oProj = try source.linear(p + "self_attn.o_proj", outFeatures: h, inFeatures: q, bias: t.attentionBias)
        postAttentionLayernorm = try source.floats(p + "post_attention_layernorm.weight", shape: [h])
        gateProj = try source.linear(p + "mlp.gate_proj", outFeatures: t.intermediateSize, inFeatures: h, bias: t.mlpBias)
        upProj = try source.linear(p + "mlp.up_proj", outFeatures: t.intermediateSize, inFeatures: h, bias: t.mlpBias)
        downProj = try source.linear(p + "mlp.down_proj", outFeatures: h, inFeatures: t.intermediateSize, bias: t.mlpBias)
    }
}

/// The Llama decoder with its embedding, final norm and head.
public struct LlamaDecoder {
    public let config: TextConfig
    let embedTokens: any TokenEmbedding
    let layers: [DecoderLayer]
    let norm: [Float]
    let lmHead: any LinearMap
    let rope: LlamaRope
    let attention = BlockedAttention()
    /// Rows of the position-wise MLP processed at once, to bound scratch memory on long prompts.
    let mlpChunkRows = 512

    init(source: WeightSource, config c: PerceptionLMConfig) throws(EngineError) {
        let t = c.text, p = Component.languagePrefix
        config = t
        let embedding = try source.embedding(p + "embed_tokens.weight", vocab: t.vocabSize, hidden: t.hiddenSize)
        embedTokens = embedding.table
        var layers: [DecoderLayer] = []
        for i in 0..<t.numHiddenLayers { layers.append(try DecoderLayer(source: source, prefix: p + "layers.\(i).", config: t)) }
        self.layers = layers
        norm = try source.floats(p + "norm.weight", shape: [t.hiddenSize])
        if c.tieWordEmbeddings {
            lmHead = embedding.head
        } else {
            lmHead = try source.linear(weight: Component.lmHead, bias: nil, outFeatures: t.vocabSize, inFeatures: t.hiddenSize)
        }
        rope = LlamaRope(headDim: t.headDim, parameters: t.rope)
    }

    public func newCache(reserve: Int = 0) -> KVCache {
        KVCache(layers: config.numHiddenLayers, kvDim: config.numKeyValueHeads * config.headDim, reserve: reserve)
    }

    /// Embedding rows for token ids (ids already validated against the vocabulary).
    func embed(_ ids: [Int]) -> [Float] {
        let h = config.hiddenSize
        var out = [Float](repeating: 0, count: ids.count * h)
        out.withUnsafeMutableBufferPointer { buf in
            for (i, id) in ids.enumerated() { embedTokens.row(id, into: buf.baseAddress! + i * h) }
        }
        return out
    }

    /// Runs `rows` new positions (embeddings [rows, H]) after the cached ones; returns the final
    /// normalised hidden states [rows, H] and extends the cache.
    func forward(_ embeddings: [Float], rows: Int, cache: inout KVCache) -> [Float] {
        let t = config, h = t.hiddenSize, hd = t.headDim
        let qDim = t.numAttentionHeads * hd, kvDim = t.numKeyValueHeads * hd
        let start = cache.length, eps = Float(t.rmsNormEps)
        var x = embeddings
        var normed = [Float](repeating: 0, count: rows * h)
        var attended = [Float](repeating: 0, count: rows * qDim)
        for (l, layer) in layers.enumerated() {
            rmsNorm(x, rows: rows, weight: layer.inputLayernorm, eps: eps, into: &normed)
            var q = layer.qProj(normed, rows: rows)
            var k = layer.kProj(normed, rows: rows)
            let v = layer.vProj(normed, rows: rows)
            q.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, rows: rows, stride: qDim, heads: t.numAttentionHeads, firstPosition: start) }
            k.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, rows: rows, stride: kvDim, heads: t.numKeyValueHeads, firstPosition: start) }
            k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in cache.append(layer: l, keys: kp, values: vp) } }
            q.withUnsafeBufferPointer { qp in
                cache.keys[l].withUnsafeBufferPointer { kp in
                    cache.values[l].withUnsafeBufferPointer { vp in
                        attended.withUnsafeMutableBufferPointer { op in
                            attention.run(q: qp.baseAddress!, qStride: qDim, k: kp.baseAddress!, kStride: kvDim,
                                          v: vp.baseAddress!, vStride: kvDim, out: op.baseAddress!, outStride: qDim,
                                          queries: rows, keys: start + rows, heads: t.numAttentionHeads,
                                          kvHeads: t.numKeyValueHeads, headDim: hd, causalOffset: start)
                        }
                    }
                }
            }
            addScaled(&x, layer.oProj(attended, rows: rows), rows: rows, width: h, scale: nil)
            rmsNorm(x, rows: rows, weight: layer.postAttentionLayernorm, eps: eps, into: &normed)
            var r0 = 0
            while r0 < rows {
                let n = min(mlpChunkRows, rows - r0)
                let chunk = Array(normed[(r0 * h)..<((r0 + n) * h)])
                var gate = layer.gateProj(chunk, rows: n)
                let up = layer.upProj(chunk, rows: n)
                gate.withUnsafeMutableBufferPointer { Ops.activate($0.baseAddress!, count: $0.count, t.hiddenAct) }
                for i in 0..<gate.count { gate[i] *= up[i] }
                let down = layer.downProj(gate, rows: n)
                for i in 0..<(n * h) { x[r0 * h + i] += down[i] }
                r0 += n
            }
        }
        cache.advance(by: rows)
        rmsNorm(x, rows: rows, weight: norm, eps: eps, into: &normed)
        return normed
    }

    /// One decode step for `token` at the next position: extends the cache and returns the
    /// logits in `state.logits`. Same maths as `forward` with one row, without allocating.
    func step(token: Int, cache: inout KVCache, state s: DecodeState) {
        let t = config, h = t.hiddenSize, eps = Float(t.rmsNormEps)
        let position = cache.length
        embedTokens.row(token, into: s.x)
        // By index: a generic enumerated() iterator boxes the large layer value in unoptimised builds.
        for l in layers.indices {
            let layer = layers[l]
            Ops.rmsNorm(s.x, rows: 1, width: h, weight: layer.inputLayernorm, eps: eps, into: s.normed)
            layer.qProj.apply(s.normed, rows: 1, into: s.q)
            layer.kProj.apply(s.normed, rows: 1, into: s.k)
            layer.vProj.apply(s.normed, rows: 1, into: s.v)
            rope.apply(s.q, rows: 1, stride: s.qDim, heads: t.numAttentionHeads, firstPosition: position)
            rope.apply(s.k, rows: 1, stride: s.kvDim, heads: t.numKeyValueHeads, firstPosition: position)
            cache.append(layer: l, keys: UnsafeBufferPointer(start: s.k, count: s.kvDim), values: UnsafeBufferPointer(start: s.v, count: s.kvDim))
            cache.keys[l].withUnsafeBufferPointer { kp in
                cache.values[l].withUnsafeBufferPointer { vp in
                    attention.run(q: s.q, qStride: s.qDim, k: kp.baseAddress!, kStride: s.kvDim, v: vp.baseAddress!, vStride: s.kvDim,
                                  out: s.attended, outStride: s.qDim, queries: 1, keys: position + 1, heads: t.numAttentionHeads,
                                  kvHeads: t.numKeyValueHeads, headDim: t.headDim, causalOffset: position)
                }
            }
            layer.oProj.apply(s.attended, rows: 1, into: s.projected)
            for i in 0..<h { s.x[i] += s.projected[i] }
            Ops.rmsNorm(s.x, rows: 1, width: h, weight: layer.postAttentionLayernorm, eps: eps, into: s.normed)
            layer.gateProj.apply(s.normed, rows: 1, into: s.gate)
            layer.upProj.apply(s.normed, rows: 1, into: s.up)
            Ops.activate(s.gate, count: s.intermediate, t.hiddenAct)
            for i in 0..<s.intermediate { s.gate[i] *= s.up[i] }
            layer.downProj.apply(s.gate, rows: 1, into: s.down)
            for i in 0..<h { s.x[i] += s.down[i] }
        }
        cache.advance(by: 1)
        Ops.rmsNorm(s.x, rows: 1, width: h, weight: norm, eps: eps, into: s.normed)
        lmHead.apply(s.normed, rows: 1, into: s.logits)
    }

    /// Logits [rows, vocab] for final hidden states [rows, H].
    func logits(_ hidden: ArraySlice<Float>, rows: Int) -> [Float] {
        lmHead(Array(hidden), rows: rows)
    }

    private func rmsNorm(_ x: [Float], rows: Int, weight: [Float], eps: Float, into y: inout [Float]) {
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                Ops.rmsNorm(xp.baseAddress!, rows: rows, width: config.hiddenSize, weight: weight, eps: eps, into: yp.baseAddress!)
            }
        }
    }
}

import PLMCore
import PLMCheckpoint

/// Keys (after RoPE) and values of every layer for the positions seen so far, in one
/// preallocated block per layer and kind ([capacity, kvDim]). It grows by doubling when a prefill
/// needs more room, so a decode step into reserved room never allocates, and a conversation can
/// keep its cache across turns and only prefill what is new.
public final class KVCache {
    public private(set) var length = 0
    public private(set) var capacity = 0
    let layers: Int, kvDim: Int
    private var keyBlocks: [UnsafeMutablePointer<Float>] = []
    private var valueBlocks: [UnsafeMutablePointer<Float>] = []

    public init(layers: Int, kvDim: Int, reserve: Int = 0) {
        self.layers = layers
        self.kvDim = kvDim
        self.reserve(reserve)
    }

    deinit { (keyBlocks + valueBlocks).forEach { $0.deallocate() } }

    /// Makes room for `positions` positions in all (no-op when there is room already).
    public func reserve(_ positions: Int) {
        guard positions > capacity else { return }
        let grown = max(positions, capacity * 2, 64)
        func regrow(_ blocks: inout [UnsafeMutablePointer<Float>]) {
            for l in 0..<layers {
                let block = UnsafeMutablePointer<Float>.allocate(capacity: grown * kvDim)
                if l < blocks.count {
                    block.update(from: blocks[l], count: length * kvDim)
                    blocks[l].deallocate()
                    blocks[l] = block
                } else {
                    blocks.append(block)
                }
            }
        }
        regrow(&keyBlocks)
        regrow(&valueBlocks)
        capacity = grown
    }

    /// Forgets every position from `positions` on (a chat that rewinds, or /reset with 0).
    public func truncate(to positions: Int) { length = min(length, max(0, positions)) }

    func keys(_ layer: Int) -> UnsafeMutablePointer<Float> { keyBlocks[layer] }
    func values(_ layer: Int) -> UnsafeMutablePointer<Float> { valueBlocks[layer] }

    /// Writes `rows` positions of one layer after the cached ones (room was reserved).
    func store(layer: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rows: Int) {
        keyBlocks[layer].advanced(by: length * kvDim).update(from: k, count: rows * kvDim)
        valueBlocks[layer].advanced(by: length * kvDim).update(from: v, count: rows * kvDim)
    }

    func advance(by n: Int) { length += n }
}

/// The decoder's working buffers for up to `rows` positions at once (the MLP ones for one chunk
/// of rows). A generation allocates one for prefill and one single-row state reused by every
/// decode step, so a step allocates nothing. Shapes, with R = rows, C = chunkRows, H = hidden:
public final class DecodeState {
    let rows: Int, chunkRows: Int
    let hidden: Int, qDim: Int, kvDim: Int, intermediate: Int, vocab: Int
    /// [R, H] the residual stream; [R, H] its RMS-normalised copy (input of q/k/v and the MLP).
    let x, normed: UnsafeMutablePointer<Float>
    /// [R, heads·d] queries after RoPE; [R, kvHeads·d] keys after RoPE and values.
    let q, k, v: UnsafeMutablePointer<Float>
    /// [R, heads·d] attention output before o_proj; [R, H] o_proj's output.
    let attended, projected: UnsafeMutablePointer<Float>
    /// [C, intermediate] gate and up projections (gate becomes silu(gate)·up); [C, H] down_proj.
    let gate, up, down: UnsafeMutablePointer<Float>
    /// [vocab] the last position's logits (decode steps).
    let logits: UnsafeMutablePointer<Float>

    init(config t: TextConfig, rows: Int = 1, chunkRows: Int = 512) {
        self.rows = rows
        self.chunkRows = min(rows, chunkRows)
        hidden = t.hiddenSize
        qDim = t.numAttentionHeads * t.headDim
        kvDim = t.numKeyValueHeads * t.headDim
        intermediate = t.intermediateSize
        vocab = t.vocabSize
        x = .allocate(capacity: rows * hidden); normed = .allocate(capacity: rows * hidden); projected = .allocate(capacity: rows * hidden)
        q = .allocate(capacity: rows * qDim); attended = .allocate(capacity: rows * qDim)
        k = .allocate(capacity: rows * kvDim); v = .allocate(capacity: rows * kvDim)
        gate = .allocate(capacity: self.chunkRows * intermediate); up = .allocate(capacity: self.chunkRows * intermediate)
        down = .allocate(capacity: self.chunkRows * hidden); logits = .allocate(capacity: vocab)
    }

    deinit {
        for p in [x, normed, projected, q, attended, k, v, gate, up, down, logits] { p.deallocate() }
    }
}

/// One Llama decoder layer, named after transformers' module tree.
struct DecoderLayer: Sendable {
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

    /// x ← x + o_proj(attention(RMSNorm(x))), with this layer's keys and values appended to the
    /// cache at positions start ..< start + rows.
    func attentionBlock(_ s: DecodeState, rows: Int, start: Int, layer l: Int, cache: KVCache, decoder d: LlamaDecoder) {
        let t = d.config, h = t.hiddenSize
        Ops.rmsNorm(s.x, rows: rows, width: h, weight: inputLayernorm, eps: Float(t.rmsNormEps), into: s.normed)
        qProj.apply(s.normed, rows: rows, into: s.q)
        kProj.apply(s.normed, rows: rows, into: s.k)
        vProj.apply(s.normed, rows: rows, into: s.v)
        d.rope.apply(s.q, rows: rows, stride: s.qDim, heads: t.numAttentionHeads, firstPosition: start)
        d.rope.apply(s.k, rows: rows, stride: s.kvDim, heads: t.numKeyValueHeads, firstPosition: start)
        cache.store(layer: l, keys: s.k, values: s.v, rows: rows)
        d.attention.run(q: s.q, qStride: s.qDim, k: cache.keys(l), kStride: s.kvDim, v: cache.values(l), vStride: s.kvDim,
                        out: s.attended, outStride: s.qDim, queries: rows, keys: start + rows, heads: t.numAttentionHeads,
                        kvHeads: t.numKeyValueHeads, headDim: t.headDim, causalOffset: start)
        oProj.apply(s.attended, rows: rows, into: s.projected)
        for i in 0..<(rows * h) { s.x[i] += s.projected[i] }
    }

    /// x ← x + down(act(gate(n)) ⊙ up(n)) with n = RMSNorm(x), in chunks of rows to bound the
    /// scratch on long prompts.
    func mlpBlock(_ s: DecodeState, rows: Int, decoder d: LlamaDecoder) {
        let t = d.config, h = t.hiddenSize
        Ops.rmsNorm(s.x, rows: rows, width: h, weight: postAttentionLayernorm, eps: Float(t.rmsNormEps), into: s.normed)
        var r0 = 0
        while r0 < rows {
            let n = min(s.chunkRows, rows - r0)
            gateProj.apply(s.normed + r0 * h, rows: n, into: s.gate)
            upProj.apply(s.normed + r0 * h, rows: n, into: s.up)
            if t.hiddenAct == .silu {
                Ops.siluMul(s.gate, s.up, count: n * s.intermediate, impl: d.impl, threads: d.attention.threads)
            } else {
                Ops.activate(s.gate, count: n * s.intermediate, t.hiddenAct, impl: d.impl)
                for i in 0..<(n * s.intermediate) { s.gate[i] *= s.up[i] }
            }
            downProj.apply(s.gate, rows: n, into: s.down)
            for i in 0..<(n * h) { s.x[r0 * h + i] += s.down[i] }
            r0 += n
        }
    }
}

/// The Llama decoder with its embedding, final norm and head.
public struct LlamaDecoder: Sendable {
    public let config: TextConfig
    let embedTokens: any TokenEmbedding
    let layers: [DecoderLayer]
    let norm: [Float]
    let lmHead: any LinearMap
    let rope: LlamaRope
    let attention: BlockedAttention
    let impl: Int32
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
        attention = BlockedAttention(options: source.options, reference: source.isReference)
        impl = source.options.implCode
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
    /// normalised hidden states [rows, H] and extends the cache (prefill).
    func forward(_ embeddings: [Float], rows: Int, cache: KVCache,
                 onLayer: ((Int, UnsafeBufferPointer<Float>) -> Void)? = nil) -> [Float] {
        let state = DecodeState(config: config, rows: rows, chunkRows: mlpChunkRows)
        embeddings.withUnsafeBufferPointer { state.x.update(from: $0.baseAddress!, count: rows * config.hiddenSize) }
        runLayers(rows: rows, cache: cache, state: state, onLayer: onLayer)
        return Array(UnsafeBufferPointer(start: state.normed, count: rows * config.hiddenSize))
    }

    /// One decode step for `token` at the next position: extends the cache and leaves the logits
    /// in `state.logits`, without allocating.
    func step(token: Int, cache: KVCache, state s: DecodeState) {
        embedTokens.row(token, into: s.x)
        runLayers(rows: 1, cache: cache, state: s)
        lmHead.apply(s.normed, rows: 1, into: s.logits)
    }

    /// Every layer over `rows` positions in `s.x`, then the final norm into `s.normed`.
    /// `onLayer(l, x)`: the residual stream [rows, H] after layer l (per-layer error taps).
    private func runLayers(rows: Int, cache: KVCache, state s: DecodeState,
                           onLayer: ((Int, UnsafeBufferPointer<Float>) -> Void)? = nil) {
        let start = cache.length
        cache.reserve(start + rows)
        // By index: a generic enumerated() iterator boxes the large layer value in unoptimised builds.
        for l in layers.indices {
            layers[l].attentionBlock(s, rows: rows, start: start, layer: l, cache: cache, decoder: self)
            layers[l].mlpBlock(s, rows: rows, decoder: self)
            onLayer?(l, UnsafeBufferPointer(start: s.x, count: rows * config.hiddenSize))
        }
        cache.advance(by: rows)
        Ops.rmsNorm(s.x, rows: rows, width: config.hiddenSize, weight: norm, eps: Float(config.rmsNormEps), into: s.normed)
    }

    /// Logits [rows, vocab] for final hidden states [rows, H].
    func logits(_ hidden: ArraySlice<Float>, rows: Int) -> [Float] {
        lmHead(Array(hidden), rows: rows)
    }
}

import CPLMKernels
import PLMCore
import PLMCheckpoint

/// Keys (after RoPE) and values of every layer for the positions seen so far, in one
/// preallocated block per layer and kind, in the layout of plm_layout.h (PLM_KV_KEY_BLOCK: keys
/// transposed per 16 positions, values as rows), fp32 or f16 elements. It grows by doubling
/// when a prefill needs more room, so a decode step into reserved room never allocates, and a
/// conversation can keep its cache across turns and only prefill what is new.
public final class KVCache {
    public private(set) var length = 0
    public private(set) var capacity = 0
    let layers: Int, kvDim: Int
    /// Element kind and shape (PLM_KV_F32 or PLM_KV_F16).
    let layout: plm_kv_layout
    let impl: Int32
    private let elementBytes: Int
    private var keyBlocks: [UnsafeMutableRawPointer] = []
    private var valueBlocks: [UnsafeMutableRawPointer] = []
    /// One layer's keys and values widened to fp32 rows [positions, kvDim] for a prefill's
    /// blocked attention; shared by the layers (they run one after another), grown as needed.
    private var wideKeys = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var wideValues = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var wideCapacity = 0

    init(layers: Int, kvHeads: Int, headDim: Int, kind: Int32, impl: Int32, reserve: Int = 0) {
        self.layers = layers
        self.kvDim = kvHeads * headDim
        layout = plm_kv_layout(kind: kind, kv_heads: Int32(kvHeads), head_dim: Int32(headDim))
        elementBytes = kind == PLM_KV_F16 ? 2 : 4
        self.impl = impl
        self.reserve(reserve)
    }

    deinit {
        (keyBlocks + valueBlocks).forEach { $0.deallocate() }
        wideKeys.deallocate(); wideValues.deallocate()
    }

    /// Bytes of one layer's keys or values for `positions` positions.
    private func bytes(_ positions: Int) -> Int {
        var l = layout
        return Int(plm_kv_elements(&l, Int64(positions))) * elementBytes
    }

    /// Makes room for `positions` positions in all (no-op when there is room already).
    public func reserve(_ positions: Int) {
        guard positions > capacity else { return }
        let grown = (max(positions, capacity * 2, 64) + 15) / 16 * 16
        let old = bytes(capacity), new = bytes(grown)
        func regrow(_ blocks: inout [UnsafeMutableRawPointer]) {
            for l in 0..<layers {
                // Zeroed, so the unwritten positions of a key block hold no stale NaNs.
                let block = UnsafeMutableRawPointer.allocate(byteCount: new, alignment: 64)
                block.initializeMemory(as: UInt8.self, repeating: 0, count: new)
                if l < blocks.count {
                    // Positions append, so the old elements keep their places in the larger block.
                    block.copyMemory(from: blocks[l], byteCount: old)
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

    func keys(_ layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(keyBlocks[layer]) }
    func values(_ layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(valueBlocks[layer]) }

    /// Writes `rows` positions of one layer after the cached ones (room was reserved); rows of
    /// kvDim floats.
    func store(layer: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rows: Int) {
        var l = layout
        plm_kv_store(&l, keyBlocks[layer], valueBlocks[layer], Int64(length), Int64(rows), k, Int64(kvDim), v, Int64(kvDim), impl)
    }

    /// Positions 0 ..< count of one layer as fp32 rows [count, kvDim] (valid until the next call).
    func widened(layer: Int, count: Int) -> (keys: UnsafePointer<Float>, values: UnsafePointer<Float>) {
        if count > wideCapacity {
            wideKeys.deallocate(); wideValues.deallocate()
            wideCapacity = max(count, capacity)
            wideKeys = .allocate(capacity: wideCapacity * kvDim)
            wideValues = .allocate(capacity: wideCapacity * kvDim)
        }
        var l = layout
        plm_kv_widen(&l, keyBlocks[layer], valueBlocks[layer], Int64(count), wideKeys, wideValues, impl)
        return (UnsafePointer(wideKeys), UnsafePointer(wideValues))
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
        attended = .allocate(capacity: rows * qDim)
        // q, k, v in one block and gate, up in another: a one-row state's q|k|v and gate|up are
        // then contiguous, as the fused decoding-step projections write them (FusedRowLinear).
        q = .allocate(capacity: rows * (qDim + 2 * kvDim)); k = q + rows * qDim; v = k + rows * kvDim
        gate = .allocate(capacity: 2 * self.chunkRows * intermediate); up = gate + self.chunkRows * intermediate
        down = .allocate(capacity: self.chunkRows * hidden); logits = .allocate(capacity: vocab)
    }

    deinit {
        for p in [x, normed, projected, q, attended, gate, down, logits] { p.deallocate() }
    }
}

/// One Llama decoder layer, named after transformers' module tree.
struct DecoderLayer: Sendable {
    let inputLayernorm: [Float]
    let qProj: any LinearMap, kProj: any LinearMap, vProj: any LinearMap, oProj: any LinearMap
    let postAttentionLayernorm: [Float]
    let gateProj: any LinearMap, upProj: any LinearMap, downProj: any LinearMap
    /// q/k/v and gate/up as one parallel section each for a decoding step (nil where the
    /// projections are not all quantized alike: the fp32 reference).
    let qkvRow: FusedRowLinear?, gateUpRow: FusedRowLinear?

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
        qkvRow = FusedRowLinear([qProj, kProj, vProj])
        gateUpRow = FusedRowLinear([gateProj, upProj])
    }

    /// x ← x + o_proj(attention(RMSNorm(x))), with this layer's keys and values appended to the
    /// cache at positions start ..< start + rows.
    func attentionBlock(_ s: DecodeState, rows: Int, start: Int, layer l: Int, cache: KVCache, decoder d: LlamaDecoder) {
        let t = d.config, h = t.hiddenSize
        Ops.rmsNorm(s.x, rows: rows, width: h, weight: inputLayernorm, eps: Float(t.rmsNormEps), into: s.normed)
        if s.rows == 1, let qkvRow {
            qkvRow.apply(s.normed, into: s.q)  // a one-row state's q|k|v are contiguous
        } else {
            qProj.apply(s.normed, rows: rows, into: s.q)
            kProj.apply(s.normed, rows: rows, into: s.k)
            vProj.apply(s.normed, rows: rows, into: s.v)
        }
        d.rope.apply(s.q, rows: rows, stride: s.qDim, heads: t.numAttentionHeads, firstPosition: start)
        d.rope.apply(s.k, rows: rows, stride: s.kvDim, heads: t.numKeyValueHeads, firstPosition: start)
        cache.store(layer: l, keys: s.k, values: s.v, rows: rows)
        if rows == 1 {
            // A decoding step reads the cache in place (matrix × vector per key/value head).
            d.attention.decode(q: s.q, cache: cache, layer: l, keys: start + 1, out: s.attended, heads: t.numAttentionHeads)
        } else {
            // Prefill: every position, widened to fp32 rows, through the blocked attention. The
            // new positions come back from the cache too, so they are rounded as a decoding
            // step would see them.
            let kv = cache.widened(layer: l, count: start + rows)
            d.attention.run(q: s.q, qStride: s.qDim, k: kv.keys, kStride: s.kvDim, v: kv.values, vStride: s.kvDim,
                            out: s.attended, outStride: s.qDim, queries: rows, keys: start + rows, heads: t.numAttentionHeads,
                            kvHeads: t.numKeyValueHeads, headDim: t.headDim, causalOffset: start)
        }
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
            if s.chunkRows == 1, let gateUpRow {
                gateUpRow.apply(s.normed + r0 * h, into: s.gate)  // a one-row state's gate|up are contiguous
            } else {
                gateProj.apply(s.normed + r0 * h, rows: n, into: s.gate)
                upProj.apply(s.normed + r0 * h, rows: n, into: s.up)
            }
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
    /// The KV cache's element kind (EngineOptions.kvCache resolved for this source).
    let cacheKind: Int32
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
        cacheKind = source.options.kvCacheKind(reference: source.isReference)
    }

    public func newCache(reserve: Int = 0) -> KVCache {
        KVCache(layers: config.numHiddenLayers, kvHeads: config.numKeyValueHeads, headDim: config.headDim, kind: cacheKind,
                impl: impl, reserve: reserve)
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

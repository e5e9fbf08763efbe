import PLMCore

/// One conversation's state on a model: the KV cache, the ids at its positions, and the scratch
/// of a decode step. A chat keeps one context across turns and appends only what is new; a
/// decode step allocates nothing. Not shared between threads: one conversation, one caller.
public final class InferenceContext {
    public let model: PerceptionLM
    /// The token ids at the cached positions, in order.
    public private(set) var tokens: [Int] = []
    let cache: KVCache
    let state: DecodeState

    /// Positions the model was trained for (`max_position_embeddings`); appending beyond is an error.
    public var contextLength: Int { model.config.text.maxPositionEmbeddings }
    public var length: Int { cache.length }

    /// Which logits `append` returns.
    public enum Logits: Sendable, Equatable {
        /// The last new position's (what generation needs).
        case last
        /// Every new position's (teacher-forced scoring).
        case all
        /// The last n new positions' (the answer of a teacher-forced prompt + answer).
        case lastPositions(Int)
        case none
    }

    public init(model: PerceptionLM, reserve: Int = 0) {
        self.model = model
        cache = model.decoder.newCache(reserve: min(reserve, model.config.text.maxPositionEmbeddings))
        state = DecodeState(config: model.config.text)
    }

    /// Makes room for `positions` in total (so the decode steps of an answer never allocate).
    public func reserve(_ positions: Int) { cache.reserve(min(positions, contextLength)) }

    /// Appends `ids` after the cached positions; their image and video placeholders take the rows
    /// of `images` and `videos` in order (the counts must match exactly). Returns the requested
    /// logits, [positions, vocab].
    /// `onLayer(l, x)` sees the residual stream [ids.count, H] after every decoder layer.
    public func append(_ ids: [Int], images: VisionEncoding? = nil, videos: VisionEncoding? = nil,
                       logits: Logits = .last, onLayer: ((Int, UnsafeBufferPointer<Float>) -> Void)? = nil) throws(EngineError) -> [Float] {
        guard !ids.isEmpty else { throw .invalidInput("nothing to append: the token list is empty") }
        let total = Checked.add(length, ids.count)
        guard let total, total <= contextLength else {
            throw .contextOverflow(positions: total ?? Int.max, context: contextLength)
        }
        try model.checkPlaceholderCounts([ids], images: images, videos: videos)
        var imageRow = 0, videoRow = 0
        let embeddings = try model.mergedEmbeddings(ids, images: images, videos: videos, imageRow: &imageRow, videoRow: &videoRow)
        let hidden = model.decoder.forward(embeddings, rows: ids.count, cache: cache, onLayer: onLayer)
        tokens.append(contentsOf: ids)
        let h = model.config.text.hiddenSize
        switch logits {
        case .none: return []
        case .last: return model.decoder.logits(hidden[((ids.count - 1) * h)...], rows: 1)
        case .all: return model.decoder.logits(hidden[...], rows: ids.count)
        case .lastPositions(let n):
            let keep = min(max(n, 0), ids.count)
            return keep == 0 ? [] : model.decoder.logits(hidden[((ids.count - keep) * h)...], rows: keep)
        }
    }

    /// One decode step for `token` at the next position. The logits stay valid until the next
    /// call on this context.
    public func step(_ token: Int) throws(EngineError) -> UnsafeBufferPointer<Float> {
        let vocab = model.config.text.vocabSize
        guard token >= 0, token < vocab else { throw .invalidInput("token id \(token) is outside the vocabulary of \(vocab)") }
        guard length < contextLength else { throw .contextOverflow(positions: length + 1, context: contextLength) }
        model.decoder.step(token: token, cache: cache, state: state)
        tokens.append(token)
        return UnsafeBufferPointer(start: state.logits, count: vocab)
    }

    /// Forgets every position from `positions` on (0 empties the conversation).
    public func rewind(to positions: Int) {
        let keep = min(max(0, positions), length)
        cache.truncate(to: keep)
        tokens.removeLast(tokens.count - keep)
    }
}

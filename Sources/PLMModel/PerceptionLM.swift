import PLMCore
import PLMCheckpoint
import PLMFormat

/// What the vision path produced for a set of tiles.
public struct VisionEncoding: Sendable {
    /// Tower output per tile, [tiles, tokens, Dv] flattened (CLS row included when the tower has one).
    public var visionHidden: [Float] = []
    /// Projector output per tile, [tiles, tokensPerTile, H] flattened.
    public var features: [Float] = []
    public var tiles = 0
}

/// PerceptionLM: vision tower → projector → token merge → Llama decoder, in fp32.
/// Mirrors `PerceptionLMForConditionalGeneration` module for module.
public final class PerceptionLM: Sendable {
    public let config: PerceptionLMConfig
    public let generation: GenerationConfig
    public let vision: VisionTower
    let projector: Projector
    public let decoder: LlamaDecoder
    let source: any WeightSource

    public init(source: any WeightSource, config: PerceptionLMConfig, generation: GenerationConfig) throws(EngineError) {
        self.source = source
        self.config = config
        self.generation = generation
        vision = try VisionTower(source: source, config: config.vision)
        projector = try Projector(source: source, config: config)
        decoder = try LlamaDecoder(source: source, config: config)
    }

    /// Loads MODEL (a checkpoint folder, computed in fp32, or a `.plm` file, whose quantized
    /// weights are used in place from the memory map) with `options`.
    public static func load(_ path: String, options: EngineOptions = EngineOptions()) throws(EngineError) -> PerceptionLM {
        try load(ModelBundle.open(path), options: options)
    }

    /// Builds the engine for an opened model. With `options.verifyPayloads` (the default) every
    /// tensor payload of a `.plm` file is checked against its checksum first. With an `observer`,
    /// every linear map reports its inputs to it (calibration statistics).
    public static func load(_ bundle: ModelBundle, options: EngineOptions = EngineOptions(),
                            observer: ActivationObserver? = nil) throws(EngineError) -> PerceptionLM {
        try options.validate()
        if options.verifyPayloads { try bundle.verifyWeights(threads: options.threads) }
        var source = bundle.weightSource(options: options)
        if let observer { source = ObservingWeightSource(base: source, observer: observer) }
        return try PerceptionLM(source: source, config: bundle.config, generation: bundle.generation)
    }

    /// How this model computes.
    public var options: EngineOptions { source.options }

    /// Runs the tower and projector on every tile, in order.
    /// `onBlock(block, tile, hidden)` sees every vision block's output of every tile.
    public func encode(_ tiles: PixelTiles, onBlock: ((Int, Int, [Float]) -> Void)? = nil) throws(EngineError) -> VisionEncoding {
        let v = config.vision
        guard tiles.height == v.imageHeight, tiles.width == v.imageWidth else {
            throw .invalidInput("tiles are \(tiles.height)×\(tiles.width) pixels but the vision tower takes exactly \(v.imageHeight)×\(v.imageWidth)")
        }
        var out = VisionEncoding()
        out.tiles = tiles.count
        let tileSize = 3 * v.imageHeight * v.imageWidth
        for i in 0..<tiles.count {
            let tap: ((Int, [Float]) -> Void)? = onBlock.map { f in { block, hidden in f(block, i, hidden) } }
            let hidden = tiles.values.withUnsafeBufferPointer { vision.forward(tile: $0.baseAddress! + i * tileSize, onBlock: tap) }
            out.visionHidden.append(contentsOf: hidden)
            // The CLS token is dropped before the projector when vision_use_cls_token is set.
            let skip = config.visionUseClsToken ? v.embedDim : 0
            out.features.append(contentsOf: projector.forward(Array(hidden[skip...])))
        }
        return out
    }

    public struct ForwardResult {
        /// Logits of the last `positions` positions, [positions, vocab].
        public var logits: [Float]
        public var positions: Int
        public var images: VisionEncoding?
        public var videos: VisionEncoding?
    }

    /// Embeds a sequence and fills its image, then video, placeholder positions with the next
    /// feature rows (`imageRow`/`videoRow` advance across the batch, like `masked_scatter`).
    func mergedEmbeddings(_ ids: [Int], images: VisionEncoding?, videos: VisionEncoding?,
                          imageRow: inout Int, videoRow: inout Int) throws(EngineError) -> [Float] {
        let h = config.text.hiddenSize, vocab = config.text.vocabSize
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocab }) {
            throw .invalidInput("token id \(bad) is outside the vocabulary of \(vocab)")
        }
        var e = decoder.embed(ids)
        func fill(_ id: Int, _ features: [Float], _ row: inout Int) {
            for p in ids.indices where ids[p] == id {
                for c in 0..<h { e[p * h + c] = features[row * h + c] }
                row += 1
            }
        }
        fill(config.imageTokenId, images?.features ?? [], &imageRow)
        fill(config.videoTokenId, videos?.features ?? [], &videoRow)
        return e
    }

    /// Checks that the batch has exactly one placeholder per feature row, as transformers does.
    func checkPlaceholderCounts(_ sequences: [[Int]], images: VisionEncoding?, videos: VisionEncoding?) throws(EngineError) {
        let h = config.text.hiddenSize
        for (kind, id, encoding) in [("image", config.imageTokenId, images), ("video", config.videoTokenId, videos)] {
            let tokens = sequences.reduce(0) { $0 + $1.filter { $0 == id }.count }
            let rows = (encoding?.features.count ?? 0) / h
            guard tokens == rows else { throw .imageTokenCount(kind: kind, tokens: tokens, features: rows) }
        }
    }

    /// Full forward pass of a batch of independent sequences (no padding). Image features fill the
    /// image positions of the whole batch in (sequence, position) order, tiles in order.
    /// `lastPositions` keeps only the final logits rows of each sequence.
    public func forward(batch sequences: [[Int]], images: PixelTiles? = nil, videos: PixelTiles? = nil,
                        lastPositions: Int? = nil) throws(EngineError) -> [ForwardResult] {
        guard !sequences.isEmpty, sequences.allSatisfy({ !$0.isEmpty }) else { throw .invalidInput("input_ids is empty") }
        let imageEncoding = try images.map { tiles throws(EngineError) in try encode(tiles) }
        let videoEncoding = try videos.map { tiles throws(EngineError) in try encode(tiles) }
        try checkPlaceholderCounts(sequences, images: imageEncoding, videos: videoEncoding)
        var imageRow = 0, videoRow = 0
        var results: [ForwardResult] = []
        let h = config.text.hiddenSize
        for ids in sequences {
            let embeddings = try mergedEmbeddings(ids, images: imageEncoding, videos: videoEncoding, imageRow: &imageRow, videoRow: &videoRow)
            let cache = decoder.newCache(reserve: ids.count)
            let hidden = decoder.forward(embeddings, rows: ids.count, cache: cache)
            let keep = min(lastPositions ?? ids.count, ids.count)
            let logits = decoder.logits(hidden[((ids.count - keep) * h)...], rows: keep)
            results.append(ForwardResult(logits: logits, positions: keep, images: imageEncoding, videos: videoEncoding))
        }
        return results
    }

    /// Full forward pass of one sequence.
    public func forward(inputIds: [Int], images: PixelTiles? = nil, videos: PixelTiles? = nil,
                        lastPositions: Int? = nil) throws(EngineError) -> ForwardResult {
        try forward(batch: [inputIds], images: images, videos: videos, lastPositions: lastPositions)[0]
    }

    /// Greedy decoding with the KV cache: vision inputs only at prefill, then one token per step.
    /// Stops after `maxNewTokens` or on a token of `stopTokens` (which is included in the result).
    public func generate(inputIds: [Int], images: PixelTiles? = nil, videos: PixelTiles? = nil,
                         maxNewTokens: Int, stopTokens: Set<Int>,
                         onToken: (Int) -> Void = { _ in }) throws(EngineError) -> [Int] {
        guard !inputIds.isEmpty else { throw .invalidInput("input_ids is empty") }
        guard maxNewTokens > 0 else { return [] }
        let context = config.text.maxPositionEmbeddings
        guard inputIds.count <= context else { throw .contextOverflow(positions: inputIds.count, context: context) }
        let imageEncoding = try images.map { tiles throws(EngineError) in try encode(tiles) }
        let videoEncoding = try videos.map { tiles throws(EngineError) in try encode(tiles) }
        // Room for the whole answer up front (so decode never allocates), but never more than
        // the model's context: a huge maxNewTokens must not reserve memory it cannot use.
        let session = InferenceContext(model: self, reserve: inputIds.count + min(maxNewTokens, context))
        let last = try session.append(inputIds, images: imageEncoding, videos: videoEncoding)
        try last.withUnsafeBufferPointer { l throws(EngineError) in try EngineError.requireFinite(l, position: session.length - 1) }
        var next = last.withUnsafeBufferPointer { Ops.argmax($0) }
        var generated: [Int] = []
        generated.reserveCapacity(min(maxNewTokens, context))
        while true {
            generated.append(next)
            onToken(next)
            if stopTokens.contains(next) || generated.count >= maxNewTokens || session.length >= context { break }
            let logits = try session.step(next)
            try EngineError.requireFinite(logits, position: session.length - 1)
            next = Ops.argmax(logits)
        }
        return generated
    }
}

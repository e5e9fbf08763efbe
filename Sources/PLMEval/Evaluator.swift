import PLMCore
import PLMModel
import PLMRunner
import PLMTokenizer

/// What `plmq eval` can fail on besides the metrics' own errors.
public enum EvaluationError: Error, CustomStringConvertible {
    case runner(sample: String, RunnerError)
    case metrics(sample: String, EvalError)
    case samples(SampleSetError)
    case cache(ReferenceCacheError)
    case text(String)

    public var description: String {
        switch self {
        case .runner(let s, let e): return "sample \(s): \(e)"
        case .metrics(let s, let e): return "sample \(s): \(e)"
        case .samples(let e): return e.description
        case .cache(let e): return e.description
        case .text(let d): return d
        }
    }
}

/// Settings of one evaluation run.
public struct EvaluationOptions: Sendable {
    public var maxTiles: Int?
    public var frames = 32
    /// Greedy answers (the reference's, when a sample has no answer, and each model's).
    public var maxNewTokens = 64
    public var thresholds = EvalThresholds()
    /// Compare the hidden state after every vision block and decoder layer (`--per-layer`).
    public var perLayer = false
    /// What the report names as its producer ("plmq 0.2.0").
    public var producer = "plmq"
    public init() {}
}

/// A model under evaluation: its identity for the report and the loaded model.
public struct EvaluatedModel: Sendable {
    public let info: ModelInfo
    public let model: VisionLanguageModel
    public init(info: ModelInfo, model: VisionLanguageModel) {
        self.info = info
        self.model = model
    }
}

/// Runs the reference and each model over a samples folder or a text, teacher-forced over the
/// same answer tokens, and gathers llama-perplexity's metrics, feature agreement, greedy
/// agreement and task accuracy. The reference's logits are kept for one sample at a time.
public struct Evaluator {
    public let reference: EvaluatedModel
    public let models: [EvaluatedModel]
    public let options: EvaluationOptions

    public init(reference: EvaluatedModel, models: [EvaluatedModel], options: EvaluationOptions) {
        self.reference = reference
        self.models = models
        self.options = options
    }

    /// Per model, what the run accumulates.
    struct Tally {
        var tokens = EvalAccumulator()
        var tiles: [TileFeatureMetrics] = []
        var greedy: [GreedyComparison] = []
        var accuracy = AccuracyCounter()
        var rows: [SampleRow] = []
        var layers = LayerErrorAccumulator()
    }

    /// Hidden states by layer name ("vision.3" per tile in order, "decoder.11" over the answer
    /// positions), captured for the per-layer comparison.
    final class LayerStates {
        var vision: [String: [[Float]]] = [:]
        var decoder: [String: [Float]] = [:]
        var order: [String] = []
        func add(_ name: String, tile values: [Float]) {
            if vision[name] == nil { order.append(name) }
            vision[name, default: []].append(values)
        }
        func add(_ name: String, _ values: [Float]) {
            if decoder[name] == nil { order.append(name) }
            decoder[name] = values
        }
    }

    /// The messages of a sample, with its files resolved against the folder.
    static func messages(_ sample: Sample, folder: String) -> [Message] {
        sample.messages.map { m in
            Message(role: m.role.rawValue, parts: m.parts.map { part in
                switch part {
                case .text(let t): return .text(t)
                case .image(let index): return .image(.file(FileSystem.join(folder, sample.images[index])))
                case .video:
                    switch sample.video {
                    case .file(let f): return .video(.file(FileSystem.join(folder, f)))
                    case .frames(let folderName, _): return .video(.file(FileSystem.join(folder, folderName)))
                    case nil: return .text("")
                    }
                }
            })
        }
    }

    /// The reference cache of a run: read what it holds, or write what is computed.
    public struct CacheUse {
        public let reader: ReferenceCache?
        public let writer: ReferenceCacheWriter?
        public init(reader: ReferenceCache?, writer: ReferenceCacheWriter?) {
            self.reader = reader
            self.writer = writer
        }
    }

    public func evaluate(samples set: SampleSet, datasetHash: String, cache: CacheUse? = nil,
                         progress: (Int, Int) -> Void = { _, _ in }) throws(EvaluationError) -> EvalReport {
        var tallies = Array(repeating: Tally(), count: models.count)
        var referenceAccuracy = AccuracyCounter()
        let generate = GenerateOptions(sampling: .greedy, maxNewTokens: options.maxNewTokens, maxTiles: options.maxTiles, frames: options.frames)
        let ref = reference.model
        for (done, sample) in set.samples.enumerated() {
            let id = sample.id
            func run<T>(_ body: () throws(RunnerError) -> T) throws(EvaluationError) -> T {
                do { return try body() } catch { throw .runner(sample: id, error) }
            }
            let messages = Self.messages(sample, folder: set.folder)
            let prompt = try run { () throws(RunnerError) in try ref.session().preparePrompt(messages, options: generate) }
            let refStates = options.perLayer ? LayerStates() : nil
            let eos = Set(ref.generation.eosTokenIds)
            let vocab = ref.engine.config.text.vocabSize
            let config = ref.engine.config
            // The reference's part, from the cache when it holds this sample (per-layer needs the
            // hidden states, which are not cached), else computed and written to it.
            var refPositions: [ReferencePosition]
            var refGreedyIds: [Int], refGreedyText: String
            var refFeatures: [Float]?, refTiles = 0
            var answer: [Int]
            let cached: ReferenceRecord?
            do { cached = refStates == nil ? try cache?.reader?.record(for: id) : nil } catch { throw .cache(error) }
            if let record = cached {
                refPositions = record.positions
                refGreedyIds = record.greedyTokens.map { Int($0) }
                refGreedyText = record.greedyText ?? ""
                refFeatures = record.features?.values
                refTiles = record.features?.tiles ?? 0
                answer = record.positions.map { Int($0.target) }
            } else {
                let refMedia = try run { () throws(RunnerError) in try encode(prompt, on: ref.engine, states: refStates) }
                let refGreedy = try run { () throws(RunnerError) in
                    try generateAnswer(context: InferenceContext(model: ref.engine), appending: prompt.ids, media: refMedia,
                                       tokenizer: ref.processor.tokenizer, parameters: .greedy, maxNewTokens: options.maxNewTokens, stopTokens: eos)
                }
                refGreedyIds = refGreedy.ids
                refGreedyText = refGreedy.text
                refFeatures = refMedia.imageEncoding?.features
                refTiles = refMedia.imageEncoding?.tiles ?? 0
                // The answer every model is scored on: the reference answer (with the end-of-turn
                // token a chat model ends it with), or the reference's own greedy answer.
                answer = refGreedy.ids
                if let text = sample.answer {
                    answer = ref.processor.tokenizer.encode(text, addSpecialTokens: false) + (ref.generation.eosTokenIds.last.map { [$0] } ?? [])
                }
                guard !answer.isEmpty else { continue }
                let scored = answer
                let refLogits = try run { () throws(RunnerError) in
                    try teacherForced(prompt, answer: scored, media: refMedia, on: ref.engine, states: refStates)
                }
                do { refPositions = try EvalAccumulator.referencePositions(logits: refLogits, targets: answer.map { Int32($0) }, vocabulary: vocab) } catch {
                    throw .metrics(sample: id, error)
                }
                let features = refFeatures.map { FeatureBlock(tiles: refTiles, tokens: config.tokensPerTile, hidden: config.text.hiddenSize, values: $0) }
                do {
                    try cache?.writer?.append(ReferenceRecord(sampleID: id, positions: refPositions, greedyTokens: refGreedyIds.map { Int32($0) },
                                                              greedyText: refGreedyText, features: features))
                } catch { throw .cache(error) }
            }
            if let text = sample.answer { referenceAccuracy.add(prediction: refGreedyText, answer: text) }
            guard !answer.isEmpty else { continue }
            for (m, evaluated) in models.enumerated() {
                let model = evaluated.model
                let states = options.perLayer ? LayerStates() : nil
                let media = try run { () throws(RunnerError) in try encode(prompt, on: model.engine, states: states) }
                var cosine: Double?
                if let r = refFeatures, let q = media.imageEncoding {
                    do {
                        let tiles = try FeatureComparison.compare(reference: r, quantized: q.features, tiles: refTiles,
                                                                  tokens: ref.engine.config.tokensPerTile, hidden: ref.engine.config.text.hiddenSize)
                        tallies[m].tiles += tiles
                        cosine = tiles.isEmpty ? nil : tiles.map(\.whole.cosine).reduce(0, +) / Double(tiles.count)
                    } catch { throw .metrics(sample: id, error) }
                }
                let logits = try run { () throws(RunnerError) in
                    try teacherForced(prompt, answer: answer, media: media, on: model.engine, states: states)
                }
                if let refStates, let states { compareLayers(refStates, states, into: &tallies[m].layers) }
                let metrics: SampleTokenMetrics
                do { metrics = try tallies[m].tokens.add(reference: refPositions, quantizedLogits: logits, sample: id) } catch {
                    throw .metrics(sample: id, error)
                }
                let greedy = try run { () throws(RunnerError) in
                    try generateAnswer(context: InferenceContext(model: model.engine), appending: prompt.ids, media: media,
                                       tokenizer: model.processor.tokenizer, parameters: .greedy, maxNewTokens: options.maxNewTokens, stopTokens: eos)
                }
                let comparison = GreedyComparison(reference: refGreedyIds.map { Int32($0) }, quantized: greedy.ids.map { Int32($0) })
                tallies[m].greedy.append(comparison)
                if let text = sample.answer { tallies[m].accuracy.add(prediction: greedy.text, answer: text) }
                tallies[m].rows.append(SampleRow(id: id, images: sample.images.map { FileSystem.join(set.folder, $0) }, tokens: metrics,
                                                 featureCosine: cosine, greedy: comparison, prediction: greedy.text, answer: sample.answer))
            }
            progress(done + 1, set.samples.count)
        }
        let hasAnswers = set.samples.contains { $0.answer != nil }
        let results = zip(models, tallies).map { evaluated, t in
            ModelResult(model: evaluated.info, accumulator: t.tokens, features: t.tiles.isEmpty ? nil : FeatureSummary(t.tiles),
                        greedy: GreedySummary(t.greedy), accuracy: hasAnswers ? t.accuracy : nil, layers: t.layers.means,
                        samples: t.rows, thresholds: options.thresholds)
        }
        return EvalReport(plmqVersion: options.producer, reference: reference.info, referenceAccuracy: hasAnswers ? referenceAccuracy : nil, mode: "samples",
                          dataset: JSONObject([("folder", .string(set.folder)), ("sha256", .string(datasetHash)),
                                               ("samples", .int(set.samples.count)), ("skipped", .int(set.problems.count))]),
                          settings: settings, models: results)
    }

    /// llama-perplexity's protocol on a raw text: chunks of `context` tokens, each scored on its
    /// second half.
    public func evaluate(text: String, source: String, context: Int, maxChunks: Int?,
                         progress: (Int, Int) -> Void = { _, _ in }) throws(EvaluationError) -> EvalReport {
        let ref = reference.model
        let tokenizer = ref.processor.tokenizer
        let bos = ref.generation.bosTokenId
        let tokens = (bos.map { [$0] } ?? []) + tokenizer.encode(text, addSpecialTokens: false)
        let chunks: [TextChunk]
        do { chunks = try TextChunking.chunks(tokens: tokens.map { Int32($0) }, context: context, bos: bos.map { Int32($0) }, maxChunks: maxChunks) } catch {
            throw .text("\(source): \(error)")
        }
        var tallies = Array(repeating: Tally(), count: models.count)
        let vocab = ref.engine.config.text.vocabSize
        for (done, chunk) in chunks.enumerated() {
            let id = "chunk \(chunk.index)"
            func logits(_ engine: PerceptionLM) throws(EvaluationError) -> [Float] {
                let all: [Float]
                do { all = try InferenceContext(model: engine).append(chunk.inputs.map { Int($0) }, logits: .all) } catch {
                    throw .runner(sample: id, .engine(error))
                }
                return Array(all[(chunk.scoredPositions.lowerBound * vocab)..<(chunk.scoredPositions.upperBound * vocab)])
            }
            let refPositions: [ReferencePosition]
            do { refPositions = try EvalAccumulator.referencePositions(logits: try logits(ref.engine), targets: chunk.targets, vocabulary: vocab) } catch let e as EvalError {
                throw .metrics(sample: id, e)
            } catch let e as EvaluationError { throw e } catch { throw .text("\(error)") }
            for (m, evaluated) in models.enumerated() {
                do { _ = try tallies[m].tokens.add(reference: refPositions, quantizedLogits: try logits(evaluated.model.engine), sample: id) } catch let e as EvalError {
                    throw .metrics(sample: id, e)
                } catch let e as EvaluationError { throw e } catch { throw .text("\(error)") }
            }
            progress(done + 1, chunks.count)
        }
        let results = zip(models, tallies).map { evaluated, t in
            ModelResult(model: evaluated.info, accumulator: t.tokens, samples: [], thresholds: options.thresholds)
        }
        var s = settings
        s["ctx"] = .int(context)
        return EvalReport(plmqVersion: options.producer, reference: reference.info, mode: "text",
                          dataset: JSONObject([("text", .string(source)), ("tokens", .int(tokens.count)), ("chunks", .int(chunks.count))]),
                          settings: s, models: results)
    }

    var settings: JSONObject {
        JSONObject([("max_new_tokens", .int(options.maxNewTokens)), ("max_tiles", options.maxTiles.map { .int($0) } ?? .null),
                    ("frames", .int(options.frames)), ("threads", .int(reference.model.engine.options.threads))])
    }

    /// Cosine and relative error of every captured layer, tile by tile for the vision blocks.
    func compareLayers(_ reference: LayerStates, _ model: LayerStates, into acc: inout LayerErrorAccumulator) {
        for name in reference.order {
            if let r = reference.decoder[name], let q = model.decoder[name], r.count == q.count {
                r.withUnsafeBufferPointer { rp in q.withUnsafeBufferPointer { qp in acc.add(layer: name, VectorComparison.compare(reference: rp, quantized: qp)) } }
            } else if let rt = reference.vision[name], let qt = model.vision[name] {
                for (r, q) in zip(rt, qt) where r.count == q.count {
                    r.withUnsafeBufferPointer { rp in q.withUnsafeBufferPointer { qp in acc.add(layer: name, VectorComparison.compare(reference: rp, quantized: qp)) } }
                }
            }
        }
    }

    /// The prompt's media through `engine`'s vision tower (images' blocks captured into `states`).
    func encode(_ prompt: ChatSession.Prompt, on engine: PerceptionLM, states: LayerStates? = nil) throws(RunnerError) -> PreparedMedia {
        var media = PreparedMedia(images: prompt.images, videos: prompt.videos)
        let tap: ((Int, Int, [Float]) -> Void)? = states.map { s in { block, _, hidden in s.add("vision.\(block)", tile: hidden) } }
        do {
            media.imageEncoding = try PixelTiles.concatenated(prompt.images).map { tiles throws(EngineError) in try engine.encode(tiles, onBlock: tap) }
            media.videoEncoding = try PixelTiles.concatenated(prompt.videos).map { tiles throws(EngineError) in try engine.encode(tiles) }
        } catch let e as EngineError { throw .engine(e) } catch let e as RunnerError { throw e } catch { throw .invalidConversation("\(error)") }
        return media
    }

    /// The logits that predict each answer token: prompt + answer (all but its last token) in one
    /// prefill, keeping the last answer.count positions.
    func teacherForced(_ prompt: ChatSession.Prompt, answer: [Int], media: PreparedMedia, on engine: PerceptionLM,
                       states: LayerStates? = nil) throws(RunnerError) -> [Float] {
        let ids = prompt.ids + answer.dropLast()
        let h = engine.config.text.hiddenSize, keep = answer.count
        // The residual stream at the answer positions after each layer.
        let tap: ((Int, UnsafeBufferPointer<Float>) -> Void)? = states.map { s in { layer, x in
            s.add("decoder.\(layer)", Array(x[(x.count - keep * h)...]))
        } }
        do {
            return try InferenceContext(model: engine, reserve: ids.count)
                .append(ids, images: media.imageEncoding, videos: media.videoEncoding, logits: .lastPositions(answer.count), onLayer: tap)
        } catch { throw .engine(error) }
    }
}

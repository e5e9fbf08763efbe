import PLMCore
import PLMModel
import PLMTokenizer
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A flag another thread (a signal handler's watcher, a cancelled task) sets to stop an answer
/// at the next token.
public final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func cancel() { flag.store(true, ordering: .relaxed) }
    public func reset() { flag.store(false, ordering: .relaxed) }
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
}

/// Why an answer ended.
public enum FinishReason: String, Sendable, Equatable {
    /// A stop token (an eos id of generation_config.json) was generated.
    case stop
    /// `maxNewTokens` were generated.
    case length
    /// The model's context is full.
    case context
    /// The caller cancelled.
    case cancelled
}

/// Where the time of one answer went.
public struct GenerationStats: Sendable, Equatable {
    /// Prompt positions computed this time, and those reused from the cache (chat turns).
    public var prefillTokens = 0
    public var cachedTokens = 0
    public var visionTiles = 0
    public var visionSeconds = 0.0
    public var prefillSeconds = 0.0
    /// From the start of the call to the first token (vision + prefill + the first pick).
    public var timeToFirstToken = 0.0
    /// Tokens after the first one, and their time.
    public var decodeTokens = 0
    public var decodeSeconds = 0.0

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(prefillTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(decodeTokens) / decodeSeconds : 0 }
    public var visionSecondsPerTile: Double { visionTiles > 0 ? visionSeconds / Double(visionTiles) : 0 }
}

/// One answer: its ids (a final stop token included), text (special tokens skipped) and timings.
public struct GenerationResult: Sendable, Equatable {
    public var ids: [Int] = []
    public var text = ""
    public var finish = FinishReason.length
    public var stats = GenerationStats()
}

/// The media of a prompt, preprocessed: images in placeholder order, then videos.
public struct PreparedMedia: Sendable {
    public var images: [PixelTiles] = []
    public var videos: [PixelTiles] = []
    /// The tower's output for `images` / `videos` when the caller has it already (evaluation
    /// compares it between models); otherwise it is computed.
    public var imageEncoding: VisionEncoding?
    public var videoEncoding: VisionEncoding?
    public init(images: [PixelTiles] = [], videos: [PixelTiles] = []) {
        self.images = images
        self.videos = videos
    }
    public var imageTiles: [Int] { images.map(\.count) }
    public var videoFrames: [Int] { videos.map(\.count) }
}

extension PixelTiles {
    /// Several images' tiles as one batch, in order (the engine fills placeholders in order).
    public static func concatenated(_ parts: [PixelTiles]) throws(RunnerError) -> PixelTiles? {
        guard let first = parts.first else { return nil }
        var values: [Float] = []
        values.reserveCapacity(parts.reduce(0) { $0 + $1.values.count })
        for p in parts {
            guard p.height == first.height, p.width == first.width else {
                throw .invalidConversation("media tiles of \(p.height)×\(p.width) and \(first.height)×\(first.width) pixels cannot be mixed")
            }
            values.append(contentsOf: p.values)
        }
        do { return try PixelTiles(count: parts.reduce(0) { $0 + $1.count }, height: first.height, width: first.width, values: values) } catch {
            throw .invalidConversation(error.description)
        }
    }
}

func monotonicNow() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Generates an answer after `ids` on `context`: encodes the media, prefills what is new, then
/// decodes token by token, handing each piece of text to `onText` as soon as it is whole UTF-8.
/// `ids` must hold exactly the placeholders of `media`.
public func generateAnswer(context: InferenceContext, appending ids: [Int], media: PreparedMedia, tokenizer: Tokenizer,
                           parameters: SamplingParameters, maxNewTokens: Int, stopTokens: Set<Int>,
                           cancellation: CancellationFlag? = nil,
                           onText: (String, Int) -> Void = { _, _ in }) throws(RunnerError) -> GenerationResult {
    try parameters.validate()
    guard maxNewTokens > 0 else { throw .invalidParameter("max new tokens must be at least 1") }
    guard !ids.isEmpty else { throw .invalidConversation("the prompt is empty") }
    let model = context.model
    let needed = Checked.add(context.length, ids.count)
    guard let needed, needed < context.contextLength else {
        throw .engine(.contextOverflow(positions: needed.map { $0 + 1 } ?? Int.max, context: context.contextLength))
    }
    var result = GenerationResult()
    let start = monotonicNow()
    result.stats.cachedTokens = context.length
    let imageEncoding: VisionEncoding?, videoEncoding: VisionEncoding?
    do {
        imageEncoding = try media.imageEncoding ?? PixelTiles.concatenated(media.images).map { tiles throws(EngineError) in try model.encode(tiles) }
        videoEncoding = try media.videoEncoding ?? PixelTiles.concatenated(media.videos).map { tiles throws(EngineError) in try model.encode(tiles) }
    } catch let e as EngineError { throw .engine(e) } catch let e as RunnerError { throw e } catch { throw .invalidConversation("\(error)") }
    result.stats.visionTiles = (imageEncoding?.tiles ?? 0) + (videoEncoding?.tiles ?? 0)
    let visionDone = monotonicNow()
    result.stats.visionSeconds = visionDone - start
    // Room for the answer now, so its decode steps never allocate.
    context.reserve(needed + min(maxNewTokens, context.contextLength))
    var logits: [Float]
    do { logits = try context.append(ids, images: imageEncoding, videos: videoEncoding) } catch { throw .engine(error) }
    result.stats.prefillTokens = ids.count
    result.stats.prefillSeconds = monotonicNow() - visionDone

    var sampler = Sampler(parameters)
    var decoder = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
    // A NaN or Inf logit is an error, not a token: the sampler would turn it into a made-up answer.
    func checkFinite(_ l: UnsafeBufferPointer<Float>) throws(RunnerError) {
        do { try EngineError.requireFinite(l, position: context.length - 1) } catch { throw .engine(error) }
    }
    try logits.withUnsafeBufferPointer { l throws(RunnerError) in try checkFinite(l) }
    var next = logits.withUnsafeMutableBufferPointer { sampler.next($0, history: context.tokens) }
    result.stats.timeToFirstToken = monotonicNow() - start
    let decodeStart = monotonicNow()
    while true {
        result.ids.append(next)
        do {
            let piece = try decoder.append(next)
            if !piece.isEmpty { result.text += piece; onText(piece, next) }
        } catch { throw .tokenizer(error) }
        if stopTokens.contains(next) { result.finish = .stop; break }
        if result.ids.count >= maxNewTokens { result.finish = .length; break }
        if cancellation?.isCancelled == true { result.finish = .cancelled; break }
        if context.length >= context.contextLength { result.finish = .context; break }
        let step: UnsafeBufferPointer<Float>
        do { step = try context.step(next) } catch { throw .engine(error) }
        try checkFinite(step)
        next = sampler.next(UnsafeMutableBufferPointer(mutating: step), history: context.tokens)
    }
    let tail = decoder.finish()
    if !tail.isEmpty { result.text += tail; onText(tail, -1) }
    result.stats.decodeTokens = result.ids.count - 1
    result.stats.decodeSeconds = result.stats.decodeTokens > 0 ? monotonicNow() - decodeStart : 0
    return result
}

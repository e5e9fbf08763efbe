import PLMCore
import PLMImage
import PLMModel
import PLMTokenizer

/// A multi-turn conversation on one model. Each turn renders the whole conversation with the
/// chat template, but only the positions that differ from what the KV cache already holds are
/// prefilled, and only the images and videos whose placeholders fall in that new part are run
/// through the vision tower. Not for concurrent use: one conversation, one caller.
public final class ChatSession {
    public let model: VisionLanguageModel
    /// The turns so far (user messages and the answers), without the system message.
    public private(set) var messages: [Message] = []
    /// A system message that opens the conversation (nil: the chat template's default).
    /// Changing it starts a new conversation.
    public var system: String? { didSet { reset() } }
    let context: InferenceContext
    /// Preprocessed media files by path and setting, so a re-rendered conversation does not
    /// decode them again (media given as pixels are cheap to preprocess again).
    private var imageCache: [String: PixelTiles] = [:]
    private var videoCache: [String: PixelTiles] = [:]
    /// The last answer's timings.
    public private(set) var lastStats = GenerationStats()

    init(model: VisionLanguageModel) {
        self.model = model
        context = InferenceContext(model: model.engine)
    }

    /// Forgets the conversation (and the cache).
    public func reset() {
        messages.removeAll()
        context.rewind(to: 0)
    }

    /// Positions held by the cache.
    public var cachedPositions: Int { context.length }

    /// Adds `message` (usually the user's) and generates the assistant's answer, which is then
    /// part of the conversation.
    @discardableResult
    public func send(_ message: Message, options: GenerateOptions = GenerateOptions(), cancellation: CancellationFlag? = nil,
                     onText: (String, Int) -> Void = { _, _ in }) throws(RunnerError) -> GenerationResult {
        let opening: [Message] = system.map { [.system($0)] } ?? []
        let result = try respond(to: opening + messages + [message], options: options, cancellation: cancellation, onText: onText)
        messages.append(message)
        messages.append(.assistant(result.text))
        return result
    }

    /// Generates the answer to `conversation` (which replaces the session's own), reusing the
    /// cached prefix it shares with what was computed before.
    public func respond(to conversation: [Message], options: GenerateOptions, cancellation: CancellationFlag? = nil,
                        onText: (String, Int) -> Void = { _, _ in }) throws(RunnerError) -> GenerationResult {
        let prompt = try model.turn.withLock { _ throws(RunnerError) in try self.prompt(conversation, options: options) }
        return try model.turn.withLock { _ throws(RunnerError) in
            let reused = try reusablePrefix(prompt)
            context.rewind(to: reused.positions)
            let result = try generateAnswer(context: context, appending: Array(prompt.ids[reused.positions...]), media: reused.media,
                                            tokenizer: model.processor.tokenizer, parameters: options.sampling,
                                            maxNewTokens: options.maxNewTokens, stopTokens: model.stopTokens(options),
                                            cancellation: cancellation, onText: onText)
            lastStats = result.stats
            return result
        }
    }

    /// The rendered, tokenized and expanded conversation with its preprocessed media.
    public struct Prompt: Sendable {
        public var text: String
        public var ids: [Int]
        public var images: [PixelTiles]
        public var videos: [PixelTiles]
    }

    /// What the model would be given for `conversation` (with the generation prompt): for
    /// evaluation and `plmq tokenize`-like inspection.
    public func preparePrompt(_ conversation: [Message], options: GenerateOptions) throws(RunnerError) -> Prompt {
        try prompt(conversation, options: options)
    }

    func prompt(_ conversation: [Message], options: GenerateOptions) throws(RunnerError) -> Prompt {
        guard let last = conversation.last, last.role != "assistant" else {
            throw .invalidConversation("the conversation must end with a user (or system) message to answer")
        }
        let hasText = conversation.contains { m in m.parts.contains { if case .text(let t) = $0 { return !t.allSatisfy(\.isWhitespace) } else { return false } } }
        let hasMedia = conversation.contains { !$0.images.isEmpty || !$0.videos.isEmpty }
        guard hasText || hasMedia else { throw .invalidConversation("the prompt is empty: give some text, an image or a video") }
        let text: String
        let tok = model.processor.tokenizer
        do {
            // As transformers: the special tokens of tokenizer_config.json, else the generation config's ids.
            let special = model.processor.specialTokens
            text = try model.template.render(messages: conversation.map(\.templateMessage), addGenerationPrompt: true,
                                             bosToken: special.bos ?? model.generation.bosTokenId.flatMap { tok.token(for: $0) },
                                             eosToken: special.eos ?? model.generation.eosTokenIds.first.flatMap { tok.token(for: $0) },
                                             extra: special.extraVariables)
        } catch {
            throw .invalidConversation("the chat template failed: \(error)")
        }
        var images: [PixelTiles] = [], videos: [PixelTiles] = []
        for m in conversation {
            for i in m.images { images.append(try preprocess(i, maxTiles: options.maxTiles)) }
            for v in m.videos { videos.append(try preprocess(v, frames: options.frames)) }
        }
        let ids: [Int]
        do { ids = try model.processor.expander.ids(prompt: text, imageTiles: images.map(\.count), videoFrames: videos.map(\.count)) } catch {
            throw .prompt(error)
        }
        return Prompt(text: text, ids: ids, images: images, videos: videos)
    }

    /// How much of `prompt` the cache already holds, moved back so that it never cuts an image's
    /// or a video's placeholders; and the media whose placeholders come after it.
    func reusablePrefix(_ prompt: Prompt) throws(RunnerError) -> (positions: Int, media: PreparedMedia) {
        var p = 0
        let cached = context.tokens
        while p < cached.count && p < prompt.ids.count - 1 && cached[p] == prompt.ids[p] { p += 1 }
        let config = model.engine.config, perTile = config.tokensPerTile
        // Each image's (video's) placeholder run, in order.
        func runs(_ id: Int, _ media: [PixelTiles]) -> [Range<Int>] {
            var out: [Range<Int>] = [], k = 0, position = 0
            while k < media.count && position < prompt.ids.count {
                if prompt.ids[position] == id {
                    let length = media[k].count * perTile
                    out.append(position..<(position + length))
                    position += length
                    k += 1
                } else {
                    position += 1
                }
            }
            return out
        }
        let imageRuns = runs(config.imageTokenId, prompt.images), videoRuns = runs(config.videoTokenId, prompt.videos)
        for r in imageRuns + videoRuns where r.contains(p) && r.lowerBound < p { p = r.lowerBound }
        var media = PreparedMedia()
        for (r, tiles) in zip(imageRuns, prompt.images) where r.lowerBound >= p { media.images.append(tiles) }
        for (r, tiles) in zip(videoRuns, prompt.videos) where r.lowerBound >= p { media.videos.append(tiles) }
        return (p, media)
    }

    private func preprocess(_ input: ImageInput, maxTiles: Int?) throws(RunnerError) -> PixelTiles {
        var key: String?
        if case .file(let path) = input { key = "\(path)|\(maxTiles ?? 0)" }
        if let key, let hit = imageCache[key] { return hit }
        let image: DecodedImage
        switch input {
        case .file(let path):
            do { image = try ImageDecoder.decode(file: path) } catch { throw .image(error) }
        case .decoded(let d): image = d
        }
        let tiles: PixelTiles
        do { tiles = try model.processor.images.preprocess(image, maxTiles: maxTiles).tiles } catch { throw .image(error) }
        if let key { imageCache[key] = tiles }
        return tiles
    }

    private func preprocess(_ input: VideoInput, frames: Int) throws(RunnerError) -> PixelTiles {
        var key: String?
        if case .file(let path) = input { key = "\(path)|\(frames)" }
        if let key, let hit = videoCache[key] { return hit }
        let videos = model.processor.videos
        func run(_ sample: Int?) throws(VideoError) -> PixelTiles {
            switch input {
            case .file(let path):
                return FileSystem.isDirectory(path) ? try videos.preprocess(folder: path, sample: sample)
                                                    : try videos.preprocess(videoFile: path, sample: sample)
            case .frames(let f): return try videos.preprocess(frames: f, sample: sample)
            }
        }
        let tiles: PixelTiles
        do {
            do { tiles = try run(frames) } catch .notEnoughFrames { tiles = try run(nil) }  // a short clip: every frame
        } catch { throw .video(error) }
        if let key { videoCache[key] = tiles }
        return tiles
    }
}

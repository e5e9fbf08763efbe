/// The processor settings that decide how many placeholder tokens an image or video takes
/// (`processor_config.json`: `patch_size`, `pooling_ratio`, and the image processor's `tile_size`).
public struct PlaceholderConfig: Sendable, Equatable {
    public var tileSize: Int
    public var patchSize: Int
    public var poolingRatio: Int
    public var imageToken: String
    public var videoToken: String

    public init(tileSize: Int, patchSize: Int, poolingRatio: Int, imageToken: String = "<|image|>", videoToken: String = "<|video|>") {
        self.tileSize = tileSize
        self.patchSize = patchSize
        self.poolingRatio = poolingRatio
        self.imageToken = imageToken
        self.videoToken = videoToken
    }

    /// `(tile // patch // pooling)²`: 256 for PLM's 448/14/2.
    public var tokensPerTile: Int {
        guard patchSize > 0, poolingRatio > 0 else { return 0 }
        let side = tileSize / patchSize / poolingRatio
        return side * side
    }
}

public enum PromptExpansionError: Error, Equatable, Sendable, CustomStringConvertible {
    case placeholderCountMismatch(kind: String, inPrompt: Int, given: Int)
    case invalidConfig(String)
    case tooManyTokens(Int)
    case tokenNotInVocabulary(String)

    public var description: String {
        switch self {
        case .placeholderCountMismatch(let k, let p, let g): return "the prompt has \(p) \(k) placeholder(s) but \(g) \(k)(s) were given"
        case .invalidConfig(let m): return "processor config: \(m)"
        case .tooManyTokens(let n): return "the expanded prompt would have \(n) tokens"
        case .tokenNotInVocabulary(let t): return "\(quoted(t)) is not a token of this tokenizer"
        }
    }
}

/// Expands `<|image|>`/`<|video|>` the way `PerceptionLMProcessor` does and tokenizes the prompt.
///
/// Each `<|image|>` (in order) becomes `tokensPerTile × tiles[i]` copies, each `<|video|>`
/// `tokensPerTile × frames[i]` copies; every copy is the single placeholder id. The rendered
/// prompt already starts with BOS, so it is tokenized without added special tokens (no second BOS).
public struct PromptExpander: Sendable {
    public let tokenizer: Tokenizer
    public let config: PlaceholderConfig
    /// A bound on the expanded length, so a huge tile count from input cannot exhaust memory.
    public static let maxTokens = 1 << 22

    public init(tokenizer: Tokenizer, config: PlaceholderConfig) {
        self.tokenizer = tokenizer
        self.config = config
    }

    public func ids(prompt: String, imageTiles: [Int], videoFrames: [Int]) throws(PromptExpansionError) -> [Int] {
        try expand(tokenizer.encode(prompt, addSpecialTokens: false), imageTiles: imageTiles, videoFrames: videoFrames)
    }

    /// Expands the placeholders of already tokenized ids (e.g. a plain prompt encoded with BOS).
    public func expand(_ base: [Int], imageTiles: [Int], videoFrames: [Int]) throws(PromptExpansionError) -> [Int] {
        guard config.tokensPerTile > 0 else { throw .invalidConfig("tile_size \(config.tileSize), patch_size \(config.patchSize), pooling_ratio \(config.poolingRatio) give no tokens per tile") }
        guard let imageId = tokenizer.tokenId(for: config.imageToken) else { throw .tokenNotInVocabulary(config.imageToken) }
        guard let videoId = tokenizer.tokenId(for: config.videoToken) else { throw .tokenNotInVocabulary(config.videoToken) }
        let images = base.filter { $0 == imageId }.count, videos = base.filter { $0 == videoId }.count
        guard images == imageTiles.count else { throw .placeholderCountMismatch(kind: "image", inPrompt: images, given: imageTiles.count) }
        guard videos == videoFrames.count else { throw .placeholderCountMismatch(kind: "video", inPrompt: videos, given: videoFrames.count) }
        var total = base.count
        for n in imageTiles + videoFrames {
            guard n > 0, n <= PromptExpander.maxTokens / config.tokensPerTile else { throw .tooManyTokens(n) }
            total += n * config.tokensPerTile - 1
            guard total <= PromptExpander.maxTokens else { throw .tooManyTokens(total) }
        }
        var out: [Int] = []
        out.reserveCapacity(total)
        var nextImage = 0, nextVideo = 0
        for id in base {
            if id == imageId {
                out.append(contentsOf: repeatElement(imageId, count: imageTiles[nextImage] * config.tokensPerTile))
                nextImage += 1
            } else if id == videoId {
                out.append(contentsOf: repeatElement(videoId, count: videoFrames[nextVideo] * config.tokensPerTile))
                nextVideo += 1
            } else {
                out.append(id)
            }
        }
        return out
    }
}

import PLMCore
import PLMImage
import PLMModel
import PLMTokenizer

/// `PerceptionLMProcessor` in Swift: the model's tokenizer, its image and video processors and
/// the placeholder expansion, read from the model's own files (a checkpoint folder or a `.plm`).
public struct Processor: Sendable {
    public let tokenizer: Tokenizer
    public let images: PerceptionLMImageProcessor
    public let videos: VideoProcessor
    public let expander: PromptExpander
    /// The special tokens transformers passes to the chat template (tokenizer_config.json).
    public let specialTokens: SpecialTokensMap

    /// Reads tokenizer.json and processor_config.json from the model. A missing tokenizer is an
    /// error; a missing processor config falls back to PerceptionLM's published defaults only
    /// when the model's vision tower takes the default 448-pixel tiles (documented).
    public init(bundle: ModelBundle, threads: Int = 1) throws(RunnerError) {
        let json: [UInt8]
        do {
            guard let bytes = try bundle.tokenizerJSON else {
                throw RunnerError.missingPart(model: bundle.path, part: "tokenizer.json", detail: "the model ships no tokenizer; plmq cannot turn text into ids")
            }
            json = bytes
        } catch let e as RunnerError { throw e } catch let e as EngineError { throw .engine(e) } catch {
            throw .invalidConversation("\(error)")
        }
        do { tokenizer = try Tokenizer(json: json, source: bundle.path + ":tokenizer.json") } catch { throw .tokenizer(error) }
        do {
            let config: JSONValue?
            do { config = try bundle.sideJSON("tokenizer_config.json") } catch { throw RunnerError.engine(error) }
            specialTokens = try SpecialTokensMap(tokenizerConfig: config, source: bundle.path + ":tokenizer_config.json")
        } catch let e as RunnerError { throw e } catch let e as TokenizerError { throw .tokenizer(e) } catch { throw .invalidConversation("\(error)") }

        let tile = bundle.config.vision.imageHeight
        var imageConfig = ImageProcessorConfig.perceptionLM
        var videoConfig = VideoProcessorConfig.perceptionLM
        var patch = bundle.config.vision.patchSize, pooling = bundle.config.projectorPoolingRatio
        let processorJSON: JSONValue?
        do { processorJSON = try bundle.processorConfig } catch { throw .engine(error) }
        if let processorJSON {
            let bytes = Array(processorJSON.serialized().utf8)
            do {
                imageConfig = try ImageProcessorConfig.fromProcessorConfig(bytes)
                videoConfig = try VideoProcessorConfig.fromProcessorConfig(bytes)
            } catch {
                throw .missingPart(model: bundle.path, part: "usable processor config", detail: error.description)
            }
            if let p = processorJSON.objectValue?["patch_size"]?.intValue { patch = p }
            if let r = processorJSON.objectValue?["pooling_ratio"]?.intValue { pooling = r }
        } else if tile != imageConfig.tileSize {
            throw .missingPart(model: bundle.path, part: "processor_config.json",
                               detail: "the vision tower takes \(tile)-pixel tiles, so PerceptionLM's 448-pixel defaults do not apply")
        }
        guard imageConfig.tileSize == tile else {
            throw .missingPart(model: bundle.path, part: "consistent processor config",
                               detail: "the processor makes \(imageConfig.tileSize)-pixel tiles but the vision tower takes \(tile)")
        }
        images = PerceptionLMImageProcessor(config: imageConfig, threads: threads)
        videos = VideoProcessor(config: videoConfig, threads: threads)
        expander = PromptExpander(tokenizer: tokenizer, config: PlaceholderConfig(tileSize: tile, patchSize: patch, poolingRatio: pooling))
    }
}

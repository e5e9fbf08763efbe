import Foundation
import PLMCheckpoint
import PLMCore
import PLMImage
import PLMModel
import PLMTokenizer
import Synchronization

/// Options of one answer.
public struct GenerateOptions: Sendable, Equatable {
    public var sampling: SamplingParameters
    public var maxNewTokens: Int
    /// Tiles per image (nil: the processor config's `max_num_tiles`).
    public var maxTiles: Int?
    /// Frames sampled per video (a shorter video uses every frame).
    public var frames: Int
    /// Extra stop ids besides the model's eos ids.
    public var stopTokens: Set<Int>

    public init(sampling: SamplingParameters = .greedy, maxNewTokens: Int = 256, maxTiles: Int? = nil, frames: Int = 32,
                stopTokens: Set<Int> = []) {
        self.sampling = sampling
        self.maxNewTokens = maxNewTokens
        self.maxTiles = maxTiles
        self.frames = frames
        self.stopTokens = stopTokens
    }
}

/// A PerceptionLM ready to answer: the engine, the processor (tokenizer, image and video
/// processors) and the chat template, all from the model's own files. Load once, share freely:
/// it is `Sendable`, and concurrent requests take turns (one answer computes at a time, each
/// with all the cores of its `EngineOptions`).
public final class VisionLanguageModel: Sendable {
    public let bundle: ModelBundle
    public let engine: PerceptionLM
    public let processor: Processor
    public let template: ChatTemplate
    /// Serialises requests: a second one waits for the first (documented behaviour).
    let turn = Mutex(())

    public var generation: GenerationConfig { bundle.generation }

    /// With an `observer`, the engine's linear maps report their inputs to it (calibration).
    public init(bundle: ModelBundle, options: EngineOptions = EngineOptions(), observer: ActivationObserver? = nil) throws(RunnerError) {
        self.bundle = bundle
        do { engine = try PerceptionLM.load(bundle, options: options, observer: observer) } catch { throw .engine(error) }
        processor = try Processor(bundle: bundle, threads: options.threads)
        let source: String?
        do { source = try bundle.chatTemplate } catch { throw .engine(error) }
        guard let source else {
            throw .missingPart(model: bundle.path, part: "chat template",
                               detail: "the model ships no chat_template.jinja, chat_template.json or tokenizer_config.json template")
        }
        do { template = try ChatTemplate(source: source) } catch {
            throw .missingPart(model: bundle.path, part: "usable chat template", detail: error.description)
        }
    }

    /// Opens and loads MODEL: a checkpoint folder or a `.plm` file.
    public convenience init(path: String, options: EngineOptions = EngineOptions()) throws(RunnerError) {
        let bundle: ModelBundle
        do { bundle = try ModelBundle.open(path) } catch { throw .engine(error) }
        try self.init(bundle: bundle, options: options)
    }

    /// The ids generation stops on: generation_config.json's eos ids plus the caller's.
    func stopTokens(_ options: GenerateOptions) -> Set<Int> { Set(generation.eosTokenIds).union(options.stopTokens) }

    /// A new conversation (its own KV cache).
    public func session() -> ChatSession { ChatSession(model: self) }

    /// Answers `messages` (the last one the user's), streaming text as it is generated. The
    /// stream ends with `.finished`; cancelling the consuming task stops generation at the next
    /// token.
    public func stream(_ messages: [Message], options: GenerateOptions = GenerateOptions()) -> AsyncThrowingStream<GenerationEvent, Error> {
        let cancellation = CancellationFlag()
        return AsyncThrowingStream { continuation in
            continuation.onTermination = { _ in cancellation.cancel() }
            let work = Thread {
                do {
                    let session = self.session()
                    let result = try session.respond(to: messages, options: options, cancellation: cancellation) { text, _ in
                        continuation.yield(.text(text))
                    }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            work.stackSize = 8 << 20
            work.start()
        }
    }
}

/// What a streamed answer delivers: text as soon as it is whole UTF-8, then the result.
public enum GenerationEvent: Sendable {
    case text(String)
    case finished(GenerationResult)
}

import PLMCore
import PLMModel
import PLMQuant
import PLMRunner

/// Settings of a calibration run (`plmq convert --calibrate`).
public struct CalibrationOptions: Sendable {
    /// Tokens per chunk of a text file (llama.cpp's imatrix uses 512 too).
    public var context = 512
    /// At most this many language-model tokens are run in total (a text is cut, samples stop).
    public var maxTokens = 16_384
    public var maxTiles: Int?
    public var frames = 32
    public init() {}
}

/// Runs the fp32 engine over a calibration input and gathers every linear map's mean x² per input
/// column: the statistics the importance-weighted scale search uses.
///
/// A text file is tokenized once (BOS first when the model adds one) and cut into chunks of
/// `context` tokens, each run from an empty cache with its first token replaced by BOS, as
/// llama-perplexity and llama.cpp's imatrix do; the last chunk may be shorter. A samples folder
/// runs each sample's prompt (its images through the vision tower, so the tower's maps are
/// calibrated too) followed by its reference answer, if any. Every position's logits are
/// computed, so the head sees every token too. One thread drives the model, so the sums, and
/// the file converted with them, are the same on every run.
public enum Calibration {
    public static func run(model path: String, input: String, options: CalibrationOptions, engine: EngineOptions,
                           progress: (Int, Int) -> Void = { _, _ in }) throws(EvaluationError) -> ColumnImportance {
        guard options.context >= 2 else { throw .text("--calibrate-ctx \(options.context): at least 2 tokens per chunk are needed") }
        guard options.maxTokens >= 1 else { throw .text("--calibrate-tokens \(options.maxTokens): at least 1 token is needed") }
        let observer = ActivationObserver()
        let model: VisionLanguageModel
        let bundle: ModelBundle
        do { bundle = try ModelBundle.open(path) } catch { throw .runner(sample: "calibration", .engine(error)) }
        do { model = try VisionLanguageModel(bundle: bundle, options: engine, observer: observer) } catch {
            throw .runner(sample: "calibration", error)
        }
        if FileSystem.isDirectory(input) {
            let set: SampleSet
            do { set = try SampleSet(folder: input) } catch { throw .samples(error) }
            let hash: String
            do { hash = try set.datasetHash() } catch { throw .samples(error) }
            let (tokens, items) = try runSamples(set, model: model, options: options, progress: progress)
            return ColumnImportance(meanSquares: observer.meanSquares(), kind: "samples", source: FileSystem.fileName(input),
                                    sha256: hash, tokens: tokens, items: items)
        }
        let bytes: [UInt8]
        do { bytes = try FileSystem.readBytes(input) } catch { throw .text(error.description) }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .text("\(input): not valid UTF-8 text") }
        let chunks = textChunks(text, model: model, options: options)
        guard !chunks.isEmpty else { throw .text("\(input): the text holds no tokens to calibrate on") }
        for (i, chunk) in chunks.enumerated() {
            do { _ = try InferenceContext(model: model.engine, reserve: chunk.count).append(chunk, logits: .all) } catch {
                throw .runner(sample: "calibration chunk \(i)", .engine(error))
            }
            progress(i + 1, chunks.count)
        }
        return ColumnImportance(meanSquares: observer.meanSquares(), kind: "text", source: FileSystem.fileName(input),
                                sha256: SHA256.hex(of: bytes), tokens: chunks.reduce(0) { $0 + $1.count }, items: chunks.count)
    }

    /// The text's tokens (at most `maxTokens`) in chunks of `context`, each starting with BOS
    /// (replacing its first token) when the model adds one.
    static func textChunks(_ text: String, model: VisionLanguageModel, options: CalibrationOptions) -> [[Int]] {
        let bos = model.generation.bosTokenId
        let all = (bos.map { [$0] } ?? []) + model.processor.tokenizer.encode(text, addSpecialTokens: false)
        let tokens = all.prefix(options.maxTokens)
        var chunks: [[Int]] = []
        var start = 0
        while start < tokens.count {
            var chunk = Array(tokens[start..<min(start + options.context, tokens.count)])
            if let bos { chunk[0] = bos }
            chunks.append(chunk)
            start += options.context
        }
        return chunks
    }

    static func runSamples(_ set: SampleSet, model: VisionLanguageModel, options: CalibrationOptions,
                           progress: (Int, Int) -> Void) throws(EvaluationError) -> (tokens: Int, items: Int) {
        let generate = GenerateOptions(sampling: .greedy, maxNewTokens: 1, maxTiles: options.maxTiles, frames: options.frames)
        let limit = min(model.engine.config.text.maxPositionEmbeddings, options.maxTokens)
        var tokens = 0, items = 0
        for (done, sample) in set.samples.enumerated() where tokens < options.maxTokens {
            let id = sample.id
            func run<T>(_ body: () throws(RunnerError) -> T) throws(EvaluationError) -> T {
                do { return try body() } catch { throw .runner(sample: id, error) }
            }
            let prompt = try run { () throws(RunnerError) in
                try model.session().preparePrompt(Evaluator.messages(sample, folder: set.folder), options: generate)
            }
            var ids = prompt.ids
            if let answer = sample.answer { ids += model.processor.tokenizer.encode(answer, addSpecialTokens: false) }
            // A sample longer than the context keeps its prompt (the placeholders must all be
            // there) and loses the end of its answer.
            if ids.count > limit { ids = Array(ids.prefix(max(prompt.ids.count, limit))) }
            let engine = model.engine
            try run { () throws(RunnerError) in
                do {
                    let images = try PixelTiles.concatenated(prompt.images).map { tiles throws(EngineError) in try engine.encode(tiles) }
                    let videos = try PixelTiles.concatenated(prompt.videos).map { tiles throws(EngineError) in try engine.encode(tiles) }
                    _ = try InferenceContext(model: engine, reserve: ids.count).append(ids, images: images, videos: videos, logits: .all)
                } catch let e as EngineError { throw .engine(e) } catch { throw .invalidConversation("\(error)") }
            }
            tokens += ids.count
            items += 1
            progress(done + 1, set.samples.count)
        }
        return (tokens, items)
    }
}

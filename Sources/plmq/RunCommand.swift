import ArgumentParser
import PLMCheckpoint
import PLMCore
import PLMModel
import PLMRunner
#if canImport(Glibc)
import Glibc
#endif

/// Sampling and length options shared by `run` and `chat`; unset values take the model's
/// generation_config.json defaults (PerceptionLM's: greedy).
struct SamplingOptions: ParsableArguments {
    @Option(help: "Most tokens to generate (default: generation_config's max_new_tokens, else 512).")
    var maxNewTokens: Int?

    @Option(help: "Sampling temperature; 0 is greedy (default: the model's, greedy for PLM).")
    var temperature: Double?

    @Option(help: "Keep only the K most likely tokens when sampling (0: off).")
    var topK: Int?

    @Option(help: "Nucleus sampling: keep the most likely tokens up to probability P.")
    var topP: Double?

    @Option(help: "Drop tokens less likely than P times the most likely one.")
    var minP: Double?

    @Option(help: "Penalty > 1 for tokens already in the context (1: off).")
    var repeatPenalty: Double?

    @Option(help: "Seed of the sampler (the same seed gives the same answer).")
    var seed: UInt64 = 0

    @Option(help: "Most tiles per image (default: the processor config's max_num_tiles).")
    var maxTiles: Int?

    @Option(help: "Frames sampled per video (a shorter clip uses every frame).")
    var frames = 32

    func validate() throws {
        if let maxNewTokens, maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
        if let maxTiles, !(1...256).contains(maxTiles) { throw ValidationError("--max-tiles must be between 1 and 256") }
        guard (1...1024).contains(frames) else { throw ValidationError("--frames must be between 1 and 1024") }
        do { try parameters(GenerationConfig()).validate() } catch { throw ValidationError(error.description) }
    }

    func parameters(_ generation: GenerationConfig) -> SamplingParameters {
        var p = SamplingParameters(generation: generation, seed: seed)
        if let temperature { p.temperature = temperature }
        if let topK { p.topK = topK }
        if let topP { p.topP = topP }
        if let minP { p.minP = minP }
        if let repeatPenalty { p.repeatPenalty = repeatPenalty }
        return p
    }

    func options(_ model: VisionLanguageModel) -> GenerateOptions {
        GenerateOptions(sampling: parameters(model.generation), maxNewTokens: maxNewTokens ?? model.generation.maxNewTokens ?? 512,
                        maxTiles: maxTiles, frames: frames)
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Answer a prompt about images or a video, streaming the answer.",
        discussion: """
            The prompt is rendered with the model's chat template; images (PNG/JPEG) and videos \
            (a video file, decoded by ffmpeg, or a folder of frames) are preprocessed as \
            transformers' PerceptionLMProcessor does and expanded into placeholders. The answer \
            streams to stdout as it is generated. Defaults come from generation_config.json \
            (PerceptionLM: greedy, stopping on its eos ids).

            Examples:
              plmq run model.plm --image photo.jpg --prompt "What is in this picture?"
              plmq run model.plm --video clip.mp4 --prompt "What happens?" --frames 16
              plmq run model.plm --prompt "Hello" --temperature 0.7 --seed 1 --stats
            """
    )

    @Argument(help: "A .plm file or a checkpoint folder.")
    var model: String

    @Option(name: .customLong("image"), help: "An image (repeatable; in the order they are asked about).")
    var images: [String] = []

    @Option(name: .customLong("video"), help: "A video file or a folder of frames (repeatable).")
    var videos: [String] = []

    @Option(help: "The question or instruction.")
    var prompt: String

    @Option(help: "A system message (default: the chat template's own).")
    var system: String?

    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var compute: ComputeOptions

    @Flag(help: "Print load time, vision time per tile, prefill and decode speed, time to first token and peak RSS to stderr.")
    var stats = false

    @Flag(help: "Print one JSON object (text, ids, finish reason, timings) instead of streaming.")
    var json = false

    func validate() throws {
        if prompt.allSatisfy(\.isWhitespace) && images.isEmpty && videos.isEmpty {
            throw ValidationError("the prompt is empty: give --prompt text, an --image or a --video")
        }
        guard images.count <= 64, videos.count <= 8 else { throw ValidationError("at most 64 images and 8 videos") }
    }

    func run() throws {
        try reportingErrors {
            for path in images + videos where !FileSystem.exists(path) {
                throw UserFacingError("\(path): no such file or folder")
            }
            let started = monotonicSeconds()
            let vlm = try VisionLanguageModel(path: model, options: compute.engine)
            let loaded = monotonicSeconds()
            var messages: [Message] = []
            if let system { messages.append(.system(system)) }
            messages.append(.user(prompt, images: images.map { .file($0) }, videos: videos.map { .file($0) }))
            let session = vlm.session()
            let result = try session.respond(to: messages, options: sampling.options(vlm)) { text, _ in
                if !json { writeStandardOutput(text) }
            }
            if json {
                print(RunReport(result: result, loadSeconds: loaded - started).json.serialized(pretty: true))
            } else {
                writeStandardOutput("\n")
            }
            if stats { writeStandardError(RunReport(result: result, loadSeconds: loaded - started).text + "\n") }
        }
    }
}

/// The timings of one answer, as `--stats` text and in `--json`.
struct RunReport {
    let result: GenerationResult
    let loadSeconds: Double

    var text: String {
        let s = result.stats
        return """
            load \(seconds(loadSeconds)); vision \(s.visionTiles) tile\(s.visionTiles == 1 ? "" : "s") in \(seconds(s.visionSeconds))\
            \(s.visionTiles > 0 ? " (\(seconds(s.visionSecondsPerTile)) per tile)" : ""); prefill \(s.prefillTokens) tokens \
            (\(s.cachedTokens) cached) at \(String(format2: s.prefillTokensPerSecond)) tokens/s; first token after \(seconds(s.timeToFirstToken)); \
            decode \(s.decodeTokens) tokens at \(String(format2: s.decodeTokensPerSecond)) tokens/s; \
            finish \(result.finish.rawValue); peak RSS \(formatBytes(peakResidentBytes()))
            """
    }

    var json: JSONValue {
        let s = result.stats
        return .object(JSONObject([
            ("text", .string(result.text)), ("ids", .array(result.ids.map { .int($0) })), ("finish_reason", .string(result.finish.rawValue)),
            ("timings", .object(JSONObject([
                ("load_seconds", .double(loadSeconds)), ("vision_tiles", .int(s.visionTiles)), ("vision_seconds", .double(s.visionSeconds)),
                ("vision_seconds_per_tile", .double(s.visionSecondsPerTile)), ("prefill_tokens", .int(s.prefillTokens)),
                ("cached_tokens", .int(s.cachedTokens)), ("prefill_seconds", .double(s.prefillSeconds)),
                ("prefill_tokens_per_second", .double(s.prefillTokensPerSecond)), ("time_to_first_token", .double(s.timeToFirstToken)),
                ("decode_tokens", .int(s.decodeTokens)), ("decode_seconds", .double(s.decodeSeconds)),
                ("decode_tokens_per_second", .double(s.decodeTokensPerSecond)), ("peak_rss_bytes", .int(peakResidentBytes())),
            ]))),
        ]))
    }
}

/// Writes to stdout at once (no buffering), so streamed text appears as it is generated.
func writeStandardOutput(_ text: String) {
    let bytes = Array(text.utf8)
    bytes.withUnsafeBytes { raw in
        guard let base = raw.baseAddress else { return }
        var offset = 0
        while offset < raw.count {
            let n = write(1, base + offset, raw.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }  // stdout closed: nothing more to show
            offset += n
        }
    }
}

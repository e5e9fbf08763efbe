import PLMCore
import ArgumentParser
import PLMCheckpoint
import PLMModel

struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run one forward pass and save logits and vision outputs (for parity checks).",
        discussion: """
            INPUTS is a safetensors file with `input_ids` (I64/I32, [B, L] or [L]) and optional \
            `pixel_values` / `pixel_values_videos` (F32, [N, T, 3, S, S] or [T, 3, S, S]). The output \
            holds `logits` [B, L, V] (f32), and when images are given `image_features` (projector \
            output) and `vision_hidden` (tower output); videos add `video_features`. Compare it with \
            transformers' outputs for the same inputs.
            """
    )

    @Argument(help: "A checkpoint folder or a .plm file.")
    var model: String

    @Option(help: "Input tensors (safetensors).")
    var inputs: String

    @Option(help: "Where to write the outputs (safetensors, written atomically).")
    var output: String

    @Option(help: "Keep only the logits of the last N positions of each sequence.")
    var last: Int?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if let last, last < 1 { throw ValidationError("--last must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let started = monotonicSeconds()
            let model = try loadModel(model, compute)
            let loaded = monotonicSeconds()
            let inputs = try ModelInputs(path: inputs)
            let results = try model.forward(batch: inputs.sequences, images: inputs.images, videos: inputs.videos, lastPositions: last)
            let done = monotonicSeconds()
            let vocab = model.config.text.vocabSize
            var records = [TensorRecord(name: "logits", shape: [results.count, results[0].positions, vocab], floats: results.flatMap(\.logits))]
            let v = model.config.vision
            if let images = results[0].images {
                records.append(TensorRecord(name: "vision_hidden", shape: [images.tiles, v.tokenCount, v.embedDim], floats: images.visionHidden))
                records.append(TensorRecord(name: "image_features", shape: [images.tiles, model.config.tokensPerTile, model.config.text.hiddenSize], floats: images.features))
            }
            if let videos = results[0].videos {
                records.append(TensorRecord(name: "video_features", shape: [videos.tiles, model.config.tokensPerTile, model.config.text.hiddenSize], floats: videos.features))
            }
            try SafetensorsWriter.write(records, metadata: ["producer": "plmq \(PLMQ.version)"], to: output,
                                        protecting: modelFiles(self.model) + [self.inputs])
            let tokens = inputs.sequences.reduce(0) { $0 + $1.count }
            writeStandardError("forward: \(inputs.sequences.count) sequence(s), \(tokens) tokens, load \(seconds(loaded - started)), "
                + "forward \(seconds(done - loaded)), peak RSS \(formatBytes(peakResidentBytes())) → \(output)\n")
        }
    }
}

func seconds(_ s: Double) -> String { s < 1 ? "\(Int((s * 1000).rounded())) ms" : String(fixed: s, decimals: 2) + " s" }

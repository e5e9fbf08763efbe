import ArgumentParser
import PLMCheckpoint
import PLMCore
import PLMEval
import PLMModel
import PLMRunner

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure how far quantized models are from their fp32 reference, on images and text.",
        discussion: """
            Each sample of DIR/samples.jsonl (Formats/SAMPLES.md) is answered by the fp32 reference \
            (the checkpoint folder recorded in the .plm, or --reference) and by every MODEL, \
            teacher-forced over the same answer tokens (the sample's answer, else the reference's \
            greedy answer). Reported per model, with llama-perplexity's definitions and \
            uncertainties: mean/median/percentile KL(fp32 ‖ model), same top token, RMS Δp, the \
            answer's perplexity ratio; the projector features' cosine per tile; greedy exact-match \
            rate and first divergence; task accuracy when samples have answers.

            --text FILE --ctx N scores a raw text as `llama-perplexity --kl-divergence` does \
            (chunks of N tokens, each scored on its second half), so the numbers can be put beside \
            llama.cpp's on the same weights and text.

            Exit status 1 when --max-kl or --min-top1 is broken, 2 on bad input.
            """
    )

    @Argument(help: "One or more .plm files (a column each).")
    var models: [String]

    @Option(help: "A samples folder (samples.jsonl with images).")
    var dataset: String?

    @Option(help: "A text file to score in llama-perplexity's chunks instead of a samples folder.")
    var text: String?

    @Option(help: "Tokens per chunk for --text (llama-perplexity's -c).")
    var ctx = 512

    @Option(help: "Score at most N chunks of --text.")
    var chunks: Int?

    @Option(help: "The fp32 reference checkpoint folder (default: the folder recorded in the first .plm).")
    var reference: String?

    @Option(help: "A folder for the reference's cached results (Formats/REFCACHE.md): the first run writes them, later runs on the same reference, dataset and settings read them instead of running the fp32 model's passes.")
    var referenceCache: String?

    @Option(help: "Most tiles per image (default: the processor config's).")
    var maxTiles: Int?

    @Option(help: "Most tokens of each greedy answer.")
    var maxNewTokens = 64

    @Option(help: "Write the whole report as JSON here.")
    var json: String?

    @Option(help: "Write a self-contained HTML page (tables, charts, thumbnails) here.")
    var html: String?

    @Option(help: "Fail (exit 1) when a model's mean KL divergence is above this.")
    var maxKl: Double?

    @Option(help: "Fail (exit 1) when a model's same-top-token rate (0–1) is below this.")
    var minTop1: Double?

    @Flag(help: "Also compare the hidden state after every vision block and decoder layer (cosine, relative error), to show where the error enters.")
    var perLayer = false

    @Flag(help: "Skip malformed sample lines (reported) instead of stopping.")
    var skipBad = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard (dataset == nil) != (text == nil) else { throw ValidationError("give exactly one of --dataset DIR or --text FILE") }
        guard (16...32768).contains(ctx) else { throw ValidationError("--ctx must be between 16 and 32768") }
        guard (1...4096).contains(maxNewTokens) else { throw ValidationError("--max-new-tokens must be between 1 and 4096") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
        if let minTop1, !(0...1).contains(minTop1) { throw ValidationError("--min-top1 is a fraction between 0 and 1") }
        if let maxTiles, !(1...256).contains(maxTiles) { throw ValidationError("--max-tiles must be between 1 and 256") }
    }

    func run() throws {
        try reportingErrors {
            let engine = compute.engine
            var evaluated: [EvaluatedModel] = []
            for path in models {
                let bundle = try ModelBundle.open(path)
                guard case .plm = bundle.source else { throw UserFacingError("\(path): eval compares .plm files with their fp32 checkpoint; give the checkpoint as --reference") }
                evaluated.append(EvaluatedModel(info: try modelInfo(path, bundle), model: try VisionLanguageModel(bundle: bundle, options: engine)))
            }
            let referencePath = try resolveReference(evaluated[0])
            let referenceBundle = try ModelBundle.open(referencePath)
            let reference = EvaluatedModel(info: try modelInfo(referencePath, referenceBundle),
                                           model: try VisionLanguageModel(bundle: referenceBundle, options: engine))
            var options = EvaluationOptions()
            options.maxTiles = maxTiles
            options.maxNewTokens = maxNewTokens
            options.perLayer = perLayer
            options.producer = "plmq \(PLMQ.version)"
            options.thresholds = EvalThresholds(maxMeanKLD: maxKl, minSameTop: minTop1)
            let evaluator = Evaluator(reference: reference, models: evaluated, options: options)
            let started = monotonicSeconds()
            let progress = { (done: Int, total: Int) in
                let elapsed = monotonicSeconds() - started
                let rate = Double(done) / max(elapsed, 1e-9)
                writeStandardError("\reval: \(done)/\(total), \(String(format2: rate)) per second, \(seconds(Double(total - done) / max(rate, 1e-9))) left   ")
                if done == total { writeStandardError("\n") }
            }
            let report: EvalReport
            if let dataset {
                let set = try SampleSet(folder: dataset)
                for problem in set.problems { writeStandardError("plmq: \(dataset)/samples.jsonl: \(problem)\n") }
                if !skipBad { try set.requireClean() }
                let hash = try set.datasetHash()
                var cache: Evaluator.CacheUse?
                if let referenceCache {
                    if !FileSystem.isDirectory(referenceCache) { try FileSystem.makeDirectory(referenceCache) }
                    let key = ReferenceCacheKey(referenceSHA256: reference.info.sha256, datasetHash: hash,
                                                settings: ["max_new_tokens": "\(maxNewTokens)", "max_tiles": maxTiles.map(String.init) ?? "default", "frames": "32"])
                    do {
                        let reader = try ReferenceCache(folder: referenceCache, key: key)
                        writeStandardError("eval: reference results read from \(reader.path) (\(reader.sampleIDs.count) samples)\n")
                        cache = Evaluator.CacheUse(reader: reader, writer: nil)
                    } catch ReferenceCacheError.notFound {
                        let writer = try ReferenceCacheWriter(folder: referenceCache, key: key, vocabulary: reference.model.engine.config.text.vocabSize)
                        cache = Evaluator.CacheUse(reader: nil, writer: writer)
                    }
                }
                report = try evaluator.evaluate(samples: set, datasetHash: hash, cache: cache, progress: progress)
                if let writer = cache?.writer {
                    let bytes = try writer.commit()
                    writeStandardError("eval: reference results cached in \(writer.path) (\(formatBytes(bytes)))\n")
                }
            } else if let text {
                let bytes = try FileSystem.readBytes(text)
                guard let content = String(validating: bytes, as: UTF8.self) else { throw UserFacingError("\(text): not valid UTF-8 text") }
                report = try evaluator.evaluate(text: content, source: text, context: ctx, maxChunks: chunks, progress: progress)
            } else {
                throw ValidationError("give --dataset DIR or --text FILE")
            }
            print(report.textTable)
            let inputs = models + [referencePath] + [dataset, text].compactMap { $0 }
            if let json {
                try write(Array(report.json.serialized(pretty: true).utf8), to: json, protecting: inputs)
                print("wrote \(json)")
            }
            if let html {
                try write(Array(HTMLReport.render(report).utf8), to: html, protecting: inputs)
                print("wrote \(html)")
            }
            if !report.passed { throw CheckFailure(description: "a threshold is broken (see the table)") }
        }
    }

    func write(_ bytes: [UInt8], to path: String, protecting inputs: [String]) throws {
        let writer = try AtomicFileWriter(path: path, protecting: inputs.flatMap(modelFiles))
        try writer.write(bytes)
        try writer.commit()
    }

    /// --reference, or the source folder recorded in the .plm, checked against the SHA-256s the
    /// conversion recorded: a moved or changed checkpoint is an error, not a silent comparison
    /// with other weights.
    func resolveReference(_ first: EvaluatedModel) throws -> String {
        if let reference { return reference }
        guard let metadata = first.model.bundle.metadata, let folder = metadata.sourceFolder else {
            throw UserFacingError("\(first.info.path) does not record its source checkpoint; give it as --reference")
        }
        guard FileSystem.isDirectory(folder) else {
            throw UserFacingError("\(first.info.path) was converted from \(folder), which no longer exists; give the checkpoint as --reference")
        }
        for source in metadata.sources where source.name.hasSuffix(".safetensors") || source.name == "config.json" {
            let path = FileSystem.join(folder, source.name)
            guard FileSystem.exists(path), SHA256.hex(of: try MappedFile(path: path)) == source.sha256 else {
                throw UserFacingError("\(folder)/\(source.name) changed since \(first.info.path) was converted from it; give the original checkpoint as --reference")
            }
        }
        return folder
    }
}

/// A model's identity in a report: its name, path and SHA-256 (of the file, or of a folder's shards).
func modelInfo(_ path: String, _ bundle: ModelBundle) throws -> ModelInfo {
    switch bundle.source {
    case .plm(let file):
        return ModelInfo(name: FileSystem.fileName(path), path: path, sha256: SHA256.hex(of: file.file),
                         storage: bundle.metadata?.recipeName.map { "recipe \($0)" })
    case .checkpoint(let folder):
        // A folder is named by its weights: the SHA-256 of each shard, hashed together.
        let hasher = SHA256Hasher()
        for shard in folder.weights.shards { hasher.update(SHA256.hex(of: shard.file)) }
        return ModelInfo(name: FileSystem.fileName(path) + " (fp32)", path: path, sha256: hasher.finalizeHex(), storage: "fp32")
    }
}

/// Evaluates a just-converted file against its source checkpoint on a samples folder, for the
/// quality certificate of `plmq convert --eval-dataset`.
func evaluateConversion(output: String, source: String, dataset: String, engine: EngineOptions) throws -> EvalReport {
    let bundle = try ModelBundle.open(output)
    let model = EvaluatedModel(info: try modelInfo(output, bundle), model: try VisionLanguageModel(bundle: bundle, options: engine))
    let referenceBundle = try ModelBundle.open(source)
    let reference = EvaluatedModel(info: try modelInfo(source, referenceBundle), model: try VisionLanguageModel(bundle: referenceBundle, options: engine))
    var options = EvaluationOptions()
    options.producer = "plmq \(PLMQ.version)"
    let set = try SampleSet(folder: dataset)
    try set.requireClean()
    return try Evaluator(reference: reference, models: [model], options: options).evaluate(samples: set, datasetHash: try set.datasetHash())
}

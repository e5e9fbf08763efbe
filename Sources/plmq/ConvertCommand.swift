import PLMCore
import ArgumentParser
import PLMModel
import PLMEval
import PLMCheckpoint
import PLMConvert
import PLMFormat
import PLMQuant
#if canImport(Glibc)
import Glibc
#endif

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Quantize a checkpoint folder into one verifiable .plm file.",
        discussion: """
            Linear weights of the language model, vision tower and projector are quantized in \
            groups along their input dimension; norms, biases, layer scales, position embeddings \
            and the class token stay exact. With --bits 4 the token embedding and lm_head use int8. \
            Use --dry-run to see the plan and the exact output size first.

            Storage types: int4 (default: asymmetric, two-level k6 scales, 4.5 bits per weight at \
            group 32), int4-sym, int4-asym-f16, int8 (symmetric, 8.5 bits per weight at group 32), \
            int8-asym; f32, f16, bf16 and exact (the source dtype) keep values exactly.

            The output is written to a temporary file next to OUT, fsync'ed and renamed: an error, \
            Ctrl-C or a full disk never leaves a partial OUT and never harms an existing one. The \
            same input and options always give the same bytes.
            """
    )

    @Argument(help: "A checkpoint folder (config.json + model.safetensors, or a sharded index).")
    var input: String

    @Argument(help: "The .plm file to write.")
    var output: String

    @Option(help: "Bits of the linear weights: 4 or 8 (default 4).")
    var bits: Int?

    @Option(help: "Weights per quantization group along the input dimension: 32, 64 or 128.")
    var groupSize = 32

    @Flag(help: "Scheme of the quantized weights (default: asymmetric for 4 bits, symmetric for 8).")
    var scheme: SchemeFlag?

    @Option(help: "Named recipe: \(Recipe.allCases.map(\.rawValue).joined(separator: ", ")).")
    var recipe: Recipe = .standard

    @Option(name: .customLong("keep"), help: ArgumentHelp("Store tensors matching REGEX as TYPE (repeatable, first match wins), e.g. 'vision_tower=int8' or 'lm_head=exact'.", valueName: "REGEX=TYPE"))
    var keep: [String] = []

    @Flag(help: "zstd-compress payloads where that saves at least 5 % (they are then decompressed at load).")
    var compress = false

    @Flag(help: "Print the plan and the exact output size without writing anything.")
    var dryRun = false

    @Flag(help: "Convert weights that hold NaN or Inf instead of refusing them; quantized groups holding one are stored as NaN, so outputs that read them are NaN (Formats/PLM.md).")
    var allowNonfinite = false

    @Flag(help: "Print only errors.")
    var quiet = false

    @Option(help: "Threads for quantization (default: all cores).")
    var threads: Int?

    @Option(help: "After converting, evaluate the file against the checkpoint on this samples folder and record the result in it (the quality certificate; see plmq eval).")
    var evalDataset: String?

    @Option(help: ArgumentHelp("Calibrate on a text file (chunks of --calibrate-ctx tokens) or a samples folder (as plmq eval --dataset takes; its images calibrate the vision tower): the fp32 engine's mean x² per input column weighs each column's error in the scale search. The input's SHA-256 is recorded in the file.", valueName: "DIR|FILE"))
    var calibrate: String?

    @Option(help: "Calibrate on at most this many tokens.")
    var calibrateTokens = 16_384

    @Option(help: "Tokens per chunk of a --calibrate text file.")
    var calibrateCtx = 512

    @Option(help: ArgumentHelp("Choose int4 or int8 per linear weight to minimise the predicted output error within X bits per weight over the whole model (uncompressed); needs --calibrate. Reports the achieved bits per weight and the predicted error.", valueName: "X"))
    var targetBpw: Double?

    enum SchemeFlag: String, EnumerableFlag {
        case symmetric, asymmetric
    }

    func validate() throws {
        if let bits { guard bits == 4 || bits == 8 else { throw ValidationError("--bits must be 4 or 8") } }
        if let targetBpw {
            guard calibrate != nil else { throw ValidationError("--target-bpw needs --calibrate DIR|FILE: its predicted errors are weighted by the calibration's activations") }
            guard bits == nil || bits == 4 else { throw ValidationError("--target-bpw chooses between int4 and int8 itself; drop --bits") }
            guard targetBpw.isFinite, targetBpw > 0 else { throw ValidationError("--target-bpw must be a positive number of bits per weight") }
        }
        guard calibrateTokens >= 1 else { throw ValidationError("--calibrate-tokens must be at least 1") }
        guard calibrateCtx >= 2 else { throw ValidationError("--calibrate-ctx must be at least 2") }
        guard StorageType.groupSizes.contains(groupSize) else { throw ValidationError("--group-size must be 32, 64 or 128") }
        if let threads, !(1...EngineOptions.maxThreads).contains(threads) {
            throw ValidationError("--threads must be between 1 and \(EngineOptions.maxThreads)")
        }
    }

    func run() throws {
        try reportingErrors {
            var options = ConversionOptions()
            options.bits = bits ?? 4
            options.groupSize = groupSize
            options.scheme = scheme.map { $0 == .symmetric ? .symmetric : .asymmetric }
            options.recipe = recipe
            options.keep = try keep.map { try KeepRule.parse($0, defaultGroupSize: groupSize) }
            options.compress = compress
            options.allowNonfinite = allowNonfinite
            options.threads = threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
            let folder = try CheckpointFolder(path: input)
            let showProgress = !quiet && standardErrorIsTerminal()
            if let calibrate {
                var c = CalibrationOptions()
                c.maxTokens = calibrateTokens
                c.context = calibrateCtx
                let importance = try Calibration.run(model: input, input: calibrate, options: c, engine: EngineOptions(threads: options.threads)) { done, total in
                    if showProgress { writeStandardError("\rcalibrate: \(done)/\(total)\u{1B}[K") }
                }
                if showProgress { writeStandardError("\r\u{1B}[K") }
                if !quiet {
                    writeStandardError("calibrate: \(importance.tokens) tokens in \(importance.items) \(importance.kind == "text" ? "chunks" : "samples") of \(calibrate), "
                        + "statistics for \(importance.meanSquares.count) linear maps (sha256 \(importance.sha256.prefix(16))…)\n")
                }
                options.calibration = importance
            }
            var allocation: BitAllocation?
            if let targetBpw {
                let measured = try BitAllocation.measure(folder: folder, options: options) { done, total in
                    if showProgress { writeStandardError("\rtarget-bpw: measured \(done)/\(total) tensors\u{1B}[K") }
                }
                let a = try BitAllocation.choose(target: targetBpw, measurement: measured)
                if showProgress { writeStandardError("\r\u{1B}[K") }
                if !quiet {
                    writeStandardError("target-bpw \(targetBpw): \(a.raised.count) of \(measured.candidates.count) int4 linear weights raised to int8; "
                        + "\(String(fixed: a.bitsPerWeight, decimals: 4)) bits per weight; predicted error \(Converter.format(a.predictedError)) "
                        + "(all int4: \(Converter.format(a.baselineError)))"
                        + (measured.unmeasured.isEmpty ? "" : "; \(measured.unmeasured.count) without statistics stay int4") + "\n")
                }
                allocation = a
            }
            let plan = try ConversionPlan(folder: folder, options: options, allocation: allocation)
            let converter = Converter(plan: plan, producer: "plmq \(PLMQ.version)")
            let bar = ProgressLine(enabled: !quiet && !dryRun)
            let summary = try converter.run(output: output, dryRun: dryRun, started: { writer in
                if let temp = writer.temporaryPath { InterruptCleanup.install(removing: temp) }
            }, progress: { bar.update($0) })
            InterruptCleanup.clear()
            bar.finish()
            if dryRun {
                print(PlanReport(plan: plan, summary: summary).text())
            } else if !quiet {
                writeStandardError(ConversionReport(plan: plan, summary: summary, output: output).text() + "\n")
            }
            if let evalDataset, !dryRun {
                let report = try evaluateConversion(output: output, source: input, dataset: evalDataset, engine: EngineOptions(threads: options.threads))
                guard let certificate = QualityCertificate.json(report) else { throw UserFacingError("\(evalDataset): nothing was evaluated") }
                try PLMFile.addingMetadata(QualityCertificate.metadataKey, certificate, to: output)
                if !quiet { print(report.textTable) }
                print(QualityCertificate.summary(certificate) ?? "")
            }
        }
    }
}

/// Removes the temporary output when the user presses Ctrl-C (or the process gets SIGTERM).
enum InterruptCleanup {
    nonisolated(unsafe) static var path: UnsafeMutablePointer<CChar>?

    static func install(removing temp: String) {
        path = strdup(temp)
        let handler: @convention(c) (Int32) -> Void = { signal in
            if let p = InterruptCleanup.path { unlink(p) }
            _exit(128 + signal)
        }
        Glibc.signal(SIGINT, handler)
        Glibc.signal(SIGTERM, handler)
    }

    static func clear() {
        Glibc.signal(SIGINT, SIG_DFL)
        Glibc.signal(SIGTERM, SIG_DFL)
        free(path)
        path = nil
    }
}

/// A progress bar on a terminal, one line per 10 % otherwise.
final class ProgressLine {
    let enabled: Bool
    let terminal = standardErrorIsTerminal()
    var lastDecile = -1

    init(enabled: Bool) { self.enabled = enabled }

    func update(_ p: ConversionProgress) {
        guard enabled else { return }
        let fraction = Double(p.sourceBytesDone) / Double(max(p.sourceBytes, 1))
        let rate = Double(p.sourceBytesDone) / max(p.seconds, 1e-9)
        let eta = rate > 0 ? Double(p.sourceBytes - p.sourceBytesDone) / rate : 0
        let stats = "\(p.tensorsDone)/\(p.tensorCount) tensors  \(formatBytes(p.sourceBytesDone))/\(formatBytes(p.sourceBytes))  "
            + "\(formatRate(rate))  ETA \(Int(eta.rounded())) s"
        if terminal {
            let width = 30, filled = Int(fraction * Double(width))
            let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
            writeStandardError("\r[\(bar)] \(stats)\u{1B}[K")
        } else {
            let decile = Int(fraction * 10)
            if decile > lastDecile {
                lastDecile = decile
                writeStandardError("convert: \(decile * 10)%  \(stats)\n")
            }
        }
    }

    func finish() { if enabled && terminal { writeStandardError("\n") } }
}

func formatRate(_ bytesPerSecond: Double) -> String {
    bytesPerSecond >= 1e9 ? String(format2: bytesPerSecond / 1e9) + " GB/s" : String(format2: bytesPerSecond / 1e6) + " MB/s"
}

extension Recipe: ExpressibleByArgument {}

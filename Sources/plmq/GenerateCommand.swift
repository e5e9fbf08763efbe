import ArgumentParser
import PLMCore
import PLMModel

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Greedy generation from prepared inputs; prints the generated token ids.",
        discussion: """
            INPUTS is the same safetensors file `plmq forward` reads (one sequence). Vision inputs \
            are used at prefill only. Generation stops on an eos id of generation_config.json \
            (unless --ignore-eos) or after --max-new-tokens.
            """
    )

    @Argument(help: "A checkpoint folder or a .plm file.")
    var model: String

    @Option(help: "Input tensors (safetensors) with one sequence.")
    var inputs: String

    @Option(help: "Most tokens to generate.")
    var maxNewTokens = 32

    @Flag(help: "Do not stop on eos tokens.")
    var ignoreEos = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let model = try loadModel(model, compute)
            let inputs = try ModelInputs(path: inputs)
            guard inputs.sequences.count == 1 else {
                throw UserFacingError("\(self.inputs): generate takes one sequence, found \(inputs.sequences.count)")
            }
            let stops = ignoreEos ? [] : Set(model.generation.eosTokenIds)
            let started = monotonicSeconds()
            let tokens = try model.generate(inputIds: inputs.sequences[0], images: inputs.images, videos: inputs.videos,
                                            maxNewTokens: maxNewTokens, stopTokens: stops)
            let elapsed = monotonicSeconds() - started
            print(tokens.map(String.init).joined(separator: " "))
            writeStandardError("generate: \(tokens.count) tokens in \(seconds(elapsed)) (prompt \(inputs.sequences[0].count) tokens), peak RSS \(formatBytes(peakResidentBytes()))\n")
        }
    }
}

import PLMCore
import ArgumentParser
import PLMCheckpoint

@main
struct PLMQ: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "plmq",
        abstract: "Inspect, run and (soon) quantize PerceptionLM checkpoints on the CPU.",
        discussion: """
            plmq reads Hugging Face PerceptionLM checkpoints (config.json plus safetensors, single \
            or sharded) and runs them with a bundled CPU engine that matches transformers.

            Examples:
              plmq inspect Examples/tiny-plm
              plmq forward Examples/tiny-plm --inputs case.safetensors --output out.safetensors
              plmq generate Examples/tiny-plm --inputs case.safetensors --max-new-tokens 16
            """,
        version: version,
        subcommands: [InspectCommand.self, ConvertCommand.self, VerifyCommand.self, ForwardCommand.self, GenerateCommand.self, BenchCommand.self, QuantErrorCommand.self]
    )
}

/// Prints a user-facing error on stderr and exits non-zero, without a stack trace.
struct UserFacingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    init(_ error: any Error) { self.description = "\(error)" }
}

/// Runs a command's body; any error is printed as "plmq: error: …" and the exit status is 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        printError("\(error)")
        throw ExitCode.failure
    }
}

func printError(_ message: String) {
    writeStandardError("plmq: error: \(message)\n")
}

import PLMCore
import ArgumentParser
import PLMCheckpoint

@main
struct PLMQ: ParsableCommand {
    static let version = "0.2.0-dev"

    static let configuration = CommandConfiguration(
        commandName: "plmq",
        abstract: "Quantize PerceptionLM checkpoints into compact .plm files and run them on the CPU.",
        discussion: """
            plmq reads Hugging Face PerceptionLM checkpoints (config.json plus safetensors, single \
            or sharded), converts them to one checksummed .plm file with int8/int4 groupwise \
            weights and the tokenizer and configs inside, measures what quantization cost against \
            the fp32 model (eval), and answers questions about images and videos with a bundled CPU \
            engine that matches transformers (run, chat).

            Examples:
              plmq inspect Examples/shapes-plm
              plmq convert --bits 4 Examples/shapes-plm tiny-q4.plm
              plmq verify tiny-q4.plm
              plmq run tiny-q4.plm --image photo.jpg --prompt "What is in this picture?"
              plmq chat tiny-q4.plm
              plmq eval tiny-q8.plm tiny-q4.plm --dataset Examples/samples --html report.html
              plmq tokenize tiny-q4.plm "Hello" --chat --image-tiles 5
              plmq forward tiny-q4.plm --inputs case.safetensors --output out.safetensors
              plmq generate tiny-q4.plm --inputs case.safetensors --max-new-tokens 16
              plmq bench tiny-q4.plm

            Exit status: 0 on success, 1 when a check fails (verify finds damage, inspect finds a \
            config that disagrees with the tensors), 2 on bad input or usage.
            """,
        version: version,
        subcommands: [InspectCommand.self, ConvertCommand.self, VerifyCommand.self, RunCommand.self, ChatCommand.self, EvalCommand.self, TokenizeCommand.self,
                      PreprocessCommand.self, ForwardCommand.self, GenerateCommand.self, BenchCommand.self, QuantErrorCommand.self]
    )

    /// Parses and runs, mapping usage errors to exit status 2 (ArgumentParser's default is 64).
    static func main() {
        ignoreFileSizeSignal()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success || code == .checkFailed || code == .badInput { exit(withError: error) }
            let message = fullMessage(for: error)
            if !message.isEmpty { writeStandardError(message + "\n") }
            exit(withError: ExitCode.badInput)
        }
    }
}

extension ExitCode {
    /// A check ran and found a problem (damaged payload, inconsistent config).
    static let checkFailed = ExitCode(1)
    /// Bad input or usage: a missing or malformed file, an invalid option.
    static let badInput = ExitCode(2)
}

/// Prints a user-facing error on stderr and exits non-zero, without a stack trace.
struct UserFacingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    init(_ error: any Error) { self.description = "\(error)" }
}

/// A check that ran and failed (exit status 1), as opposed to bad input (exit status 2).
struct CheckFailure: Error, CustomStringConvertible {
    let description: String
}

/// Runs a command's body; an error is printed as "plmq: error: …" and the exit status is 2 for
/// bad input, 1 for a failed check.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch let failure as CheckFailure {
        printError(failure.description)
        throw ExitCode.checkFailed
    } catch {
        printError("\(error)")
        throw ExitCode.badInput
    }
}

func printError(_ message: String) {
    writeStandardError("plmq: error: \(message)\n")
}

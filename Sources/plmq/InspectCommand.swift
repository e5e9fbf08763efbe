import PLMCore
import ArgumentParser
import PLMCheckpoint
import PLMFormat
import PLMModel

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a checkpoint: architecture, sizes per component, dtypes and tensors.",
        discussion: """
            Reads config.json and the safetensors headers only; tensor data is never read, so it \
            returns at once even on multi-gigabyte checkpoints. The config is checked against the \
            stored tensor shapes and every disagreement is listed; the exit status is non-zero when \
            there is one.
            """
    )

    @Argument(help: "A checkpoint folder (config.json with model.safetensors or a sharded index), or a .plm file.")
    var path: String

    @Flag(help: "List every tensor instead of grouping layers.")
    var tensors = false

    @Flag(help: "Print one JSON object for machines instead of the text report.")
    var json = false

    func run() throws {
        try reportingErrors {
            if !FileSystem.isDirectory(path) && FileSystem.exists(path) {
                let report = try PLMReport(bundle: ModelBundle(plm: path))
                print(json ? report.json().serialized(pretty: true) : report.text(listAll: tensors))
                return
            }
            // A folder is reported even when its config disagrees with the tensors (that is
            // what inspect is for); the disagreement then sets the exit status.
            let folder = try CheckpointFolder(path: path)
            let report = CheckpointReport(folder: folder)
            print(json ? report.json().serialized(pretty: true) : report.text(listAll: tensors))
            if folder.layoutIssues.contains(where: \.isError) { throw ExitCode.checkFailed }
        }
    }
}

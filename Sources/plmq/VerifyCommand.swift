import PLMCore
import ArgumentParser
import PLMCheckpoint
import PLMFormat
import PLMEval

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a .plm file: structure, header checksum, every payload checksum, and that reserved bytes and padding are zero.",
        discussion: "Exits non-zero naming the first damaged tensor or file."
    )

    @Argument(help: "The .plm file.")
    var path: String

    func run() throws {
        let started = monotonicSeconds()
        try reportingErrors {
            let file = try PLMFile(path: path)
            do { try file.verify() } catch { throw CheckFailure(description: "\(error)") }
            let seconds = monotonicSeconds() - started
            print("\(path): ok — \(file.tensors.count) tensors and \(file.files.count) embedded files, "
                + "\(formatBytes(file.payloadBytes)) checked in \(String(format2: seconds)) s (\(formatRate(Double(file.payloadBytes) / max(seconds, 1e-9))))")
            if let quality = QualityCertificate.summary(file.metadata[QualityCertificate.metadataKey]) { print("  " + quality) }
        }
    }
}

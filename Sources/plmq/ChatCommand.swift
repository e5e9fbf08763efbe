import ArgumentParser
import CEditLine
import Dispatch
import PLMCheckpoint
import PLMCore
import PLMModel
import PLMRunner
#if canImport(Glibc)
import Glibc
#endif

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "An interactive conversation that keeps its KV cache between turns.",
        discussion: """
            Each turn prefills only what is new since the last one. Commands:
              /image PATH    attach an image to the next message (repeatable)
              /video PATH    attach a video file or a folder of frames to the next message
              /system TEXT   set the system message (starts a new conversation)
              /reset         start a new conversation
              /stats         timings of the last answer
              /quit          leave (or Ctrl-D)
            Ctrl-C stops the current answer, not the session. On a terminal lines can be edited \
            and recalled (libedit); from a pipe, lines are read plainly, one message per line.
            """
    )

    @Argument(help: "A .plm file or a checkpoint folder.")
    var model: String

    @Option(help: "A system message (default: the chat template's own).")
    var system: String?

    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var compute: ComputeOptions

    func run() throws {
        try reportingErrors {
            let vlm = try VisionLanguageModel(path: model, options: compute.engine)
            let interactive = isatty(0) == 1
            let chat = ChatLoop(model: vlm, options: sampling.options(vlm), system: system, interactive: interactive)
            chat.run()
        }
    }
}

/// The read–answer loop of `plmq chat`.
final class ChatLoop {
    let model: VisionLanguageModel
    let options: GenerateOptions
    let interactive: Bool
    var session: ChatSession
    var pendingImages: [String] = []
    var pendingVideos: [String] = []
    let cancellation = CancellationFlag()
    var last: GenerationResult?

    init(model: VisionLanguageModel, options: GenerateOptions, system: String?, interactive: Bool) {
        self.model = model
        self.options = options
        self.interactive = interactive
        session = model.session()
        session.system = system
    }

    func say(_ text: String) { writeStandardError(text + "\n") }

    func readMessage() -> String? {
        if interactive {
            guard let line = readline("> ") else { return nil }
            defer { free(line) }
            let text = String(cString: line)
            if !text.allSatisfy(\.isWhitespace) { add_history(line) }
            return text
        }
        return readLine(strippingNewline: true)
    }

    func run() {
        // Ctrl-C cancels the answer being generated; between answers it only reminds how to leave.
        signal(SIGINT, SIG_IGN)
        let interrupts = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        let cancellation = self.cancellation
        interrupts.setEventHandler { cancellation.cancel() }
        interrupts.resume()
        defer { interrupts.cancel() }
        if interactive { say("plmq chat — /image PATH, /video PATH, /system TEXT, /reset, /stats, /quit") }
        while let line = readMessage() {
            let text = line.trimmingWhitespace
            if text.isEmpty { continue }
            if text.hasPrefix("/") {
                if !command(text) { break }
                continue
            }
            answer(text)
        }
    }

    /// Handles a /command; false means leave.
    func command(_ text: String) -> Bool {
        let (name, argument) = text.splitOnce(" ")
        switch name {
        case "/quit", "/exit": return false
        case "/image", "/video":
            guard !argument.isEmpty else { say("usage: \(name) PATH"); return true }
            guard FileSystem.exists(argument) else { say("\(argument): no such file or folder"); return true }
            if name == "/image" { pendingImages.append(argument) } else { pendingVideos.append(argument) }
            say("attached \(argument) to the next message")
        case "/system":
            session.system = argument.isEmpty ? nil : argument
            say(argument.isEmpty ? "system message cleared; new conversation" : "system message set; new conversation")
        case "/reset":
            session.reset()
            pendingImages.removeAll()
            pendingVideos.removeAll()
            say("new conversation")
        case "/stats":
            guard let last else { say("no answer yet"); return true }
            say(RunReport(result: last, loadSeconds: 0).text + "; \(session.cachedPositions) positions cached")
        default:
            say("unknown command \(name) (/image, /video, /system, /reset, /stats, /quit)")
        }
        return true
    }

    func answer(_ text: String) {
        let message = Message.user(text, images: pendingImages.map { .file($0) }, videos: pendingVideos.map { .file($0) })
        pendingImages.removeAll()
        pendingVideos.removeAll()
        cancellation.reset()
        do {
            let result = try session.send(message, options: options, cancellation: cancellation) { piece, _ in writeStandardOutput(piece) }
            finish(result)
        } catch {
            say("error: \(error)")
        }
    }

    func finish(_ result: GenerationResult) {
        writeStandardOutput("\n")
        if result.finish == .cancelled { say("(stopped)") }
        last = result
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }

    /// The text before the first `separator` and the trimmed rest.
    func splitOnce(_ separator: Character) -> (String, String) {
        guard let i = firstIndex(of: separator) else { return (self, "") }
        return (String(self[..<i]), String(self[index(after: i)...]).trimmingWhitespace)
    }
}

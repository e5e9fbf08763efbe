import PLMImage
import PLMModel
import PLMTokenizer

/// What can go wrong turning a conversation into an answer. Each case says what to fix.
public enum RunnerError: Error, CustomStringConvertible {
    case engine(EngineError)
    case tokenizer(TokenizerError)
    case prompt(PromptExpansionError)
    case image(ImageError)
    case video(VideoError)
    /// The model lacks something a runner needs (a tokenizer, a chat template, a processor config).
    case missingPart(model: String, part: String, detail: String)
    case invalidParameter(String)
    case invalidConversation(String)

    public var description: String {
        switch self {
        case .engine(let e): return e.description
        case .tokenizer(let e): return e.description
        case .prompt(let e): return e.description
        case .image(let e): return e.description
        case .video(let e): return e.description
        case .missingPart(let m, let p, let d): return "\(m): no \(p): \(d)"
        case .invalidParameter(let d): return d
        case .invalidConversation(let d): return d
        }
    }
}

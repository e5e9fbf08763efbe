import PLMCore
import PLMCheckpoint
import PLMFormat

/// What can go wrong building or running the engine. Each case carries what the user needs to fix it.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    case checkpoint(CheckpointError)
    case plm(PLMError)
    case missingTensor(source: String, tensor: String)
    case tensorShape(source: String, tensor: String, expected: [Int], actual: [Int])
    case imageTokenCount(kind: String, tokens: Int, features: Int)
    case invalidInput(String)
    case invalidOptions(String)
    /// The prompt (with what is cached) needs more positions than the model's context.
    case contextOverflow(positions: Int, context: Int)
    /// A side file of a model (embedded in a `.plm` or in a checkpoint folder) is damaged.
    case embeddedFile(file: String, name: String, problem: String)

    public var description: String {
        switch self {
        case .checkpoint(let e): return e.description
        case .plm(let e): return e.description
        case .missingTensor(let s, let t): return "\(s): tensor '\(t)' is missing"
        case .tensorShape(let s, let t, let e, let a): return "\(s): tensor '\(t)' has shape \(formatShape(a)), expected \(formatShape(e))"
        case .imageTokenCount(let kind, let tokens, let features):
            return "the prompt has \(tokens) \(kind) tokens but the \(kind) inputs produce \(features) features"
        case .invalidInput(let d): return d
        case .invalidOptions(let d): return "invalid engine options: \(d)"
        case .contextOverflow(let p, let c):
            return "the prompt needs \(p) positions but the model's context is \(c) (max_position_embeddings)"
        case .embeddedFile(let f, let n, let p): return "\(f): \(n): \(p)"
        }
    }
}

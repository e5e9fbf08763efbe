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
    /// Generation stopped because the logits at a position hold NaN or ±Inf (weights converted
    /// with `--allow-nonfinite`, or a damaged file): sampling from them would pick a token that
    /// means nothing.
    case nonFiniteLogits(position: Int)

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
        case .nonFiniteLogits(let p):
            return "the model's logits at position \(p) are NaN or infinite (does it hold NaN/Inf weights, converted with --allow-nonfinite?)"
        }
    }

    /// Throws `nonFiniteLogits` unless every logit is finite: generation calls it before it picks
    /// a token, since argmax or sampling over NaN would invent one. (A vocabulary of compares per
    /// step; the step itself reads the whole model.)
    public static func requireFinite(_ logits: UnsafeBufferPointer<Float>, position: Int) throws(EngineError) {
        for v in logits where !v.isFinite { throw .nonFiniteLogits(position: position) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Per-position comparison of a quantized model's next-token distribution with the reference's,
// with the definitions of llama.cpp's `llama-perplexity --kl-divergence` (tools/perplexity/
// perplexity.cpp, `log_softmax(n_vocab, logits, base_log_prob, tok, kld)`):
//
//   KL(ref ‖ q)  = Σ_{i : log p_ref(i) > −16} p_ref(i) · (log p_ref(i) − log p_q(i))
//   same top     = argmax q == argmax ref (first maximum on ties)
//   nll, nll_base = −log p_q(target), −log p_ref(target)
//   Δp           = p_q(target) − p_ref(target)
//
// The −16 cut-off is llama.cpp's: tokens the reference gives less than e^−16 ≈ 1.1e−7 do not
// count. Unlike llama.cpp, the reference log-probabilities are kept as fp32, not as its 16-bit
// linear code (a step of 16/65535 nats), so a model compared with itself gives exactly 0.

/// What a comparison cannot work with.
public enum EvalError: Error, Sendable, Equatable, CustomStringConvertible {
    case shapeMismatch(what: String, expected: Int, found: Int)
    case emptyVocabulary
    case targetOutOfRange(position: Int, token: Int32, vocabulary: Int)
    case nonFiniteLogits(model: String, position: Int)
    case vocabularyMismatch(expected: Int, found: Int)

    public var description: String {
        switch self {
        case .shapeMismatch(let what, let e, let f): return "\(what): expected \(e) values, found \(f)"
        case .emptyVocabulary: return "vocabulary size is 0"
        case .targetOutOfRange(let p, let t, let v): return "position \(p): target token \(t) is outside the vocabulary of \(v)"
        case .nonFiniteLogits(let m, let p): return "position \(p): the \(m) logits hold NaN or infinity"
        case .vocabularyMismatch(let e, let f): return "the reference has a vocabulary of \(e), the model \(f)"
        }
    }
}

/// The reference model's information at one scored position: all that KL, same-top, Δp and the
/// perplexities need, so the reference logits themselves can be dropped (or cached).
public struct ReferencePosition: Sendable, Equatable {
    /// The token that follows this position (the answer's next token).
    public let target: Int32
    /// argmax of the reference logits, first maximum on ties.
    public let topToken: Int32
    /// log p_ref(target), even when it is below the cut-off.
    public let targetLogProb: Float
    /// The tokens with log p_ref > −16 in ascending order, or nil when every token of the
    /// vocabulary is listed (then `logProbs` has one value per token).
    public let supportTokens: [Int32]?
    /// log p_ref of the support tokens (or of every token), fp32.
    public let logProbs: [Float]
    public let vocabulary: Int

    public init(target: Int32, topToken: Int32, targetLogProb: Float, supportTokens: [Int32]?, logProbs: [Float], vocabulary: Int) {
        self.target = target
        self.topToken = topToken
        self.targetLogProb = targetLogProb
        self.supportTokens = supportTokens
        self.logProbs = logProbs
        self.vocabulary = vocabulary
    }

    /// llama.cpp's cut-off: reference log-probabilities at or below it are left out of KL.
    public static let logProbCutoff: Float = -16

    /// The reference position from one row of reference logits. The support is stored sparse
    /// when that takes fewer bytes (8 per token) than dense (4 per vocabulary entry).
    public init(logits row: UnsafeBufferPointer<Float>, target: Int32) {
        self.init(logits: row, stats: LogitRow(row), target: target)
    }

    init(logits row: UnsafeBufferPointer<Float>, stats: LogitRow, target: Int32) {
        var tokens: [Int32] = []
        var values: [Float] = []
        for i in 0..<row.count {
            let lp = Float(Double(row[i]) - stats.logNormalizer)
            if lp > Self.logProbCutoff {
                tokens.append(Int32(i))
                values.append(lp)
            }
        }
        let dense = tokens.count * 2 > row.count
        self.target = target
        topToken = Int32(stats.argmax)
        targetLogProb = Float(Double(row[Int(target)]) - stats.logNormalizer)
        supportTokens = dense ? nil : tokens
        logProbs = dense ? (0..<row.count).map { Float(Double(row[$0]) - stats.logNormalizer) } : values
        vocabulary = row.count
    }

    /// How many tokens the KL sum runs over (log p_ref > −16).
    public var supportCount: Int { supportTokens?.count ?? logProbs.count { $0 > Self.logProbCutoff } }
}

/// max, argmax and log Σ exp of one logit row, in double precision.
struct LogitRow {
    let max: Float
    let argmax: Int
    /// max + log Σ exp(x − max): subtracting it from a logit gives its log-probability.
    let logNormalizer: Double
    let isFinite: Bool

    init(_ row: UnsafeBufferPointer<Float>) {
        var best = -Float.infinity
        var index = 0
        var finite = true
        for i in 0..<row.count {
            let v = row[i]
            if !v.isFinite { finite = false }
            if v > best { best = v; index = i }
        }
        var sum = 0.0
        let m = Double(best)
        for i in 0..<row.count { sum += exp(Double(row[i]) - m) }
        max = best
        argmax = index
        logNormalizer = m + log(sum)
        isFinite = finite && best.isFinite
    }
}

/// The comparison at one position.
public struct TokenComparison: Sendable, Equatable {
    public let kl: Double
    public let sameTop: Bool
    /// p_q(target) − p_ref(target).
    public let probabilityDelta: Double
    /// −log p_q(target) and −log p_ref(target).
    public let nll: Double
    public let nllReference: Double
    public let topToken: Int32
    public let referenceTopToken: Int32

    /// Compares one row of quantized logits with the reference at that position.
    public static func compare(reference: ReferencePosition, quantized row: UnsafeBufferPointer<Float>) -> TokenComparison {
        compare(reference: reference, quantized: row, stats: LogitRow(row))
    }

    static func compare(reference: ReferencePosition, quantized row: UnsafeBufferPointer<Float>, stats q: LogitRow) -> TokenComparison {
        // The quantized log-probabilities are rounded to Float like the reference's, so identical
        // logits give identical values and every term of the sum is exactly 0.
        func logProb(_ i: Int) -> Double { Double(Float(Double(row[i]) - q.logNormalizer)) }
        var kl = 0.0
        if let tokens = reference.supportTokens {
            for (k, token) in tokens.enumerated() {
                let lp = Double(reference.logProbs[k])
                kl += exp(lp) * (lp - logProb(Int(token)))
            }
        } else {
            for (i, value) in reference.logProbs.enumerated() where value > ReferencePosition.logProbCutoff {
                let lp = Double(value)
                kl += exp(lp) * (lp - logProb(i))
            }
        }
        let nll = -logProb(Int(reference.target))
        let nllReference = -Double(reference.targetLogProb)
        return TokenComparison(
            kl: kl, sameTop: q.argmax == Int(reference.topToken),
            probabilityDelta: exp(-nll) - exp(-nllReference), nll: nll, nllReference: nllReference,
            topToken: Int32(q.argmax), referenceTopToken: reference.topToken)
    }
}

import PLMCheckpoint

/// How the next token is chosen. Greedy unless `temperature` > 0. The processors apply in
/// transformers' order: repetition penalty on the logits, then temperature, top-k, top-p, min-p
/// on the distribution, then one draw from a seeded generator, so a seed reproduces an answer.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax; the first maximum on ties, as torch.argmax).
    public var temperature: Double
    /// Keep the k most likely tokens (0: no limit).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: no limit).
    public var topP: Double
    /// Drop tokens less likely than min-p × the most likely one (0: off).
    public var minP: Double
    /// > 1 discourages tokens already in the prompt or the answer (CTRL's penalty, as transformers:
    /// a positive logit is divided by it, a negative one multiplied).
    public var repeatPenalty: Double
    public var seed: UInt64

    public static let greedy = SamplingParameters(temperature: 0, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, seed: 0)

    public init(temperature: Double, topK: Int, topP: Double, minP: Double, repeatPenalty: Double, seed: UInt64) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.seed = seed
    }

    /// The model's own defaults: generation_config.json's do_sample and its parameters.
    public init(generation g: GenerationConfig, seed: UInt64 = 0) {
        self.init(temperature: g.doSample ? g.temperature : 0, topK: g.topK, topP: g.topP, minP: g.minP ?? 0,
                  repeatPenalty: g.repetitionPenalty, seed: seed)
    }

    public var isGreedy: Bool { temperature == 0 }

    /// Out-of-range values are errors (a CLI flag or a library caller passed them).
    public func validate() throws(RunnerError) {
        guard temperature >= 0, temperature.isFinite, temperature <= 100 else { throw .invalidParameter("temperature must be between 0 and 100, not \(temperature)") }
        guard topK >= 0 else { throw .invalidParameter("top-k must be ≥ 0, not \(topK)") }
        guard topP > 0, topP <= 1 else { throw .invalidParameter("top-p must be in (0, 1], not \(topP)") }
        guard (0...1).contains(minP) else { throw .invalidParameter("min-p must be in [0, 1], not \(minP)") }
        guard repeatPenalty > 0, repeatPenalty.isFinite, repeatPenalty <= 100 else { throw .invalidParameter("repeat penalty must be in (0, 100], not \(repeatPenalty)") }
    }
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same stream on every
/// platform, unlike the system generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Picks tokens from logits with `SamplingParameters`. Scratch is allocated once per vocabulary
/// size, so a step allocates nothing after the first.
public struct Sampler {
    public let parameters: SamplingParameters
    private var random: SplitMix64
    private var candidates: [(id: Int, logit: Float)] = []
    private var probabilities: [Double] = []

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        random = SplitMix64(seed: parameters.seed)
    }

    /// The next token for `logits` (modified in place by the repetition penalty), given the ids
    /// already in the context (prompt and answer).
    public mutating func next(_ logits: UnsafeMutableBufferPointer<Float>, history: some Sequence<Int>) -> Int {
        let p = parameters
        if p.repeatPenalty != 1 {
            // Each distinct id once, as transformers' gather/scatter does.
            var seen = Set<Int>()
            let penalty = Float(p.repeatPenalty)
            for id in history where id >= 0 && id < logits.count && seen.insert(id).inserted {
                logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty
            }
        }
        if p.isGreedy { return Self.argmax(UnsafeBufferPointer(logits)) }
        return sample(UnsafeBufferPointer(logits))
    }

    public static func argmax(_ x: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<x.count where x[i] > x[best] { best = i }
        return best
    }

    private mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        let p = parameters
        let temperature = Float(p.temperature)
        // Only tokens within e^-30 of the most likely one can matter (a relative probability
        // below 1e-13): gathering just those keeps the sort small on a 128k vocabulary.
        var maxLogit = -Float.infinity
        for i in 0..<logits.count where logits[i] > maxLogit { maxLogit = logits[i] }
        guard maxLogit.isFinite else { return Self.argmax(logits) }
        let cutoff = maxLogit - 30 * temperature
        candidates.removeAll(keepingCapacity: true)
        for i in 0..<logits.count where logits[i] >= cutoff { candidates.append((i, logits[i] / temperature)) }
        candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if p.topK > 0 && p.topK < candidates.count { candidates.removeLast(candidates.count - p.topK) }
        // Softmax over what is left, in Double.
        let top = Double(candidates[0].logit)
        probabilities.removeAll(keepingCapacity: true)
        var total = 0.0
        for c in candidates {
            let e = (Double(c.logit) - top).isNaN ? 0 : Foundation_exp(Double(c.logit) - top)
            probabilities.append(e)
            total += e
        }
        for i in probabilities.indices { probabilities[i] /= total }
        var keep = probabilities.count
        if p.topP < 1 {
            // Smallest prefix whose mass reaches top-p (at least one token).
            var mass = 0.0
            for i in probabilities.indices {
                mass += probabilities[i]
                if mass >= p.topP { keep = i + 1; break }
            }
        }
        if p.minP > 0 {
            let floor = p.minP * probabilities[0]
            var i = 1
            while i < keep && probabilities[i] >= floor { i += 1 }
            keep = i
        }
        var mass = 0.0
        for i in 0..<keep { mass += probabilities[i] }
        var u = Double(random.next() >> 11) * 0x1p-53 * mass
        for i in 0..<keep {
            u -= probabilities[i]
            if u < 0 { return candidates[i].id }
        }
        return candidates[keep - 1].id
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func Foundation_exp(_ x: Double) -> Double { Glibc.exp(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) func Foundation_exp(_ x: Double) -> Double { Darwin.exp(x) }
#endif

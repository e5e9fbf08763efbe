#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PLMCore

// Streaming accumulation of the token comparisons and the aggregates `llama-perplexity
// --kl-divergence` prints, with its formulas for the uncertainties (tools/perplexity/perplexity.cpp,
// `kl_divergence`): running sums like its `kl_divergence_result`, plus one Float per token of KL
// and of Δp for the median and percentiles (8 bytes a token: 1 M answer tokens take 8 MB).

/// The running sums of `kl_divergence_result`. Mergeable, so per-sample sums add up to the total.
public struct KLDSums: Sendable, Equatable {
    public var count = 0
    public var sumNLL = 0.0, sumNLL2 = 0.0
    public var sumNLLBase = 0.0, sumNLLBase2 = 0.0
    public var sumNLLNLLBase = 0.0
    public var sumKLD = 0.0, sumKLD2 = 0.0
    public var sumPDiff = 0.0, sumPDiff2 = 0.0, sumPDiff4 = 0.0
    public var maxPDiff = 0.0
    public var sameTop = 0

    public init() {}

    public mutating func add(_ c: TokenComparison) {
        count += 1
        sumNLL += c.nll
        sumNLL2 += c.nll * c.nll
        sumNLLBase += c.nllReference
        sumNLLBase2 += c.nllReference * c.nllReference
        sumNLLNLLBase += c.nll * c.nllReference
        sumKLD += c.kl
        sumKLD2 += c.kl * c.kl
        let d = c.probabilityDelta
        sumPDiff += d
        sumPDiff2 += d * d
        sumPDiff4 += d * d * d * d
        maxPDiff = max(maxPDiff, abs(d))
        if c.sameTop { sameTop += 1 }
    }

    public mutating func merge(_ o: KLDSums) {
        count += o.count
        sumNLL += o.sumNLL; sumNLL2 += o.sumNLL2
        sumNLLBase += o.sumNLLBase; sumNLLBase2 += o.sumNLLBase2
        sumNLLNLLBase += o.sumNLLNLLBase
        sumKLD += o.sumKLD; sumKLD2 += o.sumKLD2
        sumPDiff += o.sumPDiff; sumPDiff2 += o.sumPDiff2; sumPDiff4 += o.sumPDiff4
        maxPDiff = max(maxPDiff, o.maxPDiff)
        sameTop += o.sameTop
    }
}

/// A value with its uncertainty (one standard error), as llama-perplexity prints "x ± u".
public struct Estimate: Sendable, Equatable {
    public let value: Double
    public let uncertainty: Double

    public init(_ value: Double, _ uncertainty: Double) {
        self.value = value
        self.uncertainty = uncertainty
    }

    /// llama-perplexity's `mean_and_uncertainty`: the mean, and sqrt(var/(n−1)) with the biased
    /// variance E[x²]−E[x]², reported as 0 for n ≤ 10 or a non-positive variance.
    public static func mean(sum: Double, sumOfSquares: Double, count: Int) -> Estimate {
        guard count >= 1 else { return Estimate(0, 0) }
        let n = Double(count)
        let f = sum / n
        let v = sumOfSquares / n - f * f
        return Estimate(f, v > 0 && count > 10 ? (v / (n - 1)).squareRoot() : 0)
    }

    /// A proportion k/n with the binomial uncertainty sqrt(p(1−p)/(n−1)) ("Same top p").
    public static func proportion(_ k: Int, of n: Int) -> Estimate {
        guard n >= 1 else { return Estimate(0, 0) }
        let p = Double(k) / Double(n)
        return Estimate(p, n > 1 ? (p * (1 - p) / Double(n - 1)).squareRoot() : 0)
    }
}

/// Order statistics with llama-perplexity's definitions: linear interpolation at fraction·(n−1)
/// computed in Float (its `percentile` lambda), the median as the mean of the two middle values.
public struct OrderStatistics: Sendable, Equatable {
    public let minimum: Double
    public let maximum: Double
    public let median: Double
    /// (fraction, value) for each requested fraction, in the order given.
    public let percentiles: [Percentile]

    public struct Percentile: Sendable, Equatable {
        public let fraction: Double
        public let value: Double
    }

    public init(sortedValues v: [Float], fractions: [Float]) {
        guard let first = v.first, let last = v.last else {
            minimum = 0; maximum = 0; median = 0; percentiles = []
            return
        }
        minimum = Double(first)
        maximum = Double(last)
        let n = v.count
        median = Double(n % 2 == 0 ? 0.5 * (v[n / 2] + v[n / 2 - 1]) : v[n / 2])
        percentiles = fractions.map { fraction in
            let value: Float
            if fraction <= 0 {
                value = first
            } else if fraction >= 1 {
                value = last
            } else {
                var p = fraction * Float(n - 1)
                let ip = Int(p)
                p -= Float(ip)
                value = (1 - p) * v[ip] + p * v[min(ip + 1, n - 1)]
            }
            return Percentile(fraction: Double(fraction), value: Double(value))
        }
    }

    public func percentile(_ fraction: Double) -> Double? {
        percentiles.first { abs($0.fraction - fraction) < 1e-6 }?.value
    }
}

/// Everything `llama-perplexity --kl-divergence` prints in its final statistics, same names.
public struct KLDSummary: Sendable, Equatable {
    public let count: Int
    /// llama-perplexity prints no final statistics below 100 tokens; the numbers are still here.
    public var fewTokens: Bool { count < 100 }

    public let pplQuantized: Estimate
    public let pplReference: Estimate
    /// Cor(ln PPL(Q), ln PPL(base)) as a fraction (llama prints it ×100 %).
    public let lnPPLCorrelation: Double
    public let lnPPLRatio: Estimate
    public let pplRatio: Estimate
    public let pplDifference: Estimate

    public let meanKLD: Estimate
    public let kld: OrderStatistics

    public let meanProbabilityDelta: Estimate
    public let probabilityDelta: OrderStatistics
    public let rmsProbabilityDelta: Estimate
    public let maxAbsProbabilityDelta: Double
    public let sameTop: Estimate

    /// The fractions llama-perplexity prints for KLD and Δp.
    public static let kldFractions: [Float] = [0.999, 0.99, 0.95, 0.90, 0.10, 0.05, 0.01, 0.001]
    public static let deltaFractions: [Float] = [0.999, 0.99, 0.95, 0.90, 0.75, 0.25, 0.10, 0.05, 0.01, 0.001]

    public init(sums s: KLDSums, sortedKLD: [Float], sortedProbabilityDelta: [Float]) {
        count = s.count
        let logPPL = Estimate.mean(sum: s.sumNLL, sumOfSquares: s.sumNLL2, count: s.count)
        let logPPLBase = Estimate.mean(sum: s.sumNLLBase, sumOfSquares: s.sumNLLBase2, count: s.count)
        // llama's `covariance`: the covariance of the two means (divided by n−1 again), 0 below 10.
        var cov = 0.0
        if s.count >= 10 {
            let n = Double(s.count)
            cov = (s.sumNLLNLLBase / n - (s.sumNLL / n) * (s.sumNLLBase / n)) / (n - 1)
        }
        let ppl = exp(logPPL.value), pplBase = exp(logPPLBase.value)
        pplQuantized = Estimate(ppl, ppl * logPPL.uncertainty)
        pplReference = Estimate(pplBase, pplBase * logPPLBase.uncertainty)
        let denominator = logPPL.uncertainty * logPPLBase.uncertainty
        lnPPLCorrelation = denominator > 0 ? cov / denominator : 0
        let ratioUncertainty = max(0, logPPL.uncertainty * logPPL.uncertainty + logPPLBase.uncertainty * logPPLBase.uncertainty - 2 * cov).squareRoot()
        lnPPLRatio = Estimate(logPPL.value - logPPLBase.value, ratioUncertainty)
        let ratio = exp(lnPPLRatio.value)
        pplRatio = Estimate(ratio, ratio * ratioUncertainty)
        let pplCov = ppl * pplBase * cov
        pplDifference = Estimate(ppl - pplBase, max(0, pplQuantized.uncertainty * pplQuantized.uncertainty + pplReference.uncertainty * pplReference.uncertainty - 2 * pplCov).squareRoot())

        meanKLD = Estimate.mean(sum: s.sumKLD, sumOfSquares: s.sumKLD2, count: s.count)
        kld = OrderStatistics(sortedValues: sortedKLD, fractions: Self.kldFractions)
        meanProbabilityDelta = Estimate.mean(sum: s.sumPDiff, sumOfSquares: s.sumPDiff2, count: s.count)
        probabilityDelta = OrderStatistics(sortedValues: sortedProbabilityDelta, fractions: Self.deltaFractions)
        let mse = Estimate.mean(sum: s.sumPDiff2, sumOfSquares: s.sumPDiff4, count: s.count)
        let rms = mse.value.squareRoot()
        rmsProbabilityDelta = Estimate(rms, rms > 0 ? 0.5 / rms * mse.uncertainty : 0)
        maxAbsProbabilityDelta = s.maxPDiff
        sameTop = Estimate.proportion(s.sameTop, of: s.count)
    }
}

/// One sample's share of the token metrics.
public struct SampleTokenMetrics: Sendable, Equatable {
    public let sampleID: String
    public let sums: KLDSums
    public let maxKLD: Double

    public var meanKLD: Double { sums.count > 0 ? sums.sumKLD / Double(sums.count) : 0 }
    public var sameTopRate: Double { sums.count > 0 ? Double(sums.sameTop) / Double(sums.count) : 0 }
    /// ln(PPL(Q)/PPL(ref)) of this sample's scored tokens.
    public var lnPPLRatio: Double { sums.count > 0 ? (sums.sumNLL - sums.sumNLLBase) / Double(sums.count) : 0 }
}

/// Collects token comparisons sample by sample. The runner's loop per sample is:
/// reference logits → `ReferencePosition`s (or read them from the cache) → quantized logits →
/// `add(reference:quantizedLogits:sample:)`. Only the per-token KL and Δp (Float each) are kept.
public struct EvalAccumulator: Sendable {
    public private(set) var sums = KLDSums()
    public private(set) var klValues: [Float] = []
    public private(set) var probabilityDeltas: [Float] = []
    public private(set) var samples: [SampleTokenMetrics] = []

    public init() {}

    /// Adds one sample given both models' logits at the same positions ([positions, vocabulary]
    /// row-major) and the target token of each position.
    @discardableResult
    public mutating func add(referenceLogits: [Float], quantizedLogits: [Float], targets: [Int32], vocabulary: Int, sample: String) throws(EvalError) -> SampleTokenMetrics {
        let reference = try Self.referencePositions(logits: referenceLogits, targets: targets, vocabulary: vocabulary)
        return try add(reference: reference, quantizedLogits: quantizedLogits, sample: sample)
    }

    /// Adds one sample from reference positions (computed or cached) and the quantized logits.
    @discardableResult
    public mutating func add(reference: [ReferencePosition], quantizedLogits: [Float], sample: String) throws(EvalError) -> SampleTokenMetrics {
        guard let vocabulary = reference.first?.vocabulary else {
            guard quantizedLogits.isEmpty else { throw .shapeMismatch(what: "quantized logits", expected: 0, found: quantizedLogits.count) }
            let empty = SampleTokenMetrics(sampleID: sample, sums: KLDSums(), maxKLD: 0)
            samples.append(empty)
            return empty
        }
        guard vocabulary > 0 else { throw .emptyVocabulary }
        let expected = Checked.multiply(reference.count, vocabulary)
        guard let expected, quantizedLogits.count == expected else {
            throw .shapeMismatch(what: "quantized logits", expected: expected ?? Int.max, found: quantizedLogits.count)
        }
        var local = KLDSums()
        var maxKLD = 0.0
        var comparisons: [TokenComparison] = []
        comparisons.reserveCapacity(reference.count)
        try quantizedLogits.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Float>) throws(EvalError) in
            for (p, ref) in reference.enumerated() {
                guard ref.vocabulary == vocabulary else { throw .vocabularyMismatch(expected: vocabulary, found: ref.vocabulary) }
                guard ref.target >= 0, Int(ref.target) < vocabulary else {
                    throw .targetOutOfRange(position: p, token: ref.target, vocabulary: vocabulary)
                }
                let row = UnsafeBufferPointer(rebasing: all[(p * vocabulary)..<((p + 1) * vocabulary)])
                let stats = LogitRow(row)
                guard stats.isFinite else { throw .nonFiniteLogits(model: "quantized", position: p) }
                comparisons.append(TokenComparison.compare(reference: ref, quantized: row, stats: stats))
            }
        }
        // Only a sample that passed every check changes the totals.
        for c in comparisons {
            local.add(c)
            maxKLD = max(maxKLD, c.kl)
            klValues.append(Float(c.kl))
            probabilityDeltas.append(Float(c.probabilityDelta))
        }
        sums.merge(local)
        let metrics = SampleTokenMetrics(sampleID: sample, sums: local, maxKLD: maxKLD)
        samples.append(metrics)
        return metrics
    }

    /// The reference positions of a [positions, vocabulary] logit block.
    public static func referencePositions(logits: [Float], targets: [Int32], vocabulary: Int) throws(EvalError) -> [ReferencePosition] {
        guard vocabulary > 0 else { throw .emptyVocabulary }
        let expected = Checked.multiply(targets.count, vocabulary)
        guard let expected, logits.count == expected else {
            throw .shapeMismatch(what: "reference logits", expected: expected ?? Int.max, found: logits.count)
        }
        var out: [ReferencePosition] = []
        out.reserveCapacity(targets.count)
        try logits.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Float>) throws(EvalError) in
            for (p, target) in targets.enumerated() {
                guard target >= 0, Int(target) < vocabulary else {
                    throw .targetOutOfRange(position: p, token: target, vocabulary: vocabulary)
                }
                let row = UnsafeBufferPointer(rebasing: all[(p * vocabulary)..<((p + 1) * vocabulary)])
                let stats = LogitRow(row)
                guard stats.isFinite else { throw .nonFiniteLogits(model: "reference", position: p) }
                out.append(ReferencePosition(logits: row, stats: stats, target: target))
            }
        }
        return out
    }

    /// The aggregates over everything added so far.
    public func summary() -> KLDSummary {
        KLDSummary(sums: sums, sortedKLD: klValues.sorted(), sortedProbabilityDelta: probabilityDeltas.sorted())
    }
}

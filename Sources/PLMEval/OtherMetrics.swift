import PLMCore
// The metrics that do not come from next-token distributions: image features and hidden states
// (cosine, relative error), greedy generation agreement, task accuracy against reference answers,
// and a summary of any per-sample value (mean ± standard error and order statistics).

/// Cosine similarity and relative error of two vectors, accumulated in double precision.
public struct VectorComparison: Sendable, Equatable {
    /// a·b / (‖a‖‖b‖); 1 when both are zero, 0 when exactly one is.
    public let cosine: Double
    /// ‖q − r‖ / ‖r‖; 0 when both are zero, infinity when only the reference is.
    public let relativeError: Double

    public init(cosine: Double, relativeError: Double) {
        self.cosine = cosine
        self.relativeError = relativeError
    }

    public static func compare(reference r: UnsafeBufferPointer<Float>, quantized q: UnsafeBufferPointer<Float>) -> VectorComparison {
        var dot = 0.0, rr = 0.0, qq = 0.0, dd = 0.0
        for i in 0..<min(r.count, q.count) {
            let a = Double(r[i]), b = Double(q[i])
            dot += a * b
            rr += a * a
            qq += b * b
            dd += (b - a) * (b - a)
        }
        let cosine: Double
        // One square root of the product: for identical vectors dot == rr == qq, and the square
        // root of a correctly rounded square is exact, so the cosine is exactly 1. The product of
        // two square roots missed 1 by an ulp for some vectors (an exact file's per-layer report
        // showed 0.9999999999999999 on a Zen 5).
        if rr == 0 && qq == 0 { cosine = 1 } else if rr == 0 || qq == 0 { cosine = 0 } else { cosine = min(1, max(-1, dot / (rr * qq).squareRoot())) }
        let relative: Double = rr == 0 ? (dd == 0 ? 0 : .infinity) : (dd / rr).squareRoot()
        return VectorComparison(cosine: cosine, relativeError: relative)
    }
}

/// One tile's projector features compared: over the whole [tokens, H] tile, and the worst and
/// mean per-token cosine (a tile can look fine overall while a few tokens are far off).
public struct TileFeatureMetrics: Sendable, Equatable {
    public let tile: Int
    public let whole: VectorComparison
    public let meanTokenCosine: Double
    public let minTokenCosine: Double
}

public enum FeatureComparison {
    /// Compares two [tiles, tokens, hidden] feature arrays tile by tile.
    public static func compare(reference: [Float], quantized: [Float], tiles: Int, tokens: Int, hidden: Int) throws(EvalError) -> [TileFeatureMetrics] {
        guard tiles >= 0, tokens > 0, hidden > 0 else { throw .shapeMismatch(what: "feature shape", expected: 1, found: 0) }
        guard let perTile = Checked.multiply(tokens, hidden), let total = Checked.multiply(perTile, tiles) else {
            throw .shapeMismatch(what: "features", expected: Int.max, found: reference.count)
        }
        guard reference.count == total else { throw .shapeMismatch(what: "reference features", expected: total, found: reference.count) }
        guard quantized.count == total else { throw .shapeMismatch(what: "quantized features", expected: total, found: quantized.count) }
        return reference.withUnsafeBufferPointer { r in
            quantized.withUnsafeBufferPointer { q in
                (0..<tiles).map { t in
                    let base = t * perTile
                    let whole = VectorComparison.compare(reference: UnsafeBufferPointer(rebasing: r[base..<(base + perTile)]),
                                                         quantized: UnsafeBufferPointer(rebasing: q[base..<(base + perTile)]))
                    var sum = 0.0, worst = Double.infinity
                    for k in 0..<tokens {
                        let s = base + k * hidden
                        let c = VectorComparison.compare(reference: UnsafeBufferPointer(rebasing: r[s..<(s + hidden)]),
                                                         quantized: UnsafeBufferPointer(rebasing: q[s..<(s + hidden)])).cosine
                        sum += c
                        worst = min(worst, c)
                    }
                    return TileFeatureMetrics(tile: t, whole: whole, meanTokenCosine: sum / Double(tokens), minTokenCosine: worst)
                }
            }
        }
    }
}

/// Hidden-state errors per layer (`--per-layer`), averaged over samples: where the error enters.
public struct LayerErrorAccumulator: Sendable {
    /// Layer names in the order first seen (e.g. "vision.3", "decoder.11").
    public private(set) var layers: [String] = []
    private var sums: [String: (cosine: Double, relative: Double, count: Int)] = [:]

    public init() {}

    public mutating func add(layer: String, _ c: VectorComparison) {
        if sums[layer] == nil { layers.append(layer); sums[layer] = (0, 0, 0) }
        if var s = sums[layer] {
            s.cosine += c.cosine
            s.relative += c.relativeError
            s.count += 1
            sums[layer] = s
        }
    }

    /// Mean cosine and relative error per layer, in layer order.
    public var means: [LayerError] {
        layers.compactMap { name in
            guard let s = sums[name], s.count > 0 else { return nil }
            return LayerError(layer: name, cosine: s.cosine / Double(s.count), relativeError: s.relative / Double(s.count), samples: s.count)
        }
    }
}

public struct LayerError: Sendable, Equatable {
    public let layer: String
    public let cosine: Double
    public let relativeError: Double
    public let samples: Int

    public init(layer: String, cosine: Double, relativeError: Double, samples: Int) {
        self.layer = layer
        self.cosine = cosine
        self.relativeError = relativeError
        self.samples = samples
    }
}

/// Greedy generations of the two models compared token by token.
public struct GreedyComparison: Sendable, Equatable {
    public let referenceLength: Int
    public let quantizedLength: Int
    /// The first index where the two differ (a missing token counts as a difference: when one is
    /// a proper prefix of the other this is the shorter length); nil when identical.
    public let firstDivergence: Int?

    public var exactMatch: Bool { firstDivergence == nil }
    /// Tokens before the first divergence.
    public var agreeingPrefix: Int { firstDivergence ?? referenceLength }

    public init(reference: [Int32], quantized: [Int32]) {
        referenceLength = reference.count
        quantizedLength = quantized.count
        var i = 0
        while i < reference.count && i < quantized.count && reference[i] == quantized[i] { i += 1 }
        firstDivergence = (i == reference.count && i == quantized.count) ? nil : i
    }
}

/// Aggregate of greedy comparisons.
public struct GreedySummary: Sendable, Equatable {
    public let samples: Int
    public let exactMatch: Estimate
    /// Over the samples that diverge: the position of the first divergence.
    public let firstDivergence: ValueSummary?
    /// Over all samples: the agreeing prefix as a fraction of the reference's length.
    public let agreeingFraction: ValueSummary?

    public init(_ comparisons: [GreedyComparison]) {
        samples = comparisons.count
        exactMatch = Estimate.proportion(comparisons.filter(\.exactMatch).count, of: comparisons.count)
        let diverged = comparisons.compactMap { $0.firstDivergence.map(Double.init) }
        firstDivergence = diverged.isEmpty ? nil : ValueSummary(diverged)
        let fractions = comparisons.map { c in c.referenceLength == 0 ? (c.exactMatch ? 1 : 0) : Double(c.agreeingPrefix) / Double(c.referenceLength) }
        agreeingFraction = fractions.isEmpty ? nil : ValueSummary(fractions)
    }
}

/// Task accuracy against reference answers.
///
/// Exact match: the generated text equals the answer byte for byte. Normalised match: both are
/// equal after `AnswerNormalization.normalize` (lower case, white space runs collapsed to one
/// space, trimmed, trailing `. , ; : ! ?` removed).
public enum AnswerNormalization {
    static let trailingPunctuation: Set<Character> = [".", ",", ";", ":", "!", "?"]

    public static func normalize(_ text: String) -> String {
        var out = ""
        var pendingSpace = false
        for ch in text.lowercased() {
            if ch.isWhitespace {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" "); pendingSpace = false }
                out.append(ch)
            }
        }
        // Strip trailing punctuation, and any space it leaves behind ("yes ." → "yes").
        while let last = out.last, trailingPunctuation.contains(last) || last == " " { out.removeLast() }
        return out
    }

    public static func exactMatch(_ prediction: String, _ answer: String) -> Bool { prediction == answer }

    public static func normalizedMatch(_ prediction: String, _ answer: String) -> Bool { normalize(prediction) == normalize(answer) }
}

public struct AccuracyCounter: Sendable, Equatable {
    public private(set) var total = 0
    public private(set) var exact = 0
    public private(set) var normalized = 0

    public init() {}

    public mutating func add(prediction: String, answer: String) {
        total += 1
        if AnswerNormalization.exactMatch(prediction, answer) { exact += 1 }
        if AnswerNormalization.normalizedMatch(prediction, answer) { normalized += 1 }
    }

    public var exactRate: Estimate { Estimate.proportion(exact, of: total) }
    public var normalizedRate: Estimate { Estimate.proportion(normalized, of: total) }
}

/// A per-sample value summarised: mean ± standard error (llama's formula), median, p90/p95/p99,
/// minimum and maximum.
public struct ValueSummary: Sendable, Equatable {
    public let count: Int
    public let mean: Estimate
    public let order: OrderStatistics

    public init(_ values: [Double]) {
        count = values.count
        var sum = 0.0, sum2 = 0.0
        for v in values { sum += v; sum2 += v * v }
        mean = Estimate.mean(sum: sum, sumOfSquares: sum2, count: values.count)
        order = OrderStatistics(sortedValues: values.map(Float.init).sorted(), fractions: [0.90, 0.95, 0.99])
    }
}

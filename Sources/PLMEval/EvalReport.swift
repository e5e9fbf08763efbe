import PLMCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The result of one `plmq eval` run as a value: built by the runner, written as JSON (every
// number and the settings), as a text table (one column per model) and as an HTML page.

/// A model in the report: the reference or one of the evaluated files.
public struct ModelInfo: Sendable, Equatable {
    public let name: String
    public let path: String
    public let sha256: String
    /// What the weights are, e.g. "int4 asymmetric g32 k6 (recipe default)".
    public let storage: String?

    public init(name: String, path: String, sha256: String, storage: String? = nil) {
        self.name = name
        self.path = path
        self.sha256 = sha256
        self.storage = storage
    }
}

/// One sample's row in the per-sample table.
public struct SampleRow: Sendable, Equatable {
    public let id: String
    /// Absolute image paths (thumbnails in the HTML page).
    public let images: [String]
    public let tokens: SampleTokenMetrics?
    /// Mean whole-tile cosine of the projector features.
    public let featureCosine: Double?
    public let greedy: GreedyComparison?
    public let prediction: String?
    public let answer: String?

    public init(id: String, images: [String] = [], tokens: SampleTokenMetrics? = nil, featureCosine: Double? = nil,
                greedy: GreedyComparison? = nil, prediction: String? = nil, answer: String? = nil) {
        self.id = id
        self.images = images
        self.tokens = tokens
        self.featureCosine = featureCosine
        self.greedy = greedy
        self.prediction = prediction
        self.answer = answer
    }
}

/// The KL values binned on a log scale for the distribution chart: bin 0 holds KL ≤ 1e−6
/// (including 0 and the slightly negative values of rounding), then four bins per decade up to
/// 10, the last bin holds everything above.
public struct KLHistogram: Sendable, Equatable {
    public static let lowestEdge = -6.0
    public static let binsPerDecade = 4
    public static let decades = 7
    public let counts: [Int]

    public init(values: [Float]) {
        var counts = [Int](repeating: 0, count: 2 + Self.binsPerDecade * Self.decades)
        for v in values where !v.isNaN {
            let i: Int
            if Double(v) <= pow(10, Self.lowestEdge) {
                i = 0
            } else {
                let position = (log10(Double(v)) - Self.lowestEdge) * Double(Self.binsPerDecade)
                i = min(counts.count - 1, 1 + Int(position.rounded(.down)))
            }
            counts[i] += 1
        }
        self.counts = counts
    }

    /// The lower edge of bin i ≥ 1 as a power of ten.
    public static func lowerExponent(_ i: Int) -> Double { lowestEdge + Double(i - 1) / Double(binsPerDecade) }
}

/// Summary of the per-tile feature comparisons of one model.
public struct FeatureSummary: Sendable, Equatable {
    public let tiles: Int
    public let cosine: ValueSummary
    public let relativeError: ValueSummary
    public let minTokenCosine: Double

    public init(_ tiles: [TileFeatureMetrics]) {
        self.tiles = tiles.count
        cosine = ValueSummary(tiles.map(\.whole.cosine))
        relativeError = ValueSummary(tiles.map(\.whole.relativeError))
        minTokenCosine = tiles.map(\.minTokenCosine).min() ?? 1
    }
}

/// A threshold from the command line and whether the model kept it.
public struct ThresholdCheck: Sendable, Equatable {
    public let name: String
    public let limit: Double
    public let value: Double
    public let passed: Bool
}

/// `--max-kl` (mean KLD) and `--min-top1` (same top p as a fraction).
public struct EvalThresholds: Sendable, Equatable {
    public let maxMeanKLD: Double?
    public let minSameTop: Double?

    public init(maxMeanKLD: Double? = nil, minSameTop: Double? = nil) {
        self.maxMeanKLD = maxMeanKLD
        self.minSameTop = minSameTop
    }

    public func check(_ tokens: KLDSummary?) -> [ThresholdCheck] {
        guard let tokens else { return [] }
        var out: [ThresholdCheck] = []
        if let m = maxMeanKLD {
            out.append(ThresholdCheck(name: "max-kl", limit: m, value: tokens.meanKLD.value, passed: tokens.meanKLD.value <= m))
        }
        if let m = minSameTop {
            out.append(ThresholdCheck(name: "min-top1", limit: m, value: tokens.sameTop.value, passed: tokens.sameTop.value >= m))
        }
        return out
    }
}

/// Everything measured for one evaluated model.
public struct ModelResult: Sendable, Equatable {
    public let model: ModelInfo
    public let tokens: KLDSummary?
    public let klHistogram: KLHistogram?
    public let features: FeatureSummary?
    public let greedy: GreedySummary?
    public let accuracy: AccuracyCounter?
    public let layers: [LayerError]
    public let samples: [SampleRow]
    public let thresholds: [ThresholdCheck]

    public init(model: ModelInfo, tokens: KLDSummary? = nil, klHistogram: KLHistogram? = nil, features: FeatureSummary? = nil,
                greedy: GreedySummary? = nil, accuracy: AccuracyCounter? = nil, layers: [LayerError] = [],
                samples: [SampleRow] = [], thresholds: [ThresholdCheck] = []) {
        self.model = model
        self.tokens = tokens
        self.klHistogram = klHistogram
        self.features = features
        self.greedy = greedy
        self.accuracy = accuracy
        self.layers = layers
        self.samples = samples
        self.thresholds = thresholds
    }

    /// The token metrics, histogram and per-sample token rows straight from an accumulator.
    public init(model: ModelInfo, accumulator: EvalAccumulator, features: FeatureSummary? = nil, greedy: GreedySummary? = nil,
                accuracy: AccuracyCounter? = nil, layers: [LayerError] = [], samples: [SampleRow], thresholds: EvalThresholds = EvalThresholds()) {
        let summary = accumulator.summary()
        self.init(model: model, tokens: summary, klHistogram: KLHistogram(values: accumulator.klValues), features: features,
                  greedy: greedy, accuracy: accuracy, layers: layers, samples: samples, thresholds: thresholds.check(summary))
    }

    public var passed: Bool { thresholds.allSatisfy(\.passed) }
}

/// A whole run.
public struct EvalReport: Sendable, Equatable {
    public let plmqVersion: String
    public let reference: ModelInfo
    public let referenceAccuracy: AccuracyCounter?
    /// "samples" (a samples folder) or "text" (`--text`, llama-perplexity chunks).
    public let mode: String
    /// Dataset: folder (or text file), hash, counts.
    public let dataset: JSONObject
    /// The run's settings as given (threads, max_tiles, max_new_tokens, ctx, cache …).
    public let settings: JSONObject
    public let models: [ModelResult]

    public init(plmqVersion: String, reference: ModelInfo, referenceAccuracy: AccuracyCounter? = nil, mode: String,
                dataset: JSONObject, settings: JSONObject, models: [ModelResult]) {
        self.plmqVersion = plmqVersion
        self.reference = reference
        self.referenceAccuracy = referenceAccuracy
        self.mode = mode
        self.dataset = dataset
        self.settings = settings
        self.models = models
    }

    /// Exit status 1 of `plmq eval` when any threshold is broken.
    public var passed: Bool { models.allSatisfy(\.passed) }
}

// MARK: - JSON

extension Estimate {
    var json: JSONValue { .object(JSONObject([("value", .double(value)), ("uncertainty", .double(uncertainty))])) }
}

extension OrderStatistics {
    var json: JSONValue {
        var o = JSONObject([("min", .double(minimum)), ("median", .double(median)), ("max", .double(maximum))])
        for p in percentiles { o["p" + ReportFormat.fractionName(p.fraction)] = .double(p.value) }
        return .object(o)
    }
}

extension ValueSummary {
    var json: JSONValue { .object(JSONObject([("count", .int(count)), ("mean", mean.json), ("order", order.json)])) }
}

extension ModelInfo {
    var json: JSONValue {
        .object(JSONObject([("name", .string(name)), ("path", .string(path)), ("sha256", .string(sha256)),
                            ("storage", storage.map(JSONValue.string) ?? .null)]))
    }
}

extension AccuracyCounter {
    var json: JSONValue {
        .object(JSONObject([("samples", .int(total)), ("exact", .int(exact)), ("normalized", .int(normalized)),
                            ("exact_rate", exactRate.json), ("normalized_rate", normalizedRate.json)]))
    }
}

extension KLDSummary {
    /// Field names follow llama-perplexity's printout.
    public var json: JSONValue {
        .object(JSONObject([
            ("tokens", .int(count)),
            ("few_tokens", .bool(fewTokens)),
            ("ppl_q", pplQuantized.json), ("ppl_base", pplReference.json),
            ("cor_ln_ppl", .double(lnPPLCorrelation)),
            ("ln_ppl_ratio", lnPPLRatio.json), ("ppl_ratio", pplRatio.json), ("ppl_diff", pplDifference.json),
            ("kld_mean", meanKLD.json), ("kld", kld.json),
            ("delta_p_mean", meanProbabilityDelta.json), ("delta_p", probabilityDelta.json),
            ("delta_p_rms", rmsProbabilityDelta.json), ("delta_p_max_abs", .double(maxAbsProbabilityDelta)),
            ("same_top_p", sameTop.json),
        ]))
    }
}

extension SampleRow {
    var json: JSONValue {
        var o = JSONObject([("id", .string(id))])
        if let t = tokens {
            o["tokens"] = .int(t.sums.count)
            o["kld_mean"] = .double(t.meanKLD)
            o["kld_max"] = .double(t.maxKLD)
            o["same_top_p"] = .double(t.sameTopRate)
            o["ln_ppl_ratio"] = .double(t.lnPPLRatio)
        }
        if let c = featureCosine { o["feature_cosine"] = .double(c) }
        if let g = greedy {
            o["greedy_exact"] = .bool(g.exactMatch)
            o["first_divergence"] = g.firstDivergence.map(JSONValue.int) ?? .null
        }
        if let p = prediction { o["prediction"] = .string(p) }
        if let a = answer { o["answer"] = .string(a) }
        return .object(o)
    }
}

extension ModelResult {
    var json: JSONValue {
        var o = JSONObject([("model", model.json)])
        o["tokens"] = tokens?.json ?? .null
        o["kld_histogram"] = klHistogram.map { h in
            .object(JSONObject([("lowest_edge_log10", .double(KLHistogram.lowestEdge)), ("bins_per_decade", .int(KLHistogram.binsPerDecade)),
                                ("counts", .array(h.counts.map(JSONValue.int)))]))
        } ?? .null
        o["features"] = features.map { f in
            .object(JSONObject([("tiles", .int(f.tiles)), ("cosine", f.cosine.json), ("relative_error", f.relativeError.json),
                                ("min_token_cosine", .double(f.minTokenCosine))]))
        } ?? .null
        o["greedy"] = greedy.map { g in
            .object(JSONObject([("samples", .int(g.samples)), ("exact_match", g.exactMatch.json),
                                ("first_divergence", g.firstDivergence?.json ?? .null),
                                ("agreeing_fraction", g.agreeingFraction?.json ?? .null)]))
        } ?? .null
        o["accuracy"] = accuracy?.json ?? .null
        o["layers"] = .array(layers.map { l in
            .object(JSONObject([("layer", .string(l.layer)), ("cosine", .double(l.cosine)), ("relative_error", .double(l.relativeError)),
                                ("samples", .int(l.samples))]))
        })
        o["thresholds"] = .array(thresholds.map { t in
            .object(JSONObject([("name", .string(t.name)), ("limit", .double(t.limit)), ("value", .double(t.value)), ("passed", .bool(t.passed))]))
        })
        o["samples"] = .array(samples.map(\.json))
        return .object(o)
    }
}

extension EvalReport {
    /// The whole report as JSON: settings, dataset, reference, every model's every number.
    public var json: JSONValue {
        .object(JSONObject([
            ("format", .string("plmq-eval")), ("version", .int(1)),
            ("plmq_version", .string(plmqVersion)),
            ("mode", .string(mode)),
            ("settings", .object(settings)),
            ("dataset", .object(dataset)),
            ("reference", reference.json),
            ("reference_accuracy", referenceAccuracy?.json ?? .null),
            ("definitions", .string("KLD, same top p, Δp, PPL and their uncertainties as llama-perplexity --kl-divergence (Formats/SAMPLES.md)")),
            ("passed", .bool(passed)),
            ("models", .array(models.map(\.json))),
        ]))
    }

    /// The table for stdout: one row per metric, one column per model.
    public var textTable: String {
        var rows: [(String, [String])] = []
        func row(_ name: String, _ cell: (ModelResult) -> String?) {
            let cells = models.map { cell($0) ?? "–" }
            if cells.contains(where: { $0 != "–" }) { rows.append((name, cells)) }
        }
        let f = ReportFormat.self
        row("tokens scored") { $0.tokens.map { formatThousands($0.count) } }
        row("Mean KLD") { $0.tokens.map { f.estimate($0.meanKLD, 6) } }
        row("Median KLD") { $0.tokens.map { f.fixed($0.kld.median, 6) } }
        for p in [0.90, 0.95, 0.99] {
            row("\(f.fractionName(p)) % KLD") { $0.tokens?.kld.percentile(p).map { f.fixed($0, 6) } }
        }
        row("Maximum KLD") { $0.tokens.map { f.fixed($0.kld.maximum, 6) } }
        row("Same top p") { $0.tokens.map { f.percent($0.sameTop) } }
        row("RMS Δp") { $0.tokens.map { f.percent($0.rmsProbabilityDelta) } }
        row("Mean Δp") { $0.tokens.map { f.percent($0.meanProbabilityDelta) } }
        row("PPL(Q)") { $0.tokens.map { f.estimate($0.pplQuantized, 4) } }
        row("PPL(base)") { $0.tokens.map { f.estimate($0.pplReference, 4) } }
        row("ln(PPL(Q)/PPL(base))") { $0.tokens.map { f.estimate($0.lnPPLRatio, 6) } }
        row("Cor(ln PPL(Q), ln PPL(base))") { $0.tokens.map { f.fixed(100 * $0.lnPPLCorrelation, 2) + " %" } }
        row("feature cosine (tiles)") { $0.features.map { f.estimate($0.cosine.mean, 6) } }
        row("feature relative error") { $0.features.map { f.estimate($0.relativeError.mean, 6) } }
        row("greedy exact match") { $0.greedy.map { f.percent($0.exactMatch) } }
        row("first divergence (median)") { $0.greedy?.firstDivergence.map { f.fixed($0.order.median, 1) } }
        row("accuracy exact") { $0.accuracy.map { "\($0.exact)/\($0.total)" } }
        row("accuracy normalised") { $0.accuracy.map { "\($0.normalized)/\($0.total)" } }
        for t in Set(models.flatMap { $0.thresholds.map(\.name) }).sorted() {
            row("threshold \(t)") { m in m.thresholds.first { $0.name == t }.map { ($0.passed ? "ok" : "FAILED") + " (limit " + f.short($0.limit) + ")" } }
        }
        let header = ("", models.map(\.model.name))
        let all = [header] + rows
        let firstWidth = all.map { $0.0.count }.max() ?? 0
        let widths = models.indices.map { i in all.map { $0.1[i].count }.max() ?? 0 }
        var out = "reference: \(reference.name) (\(reference.sha256.prefix(12)))\n"
        if let acc = referenceAccuracy { out += "reference accuracy: exact \(acc.exact)/\(acc.total), normalised \(acc.normalized)/\(acc.total)\n" }
        for (name, cells) in all {
            var line = name + String(repeating: " ", count: firstWidth - name.count)
            for (i, c) in cells.enumerated() { line += "  " + String(repeating: " ", count: widths[i] - c.count) + c }
            out += line + "\n"
        }
        if models.contains(where: { $0.tokens?.fewTokens == true }) {
            out += "note: fewer than 100 scored tokens; llama-perplexity would print no statistics for so few\n"
        }
        return out
    }
}

enum ReportFormat {
    static func fixed(_ v: Double, _ decimals: Int) -> String {
        v.isFinite ? String(fixed: v, decimals: decimals) : (v.isNaN ? "nan" : (v > 0 ? "inf" : "-inf"))
    }

    static func estimate(_ e: Estimate, _ decimals: Int) -> String { fixed(e.value, decimals) + " ± " + fixed(e.uncertainty, decimals) }

    static func percent(_ e: Estimate) -> String { fixed(100 * e.value, 3) + " ± " + fixed(100 * e.uncertainty, 3) + " %" }

    /// 0.999 → "99.9", 0.9 → "90", 0.001 → "0.1".
    static func fractionName(_ f: Double) -> String {
        let tenths = Int((f * 1000).rounded())
        return tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }

    /// Three significant digits: 0.000239274 → "2.39e-4", 0.9667 → "0.967".
    static func short(_ v: Double) -> String {
        guard v.isFinite, v != 0, abs(v) < 0.01 else { return fixed(v, 3) }
        var exponent = Int(floor(log10(abs(v))))
        var mantissa = v / pow(10, Double(exponent))
        if abs(mantissa) >= 9.995 { mantissa /= 10; exponent += 1 }
        return fixed(mantissa, 2) + "e\(exponent)"
    }
}

import Foundation
import Testing
import PLMCore
import PLMTestSupport
@testable import PLMEval

/// The numpy fixtures of make_eval_fixtures.py, decoded.
struct TokenCase {
    let name: String
    let positions: Int, vocabulary: Int
    let reference: [Float], quantized: [Float]
    let targets: [Int32]
    let support: [Int]
    let kl: [Double], sameTop: [Bool], nll: [Double], nllBase: [Double], dp: [Double]
    let summary: JSONObject
}

enum EvalFixtures {
    static let json: JSONObject = {
        guard let data = FileManager.default.contents(atPath: Fixtures.root + "/eval/metrics.json"),
              let value = try? JSONParser.parse(Array(data)), let object = value.objectValue else { return JSONObject() }
        return object
    }()

    static func floats(_ v: JSONValue?) -> [Float] {
        guard let s = v?.stringValue, let data = Data(base64Encoded: s) else { return [] }
        return data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
    }

    static func doubles(_ v: JSONValue?) -> [Double] { v?.arrayValue?.compactMap(\.doubleValue) ?? [] }

    static var tokenCases: [TokenCase] {
        (json["token_cases"]?.arrayValue ?? []).compactMap { item in
            guard let o = item.objectValue, let name = o["name"]?.stringValue, let p = o["positions"]?.intValue,
                  let v = o["vocabulary"]?.intValue, let summary = o["summary"]?.objectValue else { return nil }
            return TokenCase(name: name, positions: p, vocabulary: v, reference: floats(o["reference"]), quantized: floats(o["quantized"]),
                             targets: (o["targets"]?.arrayValue ?? []).compactMap { $0.intValue.map(Int32.init) },
                             support: (o["support"]?.arrayValue ?? []).compactMap(\.intValue),
                             kl: doubles(o["kl"]), sameTop: (o["same_top"]?.arrayValue ?? []).compactMap(\.boolValue),
                             nll: doubles(o["nll"]), nllBase: doubles(o["nll_base"]), dp: doubles(o["dp"]), summary: summary)
        }
    }
}

/// |a − b| ≤ absolute + relative·|b|.
func close(_ a: Double, _ b: Double, relative: Double = 1e-6, absolute: Double = 1e-9) -> Bool {
    abs(a - b) <= absolute + relative * abs(b)
}

func estimate(_ o: JSONObject, _ key: String) -> (Double, Double) {
    let v = EvalFixtures.doubles(o[key])
    return v.count == 2 ? (v[0], v[1]) : (.nan, .nan)
}

@Suite struct TokenMetricTests {
    @Test func fixturesArePresent() {
        #expect(EvalFixtures.tokenCases.count == 3)
        for c in EvalFixtures.tokenCases {
            #expect(c.reference.count == c.positions * c.vocabulary && c.quantized.count == c.reference.count && c.targets.count == c.positions)
        }
    }

    @Test(arguments: EvalFixtures.tokenCases.map(\.name))
    func perTokenValuesEqualNumpy(_ name: String) throws {
        let c = try #require(EvalFixtures.tokenCases.first { $0.name == name })
        let reference = try EvalAccumulator.referencePositions(logits: c.reference, targets: c.targets, vocabulary: c.vocabulary)
        for (p, ref) in reference.enumerated() {
            #expect(ref.supportCount == c.support[p], "support at \(p)")
            let cmp = c.quantized.withUnsafeBufferPointer {
                TokenComparison.compare(reference: ref, quantized: UnsafeBufferPointer(rebasing: $0[(p * c.vocabulary)..<((p + 1) * c.vocabulary)]))
            }
            #expect(close(cmp.kl, c.kl[p], relative: 1e-6, absolute: 1e-12), "KL at \(p): \(cmp.kl) vs \(c.kl[p])")
            #expect(cmp.sameTop == c.sameTop[p])
            #expect(close(cmp.nll, c.nll[p]) && close(cmp.nllReference, c.nllBase[p]))
            #expect(close(cmp.probabilityDelta, c.dp[p], relative: 1e-6, absolute: 1e-12))
        }
    }

    @Test(arguments: EvalFixtures.tokenCases.map(\.name))
    func aggregatesEqualNumpy(_ name: String) throws {
        let c = try #require(EvalFixtures.tokenCases.first { $0.name == name })
        var acc = EvalAccumulator()
        try acc.add(referenceLogits: c.reference, quantizedLogits: c.quantized, targets: c.targets, vocabulary: c.vocabulary, sample: c.name)
        let s = acc.summary()
        let e = c.summary
        #expect(s.count == c.positions)
        func check(_ got: Estimate, _ key: String, relative: Double = 1e-6) {
            let (v, u) = estimate(e, key)
            #expect(close(got.value, v, relative: relative, absolute: 1e-12), "\(key) value \(got.value) vs \(v)")
            #expect(close(got.uncertainty, u, relative: 1e-5, absolute: 1e-12), "\(key) uncertainty \(got.uncertainty) vs \(u)")
        }
        check(s.pplQuantized, "ppl_q")
        check(s.pplReference, "ppl_base")
        check(s.lnPPLRatio, "ln_ratio")
        check(s.pplRatio, "ratio")
        check(s.pplDifference, "diff")
        check(s.meanKLD, "kld_mean")
        check(s.meanProbabilityDelta, "dp_mean")
        check(s.rmsProbabilityDelta, "rms_dp")
        check(s.sameTop, "same_top")
        #expect(close(s.lnPPLCorrelation, e["cor"]?.doubleValue ?? .nan, relative: 1e-5, absolute: 1e-9))
        #expect(close(s.maxAbsProbabilityDelta, e["max_abs_dp"]?.doubleValue ?? .nan))
        // Order statistics: llama computes them in Float, numpy in double.
        func order(_ got: OrderStatistics, _ prefix: String) {
            #expect(close(got.median, e[prefix + "_median"]?.doubleValue ?? .nan, relative: 1e-5, absolute: 1e-9))
            #expect(close(got.minimum, e[prefix + "_min"]?.doubleValue ?? .nan, relative: 1e-6, absolute: 1e-9))
            #expect(close(got.maximum, e[prefix + "_max"]?.doubleValue ?? .nan, relative: 1e-6, absolute: 1e-9))
            for (fraction, value) in e[prefix + "_percentiles"]?.objectValue?.entries ?? [] {
                let f = Double(fraction) ?? .nan
                let mine = got.percentile(f)
                #expect(mine != nil && close(mine ?? .nan, value.doubleValue ?? .nan, relative: 1e-4, absolute: 1e-7), "\(prefix) p\(fraction): \(mine ?? .nan) vs \(value)")
            }
        }
        order(s.kld, "kld")
        order(s.probabilityDelta, "dp")
        #expect(s.fewTokens == (c.positions < 100))
    }

    @Test(arguments: EvalFixtures.tokenCases.map(\.name))
    func modelAgainstItselfIsZeroAndAgreesEverywhere(_ name: String) throws {
        let c = try #require(EvalFixtures.tokenCases.first { $0.name == name })
        var acc = EvalAccumulator()
        try acc.add(referenceLogits: c.reference, quantizedLogits: c.reference, targets: c.targets, vocabulary: c.vocabulary, sample: c.name)
        let s = acc.summary()
        #expect(acc.klValues.allSatisfy { $0 == 0 })
        #expect(s.meanKLD.value == 0 && s.kld.maximum == 0)
        #expect(s.sameTop.value == 1)
        #expect(s.rmsProbabilityDelta.value == 0 && s.maxAbsProbabilityDelta == 0)
        #expect(s.lnPPLRatio.value == 0 && s.pplRatio.value == 1)
    }

    @Test func samplesAddUpToTheWhole() throws {
        let c = try #require(EvalFixtures.tokenCases.first { $0.name == "peaked" })
        var whole = EvalAccumulator()
        try whole.add(referenceLogits: c.reference, quantizedLogits: c.quantized, targets: c.targets, vocabulary: c.vocabulary, sample: "all")
        var parts = EvalAccumulator()
        let split = 50 * c.vocabulary
        try parts.add(referenceLogits: Array(c.reference[..<split]), quantizedLogits: Array(c.quantized[..<split]), targets: Array(c.targets[..<50]), vocabulary: c.vocabulary, sample: "a")
        try parts.add(referenceLogits: Array(c.reference[split...]), quantizedLogits: Array(c.quantized[split...]), targets: Array(c.targets[50...]), vocabulary: c.vocabulary, sample: "b")
        #expect(parts.samples.map(\.sampleID) == ["a", "b"] && parts.samples.map(\.sums.count) == [50, c.positions - 50])
        let a = whole.summary(), b = parts.summary()
        #expect(close(a.meanKLD.value, b.meanKLD.value, relative: 1e-12) && a.kld == b.kld && a.sameTop == b.sameTop)
        #expect(close(a.lnPPLRatio.uncertainty, b.lnPPLRatio.uncertainty, relative: 1e-9))
    }

    @Test func badInputIsATypedErrorAndLeavesTheTotalsAlone() throws {
        var acc = EvalAccumulator()
        let ref: [Float] = [0, 1, 2, 3, 4, 5]
        #expect(throws: EvalError.shapeMismatch(what: "reference logits", expected: 6, found: 5)) {
            try acc.add(referenceLogits: Array(ref.prefix(5)), quantizedLogits: ref, targets: [0, 1], vocabulary: 3, sample: "s")
        }
        #expect(throws: EvalError.targetOutOfRange(position: 1, token: 3, vocabulary: 3)) {
            try acc.add(referenceLogits: ref, quantizedLogits: ref, targets: [0, 3], vocabulary: 3, sample: "s")
        }
        #expect(throws: EvalError.nonFiniteLogits(model: "quantized", position: 1)) {
            try acc.add(referenceLogits: ref, quantizedLogits: [0, 1, 2, 3, .nan, 5], targets: [0, 1], vocabulary: 3, sample: "s")
        }
        #expect(throws: EvalError.shapeMismatch(what: "quantized logits", expected: 6, found: 3)) {
            try acc.add(referenceLogits: ref, quantizedLogits: [0, 1, 2], targets: [0, 1], vocabulary: 3, sample: "s")
        }
        #expect(acc.sums.count == 0 && acc.klValues.isEmpty)
    }

    @Test func sparseAndDenseSupportGiveTheSameKL() throws {
        // One peaked row over 64 tokens: the support is sparse; the same row as a dense position.
        var row = gaussian(64, seed: 5, scale: 1)
        row[7] += 30
        let q = row.enumerated().map { $0.element + ($0.offset % 3 == 0 ? 0.4 : -0.2) }
        let sparse = row.withUnsafeBufferPointer { ReferencePosition(logits: $0, target: 7) }
        #expect(sparse.supportTokens != nil && sparse.supportCount < 32)
        var all = [Float](repeating: 0, count: 64)
        for (k, t) in (sparse.supportTokens ?? []).enumerated() { all[Int(t)] = sparse.logProbs[k] }
        let dense = ReferencePosition(target: 7, topToken: sparse.topToken, targetLogProb: sparse.targetLogProb, supportTokens: nil,
                                      logProbs: row.withUnsafeBufferPointer { r in
                                          let lse = LogitRow(r).logNormalizer
                                          return r.map { Float(Double($0) - lse) }
                                      }, vocabulary: 64)
        let a = q.withUnsafeBufferPointer { TokenComparison.compare(reference: sparse, quantized: $0) }
        let b = q.withUnsafeBufferPointer { TokenComparison.compare(reference: dense, quantized: $0) }
        #expect(a.kl > 0 && a.kl == b.kl)
    }
}

@Suite struct FeatureMetricTests {
    @Test func tilesEqualNumpy() throws {
        let cases = EvalFixtures.json["feature_cases"]?.arrayValue ?? []
        #expect(cases.count == 1)
        for item in cases {
            let o = try #require(item.objectValue)
            let tiles = try #require(o["tiles"]?.intValue), tokens = try #require(o["tokens"]?.intValue), hidden = try #require(o["hidden"]?.intValue)
            let got = try FeatureComparison.compare(reference: EvalFixtures.floats(o["reference"]), quantized: EvalFixtures.floats(o["quantized"]),
                                                    tiles: tiles, tokens: tokens, hidden: hidden)
            let expected = o["tiles_expected"]?.arrayValue?.compactMap(\.objectValue) ?? []
            #expect(got.count == tiles && expected.count == tiles)
            for (g, e) in zip(got, expected) {
                #expect(close(g.whole.cosine, e["cosine"]?.doubleValue ?? .nan, relative: 1e-9))
                #expect(close(g.whole.relativeError, e["relative_error"]?.doubleValue ?? .nan, relative: 1e-9))
                #expect(close(g.meanTokenCosine, e["mean_token_cosine"]?.doubleValue ?? .nan, relative: 1e-9))
                #expect(close(g.minTokenCosine, e["min_token_cosine"]?.doubleValue ?? .nan, relative: 1e-9))
            }
        }
    }

    @Test func identicalFeaturesHaveCosineOneAndNoError() throws {
        let f = gaussian(2 * 3 * 8, seed: 9, scale: 2)
        let got = try FeatureComparison.compare(reference: f, quantized: f, tiles: 2, tokens: 3, hidden: 8)
        #expect(got.allSatisfy { abs($0.whole.cosine - 1) < 1e-12 && $0.whole.relativeError == 0 && abs($0.minTokenCosine - 1) < 1e-12 })
    }

    @Test func zeroVectorsAndShapeErrors() throws {
        let zero = [Float](repeating: 0, count: 4), one: [Float] = [1, 0, 0, 0]
        let both = zero.withUnsafeBufferPointer { z in VectorComparison.compare(reference: z, quantized: z) }
        #expect(both == VectorComparison(cosine: 1, relativeError: 0))
        let onlyReference = zero.withUnsafeBufferPointer { z in one.withUnsafeBufferPointer { VectorComparison.compare(reference: z, quantized: $0) } }
        #expect(onlyReference.cosine == 0 && onlyReference.relativeError == .infinity)
        #expect(throws: EvalError.shapeMismatch(what: "quantized features", expected: 8, found: 4)) {
            try FeatureComparison.compare(reference: zero + zero, quantized: zero, tiles: 2, tokens: 1, hidden: 4)
        }
    }

    @Test func layerErrorsAverageInLayerOrder() {
        var acc = LayerErrorAccumulator()
        acc.add(layer: "vision.0", VectorComparison(cosine: 0.9, relativeError: 0.1))
        acc.add(layer: "decoder.0", VectorComparison(cosine: 0.8, relativeError: 0.3))
        acc.add(layer: "vision.0", VectorComparison(cosine: 0.7, relativeError: 0.3))
        #expect(acc.means.map(\.layer) == ["vision.0", "decoder.0"])
        #expect(abs(acc.means[0].cosine - 0.8) < 1e-12 && abs(acc.means[0].relativeError - 0.2) < 1e-12 && acc.means[0].samples == 2)
    }
}

@Suite struct GreedyAndAccuracyTests {
    @Test func firstDivergence() {
        #expect(GreedyComparison(reference: [1, 2, 3], quantized: [1, 2, 3]).firstDivergence == nil)
        #expect(GreedyComparison(reference: [1, 2, 3], quantized: [1, 5, 3]).firstDivergence == 1)
        #expect(GreedyComparison(reference: [1, 2, 3], quantized: [1, 2]).firstDivergence == 2)
        #expect(GreedyComparison(reference: [1], quantized: [1, 2]).firstDivergence == 1)
        #expect(GreedyComparison(reference: [], quantized: []).exactMatch)
        let s = GreedySummary([GreedyComparison(reference: [1, 2], quantized: [1, 2]), GreedyComparison(reference: [1, 2, 3, 4], quantized: [1, 2, 9])])
        #expect(s.exactMatch.value == 0.5 && s.firstDivergence?.order.median == 2)
        #expect(s.agreeingFraction.map { abs($0.mean.value - 0.75) < 1e-12 } == true)
    }

    @Test func normalisation() {
        #expect(AnswerNormalization.normalize("  The  Cat\tsat.\n") == "the cat sat")
        #expect(AnswerNormalization.normalize("Yes !?") == "yes")
        #expect(AnswerNormalization.normalize("3.5") == "3.5")
        #expect(AnswerNormalization.normalize("Ünïcode  ÉTÉ;") == "ünïcode été")
        #expect(AnswerNormalization.normalize("...") == "")
        var acc = AccuracyCounter()
        acc.add(prediction: "Paris.", answer: "paris")
        acc.add(prediction: "paris", answer: "paris")
        acc.add(prediction: "Lyon", answer: "paris")
        #expect(acc.total == 3 && acc.exact == 1 && acc.normalized == 2)
    }
}

/// Time of the token metrics at Llama 3's vocabulary; run with PLMQ_EVAL_TIMING=1 (prints only).
@Suite struct TokenMetricTiming {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PLMQ_EVAL_TIMING"] != nil))
    func llama3Vocabulary() throws {
        let vocabulary = 128_256, positions = 16
        var reference = gaussian(positions * vocabulary, seed: 11, scale: 2)
        for p in 0..<positions { reference[p * vocabulary + 17 * p] += 14 }
        let quantized = zip(reference, gaussian(reference.count, seed: 12, scale: 0.05)).map { $0 + $1 }
        let targets = (0..<positions).map { Int32(17 * $0) }
        let clock = ContinuousClock()
        var positionsOut: [ReferencePosition] = []
        let t1 = try clock.measure { positionsOut = try EvalAccumulator.referencePositions(logits: reference, targets: targets, vocabulary: vocabulary) }
        var acc = EvalAccumulator()
        let t2 = try clock.measure { try acc.add(reference: positionsOut, quantizedLogits: quantized, sample: "t") }
        print("reference positions: \(t1 / positions) per position; comparison: \(t2 / positions) per position; mean support \(positionsOut.map(\.supportCount).reduce(0, +) / positions)")
    }
}

/// A vector compared with itself has cosine exactly 1 and relative error 0, whatever its values
/// (an exact file's per-layer report must read 1, not 1 − 1 ulp); a scaled copy stays within ±1.
@Suite struct VectorComparisonTests {
    @Test func aVectorAgainstItselfIsExactlyOne() {
        for seed in 0..<200 {
            let v = gaussian(37 + seed, seed: UInt64(seed), scale: Float(1 + seed % 7) * 0.37)
            let c = v.withUnsafeBufferPointer { VectorComparison.compare(reference: $0, quantized: $0) }
            #expect(c.cosine == 1 && c.relativeError == 0, "seed \(seed): \(c.cosine)")
            let scaled = v.map { $0 * 3 }
            let s = v.withUnsafeBufferPointer { r in scaled.withUnsafeBufferPointer { VectorComparison.compare(reference: r, quantized: $0) } }
            #expect(s.cosine <= 1 && s.cosine > 1 - 1e-12, "seed \(seed): \(s.cosine)")
        }
    }
}

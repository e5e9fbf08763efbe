import Foundation
import Testing
import PLMCore
import PLMTestSupport
@testable import PLMEval

/// A report as the runner would build it: two "quantizations" of the fixture logits (small and
/// large noise), per-layer curves, features, greedy and accuracy, with two images.
func demoReport(imageFolder: TemporaryFolder) throws -> EvalReport {
    let c = try #require(EvalFixtures.tokenCases.first { $0.name == "peaked" })
    let png = try #require(FileManager.default.contents(atPath: Fixtures.root + "/cases/tiny-fp32-mha-tied/png.png"))
    imageFolder.write("cat.png", Array(png))
    let images = [imageFolder.path + "/cat.png"]
    let reference = ModelInfo(name: "fp32", path: "/models/plm-1b", sha256: String(repeating: "1", count: 64))
    var models: [ModelResult] = []
    for (name, scale, storage) in [("int8", Float(0.05), "int8 symmetric g32"), ("int4", Float(0.6), "int4 asymmetric g32 k6")] {
        let noise = gaussian(c.reference.count, seed: scale == 0.05 ? 1 : 2, scale: scale)
        let q = zip(c.reference, noise).map { $0 + $1 }
        var acc = EvalAccumulator()
        var rows: [SampleRow] = []
        let reference = try EvalAccumulator.referencePositions(logits: c.reference, targets: c.targets, vocabulary: c.vocabulary)
        for s in 0..<4 {
            let range = (s * 30)..<((s + 1) * 30)
            let m = try acc.add(reference: Array(reference[range]), quantizedLogits: Array(q[(range.lowerBound * c.vocabulary)..<(range.upperBound * c.vocabulary)]), sample: "sample-\(s)")
            let greedy = GreedyComparison(reference: [1, 2, 3, 4], quantized: s == 3 && name == "int4" ? [1, 2, 9] : [1, 2, 3, 4])
            rows.append(SampleRow(id: "sample-\(s)", images: s < 2 ? images : [], tokens: m, featureCosine: 1 - Double(scale) / 10,
                                  greedy: greedy, prediction: s == 3 && name == "int4" ? "A dog <b>." : "A cat.", answer: "a cat"))
        }
        var layers = LayerErrorAccumulator()
        for l in 0..<12 { layers.add(layer: l < 6 ? "vision.\(l)" : "decoder.\(l - 6)", VectorComparison(cosine: 1 - Double(scale) * 0.01 * Double(l + 1), relativeError: Double(scale) * 0.02 * Double(l + 1))) }
        var accuracy = AccuracyCounter()
        for r in rows { accuracy.add(prediction: r.prediction ?? "", answer: r.answer ?? "") }
        let tiles = try FeatureComparison.compare(reference: gaussian(2 * 4 * 8, seed: 4, scale: 1), quantized: gaussian(2 * 4 * 8, seed: 4, scale: 1).map { $0 * (1 + scale) },
                                                  tiles: 2, tokens: 4, hidden: 8)
        models.append(ModelResult(model: ModelInfo(name: name, path: "/models/\(name).plm", sha256: String(repeating: "2", count: 64), storage: storage),
                                  accumulator: acc, features: FeatureSummary(tiles), greedy: GreedySummary(rows.compactMap(\.greedy)),
                                  accuracy: accuracy, layers: layers.means, samples: rows, thresholds: EvalThresholds(maxMeanKLD: 0.01, minSameTop: 0.9)))
    }
    return EvalReport(plmqVersion: "0.0.0-test", reference: reference, mode: "samples",
                      dataset: JSONObject([("folder", .string("samples/")), ("hash", .string(String(repeating: "3", count: 64))), ("samples", .int(4))]),
                      settings: JSONObject([("threads", .int(2)), ("max_tiles", .int(4))]), models: models)
}

@Suite struct ReportTests {
    @Test func jsonCarriesEveryNumberAndSetting() throws {
        let folder = try TemporaryFolder("report")
        let report = try demoReport(imageFolder: folder)
        let text = report.json.serialized(pretty: true)
        let parsed = try #require(try JSONParser.parse(text).objectValue)
        #expect(parsed["settings"]?.objectValue?["threads"]?.intValue == 2)
        #expect(parsed["dataset"]?.objectValue?["hash"]?.stringValue?.count == 64)
        let models = try #require(parsed["models"]?.arrayValue)
        #expect(models.count == 2)
        let int8 = try #require(models[0].objectValue), tokens = try #require(int8["tokens"]?.objectValue)
        for key in ["ppl_q", "ppl_base", "cor_ln_ppl", "ln_ppl_ratio", "ppl_ratio", "ppl_diff", "kld_mean", "kld", "delta_p_mean", "delta_p", "delta_p_rms", "same_top_p"] {
            #expect(tokens[key] != nil, "tokens.\(key)")
        }
        for key in ["p99.9", "p99", "p95", "p90", "p10", "p5", "p1", "p0.1", "median", "min", "max"] {
            #expect(tokens["kld"]?.objectValue?[key]?.doubleValue != nil, "kld.\(key)")
        }
        #expect(tokens["kld_mean"]?.objectValue?["value"]?.doubleValue == report.models[0].tokens?.meanKLD.value)
        for key in ["features", "greedy", "accuracy", "layers", "thresholds", "samples", "kld_histogram"] { #expect(int8[key] != nil && int8[key] != .null, "\(key)") }
        #expect(parsed["passed"]?.boolValue == report.passed)
    }

    @Test func int8IsCloserThanInt4AndThresholdsDecide() throws {
        let folder = try TemporaryFolder("report")
        let report = try demoReport(imageFolder: folder)
        let int8 = try #require(report.models[0].tokens), int4 = try #require(report.models[1].tokens)
        #expect(int8.meanKLD.value < int4.meanKLD.value && int8.sameTop.value >= int4.sameTop.value)
        #expect(report.models[0].passed && !report.models[1].passed && !report.passed)
        #expect(report.models[1].thresholds.first { $0.name == "max-kl" }?.passed == false)
    }

    @Test func textTableHasAColumnPerModel() throws {
        let folder = try TemporaryFolder("report")
        let table = try demoReport(imageFolder: folder).textTable
        let lines = table.split(separator: "\n").map(String.init)
        let header = try #require(lines.first { $0.contains("int8") })
        #expect(header.contains("int4") && header.firstRange(of: "int8")?.lowerBound ?? header.endIndex < header.firstRange(of: "int4")?.lowerBound ?? header.startIndex)
        for label in ["Mean KLD", "Median KLD", "99 % KLD", "Maximum KLD", "Same top p", "RMS Δp", "ln(PPL(Q)/PPL(base))", "greedy exact match", "threshold max-kl"] {
            #expect(lines.contains { $0.hasPrefix(label) }, "\(label)")
        }
        #expect(lines.contains { $0.hasPrefix("threshold max-kl") && $0.contains("FAILED") })
    }

    @Test func htmlIsSelfContainedWithChartsAndThumbnails() throws {
        let folder = try TemporaryFolder("report")
        let html = HTMLReport.render(try demoReport(imageFolder: folder))
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.hasSuffix("</html>\n"))
        #expect(html.components(separatedBy: "<svg").count - 1 == 2)  // KL histogram, per-layer curves
        #expect(html.contains("data:image/png;base64,iVBORw0KGgo"))  // the PNG signature, base64
        #expect(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"))
        #expect(html.contains("A dog &lt;b&gt;.") && !html.contains("A dog <b>"))  // text is escaped
        // Where a page is wanted for a look (make report-check), write it.
        if let out = ProcessInfo.processInfo.environment["PLMQ_REPORT_HTML"] {
            #expect(FileManager.default.createFile(atPath: out, contents: Data(html.utf8)))
        }
    }

    @Test func histogramBins() {
        let h = KLHistogram(values: [0, -1e-9, 1e-7, 1e-6, 2e-6, 1e-3, 0.5, 100])
        #expect(h.counts.count == 30 && h.counts.reduce(0, +) == 8)
        #expect(h.counts[0] == 4)  // ≤ 1e-6
        #expect(h.counts[1] == 0 && h.counts[2] == 1)  // log10(2e-6) = −5.7: the second bin of decade −6
        #expect(h.counts[23] == 1)  // log10(0.5) = −0.3: bin 1 + ⌊5.7·4⌋
        #expect(h.counts[1 + 12] == 1)  // 1e-3: decade −3 starts at bin 1 + 3·4
        #expect(h.counts.last == 1)  // 100 > 10
    }

    @Test func shortNumbers() {
        #expect(ReportFormat.short(0.00023927437690243012) == "2.39e-4")
        #expect(ReportFormat.short(0.0099999) == "1.00e-2")
        #expect(ReportFormat.short(0.96667) == "0.967" && ReportFormat.short(0) == "0.000")
        #expect(ReportFormat.fractionName(0.999) == "99.9" && ReportFormat.fractionName(0.9) == "90" && ReportFormat.fractionName(0.001) == "0.1")
    }

    @Test func base64MatchesFoundation() {
        for n in 0..<9 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 5) }
            #expect(Base64.encode(bytes) == Data(bytes).base64EncodedString())
        }
    }
}

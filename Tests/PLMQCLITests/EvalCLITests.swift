import Foundation
import PLMCore
import PLMTestSupport
import Testing

/// `plmq eval` end to end on the fixture models and the eval samples folder.
@Suite(.serialized) struct EvalCLITests {
    static let samples = Fixtures.root + "/eval-samples"

    /// Converted once per run: int8, int4 and an all-exact file (its logits are the fp32 reference's).
    static let converted: (folder: TemporaryFolder, q8: String, q4: String, exact: String)? = {
        guard let folder = try? TemporaryFolder("cli-eval") else { return nil }
        let source = Fixtures.model("tiny-bf16-gqa-llama3")
        let q8 = folder.path + "/q8.plm", q4 = folder.path + "/q4.plm", exact = folder.path + "/exact.plm"
        guard (try? plmq("convert", source, q8, "--bits", "8", "--quiet"))?.status == 0,
              (try? plmq("convert", source, q4, "--quiet"))?.status == 0,
              (try? plmq("convert", source, exact, "--keep", ".*=exact", "--quiet"))?.status == 0 else { return nil }
        return (folder, q8, q4, exact)
    }()

    static func report(_ path: String) throws -> JSONObject {
        try #require(try JSONParser.parse(try FileSystem.readBytes(path)).objectValue)
    }

    static func meanKL(_ model: JSONValue?) -> Double? {
        model?.objectValue?["tokens"]?.objectValue?["kld_mean"]?.objectValue?["value"]?.doubleValue
    }

    @Test func int8IsCloserThanInt4AndTheReportsAreWritten() throws {
        let c = try #require(Self.converted)
        let json = c.folder.path + "/r.json", html = c.folder.path + "/r.html"
        let r = try plmq("eval", c.q8, c.q4, "--dataset", Self.samples, "--json", json, "--html", html, "--max-new-tokens", "6")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Mean KLD") && r.stdout.contains("q8.plm") && r.stdout.contains("q4.plm"))
        let models = try #require(try Self.report(json)["models"]?.arrayValue)
        #expect(models.count == 2)
        let kl8 = try #require(Self.meanKL(models[0])), kl4 = try #require(Self.meanKL(models[1]))
        #expect(kl8 > 0 && kl8 < kl4, "int8 \(kl8) vs int4 \(kl4)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(page.contains("<svg") && page.contains("data:image/png;base64,"))
    }

    /// A file holding the checkpoint's exact weights against that checkpoint: KL exactly 0, every
    /// top token the same, every greedy answer identical.
    @Test func theReferenceAgainstItselfIsExactlyZero() throws {
        let c = try #require(Self.converted)
        let json = c.folder.path + "/self.json"
        // fp32 attention and KV cache: `auto` runs a .plm's P·V in bf16 on AVX512-BF16 CPUs and
        // keeps its cache in f16, the reference neither.
        let r = try plmq("eval", c.exact, "--dataset", Self.samples, "--json", json, "--max-new-tokens", "6", "--attention", "f32",
                         "--kv-cache", "f32")
        #expect(r.status == 0, "\(r.stderr)")
        let model = try #require(try Self.report(json)["models"]?.arrayValue?.first)
        #expect(Self.meanKL(model) == 0)
        let tokens = model.objectValue?["tokens"]?.objectValue
        #expect(tokens?["same_top_p"]?.objectValue?["value"]?.doubleValue == 1)
        #expect(model.objectValue?["greedy"]?.objectValue?["exact_match"]?.objectValue?["value"]?.doubleValue == 1)
    }

    @Test func thresholdsSetTheExitStatus() throws {
        let c = try #require(Self.converted)
        var r = try plmq("eval", c.q4, "--dataset", Self.samples, "--max-kl", "1e-9", "--max-new-tokens", "4")
        #expect(r.status == 1 && r.stderr.contains("threshold"))
        r = try plmq("eval", c.q8, "--dataset", Self.samples, "--max-kl", "100", "--min-top1", "0.01", "--max-new-tokens", "4")
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// llama-perplexity's protocol on a text file.
    @Test func textModeScoresChunks() throws {
        let c = try #require(Self.converted)
        let json = c.folder.path + "/text.json"
        let r = try plmq("eval", c.q8, c.q4, "--text", Self.samples + "/corpus.txt", "--ctx", "64", "--json", json)
        #expect(r.status == 0, "\(r.stderr)")
        let report = try Self.report(json)
        #expect(report["mode"]?.stringValue == "text")
        let models = try #require(report["models"]?.arrayValue)
        #expect((Self.meanKL(models[0]) ?? 1) < (Self.meanKL(models[1]) ?? 0))
        #expect((models[0].objectValue?["tokens"]?.objectValue?["tokens"]?.intValue ?? 0) >= 31)
    }

    @Test func badSamplesAndAMovedReferenceAreClearErrors() throws {
        let c = try #require(Self.converted)
        let bad = try TemporaryFolder("cli-eval-bad")
        try FileManager.default.createDirectory(atPath: bad.path + "/images", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.samples + "/images/shapes.png", toPath: bad.path + "/images/shapes.png")
        bad.write("samples.jsonl", text: """
            {"id": "ok", "images": ["images/shapes.png"], "prompt": "What is this?"}
            {"id": "broken", "prompt": 5}
            {"id": "escape", "images": ["../secret.png"], "prompt": "Hi"}

            """)
        var r = try plmq("eval", c.q8, "--dataset", bad.path, "--max-new-tokens", "4")
        #expect(r.status == 2 && r.stderr.contains("samples.jsonl:2") && r.stderr.contains("samples.jsonl:3"))
        r = try plmq("eval", c.q8, "--dataset", bad.path, "--skip-bad", "--max-new-tokens", "4")
        #expect(r.status == 0, "\(r.stderr)")
        // The reference folder recorded at conversion is gone.
        let moved = try TemporaryFolder("cli-eval-moved")
        let source = Fixtures.model("tiny-bf16-gqa-llama3")
        for name in try FileManager.default.contentsOfDirectory(atPath: source) { try moved.copy(from: source, name) }
        let plm = moved.path + ".plm"
        defer { try? FileManager.default.removeItem(atPath: plm) }
        #expect(try plmq("convert", moved.path, plm, "--bits", "8", "--quiet").status == 0)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: moved.path + "/config.json"))
        r = try plmq("eval", plm, "--dataset", Self.samples)
        #expect(r.status == 2 && r.stderr.contains("changed since"))
        r = try plmq("eval", plm, "--dataset", Self.samples, "--reference", source, "--max-new-tokens", "4")
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// `convert --eval-dataset` records the quality certificate in the file; inspect and verify
    /// show it, and the file still verifies (the payloads are untouched).
    @Test func convertRecordsTheQualityCertificate() throws {
        let folder = try TemporaryFolder("cli-certificate")
        let out = folder.path + "/q8.plm"
        var r = try plmq("convert", Fixtures.model("tiny-bf16-gqa-llama3"), out, "--bits", "8", "--eval-dataset", Self.samples, "--quiet")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("quality: mean KL"))
        r = try plmq("verify", out)
        #expect(r.status == 0 && r.stdout.contains("quality: mean KL") && r.stdout.contains("eval-samples"))
        r = try plmq("inspect", out, "--json")
        let metadata = try #require(try JSONParser.parse(r.stdout).objectValue?["metadata"]?.objectValue)
        let quality = try #require(metadata["quality"]?.objectValue)
        #expect((quality["mean_kld"]?.doubleValue ?? -1) > 0)
        #expect(quality["dataset"]?.objectValue?["sha256"]?.stringValue?.count == 64)
        #expect(quality["reference"]?.objectValue?["sha256"]?.stringValue?.count == 64)
    }

    /// --per-layer: every vision block and decoder layer, int8 closer to fp32 than int4 at the
    /// last decoder layer; an exact file is identical at every layer.
    @Test func perLayerErrorsShowWhereTheErrorEnters() throws {
        let c = try #require(Self.converted)
        let json = c.folder.path + "/layers.json"
        let r = try plmq("eval", c.q8, c.q4, c.exact, "--dataset", Self.samples, "--per-layer", "--max-new-tokens", "4", "--json", json,
                         "--attention", "f32", "--kv-cache", "f32")
        #expect(r.status == 0, "\(r.stderr)")
        let models = try #require(try Self.report(json)["models"]?.arrayValue)
        func layers(_ i: Int) -> [(String, Double)] {
            (models[i].objectValue?["layers"]?.arrayValue ?? []).compactMap { l in
                guard let o = l.objectValue, let name = o["layer"]?.stringValue, let cos = o["cosine"]?.doubleValue else { return nil }
                return (name, cos)
            }
        }
        let q8 = layers(0), q4 = layers(1), exact = layers(2)
        #expect(q8.map(\.0) == ["vision.0", "vision.1", "vision.2", "decoder.0", "decoder.1"])
        #expect((q8.last?.1 ?? 0) > (q4.last?.1 ?? 1))
        #expect(exact.allSatisfy { $0.1 == 1 } && exact.count == q8.count)
    }

    /// --reference-cache: the first run writes the reference's results, the second reads them and
    /// gives the same token metrics and greedy agreement (features come back through f16).
    @Test func theReferenceCacheReproducesTheRun() throws {
        let c = try #require(Self.converted)
        let cache = c.folder.path + "/refcache"
        var reports: [JSONObject] = []
        for i in 0..<2 {
            let json = c.folder.path + "/cached\(i).json"
            let r = try plmq("eval", c.q8, "--dataset", Self.samples, "--reference-cache", cache, "--max-new-tokens", "4", "--json", json)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains(i == 0 ? "reference results cached in" : "reference results read from"))
            reports.append(try Self.report(json))
        }
        let first = reports[0]["models"]?.arrayValue?.first?.objectValue, second = reports[1]["models"]?.arrayValue?.first?.objectValue
        #expect(first?["tokens"] == second?["tokens"])
        #expect(first?["greedy"] == second?["greedy"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache).filter { $0.hasSuffix(".plmref") }.count == 1)
    }
}

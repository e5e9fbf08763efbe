import Foundation
import PLMCore
import PLMFormat
import PLMTestSupport
import Testing

/// `plmq convert --calibrate` and `--target-bpw` end to end on a fixture model.
@Suite(.serialized) struct CalibrationCLITests {
    static let source = Fixtures.model("tiny-bf16-gqa-llama3")
    static let corpus = Fixtures.root + "/eval-samples/corpus.txt"
    static let samples = Fixtures.root + "/eval-samples"

    static func header(_ path: String) throws -> JSONObject {
        try PLMFile(path: path).metadata
    }

    /// A text file: the record holds the file's SHA-256 and the tokens run (capped, in chunks of
    /// --calibrate-ctx), the int4 tensors differ from an uncalibrated file, and a second run
    /// writes the same bytes.
    @Test func textCalibrationIsRecordedAndDeterministic() throws {
        let dir = try TemporaryFolder("cli-calib")
        let a = dir.path + "/a.plm", b = dir.path + "/b.plm", plain = dir.path + "/plain.plm"
        for out in [a, b] {
            let r = try plmq("convert", Self.source, out, "--calibrate", Self.corpus, "--calibrate-tokens", "300", "--calibrate-ctx", "64", "--threads", "2")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("calibrate: 300 tokens in 5 chunks"), "\(r.stderr)")
        }
        #expect(try plmq("convert", Self.source, plain, "--quiet").status == 0)
        #expect(try FileSystem.readBytes(a) == FileSystem.readBytes(b))
        let record = try #require(try Self.header(a)["calibration"]?.objectValue)
        #expect(record["sha256"]?.stringValue == SHA256.hex(of: try FileSystem.readBytes(Self.corpus)))
        #expect(record["tokens"]?.intValue == 300 && record["items"]?.intValue == 5 && record["source"]?.stringValue == "corpus.txt")
        let fa = try PLMFile(path: a), fp = try PLMFile(path: plain)
        let changed = zip(fa.tensors, fp.tensors).filter { x, y in zip(x.parts, y.parts).contains { $0.record.checksum != $1.record.checksum } }
        #expect(!changed.isEmpty && changed.allSatisfy { $0.0.type.isQuantized })
        #expect(try plmq("verify", a).status == 0)
    }

    /// A samples folder runs the images through the tower, so its maps are calibrated too; the
    /// record holds the folder's dataset hash.
    @Test func samplesCalibrationCoversTheVisionTower() throws {
        let dir = try TemporaryFolder("cli-calib-samples")
        let out = dir.path + "/s.plm"
        let r = try plmq("convert", Self.source, out, "--calibrate", Self.samples, "--quiet")
        #expect(r.status == 0, "\(r.stderr)")
        let record = try #require(try Self.header(out)["calibration"]?.objectValue)
        #expect(record["kind"]?.stringValue == "samples" && record["sha256"]?.stringValue?.count == 64)
        // Every quantized tensor but the untied embedding table, which is only looked up.
        let quantized = try PLMFile(path: out).tensors.filter { $0.type.isQuantized && !$0.name.hasSuffix("embed_tokens.weight") }.count
        #expect(record["weighted_tensors"]?.intValue == quantized)
        // The same folder through eval's hash.
        let e = try plmq("eval", out, "--dataset", Self.samples, "--max-new-tokens", "2", "--json", dir.path + "/e.json")
        let report = try JSONParser.parse(try FileSystem.readBytes(dir.path + "/e.json"))
        #expect(e.status != 2 && report.objectValue?["dataset"]?.objectValue?["sha256"]?.stringValue == record["sha256"]?.stringValue)
    }

    /// --target-bpw: the achieved bits per weight are within the target and reported, the plan is
    /// recorded, a larger target raises at least as many tensors, and the same run gives the same file.
    @Test func targetBitsPerWeightIsMetAndRecorded() throws {
        let dir = try TemporaryFolder("cli-target")
        var raisedBefore = -1
        // All int4 (and the recipe's int8 embedding and head) is 6.55 bits per weight on this model.
        for (i, target) in ["6.8", "7.3", "7.3"].enumerated() {
            let out = dir.path + "/t\(i).plm"
            let r = try plmq("convert", Self.source, out, "--calibrate", Self.corpus, "--calibrate-tokens", "256", "--target-bpw", target, "--threads", "2")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("target-bpw \(target):"), "\(r.stderr)")
            let plan = try #require(try Self.header(out)["target_bpw"]?.objectValue)
            let achieved = try #require(plan["achieved"]?.doubleValue)
            #expect(achieved <= Double(target)!)
            // The whole file's weights: the bytes of every tensor part over the parameters.
            let file = try PLMFile(path: out)
            let bytes = file.tensors.reduce(0) { $0 + $1.parts.reduce(0) { $0 + $1.record.length } }
            let parameters = file.tensors.reduce(0) { $0 + $1.elementCount }
            #expect(abs(Double(8 * bytes) / Double(parameters) - achieved) < 1e-4)
            let raised = plan["raised"]?.arrayValue?.count ?? -1
            #expect(raised >= raisedBefore && raised > 0)
            raisedBefore = raised
        }
        #expect(try FileSystem.readBytes(dir.path + "/t1.plm") == FileSystem.readBytes(dir.path + "/t2.plm"))
    }

    @Test func badCalibrationOptionsExitWithUsageErrors() throws {
        let dir = try TemporaryFolder("cli-calib-bad")
        let out = dir.path + "/x.plm"
        var r = try plmq("convert", Self.source, out, "--target-bpw", "5")
        #expect(r.status == 2 && r.stderr.contains("--target-bpw needs --calibrate"))
        r = try plmq("convert", Self.source, out, "--calibrate", Self.corpus, "--target-bpw", "1")
        #expect(r.status == 2 && r.stderr.contains("smallest plan"), "\(r.stderr)")
        r = try plmq("convert", Self.source, out, "--calibrate", dir.path + "/missing.txt")
        #expect(r.status == 2 && r.stderr.contains("missing.txt"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}

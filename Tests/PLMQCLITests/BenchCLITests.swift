import PLMCore
import Foundation
import Testing
import PLMTestSupport

/// `plmq bench --prompt/--depth/--vision-tiles` on the tiny fixture model: the figures exist and
/// are positive, and bad values are usage errors. Speed itself is never asserted here.
@Suite(.serialized) struct BenchCLITests {
    static let source = Fixtures.model("tiny-bf16-gqa-llama3")

    /// A 4-bit .plm of the tiny model in a scratch folder.
    func tinyModel(_ folder: String) throws -> String {
        let plm = folder + "/tiny-q4.plm"
        let r = try plmq("convert", Self.source, plm, "--bits", "4", "--quiet")
        #expect(r.status == 0, "\(r.stderr)")
        return plm
    }

    func median(_ object: JSONValue?, _ key: String) -> Double? {
        object?.objectValue?[key]?.objectValue?["median"]?.doubleValue
    }

    @Test func targetedMeasurementsReportPositiveFigures() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let plm = try tinyModel(folder)
        let r = try plmq("bench", plm, "--prompt", "24", "--prompt", "40", "--depth", "0", "--depth", "30", "--vision-tiles", "2",
                         "--breakdown", "--runs", "1", "--threads", "1", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONParser.parse(r.stdout)
        let root = try #require(json.objectValue)
        #expect(root["runs"]?.intValue == 1)
        let prompts = try #require(root["prompt"]?.arrayValue)
        #expect(prompts.map { $0.objectValue?["tokens"]?.intValue } == [24, 40])
        for p in prompts {
            #expect((median(p, "tokens_per_s") ?? 0) > 0)
            #expect((median(p, "seconds") ?? 0) > 0)
            #expect((median(p, "matmul_seconds") ?? 0) > 0)
            #expect(p.objectValue?["other_seconds"]?.doubleValue != nil)
        }
        let depths = try #require(root["depth"]?.arrayValue)
        #expect(depths.map { $0.objectValue?["depth"]?.intValue } == [0, 30])
        for d in depths {
            #expect(d.objectValue?["tokens"]?.intValue == 64)
            #expect((median(d, "tokens_per_s") ?? 0) > 0)
        }
        let vision = try #require(root["vision"]?.arrayValue?.first)
        #expect(vision.objectValue?["tiles"]?.intValue == 2)
        let seconds = try #require(median(vision, "seconds")), perTile = try #require(median(vision, "seconds_per_tile"))
        #expect(seconds > 0 && perTile > 0)
        #expect(abs(perTile * 2 - seconds) <= 1e-9 * seconds + 1e-12)
        // Only the asked measurements run: none of the default sections.
        #expect(root["gemv"] == nil && root["end_to_end"] == nil && root["bandwidth_gbs"] == nil)
    }

    @Test func badValuesAreUsageErrors() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let plm = try tinyModel(folder)
        let context = 11520  // max_position_embeddings of the tiny fixture's config.json
        let cases: [([String], String)] = [
            (["--prompt", "0"], "--prompt 0"),
            (["--vision-tiles", "0"], "--vision-tiles 0"),
            (["--vision-tiles", "100000"], "--vision-tiles 100000"),
            (["--prompt", "\(context + 1)"], "max_position_embeddings"),
            (["--depth", "\(context - 63)"], "max_position_embeddings"),
            (["--prompt", "8", "--kernels-only"], "--kernels-only"),
            (["--breakdown"], "--breakdown"),
        ]
        for (arguments, message) in cases {
            let r = try plmq(arguments: ["bench", plm, "--runs", "1", "--threads", "1"] + arguments)
            #expect(r.status == 2, "\(arguments): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(arguments): \(r.stderr)")
            #expect(r.stdout.isEmpty, "\(arguments)")
        }
    }
}

import Foundation
import PLMQ
import PLMTestSupport
import Testing
@testable import plmq_fuzz

/// The fuzz targets in the ordinary test run: every input a fuzzer once crashed, hung or ran out
/// of memory on (committed under Tests/Fixtures/fuzz/TARGET/, each named after what it found) must
/// now go through its target without a crash, and the generated seeds must too.
@Suite struct FuzzRegressionTests {
    static let folder = Fixtures.root + "/fuzz"

    static var findings: [String] {
        let targets = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return targets.sorted().flatMap { target in
            ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/" + target)) ?? []).sorted().map { target + "/" + $0 }
        }
    }

    /// Each finding's folder is a target's name.
    @Test func everyFindingBelongsToATarget() {
        let targets = (try? FileManager.default.contentsOfDirectory(atPath: Self.folder)) ?? []
        for target in targets { #expect(FuzzTargets.named(target) != nil, "Tests/Fixtures/fuzz/\(target) is not a fuzz target") }
    }

    @Test(arguments: findings)
    func findingNoLongerCrashes(_ finding: String) throws {
        let target = try #require(FuzzTargets.named(String(finding.split(separator: "/")[0])))
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.folder + "/" + finding)))
        bytes.withUnsafeBytes { target.run($0) }
    }

    /// The two `.plm` findings give the reader's bounds errors (they trapped on an overflowing
    /// `offset + length`, in the preamble and in a part).
    @Test func overflowingPLMRangesAreBoundsErrors() throws {
        for (name, expected) in [("preamble-header-offset-plus-length-overflows", "header"), ("part-offset-plus-length-overflows", "part")] {
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.folder + "/plm/" + name + ".plm")))
            FuzzTargets.fixHeaderChecksum(&bytes)
            do {
                _ = try bytes.withUnsafeBytes { raw in try PLMFile(file: MappedFile(copying: raw, path: name)) }
                Issue.record("\(name) was accepted")
            } catch let error as PLMError {
                switch error {
                case .headerOutOfBounds: #expect(expected == "header", "\(name): \(error)")
                case .partOutOfBounds: #expect(expected == "part", "\(name): \(error)")
                default: Issue.record("\(name): unexpected \(error)")
                }
            }
        }
    }

    /// The seeds `make fuzz` starts from are written, and every target runs its own.
    @Test func generatedSeedsRunThroughTheirTargets() throws {
        let scratch = try TemporaryFolder("fuzz-seeds")
        #expect(Seeds.write(into: scratch.path, fixtures: Fixtures.root))
        var ran = 0
        for target in FuzzTargets.all {
            let dir = scratch.path + "/" + target.name
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
                bytes.withUnsafeBytes { target.run($0) }
                ran += 1
            }
        }
        #expect(ran >= 10)
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/plm/seed-tiny-g-nocls-int4.plm"))
    }
}

import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMConvert
import PLMFormat
import PLMQuant

/// Statistics for every matrix of a fixture, skewed like real activations (deterministic; the
/// engine's own statistics are tested in PLMModelTests and through the CLI).
func syntheticImportance(_ variant: String, constant: Float? = nil) throws -> ColumnImportance {
    let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model(variant)), options: ConversionOptions())
    var stats: [String: [Float]] = [:]
    for (i, t) in plan.tensors.enumerated() where t.shape.count >= 2 {
        stats[t.name] = (0..<t.layout.columns).map { j in
            constant ?? Float(1 + ((j * 7919 + i * 104_729) % 23)) * ((j + i) % 17 == 0 ? 50 : 1)
        }
    }
    return ColumnImportance(meanSquares: stats, kind: "text", source: "synthetic.txt", sha256: String(repeating: "ab", count: 32), tokens: 1234, items: 3)
}

/// SHA-256 over "tensor:part:checksum" lines (the header's 16 hex digits) in file order: the stored tensors, without the
/// header's paths and producer.
func partsDigest(_ path: String) throws -> String {
    let file = try PLMFile(path: path)
    let lines = file.tensors.flatMap { t in t.parts.map { "\(t.name):\($0.name):\(XXH64.hex($0.record.checksum))\n" } }.joined()
    return SHA256.hex(of: Array(lines.utf8))
}

@Suite(.serialized) struct CalibrationConversionTests {
    /// Without --calibrate, the tensors are main's bytes: digests of files written by plmq at
    /// 757fcef (before calibration existed) for the same options, by
    /// `plmq convert tiny-bf16-gqa-llama3 OUT [options]` and the digest above (the same lines).
    @Test func uncalibratedTensorsAreTheConverterBeforeCalibration() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, (inout ConversionOptions) throws -> Void, String)] = [
            ("int4", { _ in }, "4bc3c274047bca5418bb3ac758e883c65ef504fddbf5819cbd0aec0bc7029d7f"),
            ("int8", { $0.bits = 8 }, "523bc54351ba0a7b0499ece6b1c86ce79f0e5fd3d2b8422015890fd6667a5b54"),
            // --symmetric --group-size 64 --keep mlp=int4-asym-f16 --keep embed=int8-asym
            ("mixed", { o in
                o.scheme = .symmetric
                o.groupSize = 64
                o.keep = [try KeepRule.parse("mlp=int4-asym-f16", defaultGroupSize: 64), try KeepRule.parse("embed=int8-asym", defaultGroupSize: 64)]
            }, "e0b4b77ed77d5d823bea4d919ee18759e68dab3eafe98c942a20480682e240b8"),
        ]
        for (name, configure, digest) in cases {
            let out = dir + "/\(name).plm"
            _ = try convert("tiny-bf16-gqa-llama3", to: out) { o in try? configure(&o) }
            #expect(try partsDigest(out) == digest, "\(name)")
            #expect(try PLMFile(path: out).metadata["calibration"] == nil)
        }
    }

    /// Same statistics → the same bytes (on 1 and 3 threads); the record names the input; the
    /// int4 tensors change; statistics that weigh every column alike change nothing.
    @Test func calibratedConversionIsDeterministicAndRecorded() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let variant = "tiny-bf16-gqa-llama3"
        let importance = try syntheticImportance(variant)
        _ = try convert(variant, to: dir + "/a.plm") { $0.calibration = importance; $0.threads = 1 }
        _ = try convert(variant, to: dir + "/b.plm") { $0.calibration = importance; $0.threads = 3 }
        _ = try convert(variant, to: dir + "/plain.plm")
        _ = try convert(variant, to: dir + "/ones.plm") { $0.calibration = try? syntheticImportance(variant, constant: 0.5) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/a.plm")) == Data(contentsOf: URL(fileURLWithPath: dir + "/b.plm")))
        let a = try PLMFile(path: dir + "/a.plm"), plain = try PLMFile(path: dir + "/plain.plm"), ones = try PLMFile(path: dir + "/ones.plm")
        let record = try #require(a.metadata["calibration"]?.objectValue)
        #expect(record["sha256"]?.stringValue == importance.sha256)
        #expect(record["tokens"]?.intValue == 1234 && record["kind"]?.stringValue == "text" && record["source"]?.stringValue == "synthetic.txt")
        #expect(record["weighted_tensors"]?.intValue == plain.tensors.filter { $0.type.isQuantized }.count)
        var changed = 0
        for ((t, p), o) in zip(zip(a.tensors, plain.tensors), ones.tensors) {
            let same = zip(t.parts, p.parts).allSatisfy { $0.record.checksum == $1.record.checksum }
            if !same { changed += 1; #expect(t.type.isQuantized, "\(t.name)") }
            #expect(zip(o.parts, p.parts).allSatisfy { $0.record.checksum == $1.record.checksum }, "\(o.name): constant importance changed it")
        }
        #expect(changed > 0)
    }

    @Test func statisticsOfAnotherWidthAreAnError() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let name = "model.language_model.layers.0.mlp.down_proj.weight"
        var stats = try syntheticImportance("tiny-bf16-gqa-llama3").meanSquares
        stats[name] = [1, 2, 3]
        let bad = ColumnImportance(meanSquares: stats, kind: "text", source: "x", sha256: "", tokens: 1, items: 1)
        #expect {
            _ = try convert("tiny-bf16-gqa-llama3", to: dir + "/x.plm") { $0.calibration = bad }
        } throws: { e in
            guard case .calibration(let d) = e as? ConversionError else { return false }
            return d.contains(name) && d.contains("3")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.plm"))
    }
}

@Suite(.serialized) struct BitAllocationTests {
    static let variant = "tiny-bf16-gqa-llama3"

    func measurement() throws -> BitAllocation.Measurement {
        var options = ConversionOptions()
        options.threads = 2
        options.calibration = try syntheticImportance(Self.variant)
        return try BitAllocation.measure(folder: CheckpointFolder(path: Fixtures.model(Self.variant)), options: options)
    }

    /// Over the whole range of targets: achieved ≤ target, more bits never raise fewer tensors nor
    /// predict more error, and the file written holds exactly the planned bytes and types.
    @Test func achievedBitsStayWithinTheTargetAndGrowWithIt() throws {
        let m = try measurement()
        #expect(!m.candidates.isEmpty && m.unmeasured.isEmpty)
        #expect(m.candidates.allSatisfy { $0.highError < $0.lowError && $0.highBytes > $0.lowBytes })
        let low = Double(8 * (m.fixedBytes + m.candidates.reduce(0) { $0 + $1.lowBytes })) / Double(m.parameters)
        let high = Double(8 * (m.fixedBytes + m.candidates.reduce(0) { $0 + $1.highBytes })) / Double(m.parameters)
        var previous: BitAllocation?
        for step in 0...8 {
            let target = low + (high - low) * Double(step) / 8
            let a = try BitAllocation.choose(target: target, measurement: m)
            #expect(a.bitsPerWeight <= target + 1e-12)
            if let p = previous {
                #expect(a.raised.count >= p.raised.count && Set(p.raised).isSubset(of: Set(a.raised)))
                #expect(a.predictedError <= p.predictedError)
            }
            previous = a
        }
        #expect(previous?.raised.count == m.candidates.count)  // the all-int8 budget raises everything
        #expect(try BitAllocation.choose(target: low, measurement: m).raised.isEmpty)
        // The first tensor raised removes the most error per byte.
        let ratios = m.candidates.map { ($0.lowError - $0.highError) / Double($0.highBytes - $0.lowBytes) }
        let first = try BitAllocation.choose(target: (low + high) / 2, measurement: m).raised.first
        #expect(first == m.candidates[ratios.firstIndex(of: ratios.max()!)!].name)
    }

    @Test func theFileHoldsThePlan() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try measurement()
        // Halfway between all-int4 and all-int8, at the four decimals the metadata keeps.
        let low = Double(8 * (m.fixedBytes + m.candidates.reduce(0) { $0 + $1.lowBytes })) / Double(m.parameters)
        let high = Double(8 * (m.fixedBytes + m.candidates.reduce(0) { $0 + $1.highBytes })) / Double(m.parameters)
        let target = ((low + high) / 2 * 10_000).rounded() / 10_000
        let a = try BitAllocation.choose(target: target, measurement: m)
        #expect(!a.raised.isEmpty && a.raised.count < m.candidates.count)
        var options = ConversionOptions()
        options.threads = 2
        options.calibration = try syntheticImportance(Self.variant)
        let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model(Self.variant)), options: options, allocation: a)
        let summary = try Converter(plan: plan, producer: "plmq test").run(output: dir + "/t.plm", dryRun: false)
        #expect(abs(summary.bitsPerWeight - a.bitsPerWeight) < 1e-12 && summary.bitsPerWeight <= target)
        let file = try PLMFile(path: dir + "/t.plm")
        for t in file.tensors where m.candidates.contains(where: { $0.name == t.name }) {
            #expect((t.type == .int8(.symmetric, groupSize: 32)) == a.raised.contains(t.name), "\(t.name)")
        }
        let record = try #require(file.metadata["target_bpw"]?.objectValue)
        #expect(record["raised"]?.arrayValue?.compactMap(\.stringValue) == a.raised)
        #expect(record["target"]?.doubleValue == target)
        // Measuring again gives the same numbers, so the same plan.
        #expect(try measurement().candidates == m.candidates)
    }

    @Test func impossibleTargetsAndMissingCalibrationAreErrors() throws {
        let m = try measurement()
        #expect(throws: ConversionError.self) { _ = try BitAllocation.choose(target: 1.0, measurement: m) }
        #expect(throws: ConversionError.self) { _ = try BitAllocation.choose(target: .nan, measurement: m) }
        #expect(throws: ConversionError.self) {
            _ = try BitAllocation.measure(folder: CheckpointFolder(path: Fixtures.model(Self.variant)), options: ConversionOptions())
        }
    }
}

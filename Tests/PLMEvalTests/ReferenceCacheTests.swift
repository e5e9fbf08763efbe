import Foundation
import Testing
import PLMCore
import PLMTestSupport
@testable import PLMEval

@Suite struct ReferenceCacheTests {
    let key = ReferenceCacheKey(referenceSHA256: String(repeating: "ab", count: 32), datasetHash: String(repeating: "cd", count: 32),
                                settings: ["max_tiles": "4", "max_new_tokens": "16"])

    func records() throws -> [ReferenceRecord] {
        let cases = EvalFixtures.tokenCases
        return try cases.map { c in
            let positions = try EvalAccumulator.referencePositions(logits: c.reference, targets: c.targets, vocabulary: c.vocabulary)
            return ReferenceRecord(sampleID: c.name, positions: positions, greedyTokens: Array(c.targets.prefix(3)), greedyText: "answer of \(c.name)",
                                   features: c.name == "small" ? FeatureBlock(tiles: 2, tokens: 3, hidden: 4, values: gaussian(24, seed: 3, scale: 1)) : nil)
        }
    }

    @Test func roundTripGivesIdenticalMetrics() throws {
        let folder = try TemporaryFolder("refcache")
        let original = try records()
        // Each case has its own vocabulary, so each goes to its own cache (a cache has one vocabulary).
        for (record, c) in zip(original, EvalFixtures.tokenCases) {
            let k = ReferenceCacheKey(referenceSHA256: key.referenceSHA256, datasetHash: key.datasetHash, settings: ["case": c.name])
            let writer = try ReferenceCacheWriter(folder: folder.path, key: k, vocabulary: c.vocabulary)
            try writer.append(record)
            let size = try writer.commit()
            let cache = try ReferenceCache(folder: folder.path, key: k)
            #expect(cache.sampleIDs == [c.name] && cache.vocabulary == c.vocabulary)
            #expect(FileManager.default.fileExists(atPath: k.path(in: folder.path)))
            #expect(((try? FileManager.default.attributesOfItem(atPath: k.path(in: folder.path))[.size] as? Int) ?? 0) == size)
            let back = try #require(try cache.record(for: c.name))
            #expect(back.positions == record.positions && back.greedyTokens == record.greedyTokens && back.greedyText == record.greedyText)
            if let f = record.features {
                // f16 storage: within half an f16 step.
                let g = try #require(back.features)
                #expect(g.tiles == f.tiles && zip(g.values, f.values).allSatisfy { abs($0 - $1) <= abs($1) * 0x1p-11 })
            } else {
                #expect(back.features == nil)
            }
            // Metrics from the cache equal metrics from the logits, bit for bit.
            var direct = EvalAccumulator(), cached = EvalAccumulator()
            try direct.add(referenceLogits: c.reference, quantizedLogits: c.quantized, targets: c.targets, vocabulary: c.vocabulary, sample: c.name)
            try cached.add(reference: back.positions, quantizedLogits: c.quantized, sample: c.name)
            #expect(direct.summary() == cached.summary())
            #expect(try cache.record(for: "nope") == nil)
        }
    }

    @Test func missingCacheAndKeyMismatch() throws {
        let folder = try TemporaryFolder("refcache-key")
        #expect(throws: ReferenceCacheError.notFound(path: key.path(in: folder.path))) { try ReferenceCache(folder: folder.path, key: key) }
        let writer = try ReferenceCacheWriter(folder: folder.path, key: key, vocabulary: 11)
        try writer.append(try records()[0])
        try writer.commit()
        // Another dataset's key names another file: a cache miss, not a wrong answer.
        let otherDataset = ReferenceCacheKey(referenceSHA256: key.referenceSHA256, datasetHash: "ee", settings: key.settings)
        #expect(otherDataset.path(in: folder.path) != key.path(in: folder.path))
        #expect(throws: ReferenceCacheError.notFound(path: otherDataset.path(in: folder.path))) { try ReferenceCache(folder: folder.path, key: otherDataset) }
        // A file opened for the wrong key says which part differs.
        let path = key.path(in: folder.path)
        #expect(throws: ReferenceCacheError.keyMismatch(path: path, field: "dataset (hash)", expected: "ee", found: key.datasetHash)) {
            try ReferenceCache(path: path, expecting: otherDataset)
        }
        let otherReference = ReferenceCacheKey(referenceSHA256: "ff", datasetHash: key.datasetHash, settings: key.settings)
        #expect(throws: ReferenceCacheError.keyMismatch(path: path, field: "reference (SHA-256)", expected: "ff", found: key.referenceSHA256)) {
            try ReferenceCache(path: path, expecting: otherReference)
        }
        let otherSettings = ReferenceCacheKey(referenceSHA256: key.referenceSHA256, datasetHash: key.datasetHash, settings: ["max_tiles": "36"])
        do {
            _ = try ReferenceCache(path: path, expecting: otherSettings)
            Issue.record("opened a cache made with other settings")
        } catch {
            guard case .keyMismatch(_, let field, _, _) = error else { Issue.record("\(error)"); return }
            #expect(field == "settings")
        }
    }

    @Test func damageIsDetected() throws {
        let folder = try TemporaryFolder("refcache-damage")
        let writer = try ReferenceCacheWriter(folder: folder.path, key: key, vocabulary: 11)
        try writer.append(try records()[0])
        try writer.commit()
        let path = key.path(in: folder.path)
        let good = try #require(FileManager.default.contents(atPath: path))
        func open(_ bytes: Data) -> ReferenceCacheError? {
            _ = FileManager.default.createFile(atPath: path, contents: bytes)
            do { _ = try ReferenceCache(path: path, expecting: key); return nil } catch { return error }
        }
        var flipped = good
        flipped[100] ^= 0x40  // a payload byte
        guard case .damaged(_, let reason)? = open(flipped) else { Issue.record("payload damage not found"); return }
        #expect(reason.contains("SHA-256"))
        guard case .damaged? = open(good.prefix(good.count - 3)) else { Issue.record("truncation not found"); return }
        guard case .damaged? = open(Data(repeating: 0, count: 80)) else { Issue.record("zeros not found"); return }
        #expect(open(good) == nil)
    }

    @Test func writerRefusesDuplicatesAndOtherVocabularies() throws {
        let folder = try TemporaryFolder("refcache-dup")
        let writer = try ReferenceCacheWriter(folder: folder.path, key: key, vocabulary: 11)
        let r = try records()
        try writer.append(r[0])
        #expect(throws: ReferenceCacheError.duplicateSample("small")) { try writer.append(r[0]) }
        do {
            try writer.append(r[1])  // vocabulary 50
            Issue.record("accepted another vocabulary")
        } catch {
            guard case .invalidRecord = error else { Issue.record("\(error)"); return }
        }
        writer.abandon()
        #expect(!FileManager.default.fileExists(atPath: key.path(in: folder.path)))
    }
}

import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint

/// Truncations and single-bit flips of a small safetensors file: each is a typed error or a file
/// whose tensors read without a crash (safetensors has no checksums, so a flipped data bit is a
/// changed value, not an error).
@Suite struct SafetensorsSweepTests {
    static func small(_ path: String) throws -> DamageableFile {
        let records = [
            TensorRecord(name: "w", shape: [2, 3], floats: [1, -2, 3, -4, 5, -6]),
            TensorRecord(name: "ids", shape: [4], int64s: [1, 2, 3, 4]),
            TensorRecord(name: "h", dtype: .bf16, shape: [3], bytes: [0x80, 0x3F, 0x00, 0x40, 0x40, 0x40]),
            TensorRecord(name: "e", shape: [0], floats: []),
        ]
        try SafetensorsWriter.write(records, metadata: ["format": "pt"], to: path)
        return try DamageableFile(path: path, bytes: Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    func open(_ path: String) -> Result<SafetensorsFile, CheckpointError> {
        do { return .success(try SafetensorsFile(path: path)) } catch { return .failure(error) }
    }

    /// Reads every tensor the way the converter and the engine do.
    func exercise(_ file: SafetensorsFile) {
        for info in file.tensors {
            let view = file.view(info)
            _ = try? view.floats()
            _ = try? view.integers()
        }
    }

    @Test func everyTruncationIsAnError() throws {
        let folder = try TemporaryFolder("st-sweep")
        let file = try Self.small(folder.path + "/cut.safetensors")
        file.forEachLength(Array(0..<file.original.count)) { length in
            guard case .failure(let e) = open(file.path) else { Issue.record("cut at \(length) opened"); return }
            #expect(e.description.contains(file.path), "cut at \(length): \(e)")
        }
        guard case .success(let intact) = open(file.path) else { Issue.record("the restored file does not open"); return }
        #expect(intact.tensors.count == 4)
    }

    /// Every bit of the length prefix and the JSON header, and every bit of the data.
    @Test func everyBitFlipIsAnErrorOrReadsCleanly() throws {
        let folder = try TemporaryFolder("st-sweep")
        let file = try Self.small(folder.path + "/flip.safetensors")
        guard case .success(let intact) = open(file.path) else { Issue.record("does not open"); return }
        var rejected = 0
        for offset in 0..<file.original.count {
            for bit in 0..<8 {
                file.withFlip(offset, bit: bit) {
                    switch open(file.path) {
                    case .success(let f):
                        #expect(offset >= 8, "a flipped length prefix (byte \(offset)) was accepted")
                        exercise(f)
                    case .failure(let e):
                        rejected += 1
                        #expect(offset < intact.dataOffset, "data byte \(offset) rejected: \(e)")
                        #expect(e.description.contains(file.path))
                    }
                }
            }
        }
        #expect(rejected > 0)
    }
}

import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
import PLMFormat
@testable import PLMModel

/// The payload checksum policy at load: a damaged tensor is an error naming the file, tensor and
/// part by default; with `verifyPayloads: false` the model loads and computes on the damaged
/// values without ever reading out of bounds.
@Suite struct PayloadVerificationTests {
    static let options = EngineOptions(threads: 2)
    static let unchecked = EngineOptions(threads: 2, verifyPayloads: false)

    /// A private copy of the converted int4 fixture (the shared one must stay intact).
    func damageableCopy(_ folder: TemporaryFolder) async throws -> (DamageableFile, PLMFile) {
        let source = try await ConvertedModels.shared.path("tiny-g-nocls", bits: 4)
        let path = folder.path + "/m.plm"
        let file = try DamageableFile(path: path, bytes: Array(try Data(contentsOf: URL(fileURLWithPath: source))))
        return (file, try PLMFile(path: path))
    }

    func inputs() throws -> ([Int], PixelTiles?) {
        try caseInputs(SafetensorsFile(path: Fixtures.testCase("tiny-g-nocls", "tile1")))
    }

    func loadError(_ path: String, _ options: EngineOptions) -> EngineError? {
        do { _ = try PerceptionLM.load(path, options: options); return nil } catch { return error }
    }

    /// One seeded bit in every part of every tensor: each load names exactly that part.
    @Test func everyDamagedPartIsNamedAtLoad() async throws {
        let folder = try TemporaryFolder("payload")
        let (file, intact) = try await damageableCopy(folder)
        #expect(loadError(file.path, Self.options) == nil)
        var random = SeededBits(seed: 1414)
        var checked = 0
        for t in intact.tensors {
            for p in t.parts where p.record.length > 0 {
                let offset = p.record.offset + random.below(p.record.length)
                file.withFlip(offset, bit: random.below(8)) {
                    guard case .plm(.checksumMismatch(let f, let item, let part, _, _)) = loadError(file.path, Self.options) else {
                        Issue.record("a flip in '\(t.name)' part '\(p.name)' loaded"); return
                    }
                    #expect(f == file.path && item == t.name && part == p.name)
                    checked += 1
                }
            }
        }
        #expect(checked == intact.tensors.reduce(0) { $0 + $1.parts.filter { $0.record.length > 0 }.count })
    }

    /// With the check off, the worst payload bytes (every byte 0xFF, or 0x00, in a quantized
    /// tensor's levels, scales and mins, and in an exact tensor) load and run a vision tile and
    /// text: payload bytes are only ever values (k6 indices decode to 0…63), never offsets.
    @Test func theOptOutLoadsDamagedPayloadsWithoutOutOfBoundsAccess() async throws {
        let folder = try TemporaryFolder("payload")
        let (file, intact) = try await damageableCopy(folder)
        let (ids, images) = try inputs()
        let clean = try PerceptionLM.load(file.path, options: Self.options).forward(inputIds: ids, images: images, lastPositions: 1).logits
        let targets = intact.tensors.filter {
            $0.name.hasSuffix("layers.0.mlp.down_proj.weight") || $0.name.hasSuffix("embed_tokens.weight")
                || $0.name.contains("vision") && $0.name.hasSuffix("fc1.weight") || $0.name.hasSuffix("input_layernorm.weight")
        }
        #expect(Set(targets.map { $0.type.isQuantized }).count == 2, "needs quantized and exact tensors: \(targets.map(\.name))")
        for t in targets {
            for fill: UInt8 in [0xFF, 0x00] {
                for p in t.parts { file.set(p.record.offset, [UInt8](repeating: fill, count: p.record.length)) }
                defer { for p in t.parts { file.set(p.record.offset, Array(file.original[p.record.offset..<(p.record.offset + p.record.length)])) } }
                guard case .plm(.checksumMismatch(_, let item, _, _, _)) = loadError(file.path, Self.options) else {
                    Issue.record("'\(t.name)' filled with \(fill) loaded with verification on"); continue
                }
                #expect(item == t.name)
                let model = try PerceptionLM.load(file.path, options: Self.unchecked)
                let logits = try model.forward(inputIds: ids, images: images, lastPositions: 1).logits
                #expect(logits.count == clean.count)
                if fill == 0xFF { #expect(logits != clean, "damaging '\(t.name)' changed nothing: the test would not see it") }
            }
        }
        // Restored: verifies and computes the clean answer again.
        #expect(try PerceptionLM.load(file.path, options: Self.options).forward(inputIds: ids, images: images, lastPositions: 1).logits == clean)
    }

    /// A damaged side file is an error whatever the option: side files are always checked.
    @Test func aDamagedSideFileIsAlwaysAnError() async throws {
        let folder = try TemporaryFolder("payload")
        let (file, intact) = try await damageableCopy(folder)
        let config = try #require(intact.files.first { $0.name == "config.json" })
        file.withFlip(config.record.offset + config.record.length / 2, bit: 3) {
            do throws(EngineError) {
                _ = try ModelBundle.open(file.path)
                Issue.record("a damaged config.json opened")
            } catch {
                guard case .plm(.checksumMismatch(_, let item, _, _, _)) = error else { Issue.record("\(error)"); return }
                #expect(item == "config.json")
            }
        }
    }
}

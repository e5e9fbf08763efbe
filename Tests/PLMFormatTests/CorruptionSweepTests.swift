import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMFormat
import PLMQuant

/// The smallest `.plm` that has every kind of region: a zstd side file, an f16 tensor (whose
/// 30 bytes leave padding after it), an int4 k6 tensor and an int8 tensor with scales.
func writeSmallPLM(_ path: String) throws -> [UInt8] {
    let writer = try PLMWriter(path: path)
    try writer.addFile(name: "config.json", contents: Array(String(repeating: "{\"model_type\":\"perception_lm\"}", count: 4).utf8))
    let tensors: [(String, [Int], StorageType)] = [
        ("a.weight", [3, 5], .f16), ("b.weight", [4, 64], .int4(.asymmetric, groupSize: 32, scales: .k6)),
        ("c.weight", [2, 40], .int8(.symmetric, groupSize: 32)),
    ]
    for (name, shape, type) in tensors {
        var parts: [(name: String, record: PartRecord)] = []
        for (i, part) in StorageLayout(shape: shape, type: type).parts.enumerated() {
            let bytes = (0..<part.bytes).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ i &* 11 &+ 1) }
            parts.append((part.name, try bytes.withUnsafeBytes { try writer.writePart($0) }))
        }
        writer.addTensor(name: name, shape: shape, type: type, parts: parts)
    }
    try writer.finish(metadata: JSONObject([("plmq_version", .string("sweep"))]))
    return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func openPLM(_ path: String) -> Result<PLMFile, PLMError> {
    do { return .success(try PLMFile(path: path)) } catch { return .failure(error) }
}

/// Everything a reader can be asked of an opened file; a damaged file may fail any of it with a
/// typed error, but must not crash.
func exercise(_ file: PLMFile) {
    _ = try? file.verify()
    _ = try? file.verifyTensorPayloads(threads: 2)
    for f in file.files { _ = try? file.sideFile(f.name) }
    for t in file.tensors { for p in t.parts { _ = try? file.bytes(t, part: p.name).withBytes { $0.count } } }
}

@Suite struct CorruptionSweepTests {
    static let folder: String = (try? scratch()) ?? NSTemporaryDirectory()

    @Test func everyTruncationIsAnError() throws {
        let path = Self.folder + "/cut.plm"
        let file = try DamageableFile(path: path, bytes: try writeSmallPLM(path))
        file.forEachLength(Array(0..<file.original.count)) { length in
            guard case .failure(let e) = openPLM(path) else { Issue.record("cut at \(length) opened"); return }
            #expect(e.description.hasPrefix(path), "cut at \(length): \(e)")
        }
        guard case .success(let intact) = openPLM(path) else { Issue.record("the restored file does not open"); return }
        try intact.verify()
    }

    /// Every bit of the preamble: the magic, version, flags, header position and checksum are
    /// checked at open; the reserved bytes by verify. Only the minor version is free to change
    /// (a reader accepts newer minors of its major version).
    @Test func everyPreambleBitIsCaught() throws {
        let path = Self.folder + "/preamble.plm"
        let file = try DamageableFile(path: path, bytes: try writeSmallPLM(path))
        for offset in 0..<PLMSpec.preambleSize {
            for bit in 0..<8 {
                file.withFlip(offset, bit: bit) {
                    let opened = openPLM(path)
                    switch (offset, opened) {
                    case (0..<8, .failure(.badMagic)), (32..<40, .failure(.headerChecksum)): break
                    case (10..<12, .success(let f)): #expect(throws: Never.self) { try f.verify() }
                    case (40..<64, .success(let f)):
                        let error = #expect(throws: PLMError.self) { try f.verify() }
                        guard case .nonZeroFiller(_, let at, _) = error else { Issue.record("byte \(offset): \(String(describing: error))"); return }
                        #expect(at == offset)
                    case (8..<10, .failure), (12..<32, .failure): break
                    default: Issue.record("preamble byte \(offset) bit \(bit): \(opened)")
                    }
                }
            }
        }
    }

    /// Every bit of the header, as stored: the header checksum catches each one.
    @Test func everyHeaderBitIsCaughtByTheChecksum() throws {
        let path = Self.folder + "/header.plm"
        let file = try DamageableFile(path: path, bytes: try writeSmallPLM(path))
        guard case .success(let intact) = openPLM(path) else { Issue.record("does not open"); return }
        for offset in intact.headerOffset..<file.original.count {
            for bit in 0..<8 {
                file.withFlip(offset, bit: bit) {
                    guard case .failure(.headerChecksum) = openPLM(path) else { Issue.record("header byte \(offset) bit \(bit) not caught"); return }
                }
            }
        }
    }

    /// Every bit of the header again, now with the checksum recomputed, so the JSON parser and
    /// the directory checks see every one-bit damage of a valid header: each is an error or a
    /// file that every reader call handles.
    @Test func everyHeaderBitWithAFixedChecksumIsHandled() throws {
        let path = Self.folder + "/fixed.plm"
        let file = try DamageableFile(path: path, bytes: try writeSmallPLM(path))
        guard case .success(let intact) = openPLM(path) else { Issue.record("does not open"); return }
        let start = intact.headerOffset
        var header = Array(file.original[start...])
        var opened = 0, rejected = 0
        for index in header.indices {
            for bit in 0..<8 {
                header[index] ^= UInt8(1 << bit)
                file.set(start + index, header[index])
                file.set(0, PLMWriter.preamble(headerOffset: start, header: header))
                switch openPLM(path) {
                case .success(let f): opened += 1; exercise(f)
                case .failure(let e): rejected += 1; #expect(e.description.hasPrefix(path))
                }
                header[index] ^= UInt8(1 << bit)
                file.set(start + index, header[index])
            }
        }
        file.set(0, Array(file.original[0..<PLMSpec.preambleSize]))
        #expect(rejected > opened, "\(rejected) flips rejected, \(opened) opened")
    }

    /// Every bit of the payload area: the file still opens (payloads are not read at open), and
    /// verify names the damaged part, or the padding byte; the load-time check names tensor parts
    /// and ignores padding (which no tensor reads).
    @Test func everyPayloadAndPaddingBitIsCaughtByVerify() throws {
        let path = Self.folder + "/payload.plm"
        let file = try DamageableFile(path: path, bytes: try writeSmallPLM(path))
        guard case .success(let intact) = openPLM(path) else { Issue.record("does not open"); return }
        var owner: [Int: (item: String, part: String, isTensor: Bool)] = [:]
        for f in intact.files { for o in f.record.offset..<(f.record.offset + f.record.length) { owner[o] = (f.name, "contents", false) } }
        for t in intact.tensors {
            for p in t.parts { for o in p.record.offset..<(p.record.offset + p.record.length) { owner[o] = (t.name, p.name, true) } }
        }
        #expect(owner.count < intact.headerOffset - PLMSpec.preambleSize, "the sample file must have padding")
        for offset in PLMSpec.preambleSize..<intact.headerOffset {
            for bit in 0..<8 {
                file.withFlip(offset, bit: bit) {
                    guard case .success(let f) = openPLM(path) else { Issue.record("payload byte \(offset) broke the structure"); return }
                    let expected = owner[offset]
                    do throws(PLMError) {
                        try f.verify()
                        Issue.record("verify missed byte \(offset) bit \(bit)")
                    } catch .checksumMismatch(_, let item, let part, _, _) {
                        #expect(expected?.item == item && expected?.part == part, "byte \(offset)")
                    } catch .nonZeroFiller(_, let at, _) {
                        #expect(expected == nil && at == offset)
                    } catch {
                        Issue.record("byte \(offset): \(error)")
                    }
                    do throws(PLMError) {
                        try f.verifyTensorPayloads(threads: 2)
                        #expect(expected?.isTensor != true, "load check missed byte \(offset)")
                    } catch .checksumMismatch(_, let item, let part, _, _) {
                        #expect(expected?.isTensor == true && expected?.item == item && expected?.part == part)
                    } catch {
                        Issue.record("byte \(offset): \(error)")
                    }
                    if expected?.isTensor == false {
                        #expect(throws: PLMError.self) { try f.sideFile("config.json") }
                    }
                }
            }
        }
    }

    /// The same sweeps over a real converted model, sampled: truncations every 61 bytes and at
    /// every length of the preamble and header, and a seeded bit in every part.
    @Test func convertedModelSweep() throws {
        let path = Self.folder + "/converted.plm"
        _ = try convert("tiny-g-nocls", to: path) { $0.bits = 4 }
        let file = try DamageableFile(path: path, bytes: Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        guard case .success(let intact) = openPLM(path) else { Issue.record("does not open"); return }
        let lengths = Array(stride(from: 0, to: file.original.count, by: 61)) + Array(0..<PLMSpec.preambleSize)
            + Array(intact.headerOffset..<file.original.count)
        file.forEachLength(lengths) { length in
            guard case .failure = openPLM(path) else { Issue.record("cut at \(length) opened"); return }
        }
        var random = SeededBits(seed: 14)
        for t in intact.tensors {
            for p in t.parts where p.record.length > 0 {
                let offset = p.record.offset + random.below(p.record.length)
                file.withFlip(offset, bit: random.below(8)) {
                    guard case .success(let f) = openPLM(path) else { Issue.record("payload flip broke the structure"); return }
                    let error = #expect(throws: PLMError.self) { try f.verifyTensorPayloads(threads: 2) }
                    guard case .checksumMismatch(_, let item, let part, _, _) = error else { Issue.record("\(t.name): \(String(describing: error))"); return }
                    #expect(item == t.name && part == p.name)
                }
            }
        }
    }
}

import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMConvert
@testable import PLMFormat
import PLMQuant

/// Hostile headers: offsets and lengths near 2^64, claimed sizes, wrongly typed values and the
/// reader's limits. Each must be a named error, never a trap, an allocation or a default.
@Suite(.serialized) struct PLMLimitTests {
    static let dir = NSTemporaryDirectory() + "plmq-format-limits-" + UUID().uuidString

    /// A good file (compressed, so side files are zstd frames), converted once.
    static func good() throws -> String {
        let path = dir + "/good.plm"
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = try convert("tiny-fp32-mha-tied", to: path) { $0.compress = true }
        }
        return path
    }

    static func write(_ bytes: [UInt8]) throws -> String {
        let path = dir + "/bad-\(UUID().uuidString).plm"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The good file (or `base`) with its header edited as JSON (and a matching preamble and checksum).
    static func rewritten(base: String? = nil, _ edit: (inout JSONObject) throws -> Void) throws -> String {
        let base = try base ?? good()
        let bytes = try plmBytes(rewritingHeaderOf: base, edit)
        return try write(bytes)
    }

    /// Edits the first entry of "tensors" (or "files").
    static func editEntry(_ key: String, in header: inout JSONObject, _ edit: (inout JSONObject) -> Void) throws {
        var list = try #require(header[key]?.arrayValue)
        var entry = try #require(list[0].objectValue)
        edit(&entry)
        list[0] = .object(entry)
        header[key] = .array(list)
    }

    /// Edits the "data" part of the first tensor.
    static func editDataPart(in header: inout JSONObject, _ edit: @escaping (inout JSONObject) -> Void) throws {
        try editEntry("tensors", in: &header) { t in
            var parts = t["parts"]!.objectValue!
            var data = parts["data"]!.objectValue!
            edit(&data)
            parts["data"] = .object(data)
            t["parts"] = .object(parts)
        }
    }

    static func openError(_ path: String) -> PLMError? {
        do { _ = try PLMFile(path: path); return nil } catch { return error }
    }

    @Test func preambleHeaderOffsetAndLengthNear2To64AreErrors() throws {
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.good())))
        let size = UInt64(good.count)
        let file = try PLMFile(path: Self.good())
        let length = UInt64(file.headerLength)
        // Offsets whose sum with the length wraps around 2^64 (to 5, to 0) or does not fit an Int.
        let offsets: [UInt64] = [UInt64.max, UInt64.max - 63, 0 &- length &+ 5, 0 &- length, 1 << 63, UInt64(Int.max), size]
        for offset in offsets {
            var bytes = good
            withUnsafeBytes(of: offset.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
            let path = try Self.write(bytes)
            guard case .headerOutOfBounds(let f, _)? = Self.openError(path) else { Issue.record("offset \(offset): \(String(describing: Self.openError(path)))"); continue }
            #expect(f == path)
        }
        for badLength in [UInt64.max, UInt64.max - size + 1, UInt64(256 << 20) + 1] {
            var bytes = good
            withUnsafeBytes(of: badLength.littleEndian) { bytes.replaceSubrange(24..<32, with: $0) }
            guard case .headerOutOfBounds? = Self.openError(try Self.write(bytes)) else { Issue.record("length \(badLength)"); continue }
        }
    }

    @Test func partOffsetPlusLengthOverflowIsAnError() throws {
        for (offset, length) in [(9_223_372_036_854_775_744, 64), (64, 9_223_372_036_854_775_807), (9_223_372_036_854_775_744, 9_223_372_036_854_775_807)] {
            let path = try Self.rewritten { h in try Self.editDataPart(in: &h) { $0["offset"] = .int(offset); $0["length"] = .int(length) } }
            guard case .partOutOfBounds(let f, _, let part, _)? = Self.openError(path) else {
                Issue.record("offset \(offset) length \(length): \(String(describing: Self.openError(path)))"); continue
            }
            #expect(f == path && part == "data")
        }
        // A side file's offset too.
        let path = try Self.rewritten { h in try Self.editEntry("files", in: &h) { $0["offset"] = .int(9_223_372_036_854_775_744) } }
        guard case .partOutOfBounds(_, let item, _, _)? = Self.openError(path) else { Issue.record("side file offset accepted"); return }
        #expect(item == "config.json")
    }

    @Test func wronglyTypedHeaderValuesAreErrors() throws {
        let edits: [(String, (inout JSONObject) throws -> Void)] = [
            ("compression 5", { h in try Self.editEntry("files", in: &h) { $0["compression"] = .int(5) } }),
            ("compression in a tensor part", { h in try Self.editDataPart(in: &h) { $0["compression"] = .bool(true) } }),
            ("tensors {}", { h in h["tensors"] = .object(JSONObject()) }),
            ("tensors absent", { h in h["tensors"] = nil }),
            ("files {}", { h in h["files"] = .object(JSONObject()) }),
            ("metadata 3", { h in h["metadata"] = .int(3) }),
            ("storage 4", { h in try Self.editEntry("tensors", in: &h) { $0["storage"] = .int(4) } }),
            ("shape [\"2\"]", { h in try Self.editEntry("tensors", in: &h) { $0["shape"] = .array([.string("2")]) } }),
            ("shape [2.5]", { h in try Self.editEntry("tensors", in: &h) { $0["shape"] = .array([.number("2.5")]) } }),
        ]
        for (label, edit) in edits {
            let path = try Self.rewritten(edit)
            let e = try #require(Self.openError(path), "\(label) was accepted")
            #expect(e.description.hasPrefix(path), "\(label): \(e)")
        }
        // Quantized tensors: scale_format and group_size of the wrong type.
        let quantized = Self.dir + "/q4.plm"
        _ = try convert("tiny-fp32-mha-tied", to: quantized)
        for (key, value) in [("scale_format", JSONValue.int(6)), ("group_size", .string("32")), ("scheme", .bool(true))] {
            let file = try PLMFile(path: quantized)
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: quantized)))
            var header = try #require(try JSONParser.parse(Array(bytes[file.headerOffset...])).objectValue)
            var list = try #require(header["tensors"]?.arrayValue)
            let i = try #require(list.firstIndex { $0.objectValue?["storage"]?.stringValue == "int4" })
            var entry = list[i].objectValue!
            entry[key] = value
            list[i] = .object(entry)
            header["tensors"] = .array(list)
            let headerBytes = Array(JSONValue.object(header).serialized().utf8)
            bytes.removeSubrange(file.headerOffset...)
            bytes.append(contentsOf: headerBytes)
            bytes.replaceSubrange(0..<64, with: PLMWriter.preamble(headerOffset: file.headerOffset, header: headerBytes))
            let path = try Self.write(bytes)
            guard case .tensorInvalid(_, _, let detail)? = Self.openError(path) else { Issue.record("\(key): \(String(describing: Self.openError(path)))"); continue }
            #expect(detail.contains(key), "\(key): \(detail)")
        }
    }

    @Test func limitsOnCountsNamesRankAndElements() throws {
        let longName = String(repeating: "n", count: PLMSpec.maxNameBytes + 1)
        let cases: [(String, String, (inout JSONObject) throws -> Void)] = [
            ("name", "names are 1 to 4096 bytes", { h in try Self.editEntry("tensors", in: &h) { $0["name"] = .string(longName) } }),
            ("empty name", "names are 1 to 4096 bytes", { h in try Self.editEntry("files", in: &h) { $0["name"] = .string("") } }),
            ("rank", "exceed the limit of 8", { h in try Self.editEntry("tensors", in: &h) { $0["shape"] = .array(Array(repeating: .int(1), count: 9)) } }),
            ("elements", "more than 2^48 elements", { h in try Self.editEntry("tensors", in: &h) { $0["shape"] = .array([.int(1 << 25), .int(1 << 24)]) } }),
            ("zero hides huge", "more than 2^48 elements", { h in try Self.editEntry("tensors", in: &h) { $0["shape"] = .array([.int(0), .int(1 << 40), .int(1 << 40)]) } }),
            ("files", "exceed the limit of 1024", { h in
                let one = try #require(h["files"]?.arrayValue?.first)
                h["files"] = .array(Array(repeating: one, count: PLMSpec.maxFiles + 1))
            }),
        ]
        for (label, text, edit) in cases {
            let e = try #require(Self.openError(try Self.rewritten(edit)), "\(label) was accepted")
            #expect(e.description.contains(text), "\(label): \(e)")
        }
    }

    @Test func hugeClaimedZstdSizesAreRefusedBeforeAllocating() throws {
        // In the header: a side file claiming 2^40 bytes (more than its frame can hold, and over
        // the side-file limit), and a tensor part claiming 2^62.
        let side = try Self.rewritten { h in try Self.editEntry("files", in: &h) { $0["size"] = .int(1 << 40) } }
        guard case .partOutOfBounds(_, "config.json", _, let detail)? = Self.openError(side) else { Issue.record("side file size accepted"); return }
        #expect(detail.contains("claims"))
        // A 40,000-byte side file (stored uncompressed: random bytes) relabelled as a zstd frame
        // of 1 GiB + 1 bytes: a frame that long could hold it, so the side-file limit decides.
        let base = Self.dir + "/big-side-file.plm"
        let writer = try PLMWriter(path: base)
        try writer.addFile(name: "blob.bin", contents: gaussian(10_000, seed: 1, scale: 1).flatMap { withUnsafeBytes(of: $0, Array.init) })
        _ = try writer.finish(metadata: JSONObject())
        let sideLimit = try Self.rewritten(base: base) { h in
            try Self.editEntry("files", in: &h) { $0["compression"] = .string("zstd"); $0["size"] = .int(PLMSpec.maxSideFileSize + 1) }
        }
        guard case .partOutOfBounds(_, "blob.bin", _, let limitDetail)? = Self.openError(sideLimit) else {
            Issue.record("side file over 1 GiB accepted: \(String(describing: Self.openError(sideLimit)))"); return
        }
        #expect(limitDetail.contains("limit for a side file"), "\(limitDetail)")
        let tensor = try Self.rewritten { h in try Self.editDataPart(in: &h) { $0["compression"] = .string("zstd"); $0["size"] = .int(1 << 62) } }
        guard case .partOutOfBounds? = Self.openError(tensor) else { Issue.record("tensor size accepted"); return }

        // A size the frame could hold but does not record: an error from the frame header, at use.
        let mismatch = try Self.rewritten { h in
            try Self.editEntry("files", in: &h) { $0["size"] = .int(($0["size"]?.intValue ?? 0) + 1) }
        }
        let file = try PLMFile(path: mismatch)
        do {
            _ = try file.sideFile("config.json")
            Issue.record("a frame of the wrong size decompressed")
        } catch {
            guard case .decompression(_, "config.json", _, let d) = error else { Issue.record("got \(error)"); return }
            #expect(d.contains("frame records"))
        }

        // Zstd itself: the claim is checked against the frame length, the frame's own content
        // size and the caller's cap before any buffer exists (2^50 bytes would abort the process).
        let packed = try #require(Zstd.compress(Array(repeating: UInt8(7), count: 1000), level: 3))
        for (size, cap, text) in [(1 << 50, Int.max, "more than"), (999, Int.max, "frame records"), (1000, 999, "limit")] {
            do {
                _ = try packed.withUnsafeBytes { try Zstd.decompress($0, size: size, maxSize: cap) }
                Issue.record("size \(size) accepted")
            } catch {
                #expect("\(error)".contains(text), "\(size): \(error)")
            }
        }
        #expect(try packed.withUnsafeBytes { try Zstd.decompress($0, size: 1000) } == Array(repeating: 7, count: 1000))
        #expect(throws: ZstdError.self) { try [UInt8](repeating: 0x28, count: 16).withUnsafeBytes { try Zstd.decompress($0, size: 8) } }
    }
}

import Foundation
import Testing
import PLMCore
import PLMTestSupport
@testable import PLMEval

/// A samples folder with two images, a frames folder and a video file.
func samplesFolder(_ lines: [String]) throws -> TemporaryFolder {
    let folder = try TemporaryFolder("samples")
    let png: [UInt8] = ImageSignature.png + [0, 0, 0, 13] + Array("IHDR".utf8) + [UInt8](repeating: 1, count: 17)
    let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 2, count: 30)
    try FileManager.default.createDirectory(atPath: folder.path + "/img", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: folder.path + "/clip", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: folder.path + "/empty", withIntermediateDirectories: true)
    folder.write("img/a.png", png)
    folder.write("img/b.jpg", jpeg)
    folder.write("img/fake.png", Array("not an image".utf8))
    folder.write("clip/0002.png", png)
    folder.write("clip/0001.jpg", jpeg)
    folder.write("clip/notes.txt", Array("ignored".utf8))
    folder.write("movie.mp4", [0, 0, 0, 24] + Array("ftypmp42".utf8))
    try FileManager.default.createSymbolicLink(atPath: folder.path + "/img/escape.png", withDestinationPath: "/etc/hostname")
    folder.write("samples.jsonl", text: lines.joined(separator: "\n") + "\n")
    return folder
}

@Suite struct SampleSetTests {
    @Test func goodSamples() throws {
        let folder = try samplesFolder([
            #"{"id": "text", "prompt": "What is 2+2?", "answer": "4", "extra": {"ignored": true}}"#,
            #"{"id": "two-images", "images": ["img/a.png", "img/b.jpg"], "prompt": "Compare.", "system": "Be brief."}"#,
            "",
            #"{"id": "chat", "images": ["img/b.jpg", "img/a.png"], "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "image"}]}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and this?"}]}]}"#,
            #"{"id": "frames", "video": "clip", "prompt": "What happens?"}"#,
            "{\"id\": \"file-video\", \"video\": \"movie.mp4\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"video\"}, {\"type\": \"text\", \"text\": \"Describe.\"}]}]}\r",
        ])
        let set = try SampleSet(folder: folder.path)
        #expect(set.problems.isEmpty, "\(set.problems)")
        try set.requireClean()
        #expect(set.samples.map(\.id) == ["text", "two-images", "chat", "frames", "file-video"])
        #expect(set.samples.map(\.line) == [1, 2, 4, 5, 6])
        let text = set.samples[0]
        #expect(text.isTextOnly && text.answer == "4" && text.messages == [SampleMessage(role: .user, parts: [.text("What is 2+2?")])])
        #expect(set.samples[1].messages == [SampleMessage(role: .system, parts: [.text("Be brief.")]),
                                           SampleMessage(role: .user, parts: [.image(index: 0), .image(index: 1), .text("Compare.")])])
        let chat = set.samples[2]
        #expect(chat.messages.count == 4 && chat.messages[1].parts == [.text("first"), .image(index: 0)] && chat.messages[3].parts[0] == .image(index: 1))
        #expect(set.samples[3].video == .frames(folder: "clip", frames: ["clip/0001.jpg", "clip/0002.png"]))
        #expect(set.samples[3].messages[0].parts == [.video, .text("What happens?")])
        #expect(set.samples[4].video == .file("movie.mp4"))
        #expect(set.path(of: "img/a.png") == folder.path + "/img/a.png")
    }

    func problems(_ lines: [String]) throws -> [SampleLineError] {
        let folder = try samplesFolder(lines + [#"{"id": "fine", "prompt": "x"}"#])
        return try withExtendedLifetime(folder) { try SampleSet(folder: folder.path).problems }
    }

    func problem(_ line: String) throws -> SampleProblem? {
        let p = try problems([line])
        #expect(p.count == 1 && p.first?.line == 1)
        return p.first?.problem
    }

    @Test func everyLineProblemIsNamed() throws {
        let cases: [(String, SampleProblem)] = [
            (#"{"id": "a", "prompt": "x""#, .invalidJSON(column: 26, reason: "unterminated object")),
            (#"["id"]"#, .notAnObject(found: "array")),
            (#"{"prompt": "x"}"#, .missingField("id")),
            (#"{"id": 3, "prompt": "x"}"#, .wrongType(field: "id", expected: "a string", found: "number")),
            (#"{"id": "", "prompt": "x"}"#, .emptyID),
            (#"{"id": "a", "id": "b", "prompt": "x"}"#, .invalidJSON(column: 13, reason: "duplicate key \"id\"")),
            (#"{"id": "a", "prompt": "x", "messages": []}"#, .promptAndMessages),
            (#"{"id": "a"}"#, .noPrompt),
            (#"{"id": "a", "prompt": ""}"#, .emptyPrompt),
            (#"{"id": "a", "system": "s", "messages": [{"role": "user", "content": "x"}]}"#, .systemWithMessages),
            (#"{"id": "a", "images": ["img/a.png"], "video": "clip", "prompt": "x"}"#, .imagesAndVideo),
            (#"{"id": "a", "images": "img/a.png", "prompt": "x"}"#, .wrongType(field: "images", expected: "an array of paths", found: "string")),
            (#"{"id": "a", "images": ["/etc/passwd"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "/etc/passwd", .absolute)),
            (#"{"id": "a", "images": ["img/../img/a.png"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "img/../img/a.png", .badComponent(".."))),
            (#"{"id": "a", "images": ["img//a.png"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "img//a.png", .badComponent(""))),
            (#"{"id": "a", "images": [""], "prompt": "x"}"#, .badPath(field: "images[0]", path: "", .empty)),
            (#"{"id": "a", "images": ["img/escape.png"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "img/escape.png", .outsideFolder)),
            (#"{"id": "a", "images": ["img/missing.png"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "img/missing.png", .missing)),
            (#"{"id": "a", "images": ["img"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "img", .notAFile)),
            (#"{"id": "a", "images": ["img/fake.png"], "prompt": "x"}"#, .badPath(field: "images[0]", path: "img/fake.png", .notPNGOrJPEG)),
            (#"{"id": "a", "video": "empty", "prompt": "x"}"#, .badPath(field: "video", path: "empty", .noFrames)),
            (#"{"id": "a", "messages": {"role": "user"}}"#, .wrongType(field: "messages", expected: "an array of messages", found: "object")),
            (#"{"id": "a", "messages": []}"#, .noMessages),
            (#"{"id": "a", "messages": [{"role": "bot", "content": "x"}]}"#, .unknownRole(field: "messages[0].role", role: "bot")),
            (#"{"id": "a", "messages": [{"role": "user"}]}"#, .missingField("messages[0].content")),
            (#"{"id": "a", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}"#, .unknownPartType(field: "messages[0].content[0].type", type: "audio")),
            (#"{"id": "a", "messages": [{"role": "user", "content": [{"type": "text"}]}]}"#, .missingField("messages[0].content[0].text")),
            (#"{"id": "a", "images": ["img/a.png"], "messages": [{"role": "user", "content": [{"type": "image", "url": "x.png"}]}]}"#, .partWithSource(field: "messages[0].content[0]", key: "url")),
            (#"{"id": "a", "images": ["img/a.png"], "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "image"}]}, {"role": "user", "content": "y"}]}"#, .mediaOutsideUserMessage(field: "messages[1].content[0]")),
            (#"{"id": "a", "messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, {"role": "user", "content": "y"}]}"#, .systemNotFirst(field: "messages[1]")),
            (#"{"id": "a", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}"#, .lastMessageNotUser(role: "assistant")),
            (#"{"id": "a", "images": ["img/a.png", "img/b.jpg"], "messages": [{"role": "user", "content": [{"type": "image"}]}]}"#, .imageCountMismatch(markers: 1, images: 2)),
            (#"{"id": "a", "messages": [{"role": "user", "content": [{"type": "video"}]}]}"#, .videoMarkerMismatch(markers: 1, hasVideo: false)),
            (#"{"id": "a", "prompt": "x", "answer": ""}"#, .emptyAnswer),
            (#"{"id": "a", "prompt": "x", "answer": 4}"#, .wrongType(field: "answer", expected: "a string", found: "number")),
        ]
        for (line, expected) in cases {
            #expect(try problem(line) == expected, "\(line)")
        }
    }

    @Test func limitsAndDuplicates() throws {
        let longID = String(repeating: "x", count: SampleLimits.idBytes + 1)
        #expect(try problem(#"{"id": "\#(longID)", "prompt": "x"}"#) == .idTooLong(bytes: SampleLimits.idBytes + 1, limit: SampleLimits.idBytes))
        let many = "[" + Array(repeating: "\"img/a.png\"", count: SampleLimits.imagesPerSample + 1).joined(separator: ",") + "]"
        #expect(try problem(#"{"id": "a", "images": \#(many), "prompt": "x"}"#) == .tooMany(field: "images", count: SampleLimits.imagesPerSample + 1, limit: SampleLimits.imagesPerSample))
        let huge = #"{"id": "a", "prompt": ""# + String(repeating: "y", count: SampleLimits.lineBytes) + #""}"#
        #expect(try problem(huge) == .lineTooLong(bytes: huge.utf8.count, limit: SampleLimits.lineBytes))
        let dup = try problems([#"{"id": "a", "prompt": "x"}"#, #"{"id": "b", "prompt": "x"}"#, #"{"id": "a", "prompt": "y"}"#])
        #expect(dup == [SampleLineError(line: 3, id: "a", problem: .duplicateID("a", firstLine: 1))])
    }

    @Test func badLinesAreReportedWithLineNumbersAndTheRestIsKept() throws {
        let folder = try samplesFolder([#"{"id": "a", "prompt": "x"}"#, "not json", #"{"id": "b", "prompt": "x"}"#, #"{"id": "c"}"#])
        let set = try SampleSet(folder: folder.path)
        #expect(set.samples.map(\.id) == ["a", "b"])
        #expect(set.problems.map(\.line) == [2, 4] && set.problems[1].id == "c")
        #expect(set.problems[1].description == "samples.jsonl:4 (c): prompt: missing (give prompt or messages)")
        #expect(throws: SampleSetError.badLines(set.problems)) { try set.requireClean() }
    }

    @Test func folderProblems() throws {
        #expect(throws: SampleSetError.folderMissing("/nonexistent/plmq")) { try SampleSet(folder: "/nonexistent/plmq") }
        let empty = try TemporaryFolder("samples-none")
        #expect(throws: SampleSetError.samplesFileMissing(empty.path + "/samples.jsonl")) { try SampleSet(folder: empty.path) }
        empty.write("samples.jsonl", text: "\n\n")
        #expect(throws: SampleSetError.noSamples(path: empty.path + "/samples.jsonl")) { try SampleSet(folder: empty.path) }
        empty.write("samples.jsonl", text: String(repeating: "\n", count: SampleLimits.lines + 1))
        #expect(throws: SampleSetError.tooManyLines(path: empty.path + "/samples.jsonl", limit: SampleLimits.lines)) { try SampleSet(folder: empty.path) }
    }

    @Test func oversizedSamplesFileIsRefusedBeforeReading() throws {
        let folder = try TemporaryFolder("samples-big")
        let path = folder.write("samples.jsonl", text: "")
        // A sparse file: its size is over the limit without using the disk.
        #expect(truncate(path, off_t(SampleLimits.fileBytes + 1)) == 0)
        #expect(throws: SampleSetError.samplesFileTooLarge(path: path, bytes: SampleLimits.fileBytes + 1, limit: SampleLimits.fileBytes)) {
            try SampleSet(folder: folder.path)
        }
    }

    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: []) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let h = SHA256Hasher()
        h.update("a")
        h.update(Array("bc".utf8))
        #expect(h.finalizeHex() == SHA256.hex(of: Array("abc".utf8)))
    }

    @Test func datasetHashCoversTheFileAndEveryReferencedFile() throws {
        let folder = try samplesFolder([#"{"id": "i", "images": ["img/a.png", "img/a.png"], "prompt": "x"}"#, #"{"id": "v", "video": "clip", "prompt": "y"}"#])
        let h1 = try SampleSet(folder: folder.path).datasetHash()
        #expect(h1.count == 64)
        #expect(try SampleSet(folder: folder.path).datasetHash() == h1)
        // The independent definition: SHA-256 of the framed files in first-use order, each once.
        var stream = Array("plmq-samples-v1\n".utf8)
        for name in ["samples.jsonl", "img/a.png", "clip/0001.jpg", "clip/0002.png"] {
            let bytes = try #require(FileManager.default.contents(atPath: folder.path + "/" + name))
            stream += DatasetHashing.littleEndian64(name.utf8.count) + Array(name.utf8) + DatasetHashing.littleEndian64(bytes.count) + Array(bytes)
        }
        #expect(h1 == SHA256.hex(of: stream))
        // Changing a frame changes the hash; an unreferenced file does not.
        folder.write("img/b.jpg", [0xFF, 0xD8, 0xFF, 9])
        #expect(try SampleSet(folder: folder.path).datasetHash() == h1)
        folder.write("clip/0002.png", ImageSignature.png + [9])
        #expect(try SampleSet(folder: folder.path).datasetHash() != h1)
    }
}

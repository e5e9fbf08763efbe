import PLMCore
import Foundation
import Testing
import PLMTestSupport

/// `plmq tokenize` against the committed transformers fixtures (templates/template_parity.json).
@Suite(.serialized) struct TokenizeCLITests {
    static let model = Fixtures.model("tiny-fp32-mha-tied")

    func plmCase(_ conversation: String, generation: Bool = true) throws -> JSONValue {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/templates/template_parity.json"))
        let json = try JSONParser.parse(Array(bytes))
        let cases = json.objectValue?["templates"]?.objectValue?["plm"]?.objectValue?["cases"]?.arrayValue ?? []
        return try #require(cases.first {
            $0.objectValue?["conversation"]?.stringValue == conversation && $0.objectValue?["add_generation_prompt"]?.boolValue == generation
        })
    }

    func ids(_ r: RunResult) -> [Int] {
        r.stdout.split(whereSeparator: { $0 == "," || $0 == "\n" }).compactMap { Int($0) }
    }

    @Test func chatWithSystemAndImageGivesTheProcessorsIds() throws {
        let expected = try plmCase("system-user-image")
        let tiles = try #require(expected.objectValue?["image_tiles"]?.arrayValue?.first?.intValue)
        let r = try plmq("tokenize", Self.model, "--chat", "--system", "  You are terse.\n", "--image-tiles", String(tiles), "What is this?", "--ids-only")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(ids(r) == expected.objectValue?["expanded_ids"]?.arrayValue?.compactMap(\.intValue))
    }

    @Test func chatWithoutGenerationPromptAndDefaultSystem() throws {
        let expected = try plmCase("user-text", generation: false)
        let r = try plmq("tokenize", Self.model, "--chat", "--no-generation-prompt", "Describe the bar plot in the image.", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONParser.parse(r.stdout)
        #expect(json.objectValue?["prompt"]?.stringValue == expected.objectValue?["rendered"]?.stringValue)
        #expect(json.objectValue?["ids"]?.arrayValue?.compactMap(\.intValue) == expected.objectValue?["ids"]?.arrayValue?.compactMap(\.intValue))
        let tokens = json.objectValue?["tokens"]?.arrayValue ?? []
        #expect(tokens.first?.objectValue?["special"]?.boolValue == true)
        #expect(tokens.first?.objectValue?["text"]?.stringValue == "<|begin_of_text|>")
    }

    @Test func listingMarksSpecialTokensAndFoldsRuns() throws {
        let r = try plmq("tokenize", Self.model, "--chat", "--image-tiles", "3", "Hi")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("[<|begin_of_text|>]"))
        #expect(r.stdout.contains("[<|image|>]  ×12"))  // 3 tiles × (56/14/2)² tokens
        #expect(r.stdout.contains("\"Hi\"") || r.stdout.contains("\"H\""))
    }

    @Test func decodeRoundTripsAndWorksOnAPlmFile() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let plm = folder + "/m.plm"
        let c = try plmq("convert", Self.model, plm, "--bits", "8", "--quiet")
        #expect(c.status == 0, "\(c.stderr)")
        let fromFolder = try plmq("tokenize", Self.model, "Hello, world! ünïcödé", "--ids-only")
        let fromPLM = try plmq("tokenize", plm, "Hello, world! ünïcödé", "--ids-only")
        #expect(fromFolder.status == 0 && fromPLM.status == 0)
        #expect(ids(fromFolder) == ids(fromPLM) && !ids(fromPLM).isEmpty)
        let decoded = try plmq("tokenize", plm, "--decode", ids(fromPLM).map(String.init).joined(separator: ","))
        #expect(decoded.status == 0)
        #expect(decoded.stdout == "<|begin_of_text|>Hello, world! ünïcödé\n")
    }

    @Test func badInputExitsWithStatusTwo() throws {
        let badId = try plmq("tokenize", Self.model, "--decode", "1,x")
        #expect(badId.status == 2 && badId.stderr.contains("\"x\" is not a token id"))
        let unknown = try plmq("tokenize", Self.model, "--decode", "999999")
        #expect(unknown.status == 2 && unknown.stderr.contains("999999"))
        let nothing = try plmq("tokenize", Self.model)
        #expect(nothing.status == 2)
        let mismatch = try plmq("tokenize", Self.model, "no placeholder here", "--image-tiles", "2")
        #expect(mismatch.status == 2 && mismatch.stderr.contains("image placeholder"))
        let missing = try plmq("tokenize", "/nonexistent/model", "x")
        #expect(missing.status == 2)
    }

    @Test func benchReportsLoadAndEncode() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let text = folder + "/t.txt"
        try String(repeating: "The quick brown fox, 12345 — ünïcödé.\n", count: 200).write(toFile: text, atomically: true, encoding: .utf8)
        let r = try plmq("tokenize", Self.model, "--bench", text, "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONParser.parse(r.stdout)
        #expect(json.objectValue?["text_bytes"]?.intValue == (try Data(contentsOf: URL(fileURLWithPath: text))).count)
        #expect((json.objectValue?["ids"]?.intValue ?? 0) > 0)
    }
}

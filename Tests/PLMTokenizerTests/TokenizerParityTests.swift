import PLMCore
import Testing
@testable import PLMTokenizer

/// Ids and decoded text equal the Python `tokenizers` library on the committed corpus
/// (Tests/Fixtures/make_tokenizer_fixtures.py).
@Suite struct TokenizerParityTests {
    static let names = ["fixture", "llama3-plm", "gpt2-style", "mixed-steps"]

    /// Loaded once: the Llama 3 file takes seconds in a debug build.
    static let loaded: [String: Result<(Tokenizer, [String], [JSONValue]), FixtureError>] = {
        var out: [String: Result<(Tokenizer, [String], [JSONValue]), FixtureError>] = [:]
        for name in names {
            do { out[name] = .success(try readFixture(name)) } catch { out[name] = .failure(FixtureError(message: "\(error)")) }
        }
        return out
    }()

    static func load(_ name: String) throws -> (Tokenizer, corpus: [String], cases: [JSONValue]) {
        guard let r = loaded[name] else { throw FixtureError(message: "unknown fixture \(name)") }
        return try r.get()
    }

    static func readFixture(_ name: String) throws -> (Tokenizer, [String], [JSONValue]) {
        let parity = try Fixtures.json("tokenizers/tokenizer_parity.json")
        let corpus = (parity["corpus"]?.arrayValue ?? []).compactMap { $0.stringValue }
        guard let entry = parity["tokenizers"]?[name], let file = entry["file"]?.stringValue, let cases = entry["cases"]?.arrayValue else {
            throw FixtureError(message: "no fixture entry for \(name)")
        }
        #expect(cases.count == corpus.count)
        return (try Fixtures.tokenizer(file), corpus, cases)
    }

    @Test(arguments: names)
    func idsEqualTokenizersLibrary(name: String) throws {
        let (tokenizer, corpus, cases) = try Self.load(name)
        for (text, c) in zip(corpus, cases) {
            #expect(tokenizer.encode(text, addSpecialTokens: true) == c["ids"]?.intArray, "\(name): \(quoted(text))")
            #expect(tokenizer.encode(text, addSpecialTokens: false) == c["ids_plain"]?.intArray, "\(name): \(quoted(text))")
        }
    }

    @Test(arguments: names)
    func decodeEqualsTokenizersLibrary(name: String) throws {
        let (tokenizer, corpus, cases) = try Self.load(name)
        for (text, c) in zip(corpus, cases) {
            let ids = c["ids"]?.intArray ?? []
            #expect(try tokenizer.decode(ids, skipSpecialTokens: false) == c["decoded"]?.stringValue, "\(name): \(quoted(text))")
            #expect(try tokenizer.decode(ids, skipSpecialTokens: true) == c["decoded_skip_special"]?.stringValue, "\(name): \(quoted(text))")
            // Single tokens often hold part of a UTF-8 sequence: repaired to U+FFFD as Rust does.
            let each = (c["decoded_each"]?.arrayValue ?? []).compactMap { $0.stringValue }
            let plain = c["ids_plain"]?.intArray ?? []
            #expect(try plain.map { try tokenizer.decode([$0]) } == each, "\(name): \(quoted(text))")
        }
    }

    @Test(arguments: names)
    func streamingDecodeNeverSplitsCharactersAndLosesNothing(name: String) throws {
        let (tokenizer, corpus, cases) = try Self.load(name)
        for (text, c) in zip(corpus, cases) {
            let ids = c["ids_plain"]?.intArray ?? []
            var stream = StreamingDecoder(tokenizer: tokenizer)
            var chunks: [String] = []
            for id in ids { chunks.append(try stream.append(id)) }
            chunks.append(stream.finish())
            let whole = try tokenizer.decode(ids)
            #expect(chunks.joined() == whole, "\(name): \(quoted(text))")
            // A chunk only has U+FFFD where the whole text has it: no character was cut.
            if !whole.contains("\u{FFFD}") {
                #expect(!chunks.contains { $0.contains("\u{FFFD}") }, "\(name): \(quoted(text))")
            }
        }
    }

    @Test func plmSpecialTokensHaveTheReferenceIds() throws {
        let (tokenizer, _, _) = try Self.load("llama3-plm")
        #expect(tokenizer.tokenId(for: "<|begin_of_text|>") == 128000)
        #expect(tokenizer.tokenId(for: "<|image|>") == 128002)
        #expect(tokenizer.tokenId(for: "<|video|>") == 128003)
        #expect(tokenizer.tokenId(for: "<|eot_id|>") == 128009)
        #expect(tokenizer.tokenId(for: "<|reserved_special_token_0|>") == nil)
        #expect(tokenizer.idCount == 128256)
        #expect(tokenizer.token(for: 128002) == "<|image|>")
        #expect(tokenizer.isSpecial(128002) && !tokenizer.isSpecial(9906))
        // The ordinary ids the reference document assumes from Llama 3.
        #expect(tokenizer.encode("system", addSpecialTokens: false) == [9125])
        #expect(tokenizer.encode("user", addSpecialTokens: false) == [882])
        #expect(tokenizer.encode("assistant", addSpecialTokens: false) == [78191])
        #expect(tokenizer.encode("\n\n", addSpecialTokens: false) == [271])
    }

    /// The two merge loops (rescanning for short words, heap for long ones) agree on every
    /// pre-token of the corpus, and on long words built from it.
    @Test func scanAndHeapMergeLoopsAgree() throws {
        let (tokenizer, corpus, _) = try Self.load("llama3-plm")
        let model = tokenizer.model
        var words: [[UInt8]] = corpus.flatMap { $0.split(separator: " ").map { Array($0.utf8) } }
        words += corpus.map { Array($0.utf8) }
        for word in words where !word.isEmpty {
            var scratch = BPEScratch()
            scratch.symbols = word.map { UInt32(model.byteTokens[Int($0)]) }
            var viaScan = scratch.symbols
            var ranks: [UInt64] = []
            model.mergeByScanning(&viaScan, ranks: &ranks)
            model.mergeWithHeap(&scratch)
            #expect(viaScan == scratch.symbols, "\(quoted(String(decoding: word, as: UTF8.self)))")
        }
    }
}

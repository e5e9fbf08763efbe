import Testing
@testable import PLMTokenizer

/// Damaged or unsupported tokenizer.json files give named errors, never a crash or a guess.
@Suite struct MalformedTokenizerTests {
    /// A small valid file; each test breaks one part of it.
    static func file(
        model: String = #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]}"#,
        preTokenizer: String = #"{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}"#,
        normalizer: String = "null",
        addedTokens: String = "[]",
        decoder: String = #"{"type": "ByteLevel"}"#,
        postProcessor: String = "null"
    ) -> [UInt8] {
        Array("""
        {"version": "1.0", "truncation": null, "padding": null, "added_tokens": \(addedTokens),
         "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer), "post_processor": \(postProcessor),
         "decoder": \(decoder), "model": \(model)}
        """.utf8)
    }

    func error(_ json: [UInt8]) -> TokenizerError? {
        do { _ = try Tokenizer(json: json, source: "t.json"); return nil } catch { return error }
    }

    @Test func theValidBaseFileLoadsAndMerges() throws {
        let t = try Tokenizer(json: Self.file(), source: "t.json")
        #expect(t.encode("ab", addSpecialTokens: false) == [2])
        #expect(t.encode("ba", addSpecialTokens: false) == [1, 0])
    }

    @Test func missingModelFields() {
        #expect(error(Self.file(model: #"{"type": "BPE", "merges": []}"#)) == .missingField(source: "t.json", field: "model.vocab"))
        #expect(error(Self.file(model: #"{"type": "BPE", "vocab": {}}"#)) == .missingField(source: "t.json", field: "model.merges"))
        #expect(error(Self.file(model: #"{"vocab": {}, "merges": []}"#)) == .missingField(source: "t.json", field: "model.type"))
    }

    @Test func badMerges() {
        let threeParts = error(Self.file(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b c"]}"#))
        guard case .invalidField(_, "model.merges[0]", _) = threeParts else { Issue.record("got \(String(describing: threeParts))"); return }
        #expect(error(Self.file(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}"#))
                == .mergeTokenNotInVocabulary(source: "t.json", index: 0, token: "ab"))
        #expect(error(Self.file(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"], ["a", "x"]]}"#))
                == .mergeTokenNotInVocabulary(source: "t.json", index: 1, token: "x"))
        let mixed = error(Self.file(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", ["a", "b"]]}"#))
        guard case .invalidField(_, "model.merges[1]", _) = mixed else { Issue.record("got \(String(describing: mixed))"); return }
    }

    @Test func unknownComponentsAreNamed() {
        #expect(error(Self.file(preTokenizer: #"{"type": "Metaspace", "replacement": "▁"}"#))
                == .unsupported(source: "t.json", field: "pre_tokenizer.type", what: "pre-tokenizer \"Metaspace\""))
        #expect(error(Self.file(normalizer: #"{"type": "NFKC"}"#))
                == .unsupported(source: "t.json", field: "normalizer.type", what: "normalizer \"NFKC\""))
        #expect(error(Self.file(decoder: #"{"type": "WordPiece"}"#))
                == .unsupported(source: "t.json", field: "decoder.type", what: "decoder \"WordPiece\""))
        #expect(error(Self.file(postProcessor: #"{"type": "BertProcessing"}"#))
                == .unsupported(source: "t.json", field: "post_processor.type", what: "post-processor \"BertProcessing\""))
        #expect(error(Self.file(model: #"{"type": "WordPiece", "vocab": {}, "merges": []}"#))
                == .unsupported(source: "t.json", field: "model.type", what: "model \"WordPiece\""))
        #expect(error(Self.file(model: #"{"type": "BPE", "dropout": 0.1, "vocab": {}, "merges": []}"#))
                == .unsupported(source: "t.json", field: "model.dropout", what: "BPE dropout (random merges)"))
        #expect(error(Self.file(preTokenizer: "null"))
                == .unsupported(source: "t.json", field: "pre_tokenizer", what: "byte-level BPE without a ByteLevel pre-tokenizer (null)"))
    }

    @Test func badRegexIsReportedWithItsPattern() {
        let e = error(Self.file(preTokenizer: #"{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}"#))
        guard case .invalidRegex(_, "pre_tokenizer.pretokenizers[0].pattern.Regex", "(unclosed", _) = e else { Issue.record("got \(String(describing: e))"); return }
    }

    @Test func vocabularyAndAddedTokenIds() {
        let duplicate = error(Self.file(model: #"{"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}"#))
        guard case .malformedJSON = duplicate else { Issue.record("got \(String(describing: duplicate))"); return }
        let sharedId = error(Self.file(model: #"{"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}"#))
        guard case .invalidField(_, "model.vocab[\"b\"]", _) = sharedId else { Issue.record("got \(String(describing: sharedId))"); return }
        let negative = error(Self.file(model: #"{"type": "BPE", "vocab": {"a": -1}, "merges": []}"#))
        guard case .invalidField(_, "model.vocab[\"a\"]", _) = negative else { Issue.record("got \(String(describing: negative))"); return }
        // The loader would give this token id 4 (after the 4 vocabulary entries), not 9.
        let wrongId = error(Self.file(addedTokens: #"[{"id": 9, "content": "<x>", "special": true}]"#))
        guard case .invalidField(_, "added_tokens[0].id", _) = wrongId else { Issue.record("got \(String(describing: wrongId))"); return }
    }

    @Test func truncatedAndInvalidJSON() {
        let full = Self.file()
        for cut in [1, full.count / 3, full.count / 2, full.count - 1] {
            let e = error(Array(full[..<cut]))
            guard case .malformedJSON = e else { Issue.record("cut at \(cut): got \(String(describing: e))"); continue }
        }
        var badUTF8 = full
        badUTF8[badUTF8.count / 2] = 0xFF
        guard case .malformedJSON(_, _, "invalid UTF-8") = error(badUTF8) else { Issue.record("invalid UTF-8 accepted"); return }
    }

    @Test func decodeRefusesUnknownIds() throws {
        let t = try Tokenizer(json: Self.file(), source: "t.json")
        #expect(throws: TokenizerError.unknownId(99)) { try t.decode([0, 99]) }
        #expect(throws: TokenizerError.unknownId(-1)) { try t.decode([-1]) }
    }
}

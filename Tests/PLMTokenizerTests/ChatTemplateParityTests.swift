import PLMCore
import Testing
@testable import PLMTokenizer

/// Rendered prompts, ids and Jinja semantics against transformers (make_template_fixtures.py).
@Suite struct ChatTemplateParityTests {
    static let fixture: JSONValue? = try? Fixtures.json("templates/template_parity.json")

    static func messages(_ json: JSONValue?) throws -> [ChatMessage] {
        var out: [ChatMessage] = []
        for m in json?.arrayValue ?? [] {
            let role = try #require(m["role"]?.stringValue)
            if let s = m["content"]?.stringValue {
                out.append(ChatMessage(role: role, text: s))
                continue
            }
            var parts: [ChatMessage.Part] = []
            for p in m["content"]?.arrayValue ?? [] {
                switch p["type"]?.stringValue {
                case "text": parts.append(.text(try #require(p["text"]?.stringValue)))
                case "image": parts.append(.image)
                case "video": parts.append(.video)
                default: Issue.record("unknown part \(p)")
                }
            }
            out.append(ChatMessage(role: role, content: .parts(parts)))
        }
        return out
    }

    /// The variables transformers passed besides bos/eos (the tokenizer's other special tokens)
    /// plus the template's extra keyword arguments.
    static func extra(_ template: JSONValue?) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for (k, v) in fixture?["special_tokens"]?.objectValue?.entries ?? [] where k != "bos_token" && k != "eos_token" { out[k] = v }
        for (k, v) in template?["extra"]?.objectValue?.entries ?? [] { out[k] = v }
        return out
    }

    /// Which of our error kinds a Python exception corresponds to.
    static func kinds(forPython name: String) -> Set<TemplateError.Kind> {
        switch name {
        case "TemplateSyntaxError", "TemplateAssertionError", "SyntaxError": return [.syntax, .unsupported, .unknownFilter, .unknownTest]
        case "UndefinedError": return [.undefined]
        case "TemplateError": return [.raised]
        default: return [.type]
        }
    }

    static var templateNames: [String] { fixture?["templates"]?.objectValue?.keys ?? [] }

    @Test func fixtureCoversTheThreeTemplateFamilies() throws {
        let names = Set(Self.templateNames)
        #expect(names.isSuperset(of: ["plm", "llama-3.2", "qwen2-vl"]))
        let cases = Self.fixture?["templates"]?["plm"]?["cases"]?.arrayValue ?? []
        #expect(cases.count >= 16)
    }

    @Test(arguments: templateNames)
    func renderedPromptsMatchTransformers(template name: String) throws {
        let entry = Self.fixture?["templates"]?[name]
        let path = try #require(entry?["file"]?.stringValue)
        let source = String(decoding: try Fixtures.bytes(path), as: UTF8.self)
        let template = try ChatTemplate(source: source)
        let conversations = Self.fixture?["conversations"]
        let bos = Self.fixture?["special_tokens"]?["bos_token"]?.stringValue
        let eos = Self.fixture?["special_tokens"]?["eos_token"]?.stringValue
        for c in entry?["cases"]?.arrayValue ?? [] {
            let conversation = try #require(c["conversation"]?.stringValue)
            let generation = c["add_generation_prompt"]?.boolValue ?? false
            let messages = try Self.messages(conversations?[conversation])
            let label = "\(name) / \(conversation) / add_generation_prompt=\(generation)"
            if let expected = c["rendered"]?.stringValue {
                let rendered = try template.render(messages: messages, addGenerationPrompt: generation, bosToken: bos, eosToken: eos, extra: Self.extra(entry))
                #expect(rendered == expected, "\(label)")
            } else {
                let python = c["error"]?.stringValue ?? "?"
                do {
                    let out = try template.render(messages: messages, addGenerationPrompt: generation, bosToken: bos, eosToken: eos, extra: Self.extra(entry))
                    Issue.record("\(label): transformers raised \(python), we rendered \(quoted(out))")
                } catch {
                    #expect(Self.kinds(forPython: python).contains(error.kind), "\(label): \(python) vs \(error)")
                    #expect(error.line > 0, "\(label): the error has a position")
                }
            }
        }
    }

    /// Template → ids → expanded ids, end to end against PerceptionLMProcessor with real pixels.
    @Test func plmPromptIdsAndExpansionMatchTheProcessor() throws {
        let tokenizer = try Fixtures.tokenizer("models/tiny-fp32-mha-tied/tokenizer.json")
        let source = String(decoding: try Fixtures.bytes("models/tiny-fp32-mha-tied/chat_template.jinja"), as: UTF8.self)
        let template = try ChatTemplate(source: source)
        let expander = PromptExpander(tokenizer: tokenizer, config: PlaceholderConfig(tileSize: 56, patchSize: 14, poolingRatio: 2))
        let conversations = Self.fixture?["conversations"]
        var checked = 0, withMedia = 0
        for c in Self.fixture?["templates"]?["plm"]?["cases"]?.arrayValue ?? [] {
            let conversation = try #require(c["conversation"]?.stringValue)
            let prompt = try template.render(messages: try Self.messages(conversations?[conversation]),
                                             addGenerationPrompt: c["add_generation_prompt"]?.boolValue ?? false,
                                             bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>")
            #expect(prompt == c["rendered"]?.stringValue)
            #expect(tokenizer.encode(prompt, addSpecialTokens: false) == c["ids"]?.intArray, "\(conversation)")
            let tiles = c["image_tiles"]?.intArray ?? [], frames = c["video_frames"]?.intArray ?? []
            let expanded = try expander.ids(prompt: prompt, imageTiles: tiles, videoFrames: frames)
            #expect(expanded == c["expanded_ids"]?.intArray, "\(conversation): tiles \(tiles), frames \(frames)")
            checked += 1
            if !(tiles.isEmpty && frames.isEmpty) { withMedia += 1 }
        }
        #expect(checked >= 16 && withMedia >= 8)
    }

    static var snippetIndices: [Int] { Array((fixture?["snippets"]?.arrayValue ?? []).indices) }

    @Test(arguments: snippetIndices)
    func snippetMatchesJinja(index: Int) throws {
        let s = try #require(Self.fixture?["snippets"]?.arrayValue?[index])
        let source = try #require(s["source"]?.stringValue)
        var extra: [String: JSONValue] = [:]
        for (k, v) in s["variables"]?.objectValue?.entries ?? [] { extra[k] = v }
        if let expected = s["rendered"]?.stringValue {
            let template = try ChatTemplate(source: source)
            let out = try template.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil, extra: extra)
            #expect(out == expected, "\(quoted(source))")
            return
        }
        let python = s["error"]?.stringValue ?? "?"
        let expectedKinds = Self.kinds(forPython: python)
        do {
            let template = try ChatTemplate(source: source)
            #expect(s["phase"]?.stringValue == "render", "\(quoted(source)): Jinja refused it at parse time (\(python)), we parsed it")
            let out = try template.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil, extra: extra)
            Issue.record("\(quoted(source)): Jinja raised \(python), we rendered \(quoted(out))")
        } catch {
            #expect(expectedKinds.contains(error.kind), "\(quoted(source)): \(python) vs \(error)")
            if error.kind == .raised { #expect(error.message == s["message"]?.stringValue) }
        }
    }
}

import PLMCore
import ArgumentParser
import PLMModel
import PLMTokenizer

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Turn text (or a chat turn) into the model's token ids, or ids back into text.",
        discussion: """
            Uses the model's own tokenizer.json and chat template (a checkpoint folder, or a .plm \
            file, which embeds both), with the ids transformers produces. Plain TEXT is encoded with \
            the tokenizer's special tokens (BOS for Llama 3). With --chat, TEXT is one user turn \
            rendered through the chat template (with --system first, and one <|image|> per \
            --image-tiles, placed before the text as `{"type": "image"}` parts) and tokenized \
            without adding special tokens, as PerceptionLMProcessor does; each <|image|> is then \
            expanded to tokens-per-tile × N placeholder ids. Without --chat, TEXT may contain \
            <|image|> itself, one per --image-tiles.

            Each id is listed with its text; special tokens are shown in [brackets], and runs of \
            one repeated id are folded into one line.

            Examples:
              plmq tokenize model.plm "Hello world"
              plmq tokenize model.plm --chat --system "Be brief." --image-tiles 5 "What is this?"
              plmq tokenize model.plm --decode 128000,9906,1917
              plmq tokenize model.plm --bench corpus.txt
            """
    )

    @Argument(help: "A checkpoint folder or a .plm file.")
    var model: String

    @Argument(help: "The text to tokenize (not with --decode or --bench).")
    var text: String?

    @Flag(help: "Render TEXT as a user turn through the model's chat template first.")
    var chat = false

    @Option(help: "With --chat: a system message before the user turn.")
    var system: String?

    @Option(help: "Tiles of one image (repeat for several images, in order); 1–36.")
    var imageTiles: [Int] = []

    @Flag(inversion: .prefixedNo, help: "With --chat: end with the assistant header (add_generation_prompt).")
    var generationPrompt = true

    @Flag(help: "Print only the ids, comma-separated.")
    var idsOnly = false

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(help: "Decode these comma-separated ids instead of tokenizing.")
    var decode: String?

    @Option(help: "Time loading the tokenizer and encoding this UTF-8 file (a benchmark; compare with Tests/Fixtures/bench_tokenizer.py).")
    var bench: String?

    func validate() throws {
        let modes = [text != nil, decode != nil, bench != nil].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of TEXT, --decode IDS or --bench FILE") }
        if !chat && system != nil { throw ValidationError("--system needs --chat") }
        if text == nil && (chat || !imageTiles.isEmpty) { throw ValidationError("--chat and --image-tiles need TEXT") }
        for n in imageTiles where !(1...36).contains(n) { throw ValidationError("--image-tiles must be between 1 and 36, not \(n)") }
    }

    func run() throws {
        try reportingErrors {
            let bundle = try ModelBundle.open(model)
            guard let tokenizerJSON = try bundle.tokenizerJSON else { throw UserFacingError("\(model): the model has no tokenizer.json") }
            if let bench {
                let file = try MappedFile(path: bench)
                let corpus = withExtendedLifetime(file) { String(decoding: file.bytes, as: UTF8.self) }
                let report = try TokenizerBenchmark.run(json: tokenizerJSON, text: corpus)
                print(json ? benchJSON(report).serialized(pretty: true) : "PLMTokenizer: " + report.summary)
                return
            }
            let tokenizer = try Tokenizer(json: tokenizerJSON, source: model + ":tokenizer.json")
            if let decode {
                let ids = try parseIds(decode)
                let decoded = try tokenizer.decode(ids)
                print(json ? JSONValue.object(JSONObject([("text", .string(decoded))])).serialized(pretty: true) : decoded)
                return
            }
            let (prompt, ids) = try tokenize(text ?? "", bundle: bundle, tokenizer: tokenizer)
            if idsOnly {
                print(ids.map(String.init).joined(separator: ","))
            } else if json {
                var fields: [(String, JSONValue)] = []
                if chat { fields.append(("prompt", .string(prompt))) }
                fields.append(("ids", .array(ids.map { .int($0) })))
                fields.append(("tokens", .array(try tokenizer.pieces(ids).map {
                    .object(JSONObject([("id", .int($0.id)), ("text", .string($0.text)), ("special", .bool($0.special))]))
                })))
                print(JSONValue.object(JSONObject(fields)).serialized(pretty: true))
            } else {
                if chat { print("prompt: \(JSONValue.string(prompt).serialized())") }
                print("\(ids.count) tokens")
                print(try listing(tokenizer.pieces(ids)))
            }
        }
    }

    /// The prompt (the rendered template with --chat, else TEXT) and its ids.
    private func tokenize(_ text: String, bundle: ModelBundle, tokenizer: Tokenizer) throws -> (String, [Int]) {
        var prompt = text
        var base: [Int]
        if chat {
            guard let source = try bundle.chatTemplate else { throw UserFacingError("\(model): the model has no chat template") }
            let template = try ChatTemplate(source: source)
            let special = try SpecialTokensMap(tokenizerConfig: try bundle.sideJSON("tokenizer_config.json"))
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", text: system)) }
            messages.append(ChatMessage(role: "user", content: .parts(Array(repeating: .image, count: imageTiles.count) + [.text(text)])))
            prompt = try template.render(messages: messages, addGenerationPrompt: generationPrompt,
                                         bosToken: special.bos, eosToken: special.eos, extra: special.extraVariables)
            // The rendered prompt carries its own BOS: no special tokens are added (no second BOS).
            base = tokenizer.encode(prompt, addSpecialTokens: false)
        } else {
            base = tokenizer.encode(text, addSpecialTokens: true)
        }
        guard !imageTiles.isEmpty else { return (prompt, base) }
        guard let processor = try bundle.processorConfig else { throw UserFacingError("\(model): --image-tiles needs processor_config.json") }
        let expander = PromptExpander(tokenizer: tokenizer, config: try PlaceholderConfig(processorConfig: processor))
        return (prompt, try expander.expand(base, imageTiles: imageTiles, videoFrames: []))
    }

    private func parseIds(_ list: String) throws -> [Int] {
        var ids: [Int] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = part.trimmingCharacters(in: " ")
            guard let id = Int(trimmed), id >= 0 else { throw UserFacingError("--decode: \(JSONValue.string(String(part)).serialized()) is not a token id") }
            ids.append(id)
        }
        return ids
    }

    /// One line per id (`id  "text"`, special tokens as `[text]`); a run of one id is one line.
    private func listing(_ pieces: [TokenPiece]) -> String {
        var lines: [String] = []
        var k = 0
        while k < pieces.count {
            var end = k + 1
            while end < pieces.count && pieces[end].id == pieces[k].id { end += 1 }
            let p = pieces[k]
            let shown = p.special ? "[\(p.text)]" : JSONValue.string(p.text).serialized()
            let id = String(p.id)
            lines.append(String(repeating: " ", count: max(0, 8 - id.count)) + id + "  " + shown + (end - k > 1 ? "  ×\(end - k)" : ""))
            k = end
        }
        return lines.joined(separator: "\n")
    }

    private func benchJSON(_ r: TokenizerBenchmarkReport) -> JSONValue {
        .object(JSONObject([("load_seconds", .double(r.loadSeconds)), ("encode_seconds", .double(r.encodeSeconds)),
                            ("text_bytes", .int(r.textBytes)), ("megabytes_per_second", .double(r.megabytesPerSecond)),
                            ("ids", .int(r.idCount)), ("checksum", .string(String(r.idChecksum, radix: 16)))]))
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        String(drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }
}

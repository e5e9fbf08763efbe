import PLMCore
import PLMCheckpoint
import PLMFormat

/// "A model" as a user names it: a Hugging Face checkpoint folder or a `.plm` file. Opening it
/// reads and validates the configs and side files (no weights), so every command and the library
/// see the same model the same way: the configs, the tokenizer and chat-template bytes, the
/// processor config, the `.plm` metadata, and a weight source for the engine.
///
/// Nothing damaged becomes a default: a side file that is present but unreadable, fails its
/// checksum or is not valid JSON is an error naming the file. A side file that is absent is
/// `nil` (a checkpoint may legitimately ship without a chat template, say); the commands that
/// need it say so.
public struct ModelBundle: Sendable {
    public enum Source: Sendable {
        case checkpoint(CheckpointFolder)
        case plm(PLMFile)
    }

    public let path: String
    public let source: Source
    public let config: PerceptionLMConfig
    public let generation: GenerationConfig
    /// Typed `.plm` metadata; nil for a checkpoint folder.
    public let metadata: PLMMetadata?

    /// Opens MODEL: a folder is read as a checkpoint, anything else as a `.plm` file.
    public static func open(_ path: String) throws(EngineError) -> ModelBundle {
        guard FileSystem.exists(path) else {
            throw .checkpoint(.fileAccess(FileAccessError(path: path, reason: "no such file or folder")))
        }
        return FileSystem.isDirectory(path) ? try ModelBundle(checkpoint: path) : try ModelBundle(plm: path)
    }

    public init(checkpoint path: String) throws(EngineError) {
        let folder: CheckpointFolder
        do {
            folder = try CheckpointFolder(path: path)
            try folder.requireConsistentLayout()
        } catch { throw .checkpoint(error) }
        self.path = path
        source = .checkpoint(folder)
        config = folder.config
        generation = folder.generation
        metadata = nil
    }

    public init(plm path: String) throws(EngineError) {
        let file: PLMFile
        do { file = try PLMFile(path: path) } catch { throw .plm(error) }
        try self.init(file: file)
    }

    public init(file: PLMFile) throws(EngineError) {
        path = file.path
        source = .plm(file)
        guard let configJSON = try Self.embeddedJSON(file, "config.json") else {
            throw .embeddedFile(file: file.path, name: "config.json", problem: "missing: the file embeds no model config")
        }
        do { config = try PerceptionLMConfig(json: configJSON, file: file.path + ":config.json") } catch {
            throw .checkpoint(.config(error))
        }
        if let g = try Self.embeddedJSON(file, "generation_config.json") {
            do { generation = try GenerationConfig(json: g, file: file.path + ":generation_config.json") } catch {
                throw .checkpoint(.config(error))
            }
        } else {
            // Documented decision: a .plm converted from a folder without generation_config.json
            // has none either; transformers then uses GenerationConfig's defaults, and so do we.
            generation = GenerationConfig()
        }
        do { metadata = try PLMMetadata(json: file.metadata, file: file.path) } catch { throw .plm(error) }
    }

    /// The raw bytes of a side file (`tokenizer.json`, `chat_template.jinja`, …), or nil if the
    /// model has none. Present but unreadable or damaged is an error.
    public func sideFile(_ name: String) throws(EngineError) -> [UInt8]? {
        switch source {
        case .checkpoint(let folder):
            do { return try folder.sideFile(name) } catch { throw .checkpoint(error) }
        case .plm(let file):
            do { return try file.sideFile(name) } catch { throw .plm(error) }
        }
    }

    /// A side file parsed as JSON, or nil if absent.
    public func sideJSON(_ name: String) throws(EngineError) -> JSONValue? {
        guard let bytes = try sideFile(name) else { return nil }
        do { return try JSONParser.parse(bytes) } catch {
            throw .embeddedFile(file: path, name: name, problem: "not valid JSON: \(error)")
        }
    }

    public var tokenizerJSON: [UInt8]? { get throws(EngineError) { try sideFile("tokenizer.json") } }

    /// The processor config: `processor_config.json` (transformers 5 nests the image and video
    /// processors in it), else the older `preprocessor_config.json`.
    public var processorConfig: JSONValue? {
        get throws(EngineError) {
            if let p = try sideJSON("processor_config.json") { return p }
            return try sideJSON("preprocessor_config.json")
        }
    }

    /// The chat template, from where transformers looks for it, in its order: the
    /// `chat_template.jinja` file, `chat_template.json`'s "chat_template", then
    /// tokenizer_config.json's "chat_template". A value of the wrong type is an error.
    public var chatTemplate: String? {
        get throws(EngineError) {
            if let bytes = try sideFile("chat_template.jinja") {
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    throw .embeddedFile(file: path, name: "chat_template.jinja", problem: "not valid UTF-8")
                }
                return text
            }
            for name in ["chat_template.json", "tokenizer_config.json"] {
                guard let json = try sideJSON(name), let value = json.objectValue?["chat_template"] else { continue }
                guard let text = value.stringValue else {
                    throw .embeddedFile(file: path, name: name, problem: "\"chat_template\" is \(value.typeName), expected a string")
                }
                return text
            }
            return nil
        }
    }

    /// Checks the checksum of every tensor payload of a `.plm` file on up to `threads` threads,
    /// throwing `.plm(.checksumMismatch)` naming the file, tensor and part of the first damaged
    /// one. A checkpoint folder has no checksums to check (safetensors records none).
    public func verifyWeights(threads: Int = 1) throws(EngineError) {
        guard case .plm(let file) = source else { return }
        do { try file.verifyTensorPayloads(threads: threads) } catch { throw .plm(error) }
    }

    /// The weights, computing with `options`.
    public func weightSource(options: EngineOptions) -> any WeightSource {
        switch source {
        case .checkpoint(let folder): return CheckpointWeightSource(weights: folder.weights, options: options)
        case .plm(let file): return PLMWeightSource(file: file, options: options)
        }
    }

    private static func embeddedJSON(_ file: PLMFile, _ name: String) throws(EngineError) -> JSONValue? {
        let bytes: [UInt8]?
        do { bytes = try file.sideFile(name) } catch { throw .plm(error) }
        guard let bytes else { return nil }
        do { return try JSONParser.parse(bytes) } catch {
            throw .embeddedFile(file: file.path, name: name, problem: "not valid JSON: \(error)")
        }
    }
}

/// What `plmq convert` recorded in a `.plm` header, typed. Keys this plmq does not know are kept
/// in `raw`; a known key with a value of the wrong type is an error.
public struct PLMMetadata: Sendable, Equatable {
    public struct SourceFile: Sendable, Equatable {
        public let name: String
        public let bytes: Int
        public let sha256: String
    }

    public let producer: String?
    /// The checkpoint folder the file was converted from (absolute path), if recorded.
    public let sourceFolder: String?
    public let recipeName: String?
    public let recipeSummary: String?
    public let sources: [SourceFile]
    /// Relative RMS error of each quantized tensor, measured at conversion.
    public let quantizationError: [String: Double]
    public let raw: JSONObject

    public init(json: JSONObject, file: String) throws(PLMError) {
        raw = json
        func bad(_ field: String, _ expected: String, _ value: JSONValue) -> PLMError {
            .headerInvalid(file: file, detail: "metadata.\(field) is \(value.typeName), expected \(expected)")
        }
        func string(_ value: JSONValue?, _ field: String) throws(PLMError) -> String? {
            guard let value else { return nil }
            guard let s = value.stringValue else { throw bad(field, "a string", value) }
            return s
        }
        producer = try string(json["plmq_version"], "plmq_version")
        var recipeName: String?, recipeSummary: String?
        if let recipe = json["recipe"] {
            guard let o = recipe.objectValue else { throw bad("recipe", "an object", recipe) }
            recipeName = try string(o["name"], "recipe.name")
            recipeSummary = try string(o["summary"], "recipe.summary")
        }
        self.recipeName = recipeName
        self.recipeSummary = recipeSummary
        var sources: [SourceFile] = []
        sourceFolder = try string(json["source"]?.objectValue?["folder"], "source.folder")
        if let source = json["source"] {
            guard let files = source.objectValue?["files"]?.arrayValue else { throw bad("source", "an object with a files list", source) }
            for (i, f) in files.enumerated() {
                guard let o = f.objectValue, let name = o["name"]?.stringValue, let bytes = o["bytes"]?.intValue,
                      let sha = o["sha256"]?.stringValue else {
                    throw bad("source.files[\(i)]", "an object with name, bytes and sha256", f)
                }
                sources.append(SourceFile(name: name, bytes: bytes, sha256: sha))
            }
        }
        self.sources = sources
        var errors: [String: Double] = [:]
        if let q = json["quantization_error"] {
            guard let o = q.objectValue else { throw bad("quantization_error", "an object", q) }
            for (name, value) in o.entries {
                guard let d = value.doubleValue else { throw bad("quantization_error.\(name)", "a number", value) }
                errors[name] = d
            }
        }
        quantizationError = errors
    }
}

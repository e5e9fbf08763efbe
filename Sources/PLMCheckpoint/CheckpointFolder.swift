import PLMCore
/// A Hugging Face PerceptionLM checkpoint folder: config.json, the safetensors weights, and the
/// side files a runner needs (generation config, processor configs, tokenizer, chat template).
/// Opening it parses and validates every header and JSON file; no tensor data is read.
public struct CheckpointFolder: Sendable {
    /// Side files kept with the model, in the order a `.plm` embeds them.
    public static let sideFileNames = [
        "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
        "video_preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "chat_template.jinja", "chat_template.json",
    ]

    public let path: String
    public let config: PerceptionLMConfig
    public let generation: GenerationConfig
    public let weights: CheckpointWeights
    /// Side files that exist, by name → full path. JSON ones were parsed once to validate them.
    public let sideFiles: [(name: String, path: String)]
    /// config.json checked against the stored tensors.
    public let layoutIssues: [LayoutIssue]

    public init(path: String) throws(CheckpointError) {
        guard FileSystem.isDirectory(path) else {
            throw .fileAccess(FileAccessError(path: path, reason: FileSystem.exists(path) ? "not a folder" : "no such folder"))
        }
        self.path = path
        let configPath = FileSystem.join(path, "config.json")
        guard FileSystem.exists(configPath) else {
            throw .fileAccess(FileAccessError(path: configPath, reason: "missing: a checkpoint folder needs config.json"))
        }
        config = try PerceptionLMConfig.load(path: configPath)
        var side: [(String, String)] = []
        var generation = GenerationConfig()
        for name in Self.sideFileNames {
            let p = FileSystem.join(path, name)
            guard FileSystem.exists(p) else { continue }
            if name.hasSuffix(".json") {
                let json = try FileSystem.readJSON(p)  // strict parse: a broken side file is an error now, not at run time
                if name == "generation_config.json" {
                    do { generation = try GenerationConfig(json: json, file: p) } catch { throw .config(error) }
                }
            }
            side.append((name, p))
        }
        self.generation = generation
        sideFiles = side
        weights = try CheckpointWeights(folder: path)
        layoutIssues = config.checkLayout(stored: weights.tensors.map(\.info))
    }

    /// The first layout error, as a thrown error for callers that need a runnable checkpoint.
    public func requireConsistentLayout() throws(CheckpointError) {
        let errors = layoutIssues.filter(\.isError)
        guard let first = errors.first else { return }
        let more = errors.count > 1 ? " (and \(errors.count - 1) more problems; `plmq inspect` lists them)" : ""
        throw .config(ConfigError(file: FileSystem.join(path, "config.json"), field: "", problem: first.description + more))
    }

    /// The bytes of a side file, if present.
    public func sideFile(_ name: String) throws(CheckpointError) -> [UInt8]? {
        guard let entry = sideFiles.first(where: { $0.name == name }) else { return nil }
        do { return try FileSystem.readBytes(entry.path) } catch { throw .fileAccess(error) }
    }
}

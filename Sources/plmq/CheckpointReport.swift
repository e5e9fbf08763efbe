import PLMCore
import PLMCheckpoint

/// What `plmq inspect` prints for a checkpoint folder, as text or JSON.
struct CheckpointReport {
    let folder: CheckpointFolder
    let table: TensorTable

    init(folder: CheckpointFolder) {
        self.folder = folder
        table = TensorTable(entries: folder.weights.tensors.map {
            ($0.info.name, $0.info.shape, $0.info.dtype.displayName, $0.info.byteCount)
        })
    }

    var config: PerceptionLMConfig { folder.config }
    var architecture: ArchitectureSummary { ArchitectureSummary(config: folder.config) }

    var weightFiles: String {
        let w = folder.weights
        let names = w.shards.map { FileSystem.fileName($0.path) }
        let source = w.indexPath.map { "\(FileSystem.fileName($0)) → \(names.count) shards" } ?? names.joined(separator: ", ")
        return "\(source), \(formatBytes(w.totalFileBytes))"
    }

    func text(listAll: Bool) -> String {
        var lines: [String] = []
        lines.append("PerceptionLM checkpoint \(folder.path)")
        lines.append("  weights: \(weightFiles)")
        let side = folder.sideFiles.map(\.name).filter { $0 != "config.json" }
        lines.append("  side files: " + (side.isEmpty ? "none" : side.joined(separator: ", ")))
        lines.append("")
        lines.append(contentsOf: architecture.lines(generation: folder.generation))
        lines.append("")

        var rows: [[String]] = [["component", "tensors", "parameters", "bytes"]]
        for c in Component.allCases {
            guard let t = table.byComponent[c] else { continue }
            rows.append([c.rawValue, formatThousands(t.tensors), formatThousands(t.parameters), formatBytes(t.bytes)])
        }
        rows.append(["total", formatThousands(table.total.tensors), formatThousands(table.total.parameters), formatBytes(table.total.bytes)])
        lines.append(contentsOf: alignColumns(rows, rightAligned: [1, 2, 3]).map { "  " + $0 })
        if config.tieWordEmbeddings && !folder.weights.contains(Component.lmHead) {
            lines.append("  (lm_head is tied to embed_tokens and not stored; counted once)")
        }
        lines.append("")
        var dtypeRows: [[String]] = [["dtype", "tensors", "parameters", "bytes"]]
        for (name, t) in table.byStorage.sorted(by: { $0.value.bytes > $1.value.bytes }) {
            dtypeRows.append([name, formatThousands(t.tensors), formatThousands(t.parameters), formatBytes(t.bytes)])
        }
        lines.append(contentsOf: alignColumns(dtypeRows, rightAligned: [1, 2, 3]).map { "  " + $0 })
        lines.append("")

        if listAll {
            lines.append("tensors (\(folder.weights.tensors.count))")
            var tensorRows: [[String]] = []
            for loc in folder.weights.tensors {
                tensorRows.append([loc.info.name, formatShape(loc.info.shape), loc.info.dtype.displayName, formatBytes(loc.info.byteCount)])
            }
            lines.append(contentsOf: alignColumns(tensorRows, rightAligned: [3]).map { "  " + $0 })
        } else {
            lines.append("tensors (\(table.total.tensors) in \(table.groups.count) groups; --tensors lists each)")
            var groupRows: [[String]] = []
            for g in table.groups {
                groupRows.append([g.pattern, formatShape(g.shape), g.storage, g.count > 1 ? "×\(g.count)" : "", formatBytes(g.bytes)])
            }
            lines.append(contentsOf: alignColumns(groupRows, rightAligned: [4]).map { "  " + $0 })
        }
        lines.append("")
        let errors = folder.layoutIssues.filter(\.isError)
        let notes = folder.layoutIssues.filter { !$0.isError }
        if errors.isEmpty {
            lines.append("layout: config.json matches all \(folder.weights.tensors.count) stored tensors")
        } else {
            lines.append("layout: \(errors.count) problem\(errors.count == 1 ? "" : "s") between config.json and the tensors")
            lines.append(contentsOf: errors.map { "  error: \($0)" })
        }
        lines.append(contentsOf: notes.map { "  note: \($0)" })
        return lines.joined(separator: "\n")
    }

    func json() -> JSONValue {
        func totals(_ t: TensorTable.Totals) -> JSONValue {
            .object(JSONObject([("tensors", .int(t.tensors)), ("parameters", .int(t.parameters)), ("bytes", .int(t.bytes))]))
        }
        var components: [(String, JSONValue)] = []
        for c in Component.allCases { if let t = table.byComponent[c] { components.append((c.rawValue, totals(t))) } }
        let dtypes = table.byStorage.sorted { $0.key < $1.key }.map { ($0.key, totals($0.value)) }
        let tensors: [JSONValue] = folder.weights.tensors.map { loc in
            .object(JSONObject([
                ("name", .string(loc.info.name)), ("shape", .array(loc.info.shape.map { .int($0) })),
                ("dtype", .string(loc.info.dtype.rawValue)), ("bytes", .int(loc.info.byteCount)),
                ("file", .string(FileSystem.fileName(folder.weights.shards[loc.shard].path))),
            ]))
        }
        let v = config.vision, t = config.text
        return .object(JSONObject([
            ("path", .string(folder.path)),
            ("format", .string(folder.weights.indexPath == nil ? "safetensors" : "safetensors-sharded")),
            ("files", .array(folder.weights.shards.map { .object(JSONObject([("name", .string(FileSystem.fileName($0.path))), ("bytes", .int($0.file.size))])) })),
            ("vision_tower", .object(JSONObject([
                ("architecture", .string(v.architecture)), ("depth", .int(v.depth)), ("width", .int(v.embedDim)),
                ("heads", .int(v.numHeads)), ("mlp_hidden", .int(v.mlpHidden)), ("image_size", .array([.int(v.imageHeight), .int(v.imageWidth)])),
                ("patch_size", .int(v.patchSize)), ("class_token", .bool(v.classToken)), ("rope_grid_offset", .double(v.ropeGridOffset)),
            ]))),
            ("projector", .object(JSONObject([("pooling_ratio", .int(config.projectorPoolingRatio)), ("tokens_per_tile", .int(config.tokensPerTile))]))),
            ("language_model", .object(JSONObject([
                ("layers", .int(t.numHiddenLayers)), ("hidden", .int(t.hiddenSize)), ("heads", .int(t.numAttentionHeads)),
                ("kv_heads", .int(t.numKeyValueHeads)), ("head_dim", .int(t.headDim)), ("intermediate", .int(t.intermediateSize)),
                ("vocab", .int(t.vocabSize)), ("tied_head", .bool(config.tieWordEmbeddings)),
            ]))),
            ("total", totals(table.total)),
            ("components", .object(JSONObject(components))),
            ("dtypes", .object(JSONObject(dtypes))),
            ("layout_issues", .array(folder.layoutIssues.map { issue in
                .object(JSONObject([("severity", .string(issue.isError ? "error" : "note")), ("message", .string(issue.description))]))
            })),
            ("tensors", .array(tensors)),
        ]))
    }
}

/// Pads table cells into aligned columns.
func alignColumns(_ rows: [[String]], rightAligned: Set<Int> = []) -> [String] {
    let widths = (0..<(rows.map(\.count).max() ?? 0)).map { col in rows.map { col < $0.count ? $0[col].count : 0 }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { col, cell in
            let pad = String(repeating: " ", count: widths[col] - cell.count)
            return rightAligned.contains(col) ? pad + cell : cell + pad
        }.joined(separator: "  ").trimmingTrailingSpaces()
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// Prints 500000.0 as "500000" and 1e-05 as "1e-05".
func formatNumber(_ x: Double) -> String {
    if x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
    return "\(x)"
}

/// The architecture lines shared by the checkpoint and `.plm` reports.
struct ArchitectureSummary {
    let config: PerceptionLMConfig

    var visionSummary: String {
        let v = config.vision
        var parts = [
            "\(v.architecture): \(v.depth) blocks, width \(v.embedDim), \(v.numHeads) heads × \(v.headDim), MLP \(v.mlpHidden)",
            "\(v.imageHeight)×\(v.imageWidth) px, patch \(v.patchSize) (\(v.gridHeight)×\(v.gridWidth) grid)",
            v.classToken ? "CLS token" : "no CLS token",
            "2D RoPE offset \(formatNumber(v.ropeGridOffset))",
        ]
        if v.usePostTransformerNorm { parts.append("final LayerNorm") }
        return parts.joined(separator: ", ")
    }

    var projectorSummary: String {
        let r = config.projectorPoolingRatio
        let pooling = r == 1 ? "no pooling" : "\(r)×\(r) average pooling"
        return "\(config.vision.embedDim) → \(config.text.hiddenSize) → \(config.text.hiddenSize), GELU, \(pooling) → \(config.tokensPerTile) tokens per tile"
            + (config.visionUseClsToken ? ", CLS dropped" : "")
    }

    var textSummary: String {
        let t = config.text
        let rope: String
        switch t.rope.scaling {
        case .none: rope = "RoPE θ \(formatNumber(t.rope.theta))"
        case .linear(let f): rope = "RoPE θ \(formatNumber(t.rope.theta)) linear ×\(formatNumber(f))"
        case .llama3(let f, let lo, let hi, let orig):
            rope = "RoPE θ \(formatNumber(t.rope.theta)) llama3 (factor \(formatNumber(f)), low \(formatNumber(lo)), high \(formatNumber(hi)), original \(orig))"
        }
        let attention = t.numKeyValueHeads == t.numAttentionHeads
            ? "\(t.numAttentionHeads) heads × \(t.headDim)"
            : "\(t.numAttentionHeads) heads / \(t.numKeyValueHeads) kv heads × \(t.headDim)"
        return "Llama: \(t.numHiddenLayers) layers, hidden \(t.hiddenSize), \(attention), MLP \(t.intermediateSize) (\(t.hiddenAct.rawValue)), "
            + "vocab \(t.vocabSize), \(rope), \(config.tieWordEmbeddings ? "tied head" : "separate head"), RMSNorm eps \(formatNumber(t.rmsNormEps))"
    }

    func lines(generation: GenerationConfig) -> [String] {
        [
            "architecture",
            "  vision tower    \(visionSummary)",
            "  projector       \(projectorSummary)",
            "  language model  \(textSummary)",
            "  tokens          image \(config.imageTokenId), video \(config.videoTokenId)"
                + (generation.eosTokenIds.isEmpty ? "" : ", eos \(generation.eosTokenIds.map(String.init).joined(separator: ", "))")
                + (generation.bosTokenId.map { ", bos \($0)" } ?? ""),
        ]
    }
}

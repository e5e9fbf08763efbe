import PLMCore
import PLMCheckpoint
import PLMFormat
import PLMQuant
import PLMModel
import PLMEval

/// What `plmq inspect` prints for a `.plm` file.
struct PLMReport {
    let file: PLMFile
    let config: PerceptionLMConfig
    let generation: GenerationConfig
    let metadata: PLMMetadata
    let table: TensorTable

    init(bundle: ModelBundle) throws {
        guard case .plm(let file) = bundle.source, let metadata = bundle.metadata else {
            throw UserFacingError("\(bundle.path): not a .plm file")
        }
        self.file = file
        self.metadata = metadata
        config = bundle.config
        generation = bundle.generation
        table = TensorTable(entries: file.tensors.map { ($0.name, $0.shape, $0.type.description, $0.storedBytes) })
    }

    /// Each quantized tensor's relative RMS error as recorded (the header keeps them as exact
    /// decimal literals; print them as written).
    var errors: [String: String] {
        var out: [String: String] = [:]
        for (k, v) in metadata.raw["quantization_error"]?.objectValue?.entries ?? [] {
            if case .number(let n) = v { out[k] = n }
        }
        return out
    }

    func text(listAll: Bool) -> String {
        var lines = ["plmq file \(file.path) (format \(file.version.major).\(file.version.minor), \(formatBytes(file.file.size)))"]
        if let producer = metadata.producer { lines.append("  written by \(producer)") }
        if let recipe = metadata.recipeName { lines.append("  recipe \(recipe): \(metadata.recipeSummary ?? "")") }
        if let quality = QualityCertificate.summary(metadata.raw[QualityCertificate.metadataKey]) { lines.append("  " + quality) }
        for source in metadata.sources {
            lines.append("  source \(source.name), \(formatBytes(source.bytes)), sha256 \(source.sha256)")
        }
        lines.append("  embedded files: " + file.files.map { "\($0.name) (\(formatBytes($0.size)))" }.joined(separator: ", "))
        lines.append("")
        lines.append(contentsOf: ArchitectureSummary(config: config).lines(generation: generation))
        lines.append("")
        var rows: [[String]] = [["component", "tensors", "parameters", "bytes", "bits/w"]]
        for c in Component.allCases {
            guard let t = table.byComponent[c] else { continue }
            rows.append([c.rawValue, formatThousands(t.tensors), formatThousands(t.parameters), formatBytes(t.bytes), String(format2: bpw(t))])
        }
        rows.append(["total", formatThousands(table.total.tensors), formatThousands(table.total.parameters), formatBytes(table.total.bytes), String(format2: bpw(table.total))])
        lines.append(contentsOf: alignColumns(rows, rightAligned: [1, 2, 3, 4]).map { "  " + $0 })
        lines.append("")
        var storage: [[String]] = [["storage", "tensors", "parameters", "bytes", "bits/w"]]
        for (name, t) in table.byStorage.sorted(by: { $0.value.bytes > $1.value.bytes }) {
            storage.append([name, formatThousands(t.tensors), formatThousands(t.parameters), formatBytes(t.bytes), String(format2: bpw(t))])
        }
        lines.append(contentsOf: alignColumns(storage, rightAligned: [1, 2, 3, 4]).map { "  " + $0 })
        lines.append("")
        let errors = self.errors
        if listAll {
            var tensorRows: [[String]] = []
            for t in file.tensors {
                let b = Double(8 * t.storedBytes) / Double(max(t.elementCount, 1))
                tensorRows.append([t.name, formatShape(t.shape), t.type.description, String(format2: b), formatBytes(t.storedBytes), errors[t.name].map { "rel. RMSE \($0)" } ?? ""])
            }
            lines.append("tensors (\(file.tensors.count))")
            lines.append(contentsOf: alignColumns(tensorRows, rightAligned: [3, 4]).map { "  " + $0 })
        } else {
            lines.append("tensors (\(table.total.tensors) in \(table.groups.count) groups; --tensors lists each with its error)")
            var groupRows: [[String]] = []
            for g in table.groups {
                groupRows.append([g.pattern, formatShape(g.shape), g.storage, String(format2: Double(8 * g.bytes) / Double(max(g.parameters, 1))), g.count > 1 ? "×\(g.count)" : "", formatBytes(g.bytes)])
            }
            lines.append(contentsOf: alignColumns(groupRows, rightAligned: [3, 5]).map { "  " + $0 })
        }
        return lines.joined(separator: "\n")
    }

    func bpw(_ t: TensorTable.Totals) -> Double { Double(8 * t.bytes) / Double(max(t.parameters, 1)) }

    func json() -> JSONValue {
        .object(JSONObject([
            ("path", .string(file.path)), ("format", .string("plm")),
            ("version", .array([.int(file.version.major), .int(file.version.minor)])),
            ("bytes", .int(file.file.size)), ("metadata", .object(file.metadata)),
            ("total", .object(JSONObject([("tensors", .int(table.total.tensors)), ("parameters", .int(table.total.parameters)), ("bytes", .int(table.total.bytes))]))),
            ("tensors", .array(file.tensors.map { t in
                .object(JSONObject([("name", .string(t.name)), ("shape", .array(t.shape.map { .int($0) })), ("storage", .string(t.type.description)), ("bytes", .int(t.storedBytes))]))
            })),
        ]))
    }
}

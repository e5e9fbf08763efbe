import PLMCore
import PLMCheckpoint
import PLMConvert
import PLMQuant

/// The summary `plmq convert` prints when it is done.
struct ConversionReport {
    let plan: ConversionPlan
    let summary: ConversionSummary
    let output: String

    func text() -> String {
        var lines: [String] = []
        let s = summary
        lines.append("converted \(s.tensors) tensors, \(formatThousands(s.parameters)) parameters → \(output)")
        lines.append("  input   \(formatBytes(s.sourceBytes)) of tensors (\(plan.folder.weights.shards.count) file\(plan.folder.weights.shards.count == 1 ? "" : "s"))")
        lines.append("  output  \(formatBytes(s.fileBytes)) file, \(String(format2: s.bitsPerWeight)) bits per weight overall")
        for c in Component.allCases {
            guard let v = s.byComponent[c] else { continue }
            lines.append("          \(c.rawValue): \(formatBytes(v.bytes)), \(String(format2: Double(8 * v.bytes) / Double(max(v.parameters, 1)))) bits per weight")
        }
        lines.append("  time    \(String(format2: s.seconds)) s, input \(formatRate(Double(s.sourceBytes) / max(s.seconds, 1e-9))), peak RSS \(formatBytes(peakResidentBytes()))")
        if !s.errors.isEmpty {
            let sorted = s.errors.sorted { $0.relativeRMSE < $1.relativeRMSE }
            let median = sorted[sorted.count / 2].relativeRMSE
            lines.append("  weight error (relative RMSE): median \(fmt(median)), worst:")
            for e in sorted.suffix(3).reversed() { lines.append("    \(fmt(e.relativeRMSE))  \(e.name) (\(e.type))") }
        }
        return lines.joined(separator: "\n")
    }

    func fmt(_ x: Double) -> String { String(fixed: x, decimals: 4) }
}

/// `plmq convert --dry-run`: every tensor group with its storage, bits per weight, bytes and reason.
struct PlanReport {
    let plan: ConversionPlan
    let summary: ConversionSummary

    func text() -> String {
        let table = TensorTable(entries: plan.tensors.map { ($0.name, $0.shape, $0.type.description, $0.layout.totalBytes) })
        var reasons: [String: String] = [:]
        for t in plan.tensors where !t.reason.isEmpty { reasons[TensorTable.groupPattern(t.name, in: table)] = t.reason }
        var rows: [[String]] = [["tensors", "shape", "storage", "bits/w", "", "bytes", "why"]]
        for g in table.groups {
            let bpw = Double(8 * g.bytes) / Double(max(g.parameters, 1))
            rows.append([g.pattern, formatShape(g.shape), g.storage, String(format2: bpw), g.count > 1 ? "×\(g.count)" : "", formatBytes(g.bytes), reasons[g.pattern] ?? ""])
        }
        var lines = ["plan for \(plan.folder.path) (recipe \(plan.options.recipe.rawValue): \(plan.options.recipe.summary))"]
        lines.append(contentsOf: alignColumns(rows, rightAligned: [3, 5]).map { "  " + $0 })
        for s in plan.skipped { lines.append("  skipped \(s.name): \(s.reason)") }
        lines.append("")
        var storage: [[String]] = [["storage", "tensors", "parameters", "bytes", "bits/w"]]
        for (name, t) in table.byStorage.sorted(by: { $0.value.bytes > $1.value.bytes }) {
            storage.append([name, formatThousands(t.tensors), formatThousands(t.parameters), formatBytes(t.bytes), String(format2: Double(8 * t.bytes) / Double(max(t.parameters, 1)))])
        }
        lines.append(contentsOf: alignColumns(storage, rightAligned: [1, 2, 3, 4]).map { "  " + $0 })
        lines.append("")
        lines.append("output file: \(formatThousands(summary.fileBytes)) bytes (\(formatBytes(summary.fileBytes))), "
            + "\(String(format2: summary.bitsPerWeight)) bits per weight over \(formatThousands(summary.parameters)) parameters"
            + (plan.options.compress ? "; compressed sizes measured by compressing" : ""))
        return lines.joined(separator: "\n")
    }
}


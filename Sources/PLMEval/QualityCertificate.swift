import PLMCore

/// The aggregate numbers `plmq convert --eval-dataset` records in a `.plm` (metadata key
/// "quality", Formats/PLM.md): what the file cost against its fp32 reference, on which data.
public enum QualityCertificate {
    public static let metadataKey = "quality"

    /// The certificate of the first model of `report`.
    public static func json(_ report: EvalReport) -> JSONValue? {
        guard let model = report.models.first else { return nil }
        var o = JSONObject([
            ("producer", .string(report.plmqVersion)),
            ("mode", .string(report.mode)),
            ("dataset", .object(report.dataset)),
            ("reference", .object(JSONObject([("path", .string(report.reference.path)), ("sha256", .string(report.reference.sha256))]))),
        ])
        if let t = model.tokens {
            o["tokens_scored"] = .int(t.count)
            o["mean_kld"] = .double(t.meanKLD.value)
            o["mean_kld_uncertainty"] = .double(t.meanKLD.uncertainty)
            o["same_top_p"] = .double(t.sameTop.value)
            o["ln_ppl_ratio"] = .double(t.lnPPLRatio.value)
        }
        if let g = model.greedy { o["greedy_exact_match"] = .double(g.exactMatch.value) }
        if let a = model.accuracy {
            o["accuracy"] = .object(JSONObject([("samples", .int(a.total)), ("exact", .int(a.exact)), ("normalized", .int(a.normalized))]))
        }
        if let a = report.referenceAccuracy {
            o["reference_accuracy"] = .object(JSONObject([("samples", .int(a.total)), ("exact", .int(a.exact)), ("normalized", .int(a.normalized))]))
        }
        return .object(o)
    }

    /// One line for `inspect` and `verify`.
    public static func summary(_ value: JSONValue?) -> String? {
        guard let o = value?.objectValue else { return nil }
        var parts: [String] = []
        if let kl = o["mean_kld"]?.doubleValue { parts.append("mean KL \(String(fixed: kl, decimals: 6))") }
        if let top = o["same_top_p"]?.doubleValue { parts.append("same top token \(String(fixed: top * 100, decimals: 2)) %") }
        if let a = o["accuracy"]?.objectValue, let n = a["samples"]?.intValue, let e = a["exact"]?.intValue {
            var text = "accuracy \(e)/\(n)"
            if let r = o["reference_accuracy"]?.objectValue?["exact"]?.intValue { text += " (fp32 \(r)/\(n))" }
            parts.append(text)
        }
        let dataset = o["dataset"]?.objectValue
        let name = dataset?["folder"]?.stringValue ?? dataset?["text"]?.stringValue ?? "?"
        let sha = dataset?["sha256"]?.stringValue.map { " sha256 " + String($0.prefix(12)) } ?? ""
        return "quality: " + parts.joined(separator: ", ") + " on \(name)\(sha)"
    }
}

import PLMCore
import PLMQuant

extension ColumnImportance {
    /// The search weights of `tensor`, checked against its width: statistics of another width
    /// belong to another model, which is an error rather than a silent unweighted conversion.
    func checkedWeights(_ tensor: String, columns: Int) throws(ConversionError) -> [Float]? {
        guard let w = searchWeights(tensor) else { return nil }
        guard w.count == columns else {
            throw .calibration("tensor '\(tensor)' has \(columns) input columns but the statistics hold \(w.count) (from another model?)")
        }
        return w
    }

    /// Mean of the tensor's mean x² over its columns: converts the normalised weighted error back
    /// to the expected squared output error per token (the `--target-bpw` proxy).
    func activationScale(_ tensor: String) -> Double? {
        guard let m = meanSquares[tensor], !m.isEmpty else { return nil }
        var total = 0.0
        for v in m { total += Double(v) }
        return total / Double(m.count)
    }

    /// The `calibration` record of the file's metadata (Formats/PLM.md).
    func json(weightedTensors: Int) -> JSONValue {
        .object(JSONObject([
            ("kind", .string(kind)), ("source", .string(source)), ("sha256", .string(sha256)),
            ("tokens", .int(tokens)), ("items", .int(items)), ("statistic", .string("mean of x² per input column")),
            ("floor", .number(String(describing: Self.floor))), ("weighted_tensors", .int(weightedTensors)),
        ]))
    }
}

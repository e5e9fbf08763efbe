/// Calibration statistics for a conversion: per weight tensor, the mean of x² of each input
/// column over the calibration input (what the fp32 engine fed that linear map), and where they
/// came from. The scale search weighs each column's squared error by it, so the error it
/// minimises is the expected squared error of the layer's output rather than of its weights.
public struct ColumnImportance: Sendable, Equatable {
    /// Mean x² per input column, by weight tensor name ("model.language_model.layers.0.mlp.up_proj.weight").
    public let meanSquares: [String: [Float]]
    /// What was run: "text" (a text file in chunks) or "samples" (a samples folder).
    public let kind: String
    /// The file or folder name (no directories: the file records what, not where).
    public let source: String
    /// SHA-256 of the text file's bytes, or the samples folder's dataset hash (Formats/SAMPLES.md).
    public let sha256: String
    /// Language-model tokens run through the engine.
    public let tokens: Int
    /// Chunks (text) or samples run.
    public let items: Int

    public init(meanSquares: [String: [Float]], kind: String, source: String, sha256: String, tokens: Int, items: Int) {
        self.meanSquares = meanSquares
        self.kind = kind
        self.source = source
        self.sha256 = sha256
        self.tokens = tokens
        self.items = items
    }

    /// A relative floor under every column's weight: a column the calibration input never
    /// excited (mean x² = 0) still counts a little, so its weights are not left to the searches'
    /// whim when other inputs do excite it.
    public static let floor: Float = 1e-3

    /// The search weights of `tensor` (nil when calibration never ran it): mean x² divided by its
    /// mean over the columns, at least `floor`, so every weight is positive and finite and the
    /// scale of the activations does not matter; statistics that weigh every column alike give
    /// weights of exactly 1 (the unweighted search). Deterministic (a fixed summation order).
    public func searchWeights(_ tensor: String) -> [Float]? {
        guard let m = meanSquares[tensor], !m.isEmpty else { return nil }
        var total = 0.0
        for v in m { total += Double(v) }
        let mean = total / Double(m.count)
        guard mean > 0, mean.isFinite else { return [Float](repeating: 1, count: m.count) }
        return m.map { max(Float(Double($0) / mean), Self.floor) }
    }
}

import Synchronization

/// Collects, for every linear map the engine runs, the sum of x² of each input column over all
/// rows it was applied to: the calibration statistics `plmq convert --calibrate` weighs each
/// column's quantization error with (llama.cpp's imatrix gathers the same mean of x²).
///
/// Thread-safe (one lock over the table); deterministic as long as the model is driven from one
/// thread, as calibration does: every map's rows arrive in the order the forward pass computes
/// them, and each column's sum is taken in that order, in Double.
public final class ActivationObserver: Sendable {
    struct Columns {
        var sumSquares: [Double]
        var rows = 0
    }

    private let table = Mutex<[String: Columns]>([:])

    public init() {}

    /// Adds the rows of x (rows × columns) seen by the map whose weight tensor is `name`.
    func record(_ name: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int) {
        table.withLock { t in
            var c = t[name] ?? Columns(sumSquares: [Double](repeating: 0, count: columns))
            guard c.sumSquares.count == columns else { return }  // one name, one width (the engine's own maps)
            c.sumSquares.withUnsafeMutableBufferPointer { s in
                for r in 0..<rows {
                    let row = x + r * columns
                    for j in 0..<columns { s[j] += Double(row[j]) * Double(row[j]) }
                }
            }
            c.rows += rows
            t[name] = c
        }
    }

    /// Mean of x² per input column, by weight tensor name (maps that never ran are absent).
    public func meanSquares() -> [String: [Float]] {
        table.withLock { t in
            t.compactMapValues { c in c.rows > 0 ? c.sumSquares.map { Float($0 / Double(c.rows)) } : nil }
        }
    }

    /// Rows (tokens or patches) each map was applied to.
    public func rows() -> [String: Int] { table.withLock { t in t.mapValues(\.rows) } }
}

/// A linear map that reports its inputs to an observer, then computes as the map it wraps.
struct ObservedLinear: LinearMap {
    let base: any LinearMap
    let name: String
    let observer: ActivationObserver
    var inFeatures: Int { base.inFeatures }
    var outFeatures: Int { base.outFeatures }

    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        observer.record(name, x, rows: rows, columns: base.inFeatures)
        base.apply(x, rows: rows, into: y)
    }
}

/// A weight source whose linear maps (and a tied head) report their inputs to `observer`: the
/// engine's tap for calibration. Everything else is the wrapped source's.
public struct ObservingWeightSource: WeightSource {
    public let base: any WeightSource
    public let observer: ActivationObserver

    public init(base: any WeightSource, observer: ActivationObserver) {
        self.base = base
        self.observer = observer
    }

    public var sourceName: String { base.sourceName }
    public var options: EngineOptions { base.options }
    public var isReference: Bool { base.isReference }
    public func shape(of tensor: String) -> [Int]? { base.shape(of: tensor) }
    public func floats(_ tensor: String, shape: [Int]) throws(EngineError) -> [Float] { try base.floats(tensor, shape: shape) }
    public func buffer(_ tensor: String, shape: [Int]) throws(EngineError) -> FloatBuffer { try base.buffer(tensor, shape: shape) }

    public func embedding(_ tensor: String, vocab: Int, hidden: Int) throws(EngineError) -> (table: any TokenEmbedding, head: any LinearMap) {
        let e = try base.embedding(tensor, vocab: vocab, hidden: hidden)
        // A tied head's inputs belong to the embedding tensor, which is what gets quantized.
        return (e.table, ObservedLinear(base: e.head, name: tensor, observer: observer))
    }

    public func linear(weight: String, bias: String?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> any LinearMap {
        ObservedLinear(base: try base.linear(weight: weight, bias: bias, outFeatures: outFeatures, inFeatures: inFeatures),
                       name: weight, observer: observer)
    }
}

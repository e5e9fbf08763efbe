import CPLMKernels

/// The conversion's fast path: the scale searches of `RowQuantizer` in C
/// (Sources/CPLMKernels/qsearch.c, AVX2 in qsearch_avx2.c), writing the same bytes.
/// `RowQuantizer` stays the reference the tests compare every path with.
public struct KernelQuantizer: Sendable {
    /// A layout the C searches do not take (checked once, when the quantizer is made).
    public struct Unsupported: Error, CustomStringConvertible {
        public let type: StorageType
        public let columns: Int
        public var description: String { "the C scale search takes no \(type) matrix with \(columns) columns" }
    }

    /// The C searches' own limits (qsearch.c returns −1 outside them), checked up front so no
    /// call can fail later.
    static let groupSizes = stride(from: 8, through: 256, by: 8)

    public let layout: StorageLayout
    /// The C dispatcher's code (`PLM_IMPL_*`); the best this CPU runs unless a test asks for less.
    public let implementation: Int32
    let kind: Int32
    let group: Int32

    public init(layout: StorageLayout, implementation: Int32 = plm_best_impl()) throws(Unsupported) {
        guard let kind = layout.type.kernelKind, let g = layout.type.groupSize, Self.groupSizes.contains(g), layout.columns >= 1,
              layout.rows >= 0 else { throw Unsupported(type: layout.type, columns: layout.columns) }
        self.layout = layout
        self.implementation = implementation
        group = Int32(g)
        self.kind = kind
    }

    /// Per-element weights of the squared error the searches minimise: none (all alike), one row
    /// shared by every row (calibration's column importance), or one weight per element.
    public enum Weights {
        case uniform
        case perColumn(UnsafePointer<Float>)
        case perElement(UnsafePointer<Float>)
    }

    func weightPointer(_ weights: Weights) -> (UnsafePointer<Float>?, Int) {
        switch weights {
        case .uniform: return (nil, 0)
        case .perColumn(let p): return (p, 0)
        case .perElement(let p): return (p, layout.columns)
        }
    }

    /// As `RowQuantizer.quantize`: `rows` consecutive rows of `w` into the parts, which point at
    /// the first of these rows.
    public func quantize(_ w: UnsafePointer<Float>, rows: Int, into parts: RowQuantizer.RowParts, weights: Weights = .uniform) {
        run(w, rows: rows, into: parts, weights: weights, sums: nil)
    }

    /// `quantize`, returning the error sums of `errorSums` for these rows, computed group by
    /// group as the groups are stored (the same doubles, without a second pass).
    public func quantizeMeasuringError(_ w: UnsafePointer<Float>, rows: Int, into parts: RowQuantizer.RowParts,
                                       weights: Weights = .uniform) -> (sse: Double, norm: Double, weighted: Double) {
        var sums: (Double, Double, Double) = (0, 0, 0)
        withUnsafeMutablePointer(to: &sums) { s in
            s.withMemoryRebound(to: Double.self, capacity: 3) { run(w, rows: rows, into: parts, weights: weights, sums: $0) }
        }
        return sums
    }

    private func run(_ w: UnsafePointer<Float>, rows: Int, into parts: RowQuantizer.RowParts, weights: Weights,
                     sums: UnsafeMutablePointer<Double>?) {
        let (omega, stride) = weightPointer(weights)
        let status = plm_quantize_rows(kind, group, w, omega, Int64(stride), Int64(rows), Int64(layout.columns),
                                       parts.data.assumingMemoryBound(to: UInt8.self),
                                       parts.scales?.assumingMemoryBound(to: UInt8.self),
                                       parts.mins?.assumingMemoryBound(to: UInt8.self), sums, implementation)
        assert(status == 0, "plm_quantize_rows refused a layout init accepted")  // init checks its limits
    }

    /// The error sums of rows quantized by `quantize`: (Σ(w − ŵ)², Σw², Σω(w − ŵ)²), in
    /// doubles in element order, over the elements where w and ŵ are finite. `scratch` holds a row.
    public func errorSums(_ w: UnsafePointer<Float>, rows: Int, parts: RowQuantizer.RowParts, weights: Weights = .uniform,
                          scratch: UnsafeMutablePointer<Float>) -> (sse: Double, norm: Double, weighted: Double) {
        let (omega, stride) = weightPointer(weights)
        var sums: (Double, Double, Double) = (0, 0, 0)
        let status = withUnsafeMutablePointer(to: &sums) { s in
            s.withMemoryRebound(to: Double.self, capacity: 3) { d in
                plm_quantization_error(kind, group, w, omega, Int64(stride), Int64(rows), Int64(layout.columns),
                                       parts.data.assumingMemoryBound(to: UInt8.self),
                                       parts.scales?.assumingMemoryBound(to: UInt8.self),
                                       parts.mins?.assumingMemoryBound(to: UInt8.self), scratch, d)
            }
        }
        assert(status == 0, "plm_quantization_error refused a layout init accepted")
        return sums
    }
}

extension StorageType {
    /// The C kernels' code for this type (`PLM_Q8_SYM` …, CPLMKernels.h), nil when not quantized:
    /// the one mapping the converter, the engine and the tests use.
    public var kernelKind: Int32? {
        switch self {
        case .int8(.symmetric, _): return Int32(PLM_Q8_SYM)
        case .int8(.asymmetric, _): return Int32(PLM_Q8_ASYM)
        case .int4(.symmetric, _, _): return Int32(PLM_Q4_SYM)
        case .int4(.asymmetric, _, .f16): return Int32(PLM_Q4_ASYM_F16)
        case .int4(.asymmetric, _, .k6): return Int32(PLM_Q4_ASYM_K6)
        default: return nil
        }
    }
}

import PLMCore
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import PLMCheckpoint
import PLMFormat
import PLMQuant

/// The quantized parts of one tensor, owned until written (no copy on the way to the file).
public final class QuantizedParts {
    let data: UnsafeMutableRawBufferPointer
    let scales: UnsafeMutableRawBufferPointer
    let mins: UnsafeMutableRawBufferPointer
    let layout: StorageLayout

    init(layout: StorageLayout) {
        self.layout = layout
        data = .allocate(byteCount: max(layout.dataBytes, 1), alignment: 64)
        scales = .allocate(byteCount: max(layout.scaleBytes, 1), alignment: 64)
        mins = .allocate(byteCount: max(layout.minBytes, 1), alignment: 64)
    }

    deinit { data.deallocate(); scales.deallocate(); mins.deallocate() }

    /// The parts in `layout.parts` order.
    public var buffers: [UnsafeRawBufferPointer] {
        var out = [UnsafeRawBufferPointer(rebasing: data[0..<layout.dataBytes])]
        if layout.scaleBytes > 0 { out.append(UnsafeRawBufferPointer(rebasing: scales[0..<layout.scaleBytes])) }
        if layout.minBytes > 0 { out.append(UnsafeRawBufferPointer(rebasing: mins[0..<layout.minBytes])) }
        return out
    }
}

/// One tensor of the output and why it is stored the way it is.
public struct PlannedTensor: Sendable {
    public let info: TensorInfo
    public let type: StorageType
    /// Empty for the default choice, otherwise why this tensor differs.
    public let reason: String
    public var name: String { info.name }
    public var shape: [Int] { info.shape }
    public var layout: StorageLayout { StorageLayout(shape: info.shape, type: type) }
}

/// The full plan of a conversion: every tensor in output order with its storage.
public struct ConversionPlan: Sendable {
    public let folder: CheckpointFolder
    public let options: ConversionOptions
    public let tensors: [PlannedTensor]
    /// Stored tensors the forward pass never reads (timm's attention-pool head, a tied lm_head).
    public let skipped: [(name: String, reason: String)]

    /// The allocation of a `--target-bpw` run (nil otherwise): which tensors it raised to int8.
    public let allocation: BitAllocation?

    public init(folder: CheckpointFolder, options: ConversionOptions, allocation: BitAllocation? = nil) throws(ConversionError) {
        do { try folder.requireConsistentLayout() } catch { throw .checkpoint(error) }
        self.folder = folder
        self.options = options
        self.allocation = allocation
        var policy = Policy(options: options, overrides: allocation?.overrides ?? [:])
        var planned: [PlannedTensor] = []
        // Module order (vision tower, projector, language model), as the config lists them.
        for expected in folder.config.expectedTensors() {
            guard let info = folder.weights.info(expected.name) else { continue }
            let (type, reason) = try policy.decide(name: info.name, shape: info.shape, source: info.dtype)
            planned.append(PlannedTensor(info: info, type: type, reason: reason))
        }
        try policy.checkAllRulesUsed()
        tensors = planned
        skipped = folder.layoutIssues.compactMap { issue in
            if case .unused(let name, let reason) = issue { return (name, reason) }
            return nil
        }
    }

    public var sourceBytes: Int { tensors.reduce(0) { $0 + $1.info.byteCount } }
    public var parameters: Int { tensors.reduce(0) { $0 + $1.info.elementCount } }
}

/// Progress after each tensor.
public struct ConversionProgress: Sendable {
    public let tensorsDone: Int
    public let tensorCount: Int
    public let sourceBytesDone: Int
    public let sourceBytes: Int
    public let seconds: Double
    public let current: String
}

public struct ConversionSummary: Sendable {
    public let fileBytes: Int
    public let tensors: Int
    public let parameters: Int
    public let sourceBytes: Int
    public let seconds: Double
    /// Stored bytes (all parts) and parameters per component.
    public let byComponent: [Component: (bytes: Int, parameters: Int)]
    /// Relative RMSE ‖W − Ŵ‖ / ‖W‖ of each quantized tensor, in output order.
    public let errors: [(name: String, type: StorageType, relativeRMSE: Double)]

    public var bitsPerWeight: Double { Double(8 * byComponent.values.reduce(0) { $0 + $1.bytes }) / Double(max(parameters, 1)) }
}

/// Streams a checkpoint into a `.plm` file: one tensor at a time from the memory map, its rows
/// quantized on all threads, written in order. Peak memory is the quantized size of the largest
/// tensor plus per-thread scratch, whatever the model's size.
public struct Converter {
    public let plan: ConversionPlan
    public let producer: String

    public init(plan: ConversionPlan, producer: String) {
        self.plan = plan
        self.producer = producer
    }

    /// Elements quantized per work item; fixed, so results do not depend on the thread count.
    static let chunkElements = 1 << 16

    public func run(output: String, dryRun: Bool, started: (PLMWriter) -> Void = { _ in },
                    progress: (ConversionProgress) -> Void = { _ in }) throws(ConversionError) -> ConversionSummary {
        let clock = ContinuousClock.now
        func elapsed() -> Double { let d = ContinuousClock.now - clock; return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        let folder = plan.folder
        let writer: PLMWriter
        // Every file the conversion reads is protected: `convert DIR DIR/model.safetensors` must
        // not replace its own input.
        let inputs = folder.sideFiles.map(\.path) + folder.weights.shards.map(\.path) + (folder.weights.indexPath.map { [$0] } ?? [])
        do { writer = try PLMWriter(path: output, dryRun: dryRun, protecting: inputs) } catch { throw .output(error) }
        started(writer)

        var sources: [JSONValue] = []
        do {
            for (name, path) in folder.sideFiles {
                let bytes = try FileSystem.readBytes(path)
                try writer.addFile(name: name, contents: bytes)
                sources.append(sourceRecord(name: name, file: try MappedFile(path: path)))
            }
        } catch { throw .output(error) }
        for shard in folder.weights.shards {
            sources.append(sourceRecord(name: FileSystem.fileName(shard.path), file: shard.file))
        }

        var errors: [(String, StorageType, Double)] = []
        // Every quantized tensor's error goes into the header with a fixed width, so a dry run
        // (which does not quantize) writes a header of exactly the same length.
        var errorEntries: [(String, JSONValue)] = []
        var byComponent: [Component: (bytes: Int, parameters: Int)] = [:]
        var done = 0, calibrated = 0
        for (i, t) in plan.tensors.enumerated() {
            let view: TensorView
            do { view = try folder.weights.view(t.name) } catch { throw .checkpoint(error) }
            let parts: [(String, PartRecord)]
            do {
                if t.type.isQuantized {
                    if dryRun && !plan.options.compress {
                        errorEntries.append((t.name, .number(Self.format(0))))
                        var reserved: [(String, PartRecord)] = []
                        for spec in t.layout.parts { reserved.append((spec.name, try writer.reservePart(length: spec.bytes))) }
                        parts = reserved
                    } else {
                        let importance = try plan.options.calibration.flatMap { c throws(ConversionError) in try c.checkedWeights(t.name, columns: t.layout.columns) }
                        if importance != nil { calibrated += 1 }
                        let q = try Self.quantize(view, layout: t.layout, threads: plan.options.threads, importance: importance,
                                                  allowNonfinite: plan.options.allowNonfinite)
                        errors.append((t.name, t.type, q.relativeRMSE))
                        errorEntries.append((t.name, .number(Self.format(q.relativeRMSE))))
                        var written: [(String, PartRecord)] = []
                        for (spec, bytes) in zip(t.layout.parts, q.parts.buffers) {
                            written.append((spec.name, try writer.writePart(bytes, compressLevel: plan.options.compress ? 3 : nil)))
                        }
                        parts = written
                    }
                } else if dryRun && !plan.options.compress {
                    parts = [("data", try writer.reservePart(length: t.layout.dataBytes))]
                } else if Self.sameEncoding(view.dtype, t.type) {
                    try Self.checkFinite(view, allow: plan.options.allowNonfinite)
                    parts = [("data", try writer.writePart(view.bytes, compressLevel: plan.options.compress ? 3 : nil))]
                } else {
                    try Self.checkFinite(view, allow: plan.options.allowNonfinite)
                    parts = [("data", try write(Self.narrow(view, to: t.type), writer))]
                }
            } catch let e as FileAccessError {
                throw .output(e)
            } catch let e as ConversionError {
                throw e
            } catch {
                throw .unsupportedTensor(name: t.name, detail: "\(error)")
            }
            view.file.dropPages(view.bytes)
            writer.addTensor(name: t.name, shape: t.shape, type: t.type, parts: parts)
            let c = Component.of(t.name)
            let stored = parts.reduce(0) { $0 + $1.1.length }
            byComponent[c] = ((byComponent[c]?.bytes ?? 0) + stored, (byComponent[c]?.parameters ?? 0) + t.info.elementCount)
            done += t.info.byteCount
            progress(ConversionProgress(tensorsDone: i + 1, tensorCount: plan.tensors.count, sourceBytesDone: done,
                                        sourceBytes: plan.sourceBytes, seconds: elapsed(), current: t.name))
        }

        var metadata = JSONObject([
            ("plmq_version", .string(producer)),
            ("recipe", .object(JSONObject([
                ("name", .string(plan.options.recipe.rawValue)), ("summary", .string(plan.options.recipe.summary)),
                ("linear", .string(plan.options.linearType.description)), ("embedding", .string(plan.options.embeddingType.description)),
                ("exceptions", .array(plan.tensors.filter { !$0.reason.isEmpty }.map {
                    .object(JSONObject([("tensor", .string($0.name)), ("storage", .string($0.type.description)), ("reason", .string($0.reason))]))
                })),
            ]))),
            ("options", plan.options.json),
            // The folder as an absolute path: `plmq eval` finds its fp32 reference there, and the
            // files' SHA-256s tell it whether the folder still holds the same checkpoint.
            ("source", .object(JSONObject([("folder", .string(Self.absolutePath(folder.path))), ("files", .array(sources))]))),
            ("skipped", .array(plan.skipped.map { .object(JSONObject([("tensor", .string($0.name)), ("reason", .string($0.reason))])) })),
            ("quantization_error", .object(JSONObject(errorEntries))),
        ])
        // Only with the options that use them, so a plain conversion's header is unchanged.
        if let c = plan.options.calibration {
            // A dry run quantizes nothing; it records the tensors calibration would weigh.
            let weighed = dryRun && !plan.options.compress
                ? plan.tensors.filter { $0.type.isQuantized && c.meanSquares[$0.name] != nil }.count : calibrated
            metadata["calibration"] = c.json(weightedTensors: weighed)
        }
        if let a = plan.allocation { metadata["target_bpw"] = a.json }
        let size: Int
        do { size = try writer.finish(metadata: metadata) } catch { throw .output(error) }
        return ConversionSummary(fileBytes: size, tensors: plan.tensors.count, parameters: plan.parameters, sourceBytes: plan.sourceBytes,
                                 seconds: elapsed(), byComponent: byComponent, errors: errors)
    }

    static func absolutePath(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    private func sourceRecord(name: String, file: MappedFile) -> JSONValue {
        .object(JSONObject([("name", .string(name)), ("bytes", .int(file.size)), ("sha256", .string(SHA256.hex(of: file)))]))
    }

    private func write(_ bytes: [UInt8], _ writer: PLMWriter) throws(FileAccessError) -> PartRecord {
        var result: Result<PartRecord, FileAccessError>!
        let level: Int32? = plan.options.compress ? 3 : nil
        bytes.withUnsafeBytes { raw in
            do throws(FileAccessError) { result = .success(try writer.writePart(raw, compressLevel: level)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    /// The row-major index of element `flat` of a tensor of `shape`.
    static func index(_ flat: Int, in shape: [Int]) -> [Int] {
        var rest = flat
        var out = [Int](repeating: 0, count: shape.count)
        for d in shape.indices.reversed() where shape[d] > 0 {
            out[d] = rest % shape[d]
            rest /= shape[d]
        }
        return out
    }

    /// The first NaN or ±Inf of an F32, F16 or BF16 tensor (an all-ones exponent), read from the
    /// stored bits without widening.
    public static func firstNonFinite(_ view: TensorView) -> (index: Int, value: Float)? {
        let b = view.bytes, n = view.elementCount
        switch view.dtype {
        case .f32:
            for i in 0..<n {
                let bits = b.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                if bits & 0x7F80_0000 == 0x7F80_0000 { return (i, Float(bitPattern: bits)) }
            }
        case .bf16:
            for i in 0..<n {
                let bits = b.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                if bits & 0x7F80 == 0x7F80 { return (i, Float(bitPattern: UInt32(bits) << 16)) }
            }
        case .f16:
            for i in 0..<n {
                let bits = b.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                if bits & 0x7C00 == 0x7C00 { return (i, Float(Float16(bitPattern: bits))) }
            }
        default:
            break
        }
        return nil
    }

    /// Refuses a tensor with a NaN or ±Inf unless the options allow them.
    static func checkFinite(_ view: TensorView, allow: Bool) throws(ConversionError) {
        guard !allow, let bad = firstNonFinite(view) else { return }
        throw .nonFinite(file: view.file.path, tensor: view.name, index: index(bad.index, in: view.shape), value: bad.value)
    }

    /// Quantizes a tensor on `threads` workers; each work item is a fixed block of rows.
    /// A tensor whose bytes cannot be read as floats (a dtype the plan should have refused) is
    /// an error, not zeros. A NaN or ±Inf weight is an error naming its index unless
    /// `allowNonfinite`; then its group is stored as NaN (`RowQuantizer.nonFiniteMarker`) and the
    /// relative RMSE is taken over the weights that reconstruct finite.
    public static func quantize(_ view: TensorView, layout: StorageLayout, threads: Int,
                                allowNonfinite: Bool = false) throws(ConversionError) -> (parts: QuantizedParts, relativeRMSE: Double) {
        let q = try quantize(view, layout: layout, threads: threads, importance: nil, allowNonfinite: allowNonfinite)
        return (q.parts, q.relativeRMSE)
    }

    /// A quantized tensor with its errors.
    public struct QuantizedTensor {
        public let parts: QuantizedParts
        /// ‖W − Ŵ‖ / ‖W‖.
        public let relativeRMSE: Double
        /// Σ over rows and columns of ω_j (w − ŵ)², with ω the `importance` given (1 without).
        public let weightedSSE: Double
    }

    /// As `quantize(_:layout:threads:allowNonfinite:)`, with `importance` (one weight per column)
    /// weighing each column's error in the scale searches (calibration).
    public static func quantize(_ view: TensorView, layout: StorageLayout, threads: Int, importance: [Float]?,
                                allowNonfinite: Bool = false) throws(ConversionError) -> QuantizedTensor {
        let rowsPerChunk = max(1, Self.chunkElements / max(layout.columns, 1))
        let chunks = (layout.rows + rowsPerChunk - 1) / rowsPerChunk
        let parts = QuantizedParts(layout: layout)
        let (data, scales, mins) = (parts.data, parts.scales, parts.mins)
        let sums = UnsafeMutableBufferPointer<(Double, Double, Double)>.allocate(capacity: chunks)
        let failures = UnsafeMutableBufferPointer<ConversionError?>.allocate(capacity: chunks)
        failures.initialize(repeating: nil)
        defer { sums.deallocate(); failures.deallocate() }
        // The C scale searches (the same bytes as RowQuantizer, the reference the tests hold them to).
        let quantizer = KernelQuantizer(layout: layout)
        let threads = max(1, threads)
        let columns = layout.columns
        // One weight per column or none (the converter checks the count against the tensor first).
        let importance = importance?.count == columns ? importance : nil
        // The buffers are disjoint per chunk, so workers never write the same bytes.
        let shared = WorkerShared((data, scales, mins, sums, failures))
        DispatchQueue.concurrentPerform(iterations: min(threads, chunks)) { worker in
            let (d, s, m, partial, failed) = shared.value
            var rowsIn = [Float](repeating: 0, count: rowsPerChunk * columns)
            var scratch = [Float](repeating: 0, count: columns)
            var chunk = worker
            while chunk < chunks {
                let r0 = chunk * rowsPerChunk, n = min(rowsPerChunk, layout.rows - r0)
                let elements = (r0 * columns)..<((r0 + n) * columns)
                rowsIn.withUnsafeMutableBufferPointer { buf in
                    do throws(SafetensorsError) { try view.copyFloats(elements: elements, into: buf) } catch {
                        failed[chunk] = .checkpoint(.safetensors(error))
                    }
                }
                if !allowNonfinite, let k = rowsIn[0..<elements.count].firstIndex(where: { !$0.isFinite }) {
                    // Chunks are contiguous, so the lowest failing chunk holds the first bad element.
                    failed[chunk] = .nonFinite(file: view.file.path, tensor: view.name,
                                               index: Self.index(elements.lowerBound + k, in: view.shape), value: rowsIn[k])
                    partial[chunk] = (0, 0, 0)
                    chunk += min(threads, chunks)
                    continue
                }
                let parts = RowQuantizer.RowParts(
                    data: d.baseAddress! + r0 * layout.dataBytesPerRow,
                    scales: layout.scaleBytes > 0 ? s.baseAddress! + r0 * layout.scaleBytesPerRow : nil,
                    mins: layout.minBytes > 0 ? m.baseAddress! + r0 * layout.minBytesPerRow : nil)
                // Sums per chunk in element order, then over chunks in order (below): the same
                // doubles on any number of threads.
                rowsIn.withUnsafeBufferPointer { w in
                    scratch.withUnsafeMutableBufferPointer { tmp in
                        if let importance {
                            importance.withUnsafeBufferPointer { omega in
                                let weights = KernelQuantizer.Weights.perColumn(omega.baseAddress!)
                                quantizer.quantize(w.baseAddress!, rows: n, into: parts, weights: weights)
                                let e = quantizer.errorSums(w.baseAddress!, rows: n, parts: parts, weights: weights, scratch: tmp.baseAddress!)
                                partial[chunk] = (e.sse, e.norm, e.weighted)
                            }
                        } else {
                            quantizer.quantize(w.baseAddress!, rows: n, into: parts)
                            let e = quantizer.errorSums(w.baseAddress!, rows: n, parts: parts, scratch: tmp.baseAddress!)
                            partial[chunk] = (e.sse, e.norm, e.weighted)
                        }
                    }
                }
                let bytes = view.bytes
                let width = bytes.count / max(view.elementCount, 1)
                view.file.dropPages(UnsafeRawBufferPointer(rebasing: bytes[(elements.lowerBound * width)..<(elements.upperBound * width)]))
                chunk += min(threads, chunks)
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        var sse = 0.0, norm = 0.0, weighted = 0.0
        for c in 0..<chunks { sse += sums[c].0; norm += sums[c].1; weighted += sums[c].2 }  // fixed order: deterministic
        return QuantizedTensor(parts: parts, relativeRMSE: norm > 0 ? (sse / norm).squareRoot() : 0, weightedSSE: weighted)
    }

    static func sameEncoding(_ dtype: TensorDType, _ type: StorageType) -> Bool {
        (dtype == .f32 && type == .f32) || (dtype == .f16 && type == .f16) || (dtype == .bf16 && type == .bf16)
    }

    /// Converts an exact tensor to another float encoding (round to nearest even).
    static func narrow(_ view: TensorView, to type: StorageType) throws(ConversionError) -> [UInt8] {
        let floats: [Float]
        do { floats = try view.floats() } catch { throw .checkpoint(.safetensors(error)) }
        switch type {
        case .f32: return floats.withUnsafeBytes { Array($0) }
        case .f16: return floats.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
        case .bf16: return floats.map { bf16Bits($0) }.withUnsafeBytes { Array($0) }
        default: throw .unsupportedTensor(name: view.name, detail: "\(type) is not an exact float type")
        }
    }

    static func bf16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }

    /// Six significant digits in a fixed width ("7.09870e-02"), so the header length does not
    /// depend on the values.
    public static func format(_ x: Double) -> String {
        guard x > 0, x.isFinite else { return "0.00000e+00" }
        var exponent = 0
        var m = x
        while m < 1 { m *= 10; exponent -= 1 }
        while m >= 10 { m /= 10; exponent += 1 }
        var digits = Int((m * 100_000).rounded())
        if digits >= 1_000_000 { digits /= 10; exponent += 1 }
        let e = abs(exponent)
        return "\(digits / 100_000).\(String(digits % 100_000).leftPadded(5))e\(exponent < 0 ? "-" : "+")\(e < 10 ? "0" : "")\(e)"
    }
}

/// Buffers handed to concurrent workers that each write only their own disjoint part of them
/// (the quantization chunks): the disjointness is what makes the sharing safe.
private struct WorkerShared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

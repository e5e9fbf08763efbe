import PLMCore
import Dispatch
import Synchronization
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

        // The shards' SHA-256s (seconds of CPU for a 1B checkpoint) on their own thread, awaited
        // before the header is written. Started first, so that they run beside the side files'
        // zstd (1.2 s for Llama 3's tokenizer.json at level 17, on this thread) instead of beside the
        // quantization, which keeps both cores busy by itself.
        let shardRecords = BackgroundResult(default: [JSONValue]()) {
            folder.weights.shards.map { Self.sourceRecord(name: FileSystem.fileName($0.path), file: $0.file) }
        }
        var sources: [JSONValue] = []
        do {
            for (name, path) in folder.sideFiles {
                let bytes = try FileSystem.readBytes(path)
                try writer.addFile(name: name, contents: bytes)
                sources.append(Self.sourceRecord(name: name, file: try MappedFile(path: path)))
            }
        } catch { throw .output(error) }
        // Each tensor is written (and its parts hashed) on another thread while the next one is
        // quantized; at most one tensor waits, so memory stays at two tensors' quantized size.
        let output = WriteBehind()
        defer { output.waitUntilIdle() }  // also on errors: no write outlives the run

        var errors: [(String, StorageType, Double)] = []
        // Every quantized tensor's error goes into the header with a fixed width, so a dry run
        // (which does not quantize) writes a header of exactly the same length.
        var errorEntries: [(String, JSONValue)] = []
        var done = 0, calibrated = 0
        var byComponent: [Component: (bytes: Int, parameters: Int)] = [:]
        for (i, t) in plan.tensors.enumerated() {
            let view: TensorView
            do { view = try folder.weights.view(t.name) } catch { throw .checkpoint(error) }
            let level: Int32? = plan.options.compress ? 3 : nil
            let payload: Payload
            if t.type.isQuantized {
                if dryRun && !plan.options.compress {
                    errorEntries.append((t.name, .number(Self.format(0))))
                    payload = .reserve(t.layout.parts.map(\.bytes))
                } else {
                    let importance = try plan.options.calibration.flatMap { c throws(ConversionError) in try c.checkedWeights(t.name, columns: t.layout.columns) }
                    if importance != nil { calibrated += 1 }
                    let q = try Self.quantize(view, layout: t.layout, threads: plan.options.threads, importance: importance,
                                              allowNonfinite: plan.options.allowNonfinite)
                    errors.append((t.name, t.type, q.relativeRMSE))
                    errorEntries.append((t.name, .number(Self.format(q.relativeRMSE))))
                    payload = .quantized(q.parts)
                }
            } else if dryRun && !plan.options.compress {
                payload = .reserve([t.layout.dataBytes])
            } else if Self.sameEncoding(view.dtype, t.type) {
                try Self.checkFinite(view, allow: plan.options.allowNonfinite)
                payload = .mapped
            } else {
                try Self.checkFinite(view, allow: plan.options.allowNonfinite)
                payload = .owned(try Self.narrow(view, to: t.type))
            }
            let names = t.layout.parts.map(\.name)
            let component = Component.of(t.name), parameters = t.info.elementCount
            try output.submit { () throws(FileAccessError) in
                var parts: [(String, PartRecord)] = []
                switch payload {
                case .reserve(let lengths):
                    for (name, length) in zip(names, lengths) { parts.append((name, try writer.reservePart(length: length))) }
                case .quantized(let q):
                    for (name, bytes) in zip(names, q.buffers) { parts.append((name, try writer.writePart(bytes, compressLevel: level))) }
                case .mapped:
                    parts.append(("data", try writer.writePart(view.bytes, compressLevel: level)))
                case .owned(let bytes):
                    var result: Result<PartRecord, FileAccessError>!
                    bytes.withUnsafeBytes { raw in
                        do throws(FileAccessError) { result = .success(try writer.writePart(raw, compressLevel: level)) } catch { result = .failure(error) }
                    }
                    parts.append(("data", try result.get()))
                }
                view.file.dropPages(view.bytes)
                writer.addTensor(name: t.name, shape: t.shape, type: t.type, parts: parts)
                output.stored[component] = ((output.stored[component]?.bytes ?? 0) + parts.reduce(0) { $0 + $1.1.length },
                                            (output.stored[component]?.parameters ?? 0) + parameters)
            }
            done += t.info.byteCount
            progress(ConversionProgress(tensorsDone: i + 1, tensorCount: plan.tensors.count, sourceBytesDone: done,
                                        sourceBytes: plan.sourceBytes, seconds: elapsed(), current: t.name))
        }
        try output.finish()
        byComponent = output.stored
        sources.append(contentsOf: shardRecords.value())

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

    private static func sourceRecord(name: String, file: MappedFile) -> JSONValue {
        .object(JSONObject([("name", .string(name)), ("bytes", .int(file.size)), ("sha256", .string(SHA256.hex(of: file)))]))
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
        let quantizer: KernelQuantizer
        do { quantizer = try KernelQuantizer(layout: layout) } catch { throw .unsupportedTensor(name: view.name, detail: error.description) }
        let threads = max(1, threads)
        let columns = layout.columns
        // One weight per column or none (the converter checks the count against the tensor first).
        let importance = importance?.count == columns ? importance : nil
        // The buffers are disjoint per chunk, so workers never write the same bytes.
        let shared = WorkerShared((data, scales, mins, sums, failures))
        // Chunks are handed out one at a time, so a worker that shares its core with the
        // writer or the hashing thread takes fewer of them instead of holding up the tensor.
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: min(threads, chunks)) { _ in
            let (d, s, m, partial, failed) = shared.value
            var rowsIn = [Float](repeating: 0, count: rowsPerChunk * columns)
            while true {
                let chunk = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard chunk < chunks else { break }
                let r0 = chunk * rowsPerChunk, n = min(rowsPerChunk, layout.rows - r0)
                let elements = (r0 * columns)..<((r0 + n) * columns)
                rowsIn.withUnsafeMutableBufferPointer { buf in
                    do throws(SafetensorsError) { try view.copyFloats(elements: elements, into: buf) } catch {
                        failed[chunk] = .checkpoint(.safetensors(error))
                    }
                }
                if !allowNonfinite, Self.hasNonFinite(rowsIn, count: elements.count),
                   let k = rowsIn[0..<elements.count].firstIndex(where: { !$0.isFinite }) {
                    // Chunks are contiguous, so the lowest failing chunk holds the first bad element.
                    failed[chunk] = .nonFinite(file: view.file.path, tensor: view.name,
                                               index: Self.index(elements.lowerBound + k, in: view.shape), value: rowsIn[k])
                    partial[chunk] = (0, 0, 0)
                    continue
                }
                let parts = RowQuantizer.RowParts(
                    data: d.baseAddress! + r0 * layout.dataBytesPerRow,
                    scales: layout.scaleBytes > 0 ? s.baseAddress! + r0 * layout.scaleBytesPerRow : nil,
                    mins: layout.minBytes > 0 ? m.baseAddress! + r0 * layout.minBytesPerRow : nil)
                // Sums per chunk in element order, then over chunks in order (below): the same
                // doubles on any number of threads.
                rowsIn.withUnsafeBufferPointer { w in
                    if let importance {
                        importance.withUnsafeBufferPointer { omega in
                            let e = quantizer.quantizeMeasuringError(w.baseAddress!, rows: n, into: parts, weights: .perColumn(omega.baseAddress!))
                            partial[chunk] = (e.sse, e.norm, e.weighted)
                        }
                    } else {
                        let e = quantizer.quantizeMeasuringError(w.baseAddress!, rows: n, into: parts)
                        partial[chunk] = (e.sse, e.norm, e.weighted)
                    }
                }
                // The source pages of finished chunks leave the resident set 16 chunks (2 MB of
                // bf16) at a time, 16 chunks behind the newest: each call interrupts the other
                // cores to flush their TLBs, about 2 % of a convert's samples when it ran per
                // chunk. A worker still reading a released page only maps it again from the
                // page cache. The rest goes after the loop.
                if chunk % Self.dropBatch == Self.dropBatch - 1, chunk >= 2 * Self.dropBatch - 1 {
                    let first = (chunk + 1 - 2 * Self.dropBatch) * rowsPerChunk * columns
                    Self.dropSource(view, elements: first..<(first + Self.dropBatch * rowsPerChunk * columns))
                }
            }
        }
        Self.dropSource(view, elements: 0..<view.elementCount)
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        var sse = 0.0, norm = 0.0, weighted = 0.0
        for c in 0..<chunks { sse += sums[c].0; norm += sums[c].1; weighted += sums[c].2 }  // fixed order: deterministic
        return QuantizedTensor(parts: parts, relativeRMSE: norm > 0 ? (sse / norm).squareRoot() : 0, weightedSSE: weighted)
    }

    /// Chunks per release of source pages during `quantize`.
    static let dropBatch = 16

    /// Releases the mapped source pages of `elements` from the resident set (they stay in the
    /// page cache).
    static func dropSource(_ view: TensorView, elements: Range<Int>) {
        let bytes = view.bytes
        let width = bytes.count / max(view.elementCount, 1)
        let upper = min(elements.upperBound, view.elementCount)
        guard elements.lowerBound < upper else { return }
        view.file.dropPages(UnsafeRawBufferPointer(rebasing: bytes[(elements.lowerBound * width)..<(upper * width)]))
    }

    /// Whether the first `count` values hold a NaN or ±Inf: an all-ones exponent plus one
    /// carries into the sign bit, so the test is branch-free and the loop vectorizes (the search
    /// for the index runs only when there is one).
    static func hasNonFinite(_ x: [Float], count: Int) -> Bool {
        x.withUnsafeBufferPointer { p in
            var carry: UInt32 = 0
            for v in p[0..<min(count, p.count)] { carry |= (v.bitPattern & 0x7F80_0000) &+ 0x0080_0000 }
            return carry & 0x8000_0000 != 0
        }
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

/// What one tensor hands to the writer thread.
private enum Payload {
    /// A dry run's part lengths.
    case reserve([Int])
    case quantized(QuantizedParts)
    /// The source bytes as they are (same encoding).
    case mapped
    case owned([UInt8])
}

/// Writes tensors in order on one background thread, one waiting at most. The writer's state
/// (and `stored`) is touched only by that thread until `finish` or `waitUntilIdle` returns.
private final class WriteBehind: @unchecked Sendable {
    private let queue = DispatchQueue(label: "plmq.convert.write")
    private let slot = DispatchSemaphore(value: 1)
    private var failure: FileAccessError?
    /// Stored bytes and parameters per component, kept by the jobs.
    var stored: [Component: (bytes: Int, parameters: Int)] = [:]

    /// Queues a job after the previous one has finished (so at most one waits); rethrows a
    /// failed earlier job's error instead of queueing more.
    func submit(_ job: @escaping () throws(FileAccessError) -> Void) throws(ConversionError) {
        slot.wait()
        if let failure { slot.signal(); throw .output(failure) }
        let box = WorkerShared(job)
        queue.async {
            defer { self.slot.signal() }
            do throws(FileAccessError) { try box.value() } catch { self.failure = error }
        }
    }

    /// Waits for the queued jobs; throws the first failure.
    func finish() throws(ConversionError) {
        waitUntilIdle()
        if let failure { throw .output(failure) }
    }

    func waitUntilIdle() { queue.sync {} }
}

/// A value computed on its own thread; `value()` waits for it.
private final class BackgroundResult<Value>: @unchecked Sendable {
    private var result: Value
    private let done = DispatchSemaphore(value: 0)

    init(default initial: Value, _ work: @escaping () -> Value) {
        result = initial
        let box = WorkerShared(work)
        DispatchQueue(label: "plmq.convert.background").async {
            self.result = box.value()
            self.done.signal()
        }
    }

    func value() -> Value {
        done.wait()
        done.signal()
        return result
    }
}

/// Buffers handed to concurrent workers that each write only their own disjoint part of them
/// (the quantization chunks): the disjointness is what makes the sharing safe.
private struct WorkerShared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

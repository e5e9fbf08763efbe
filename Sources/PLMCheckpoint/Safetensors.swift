import PLMCore
/// Everything that can be wrong with a safetensors file. Each case names the tensor where one
/// is involved; `SafetensorsError` adds the file.
public enum SafetensorsProblem: Equatable, Sendable, CustomStringConvertible {
    case fileTooSmall(size: Int)
    case headerTooLarge(length: UInt64)
    case headerBeyondFile(length: UInt64, fileSize: Int)
    case headerNotUTF8
    case headerNotJSON(JSONParseError)
    case headerNotObject
    case metadataNotStringMap(detail: String)
    case tensorEntryInvalid(tensor: String, detail: String)
    case unknownDType(tensor: String, dtype: String)
    case sizeOverflow(tensor: String)
    case subByteSizeNotWhole(tensor: String, bits: Int)
    case sizeMismatch(tensor: String, expectedBytes: Int, actualBytes: Int)
    case offsetsReversed(tensor: String, begin: Int, end: Int)
    case hole(tensor: String, expectedBegin: Int, begin: Int)
    case overlap(tensor: String, other: String)
    case dataSizeMismatch(dataEnd: Int, bufferBytes: Int)
    case tensorNotFound(String)
    case notFloatConvertible(tensor: String, dtype: TensorDType)

    public var description: String {
        switch self {
        case .fileTooSmall(let size): return "file is \(size) bytes, shorter than the 8-byte header length"
        case .headerTooLarge(let n): return "header length \(n) exceeds the 100,000,000-byte limit"
        case .headerBeyondFile(let n, let size): return "header length \(n) runs past the end of the \(size)-byte file"
        case .headerNotUTF8: return "header is not valid UTF-8"
        case .headerNotJSON(let e): return "header is not valid JSON: \(e)"
        case .headerNotObject: return "header is not a JSON object"
        case .metadataNotStringMap(let d): return "__metadata__ must map strings to strings: \(d)"
        case .tensorEntryInvalid(let t, let d): return "tensor '\(t)': \(d)"
        case .unknownDType(let t, let d): return "tensor '\(t)': unknown dtype \"\(d)\""
        case .sizeOverflow(let t): return "tensor '\(t)': shape × dtype size overflows"
        case .subByteSizeNotWhole(let t, let bits): return "tensor '\(t)': \(bits)-bit elements do not fill whole bytes"
        case .sizeMismatch(let t, let e, let a): return "tensor '\(t)': shape and dtype need \(e) bytes but data_offsets span \(a)"
        case .offsetsReversed(let t, let b, let e): return "tensor '\(t)': data_offsets [\(b), \(e)] end before they begin"
        case .hole(let t, let e, let b): return "tensor '\(t)': data begins at \(b) but the previous tensor ends at \(e) (unused bytes between tensors)"
        case .overlap(let t, let o): return "tensor '\(t)': data overlaps tensor '\(o)'"
        case .dataSizeMismatch(let end, let bytes): return "tensors cover \(end) bytes but the data section holds \(bytes) bytes"
        case .tensorNotFound(let t): return "no tensor named '\(t)'"
        case .notFloatConvertible(let t, let d): return "tensor '\(t)' has dtype \(d.rawValue); only F32, F16 and BF16 convert to float"
        }
    }
}

public struct SafetensorsError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let problem: SafetensorsProblem

    public init(file: String, problem: SafetensorsProblem) {
        self.file = file
        self.problem = problem
    }
    public var description: String { "\(file): \(problem)" }
}

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// Byte range inside the data section (after the header).
    public let dataRange: Range<Int>

    /// Checked against the byte range when the header was read, so it cannot overflow.
    public var elementCount: Int { Checked.product(of: shape) ?? 0 }
    public var byteCount: Int { dataRange.count }
}

/// A zero-copy view of one tensor's bytes inside a mapped file.
public struct TensorView: @unchecked Sendable {
    // The buffer points into `file`'s read-only mapping, which this struct keeps alive.
    public let info: TensorInfo
    public let file: MappedFile
    public let bytes: UnsafeRawBufferPointer

    public var name: String { info.name }
    public var dtype: TensorDType { info.dtype }
    public var shape: [Int] { info.shape }
    public var elementCount: Int { info.elementCount }

    /// Widens the tensor to Float into `destination` (which must hold `elementCount` values).
    /// F32 is copied, F16 and BF16 widen exactly.
    public func copyFloats(into destination: UnsafeMutableBufferPointer<Float>) throws(SafetensorsError) {
        try copyFloats(elements: 0..<elementCount, into: destination)
    }

    /// Widens a range of elements (in row-major order) into `destination`.
    public func copyFloats(elements range: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws(SafetensorsError) {
        // The dtype is checked before anything else and the widening itself cannot fail: with
        // the throw inside the dtype switch, Swift 6.3.1's release build reported an error
        // with garbage contents after copying F32 data (convert crashed on f32 checkpoints).
        guard dtype.isFloatConvertible else {
            throw SafetensorsError(file: file.path, problem: .notFloatConvertible(tensor: name, dtype: dtype))
        }
        widen(elements: range, into: destination)
    }

    /// F32 copied, F16 and BF16 widened exactly (the dtype is float-convertible).
    private func widen(elements range: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= elementCount && destination.count >= range.count,
                     "element range or destination out of bounds")  // caller's bug, not input data
        let n = range.count, first = range.lowerBound
        guard let out = destination.baseAddress, n > 0, let base = bytes.baseAddress else { return }
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: base + 4 * first, byteCount: 4 * n)
        case .bf16:
            // Widening is a 16-bit shift; the loop vectorises when the source is 2-byte aligned
            // (safetensors offsets of 16-bit tensors always are, relative to an aligned header).
            let src = base + 2 * first
            if Int(bitPattern: src) % 2 == 0 {
                let halfs = src.assumingMemoryBound(to: UInt16.self)
                let bits = UnsafeMutableRawPointer(out).assumingMemoryBound(to: UInt32.self)
                for i in 0..<n { bits[i] = UInt32(halfs[i]) << 16 }
            } else {
                for i in 0..<n { out[i] = FloatWidening.bf16ToFloat(bytes.loadUnaligned(fromByteOffset: 2 * (first + i), as: UInt16.self)) }
            }
        case .f16:
            for i in 0..<n { out[i] = FloatWidening.f16ToFloat(bytes.loadUnaligned(fromByteOffset: 2 * (first + i), as: UInt16.self)) }
        default:
            break  // excluded by the callers' dtype check
        }
    }

    /// The tensor widened to a new Float array.
    public func floats() throws(SafetensorsError) -> [Float] {
        guard dtype.isFloatConvertible else {
            throw SafetensorsError(file: file.path, problem: .notFloatConvertible(tensor: name, dtype: dtype))
        }
        return [Float](unsafeUninitializedCapacity: elementCount) { buf, initialized in
            widen(elements: 0..<elementCount, into: buf)
            initialized = elementCount
        }
    }

    /// Integer tensors (I64, I32) as Int, for fixture inputs such as `input_ids`.
    public func integers() throws(SafetensorsError) -> [Int] {
        switch dtype {
        case .i64: return (0..<elementCount).map { Int(bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        case .i32: return (0..<elementCount).map { Int(bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        default:
            throw SafetensorsError(file: file.path, problem: .tensorEntryInvalid(tensor: name, detail: "expected an I64 or I32 tensor, found \(dtype.rawValue)"))
        }
    }
}

/// A parsed, validated safetensors file, memory-mapped. Every rule is checked in `init`, before
/// any tensor data is touched:
/// - the 8-byte little-endian header length is at most 100,000,000 and inside the file;
/// - the header is UTF-8, a JSON object without duplicate keys;
/// - `__metadata__`, if present, maps strings to strings;
/// - every tensor has a known dtype, a shape of non-negative integers and two integer offsets;
/// - shape product × element size equals the byte range, without overflow;
/// - sorted by offset, tensors tile the data section exactly: no holes, no overlaps, and the
///   last one ends at the end of the file.
public struct SafetensorsFile: Sendable {
    public static let maxHeaderLength: UInt64 = 100_000_000

    public let file: MappedFile
    /// Tensors in file (offset) order.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    /// Byte offset of the data section in the file (8 + header length).
    public let dataOffset: Int
    private let index: [String: Int]

    public var path: String { file.path }

    public init(path: String) throws(CheckpointError) {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .fileAccess(error) }
        do { try self.init(file: mapped) } catch { throw .safetensors(error) }
    }

    public init(file: MappedFile) throws(SafetensorsError) {
        self.file = file
        func fail(_ p: SafetensorsProblem) -> SafetensorsError { SafetensorsError(file: file.path, problem: p) }

        let bytes = file.bytes
        guard bytes.count >= 8 else { throw fail(.fileTooSmall(size: bytes.count)) }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= Self.maxHeaderLength else { throw fail(.headerTooLarge(length: headerLength)) }
        guard 8 + Int(headerLength) <= bytes.count else {
            throw fail(.headerBeyondFile(length: headerLength, fileSize: bytes.count))
        }
        let headerEnd = 8 + Int(headerLength)
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<headerEnd])
        // Check UTF-8 of the whole header (string contents are checked again by the parser).
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw fail(.headerNotUTF8) }
        let root: JSONValue
        do { root = try JSONParser.parse(headerBytes) } catch { throw fail(.headerNotJSON(error)) }
        guard let object = root.objectValue else { throw fail(.headerNotObject) }

        var metadata: [String: String] = [:]
        var infos: [TensorInfo] = []
        infos.reserveCapacity(object.count)
        for (name, entry) in object.entries {
            if name == "__metadata__" {
                guard let m = entry.objectValue else { throw fail(.metadataNotStringMap(detail: "found a \(entry.typeName)")) }
                for (k, v) in m.entries {
                    guard let s = v.stringValue else { throw fail(.metadataNotStringMap(detail: "key '\(k)' holds a \(v.typeName)")) }
                    metadata[k] = s
                }
                continue
            }
            infos.append(try Self.parseEntry(name: name, entry: entry, fail: fail))
        }

        // Tile check: sorted by (begin, end), each tensor starts where the previous one ended.
        let sorted = infos.sorted { ($0.dataRange.lowerBound, $0.dataRange.upperBound, $0.name) < ($1.dataRange.lowerBound, $1.dataRange.upperBound, $1.name) }
        var end = 0
        var previous: String?
        for info in sorted {
            let begin = info.dataRange.lowerBound
            if begin < end { throw fail(.overlap(tensor: info.name, other: previous ?? "")) }
            if begin > end { throw fail(.hole(tensor: info.name, expectedBegin: end, begin: begin)) }
            end = info.dataRange.upperBound
            previous = info.name
        }
        let dataBytes = bytes.count - headerEnd
        guard end == dataBytes else { throw fail(.dataSizeMismatch(dataEnd: end, bufferBytes: dataBytes)) }

        self.tensors = sorted
        self.metadata = metadata
        self.dataOffset = headerEnd
        var index: [String: Int] = [:]
        for (i, t) in sorted.enumerated() { index[t.name] = i }
        self.index = index
    }

    private static func parseEntry(name: String, entry: JSONValue, fail: (SafetensorsProblem) -> SafetensorsError) throws(SafetensorsError) -> TensorInfo {
        guard let obj = entry.objectValue else {
            throw fail(.tensorEntryInvalid(tensor: name, detail: "entry is a \(entry.typeName), not an object"))
        }
        for key in obj.keys where !["dtype", "shape", "data_offsets"].contains(key) {
            throw fail(.tensorEntryInvalid(tensor: name, detail: "unknown field '\(key)'"))
        }
        guard let dtypeName = obj["dtype"]?.stringValue else {
            throw fail(.tensorEntryInvalid(tensor: name, detail: "missing or non-string 'dtype'"))
        }
        guard let dtype = TensorDType(rawValue: dtypeName) else { throw fail(.unknownDType(tensor: name, dtype: dtypeName)) }
        guard let shapeValues = obj["shape"]?.arrayValue else {
            throw fail(.tensorEntryInvalid(tensor: name, detail: "missing or non-array 'shape'"))
        }
        var shape: [Int] = []
        for v in shapeValues {
            guard case .number(let literal) = v, let d = Int(literal), d >= 0 else {
                throw fail(.tensorEntryInvalid(tensor: name, detail: "shape entries must be non-negative integers"))
            }
            shape.append(d)
        }
        guard let offsets = obj["data_offsets"]?.arrayValue, offsets.count == 2 else {
            throw fail(.tensorEntryInvalid(tensor: name, detail: "'data_offsets' must be an array of two integers"))
        }
        guard case .number(let bLit) = offsets[0], case .number(let eLit) = offsets[1],
              let begin = Int(bLit), let end = Int(eLit), begin >= 0, end >= 0 else {
            throw fail(.tensorEntryInvalid(tensor: name, detail: "'data_offsets' must be non-negative integers"))
        }
        guard end >= begin else { throw fail(.offsetsReversed(tensor: name, begin: begin, end: end)) }
        // The non-zero dimensions must multiply without overflow too: a [0, 2^40, 2^40] tensor has
        // no elements, but a quantizer would still compute K = 2^80.
        guard Checked.product(of: shape.map { max($0, 1) }) != nil,
              let elements = Checked.product(of: shape), let bits = Checked.multiply(elements, dtype.bitWidth) else {
            throw fail(.sizeOverflow(tensor: name))
        }
        guard bits % 8 == 0 else { throw fail(.subByteSizeNotWhole(tensor: name, bits: dtype.bitWidth)) }
        guard bits / 8 == end - begin else {
            throw fail(.sizeMismatch(tensor: name, expectedBytes: bits / 8, actualBytes: end - begin))
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    public func info(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    public func view(_ name: String) throws(SafetensorsError) -> TensorView {
        guard let info = info(name) else { throw SafetensorsError(file: file.path, problem: .tensorNotFound(name)) }
        return view(info)
    }

    public func view(_ info: TensorInfo) -> TensorView {
        let range = (dataOffset + info.dataRange.lowerBound)..<(dataOffset + info.dataRange.upperBound)
        return TensorView(info: info, file: file, bytes: file.slice(range))
    }
}

import PLMCore
import PLMCheckpoint
import PLMQuant
import Dispatch
import Synchronization

/// A tensor entry of a `.plm` file, validated against its storage type.
public struct PLMTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let type: StorageType
    public let layout: StorageLayout
    /// Parts in file order (`data`, then `scales`, then `mins` where the type has them).
    public let parts: [(name: String, record: PartRecord)]

    public func part(_ name: String) -> PartRecord? { parts.first { $0.name == name }?.record }
    public var storedBytes: Int { parts.reduce(0) { $0 + $1.record.length } }
    /// Checked when the header was read (at most `PLMSpec.maxElements`), so it cannot overflow.
    public var elementCount: Int { Checked.product(of: shape) ?? 0 }
}

/// An embedded side file.
public struct PLMSideFile: Sendable {
    public let name: String
    public let record: PartRecord
    public let size: Int
}

/// The bytes of one part: a zero-copy slice of the mapping, or a decompressed copy.
public struct PartBytes: @unchecked Sendable {
    // `mapped` points into `file`, which the struct keeps alive.
    private let file: MappedFile?
    private let owned: [UInt8]?
    private let mapped: UnsafeRawBufferPointer?

    init(file: MappedFile, slice: UnsafeRawBufferPointer) { self.file = file; mapped = slice; owned = nil }
    init(owned: [UInt8]) { file = nil; mapped = nil; self.owned = owned }

    public var isMapped: Bool { mapped != nil }

    /// Releases the resident pages of a mapped part (they are read again from the file if used).
    public func dropResidentPages() {
        if let file, let mapped { file.dropPages(mapped) }
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let mapped { return try body(mapped) }
        return try owned!.withUnsafeBytes(body)
    }
}

/// A memory-mapped `.plm` file. Opening validates the preamble, the header checksum and every
/// entry (types, sizes, alignment, bounds, overlaps) before any payload is touched; `verify()`
/// then checks every payload checksum.
public struct PLMFile: Sendable {
    public let file: MappedFile
    public let version: (major: Int, minor: Int)
    public let metadata: JSONObject
    public let files: [PLMSideFile]
    public let tensors: [PLMTensor]
    public let headerOffset: Int
    public let headerLength: Int
    private let index: [String: Int]

    public var path: String { file.path }

    public init(path: String) throws(PLMError) {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .fileAccess(error) }
        try self.init(file: mapped)
    }

    public init(file: MappedFile) throws(PLMError) {
        self.file = file
        let f = file.path
        let bytes = file.bytes
        guard bytes.count >= PLMSpec.preambleSize else { throw .tooSmall(file: f, size: bytes.count) }
        guard Array(bytes.prefix(8)) == PLMSpec.magic else { throw .badMagic(file: f) }
        let major = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
        let minor = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 10, as: UInt16.self)))
        guard major == Int(PLMSpec.majorVersion) else { throw .unsupportedVersion(file: f, major: major, minor: minor) }
        version = (major, minor)
        let flags = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        guard flags == 0 else { throw .unknownFlags(file: f, flags: flags) }
        let offset = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let length = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        let storedChecksum = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
        guard length <= UInt64(PLMSpec.maxHeaderLength) else { throw .headerOutOfBounds(file: f, detail: "length \(length) exceeds 256 MiB") }
        guard let payloadEnd = Checked.int(offset), payloadEnd >= PLMSpec.preambleSize,
              Checked.range(offset: payloadEnd, length: Int(length), within: bytes.count)?.upperBound == bytes.count else {
            throw .headerOutOfBounds(file: f, detail: "at \(offset)+\(length) does not end the \(bytes.count)-byte file")
        }
        headerOffset = payloadEnd
        headerLength = Int(length)
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[payloadEnd..<bytes.count])
        let computed = XXH64.hash(headerBytes)
        guard computed == storedChecksum else {
            throw .headerChecksum(file: f, stored: XXH64.hex(storedChecksum), computed: XXH64.hex(computed))
        }
        let root: JSONValue
        do { root = try JSONParser.parse(headerBytes) } catch { throw .headerInvalid(file: f, detail: "\(error)") }
        guard let header = root.objectValue, header["format"]?.stringValue == "plm" else {
            throw .headerInvalid(file: f, detail: "not a .plm header object")
        }
        // A key of the wrong type is an error, never read as empty.
        func list(_ key: String, required: Bool) throws(PLMError) -> [JSONValue] {
            guard let v = header[key] else {
                if required { throw .headerInvalid(file: f, detail: "no \"\(key)\" list") }
                return []
            }
            guard let items = v.arrayValue else { throw .headerInvalid(file: f, detail: "\"\(key)\" is \(v.typeName), expected an array") }
            return items
        }
        if let m = header["metadata"], m.objectValue == nil {
            throw .headerInvalid(file: f, detail: "\"metadata\" is \(m.typeName), expected an object")
        }
        metadata = header["metadata"]?.objectValue ?? JSONObject()
        let fileEntries = try list("files", required: false)
        let tensorEntries = try list("tensors", required: true)
        guard fileEntries.count <= PLMSpec.maxFiles else {
            throw .headerInvalid(file: f, detail: "\(fileEntries.count) side files exceed the limit of \(PLMSpec.maxFiles)")
        }
        guard tensorEntries.count <= PLMSpec.maxTensors else {
            throw .headerInvalid(file: f, detail: "\(tensorEntries.count) tensors exceed the limit of \(formatThousands(PLMSpec.maxTensors))")
        }

        var spans: [(range: Range<Int>, owner: String)] = []
        func part(_ item: String, _ partName: String, _ value: JSONValue?, expected: Int?) throws(PLMError) -> PartRecord {
            guard let o = value?.objectValue, let off = o["offset"]?.intValue, let len = o["length"]?.intValue,
                  let sum = o["checksum"]?.stringValue, sum.count == 16, let checksum = UInt64(sum, radix: 16) else {
                throw .partOutOfBounds(file: f, item: item, part: partName, detail: "missing or malformed offset/length/checksum")
            }
            var size: Int?
            let compression: String?
            switch o["compression"] {
            case nil: compression = nil
            case .string(let name)?: compression = name
            case let other?:
                throw .partOutOfBounds(file: f, item: item, part: partName, detail: "\"compression\" is \(other.typeName), expected a string")
            }
            switch compression {
            case nil, "none": break
            case "zstd":
                guard let s = o["size"]?.intValue, s >= 0 else {
                    throw .partOutOfBounds(file: f, item: item, part: partName, detail: "compressed part without a size")
                }
                size = s
            case let other?:
                throw .unknownStorage(file: f, tensor: item, detail: "unknown compression \"\(other)\" in part '\(partName)'")
            }
            guard off >= PLMSpec.preambleSize, off % PLMSpec.alignment == 0,
                  let range = Checked.range(offset: off, length: len, within: payloadEnd) else {
                throw .partOutOfBounds(file: f, item: item, part: partName, detail: "offset \(off) length \(len) is not an aligned range inside the payload area")
            }
            if let expected, (size ?? len) != expected {
                throw .partOutOfBounds(file: f, item: item, part: partName, detail: "holds \(size ?? len) bytes but its shape and type need \(expected)")
            }
            // A claimed size no frame of this length can reach is refused here, so no reader (or
            // a sum of sizes in `inspect`) ever works with it.
            if let size, size > min(PLMSpec.maxPartSize, Checked.multiply(len, Zstd.maxExpansion) ?? Int.max) {
                throw .partOutOfBounds(file: f, item: item, part: partName, detail: "claims \(size) uncompressed bytes from a \(len)-byte zstd frame (at most \(Zstd.maxExpansion)× and \(formatBytes(PLMSpec.maxPartSize)))")
            }
            if expected == nil, let size, size > PLMSpec.maxSideFileSize {
                throw .partOutOfBounds(file: f, item: item, part: partName, detail: "claims \(size) bytes, more than the \(formatBytes(PLMSpec.maxSideFileSize)) limit for a side file")
            }
            spans.append((range, "'\(item)' part '\(partName)'"))
            return PartRecord(offset: off, length: len, checksum: checksum, uncompressedSize: size)
        }

        var sideFiles: [PLMSideFile] = []
        for entry in fileEntries {
            guard let o = entry.objectValue, let name = o["name"]?.stringValue else {
                throw .headerInvalid(file: f, detail: "a files entry has no name")
            }
            try Self.checkName(name, file: f)
            let record = try part(name, "contents", entry, expected: nil)
            sideFiles.append(PLMSideFile(name: name, record: record, size: record.uncompressedSize ?? record.length))
        }

        var entries: [PLMTensor] = []
        var byName: [String: Int] = [:]
        for entry in tensorEntries {
            let t = try Self.parseTensor(entry, file: f, part: part)
            guard byName[t.name] == nil else { throw .tensorInvalid(file: f, tensor: t.name, detail: "listed twice") }
            byName[t.name] = entries.count
            entries.append(t)
        }

        let sorted = spans.filter { !$0.range.isEmpty }.sorted { $0.range.lowerBound < $1.range.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.range.lowerBound < a.range.upperBound {
            throw .partsOverlap(file: f, first: a.owner, second: b.owner)
        }
        files = sideFiles
        tensors = entries
        index = byName
    }

    private static func parseTensor(_ entry: JSONValue, file f: String,
                                    part: (String, String, JSONValue?, Int?) throws(PLMError) -> PartRecord) throws(PLMError) -> PLMTensor {
        guard let o = entry.objectValue, let name = o["name"]?.stringValue else {
            throw .headerInvalid(file: f, detail: "a tensor entry has no name")
        }
        try checkName(name, file: f)
        guard let shapeValues = o["shape"]?.arrayValue else { throw .tensorInvalid(file: f, tensor: name, detail: "no shape") }
        guard shapeValues.count <= PLMSpec.maxRank else {
            throw .tensorInvalid(file: f, tensor: name, detail: "\(shapeValues.count) dimensions exceed the limit of \(PLMSpec.maxRank)")
        }
        var shape: [Int] = []
        for v in shapeValues {
            guard case .number(let literal) = v, let d = Int(literal), d >= 0 else {
                throw .tensorInvalid(file: f, tensor: name, detail: "shape entries must be non-negative integers")
            }
            shape.append(d)
        }
        // Zeros count as 1 here, so a zero dimension cannot hide huge others (K of a layout).
        guard Checked.product(of: shape.map { max($0, 1) }, atMost: PLMSpec.maxElements) != nil else {
            throw .tensorInvalid(file: f, tensor: name, detail: "shape \(formatShape(shape)) has more than 2^48 elements")
        }
        // Optional strings: absent takes the default, any other type is an error.
        func string(_ key: String) throws(PLMError) -> String? {
            guard let v = o[key] else { return nil }
            guard let s = v.stringValue else { throw .tensorInvalid(file: f, tensor: name, detail: "\"\(key)\" is \(v.typeName), expected a string") }
            return s
        }
        guard let storage = try string("storage") else { throw .tensorInvalid(file: f, tensor: name, detail: "no storage type") }
        let type: StorageType
        switch storage {
        case "f32": type = .f32
        case "f16": type = .f16
        case "bf16": type = .bf16
        case "int8", "int4":
            guard let schemeName = try string("scheme") else { throw .tensorInvalid(file: f, tensor: name, detail: "quantized tensor without a scheme") }
            guard let scheme = QuantScheme(rawValue: schemeName) else { throw .unknownStorage(file: f, tensor: name, detail: "unknown scheme \"\(schemeName)\"") }
            guard case .number(let gLiteral)? = o["group_size"], let g = Int(gLiteral) else { throw .tensorInvalid(file: f, tensor: name, detail: "quantized tensor without a group_size") }
            guard StorageType.groupSizes.contains(g) else { throw .unknownStorage(file: f, tensor: name, detail: "unsupported group size \(g)") }
            let formatName = try string("scale_format") ?? "f16"
            guard let format = ScaleFormat(rawValue: formatName) else { throw .unknownStorage(file: f, tensor: name, detail: "unknown scale_format \"\(formatName)\"") }
            guard shape.count >= 2 else { throw .tensorInvalid(file: f, tensor: name, detail: "quantized tensors need at least 2 dimensions") }
            if storage == "int8" {
                guard format == .f16 else { throw .unknownStorage(file: f, tensor: name, detail: "int8 with scale_format \"\(formatName)\"") }
                type = .int8(scheme, groupSize: g)
            } else {
                guard !(scheme == .symmetric && format == .k6) else { throw .unknownStorage(file: f, tensor: name, detail: "symmetric int4 with k6 scales") }
                type = .int4(scheme, groupSize: g, scales: format)
            }
        default:
            throw .unknownStorage(file: f, tensor: name, detail: "unknown storage type \"\(storage)\"")
        }
        let layout = StorageLayout(shape: shape, type: type)
        guard let partsObject = o["parts"]?.objectValue else { throw .tensorInvalid(file: f, tensor: name, detail: "no parts") }
        var parts: [(String, PartRecord)] = []
        for (partName, expected) in layout.parts {
            parts.append((partName, try part(name, partName, partsObject[partName], expected)))
        }
        return PLMTensor(name: name, shape: shape, type: type, layout: layout, parts: parts)
    }

    /// Names are non-empty and at most `PLMSpec.maxNameBytes` bytes of UTF-8.
    private static func checkName(_ name: String, file f: String) throws(PLMError) {
        guard !name.isEmpty, name.utf8.count <= PLMSpec.maxNameBytes else {
            throw .headerInvalid(file: f, detail: "a name of \(name.utf8.count) bytes (names are 1 to \(PLMSpec.maxNameBytes) bytes)")
        }
    }

    public func tensor(_ name: String) -> PLMTensor? { index[name].map { tensors[$0] } }

    /// The bytes of a part, in place when stored uncompressed.
    public func bytes(of record: PartRecord, item: String, part: String) throws(PLMError) -> PartBytes {
        let slice = file.slice(record.offset..<(record.offset + record.length))
        guard let size = record.uncompressedSize else { return PartBytes(file: file, slice: slice) }
        do { return PartBytes(owned: try Zstd.decompress(slice, size: size, maxSize: PLMSpec.maxPartSize)) } catch {
            throw .decompression(file: path, item: item, part: part, detail: error.description)
        }
    }

    public func bytes(_ tensor: PLMTensor, part: String) throws(PLMError) -> PartBytes {
        guard let record = tensor.part(part) else { throw .tensorInvalid(file: path, tensor: tensor.name, detail: "has no part '\(part)'") }
        return try bytes(of: record, item: tensor.name, part: part)
    }

    /// A side file's contents (decompressed). Its checksum is always checked: side files are
    /// small, and a damaged config or tokenizer must not become a different model.
    public func sideFile(_ name: String) throws(PLMError) -> [UInt8]? {
        guard let f = files.first(where: { $0.name == name }) else { return nil }
        try checkPart(f.record, item: name, part: "contents")
        return try bytes(of: f.record, item: name, part: "contents").withBytes { Array($0) }
    }

    /// Throws `checksumMismatch` naming the item and part when the stored bytes do not hash to
    /// the recorded checksum.
    func checkPart(_ record: PartRecord, item: String, part: String) throws(PLMError) {
        let computed = XXH64.hash(file.slice(record.offset..<(record.offset + record.length)))
        guard computed == record.checksum else {
            throw .checksumMismatch(file: path, item: item, part: part, stored: XXH64.hex(record.checksum), computed: XXH64.hex(computed))
        }
    }

    /// Checks the whole file: every payload checksum (and that compressed parts decompress), and
    /// that every byte outside the parts and the header is zero — the reserved preamble bytes
    /// 40–63 (of a 1.0 file; a later minor version may define them) and the padding before,
    /// between and after the parts. Throws on the first problem, naming it. `progress` receives
    /// bytes checked so far.
    public func verify(progress: (Int) -> Void = { _ in }) throws(PLMError) {
        try checkFiller()
        var done = 0
        func check(_ record: PartRecord, item: String, part: String) throws(PLMError) {
            try checkPart(record, item: item, part: part)
            if record.uncompressedSize != nil { _ = try bytes(of: record, item: item, part: part) }
            file.dropPages(file.slice(record.offset..<(record.offset + record.length)))  // verifying a large file should not grow this process
            done += record.length
            progress(done)
        }
        for f in files { try check(f.record, item: f.name, part: "contents") }
        for t in tensors { for p in t.parts { try check(p.record, item: t.name, part: p.name) } }
    }

    /// Checks the checksum of every tensor part, on up to `threads` threads, as a model is
    /// loaded. The pages stay resident (the engine reads them next). Throws the problem of the
    /// first damaged part in file order.
    public func verifyTensorPayloads(threads: Int = 1) throws(PLMError) {
        let work = tensors.flatMap { t in t.parts.filter { $0.record.length > 0 }.map { (item: t.name, part: $0.name, record: $0.record) } }
        // Largest first, so the last part to start is a small one and the threads finish together.
        let order = work.indices.sorted { work[$0].record.length > work[$1].record.length }
        let failures = Mutex<[Int: PLMError]>([:])
        let next = Atomic<Int>(0)
        let workers = max(1, min(threads, order.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let k = next.add(1, ordering: .relaxed).oldValue
                guard k < order.count else { return }
                let i = order[k]
                do throws(PLMError) { try checkPart(work[i].record, item: work[i].item, part: work[i].part) } catch {
                    failures.withLock { $0[i] = error }
                }
            }
        }
        if let first = failures.withLock({ $0.min { $0.key < $1.key } }) { throw first.value }
    }

    /// Bytes that belong to no part and are not the header must be zero (the writer writes
    /// zeros): a non-zero byte there is damage that no checksum covers.
    func checkFiller() throws(PLMError) {
        let bytes = file.bytes
        if version.minor == 0, let i = (40..<PLMSpec.preambleSize).first(where: { bytes[$0] != 0 }) {
            throw .nonZeroFiller(file: path, offset: i, detail: "reserved preamble bytes 40–63 must be zero")
        }
        let spans = (files.map { $0.record } + tensors.flatMap { $0.parts.map { $0.record } })
            .map { $0.offset..<($0.offset + $0.length) }.sorted { $0.lowerBound < $1.lowerBound }
        var cursor = PLMSpec.preambleSize
        func zeros(upTo end: Int) throws(PLMError) {
            if cursor < end, let i = (cursor..<end).first(where: { bytes[$0] != 0 }) {
                throw .nonZeroFiller(file: path, offset: i, detail: "padding outside every part must be zero")
            }
        }
        for span in spans {
            try zeros(upTo: span.lowerBound)
            cursor = max(cursor, span.upperBound)
        }
        try zeros(upTo: headerOffset)
    }

    public var payloadBytes: Int { tensors.reduce(0) { $0 + $1.storedBytes } + files.reduce(0) { $0 + $1.record.length } }
}

import PLMCore
import PLMCheckpoint
import PLMQuant

/// One stored payload: where it is, how long, its checksum, and its compression.
public struct PartRecord: Sendable, Equatable {
    public var offset: Int
    public var length: Int
    public var checksum: UInt64
    /// Uncompressed size when zstd-compressed, else nil.
    public var uncompressedSize: Int?

    func json() -> JSONValue {
        var o = JSONObject([("offset", .int(offset)), ("length", .int(length)), ("checksum", .string(XXH64.hex(checksum)))])
        if let size = uncompressedSize {
            o["compression"] = .string("zstd")
            o["size"] = .int(size)
        }
        return .object(o)
    }
}

/// Writes a `.plm` file in one pass: a zeroed preamble, payloads each aligned to 64 bytes, then
/// the JSON header, then the real preamble. The file appears at its path only on `finish`
/// (temporary file, fsync, rename): an error or interruption leaves no partial output and never
/// touches an existing file.
public final class PLMWriter {
    public let path: String
    /// nil for a dry run: positions, sizes and the header are computed exactly, nothing is written.
    private let out: AtomicFileWriter?
    public private(set) var position = 0
    private var files: [JSONValue] = []
    private var tensors: [JSONValue] = []
    private static let zeros = [UInt8](repeating: 0, count: PLMSpec.alignment)

    /// `inputs`: files the output must not replace (see `AtomicFileWriter`); checked in a dry run too.
    public init(path: String, dryRun: Bool = false, protecting inputs: [String] = []) throws(FileAccessError) {
        self.path = path
        if dryRun { try AtomicFileWriter.checkTarget(path, inputs: inputs) }
        out = dryRun ? nil : try AtomicFileWriter(path: path, protecting: inputs)
        try emit([UInt8](repeating: 0, count: PLMSpec.preambleSize))
    }

    public var isDryRun: Bool { out == nil }

    private func emit(_ bytes: [UInt8]) throws(FileAccessError) {
        try out?.write(bytes)
        position += bytes.count
    }

    private func emit(_ bytes: UnsafeRawBufferPointer) throws(FileAccessError) {
        try out?.write(bytes)
        position += bytes.count
    }

    private func pad() throws(FileAccessError) {
        let target = PLMSpec.aligned(position)
        if target > position { try emit(Array(Self.zeros.prefix(target - position))) }
    }

    /// Reserves an uncompressed payload of `length` bytes in a dry run (no bytes needed).
    public func reservePart(length: Int) throws(FileAccessError) -> PartRecord {
        precondition(isDryRun, "reservePart is for dry runs")
        try pad()
        let offset = position
        position += length
        return PartRecord(offset: offset, length: length, checksum: 0, uncompressedSize: nil)
    }

    /// Writes one payload at the next aligned offset. With `compress`, the payload is stored as a
    /// zstd frame when that saves at least 5 %.
    public func writePart(_ bytes: UnsafeRawBufferPointer, compressLevel: Int32? = nil) throws(FileAccessError) -> PartRecord {
        try pad()
        let offset = position
        if let level = compressLevel, bytes.count > 0 {
            if let packed = Zstd.compress(bytes, level: level), packed.count * 20 < bytes.count * 19 {
                try emit(packed)
                return PartRecord(offset: offset, length: packed.count, checksum: XXH64.hash(packed), uncompressedSize: bytes.count)
            }
        }
        try emit(bytes)
        // A dry run skips hashing: the header stores fixed-width checksums, so its length is the same.
        return PartRecord(offset: offset, length: bytes.count, checksum: isDryRun ? 0 : XXH64.hash(bytes), uncompressedSize: nil)
    }

    /// zstd level of the side files. On Llama 3's 4.4 MB tokenizer.json (zstd 1.5.4), level 17
    /// gives 113 KB in 1.2 s, level 18 91 KB in 2.1 s and level 19 123 KB in 3.0 s: 19 was
    /// both larger and slower, and it ran before any tensor was quantized.
    static let sideFileLevel: Int32 = 17

    /// Embeds a side file (config.json, tokenizer.json, ...), zstd-compressed.
    public func addFile(name: String, contents: [UInt8]) throws(FileAccessError) {
        var result: Result<PartRecord, FileAccessError>!
        contents.withUnsafeBytes { raw in
            do throws(FileAccessError) { result = .success(try writePart(raw, compressLevel: Self.sideFileLevel)) } catch { result = .failure(error) }
        }
        let record = try result.get()
        var o = JSONObject([("name", .string(name))])
        for (k, v) in record.json().objectValue!.entries { o[k] = v }
        if record.uncompressedSize == nil { o["size"] = .int(contents.count) }
        files.append(.object(o))
    }

    /// Records a tensor whose parts were written with `writePart`, in the order of `layout.parts`.
    public func addTensor(name: String, shape: [Int], type: StorageType, parts: [(name: String, record: PartRecord)]) {
        var o = JSONObject([("name", .string(name)), ("shape", .array(shape.map { .int($0) })), ("storage", .string(type.storageName))])
        if let scheme = type.scheme {
            o["scheme"] = .string(scheme.rawValue)
            o["group_size"] = .int(type.groupSize!)
            o["scale_format"] = .string(type.scaleFormat!.rawValue)
        }
        o["parts"] = .object(JSONObject(parts.map { ($0.name, $0.record.json()) }))
        tensors.append(.object(o))
    }

    /// The header JSON as it will be written, for a given metadata object.
    public func headerBytes(metadata: JSONObject) -> [UInt8] {
        let header = JSONObject([
            ("format", .string("plm")),
            ("version", .array([.int(Int(PLMSpec.majorVersion)), .int(Int(PLMSpec.minorVersion))])),
            ("metadata", .object(metadata)),
            ("files", .array(files)),
            ("tensors", .array(tensors)),
        ])
        return Array(JSONValue.object(header).serialized().utf8)
    }

    /// Writes the header and preamble, then publishes the file. Returns the file size.
    @discardableResult
    public func finish(metadata: JSONObject) throws(FileAccessError) -> Int {
        try pad()
        let header = headerBytes(metadata: metadata)
        let headerOffset = position
        try emit(header)
        if let out {
            try out.write(Self.preamble(headerOffset: headerOffset, header: header), at: 0)
            try out.commit()
        }
        return headerOffset + header.count
    }

    /// Removes the temporary file (also done automatically if `finish` is never reached).
    public func abandon() { out?.abandon() }

    public var temporaryPath: String? { out?.temporaryPath }

    /// The 64-byte preamble for a header at `headerOffset` (public for tools and tests that
    /// rewrite a header in place).
    public static func preamble(headerOffset: Int, header: [UInt8]) -> [UInt8] {
        var p = PLMSpec.magic
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { p.append(contentsOf: $0) } }
        append(PLMSpec.majorVersion)
        append(PLMSpec.minorVersion)
        append(UInt32(0))
        append(UInt64(headerOffset))
        append(UInt64(header.count))
        append(XXH64.hash(header))
        p.append(contentsOf: [UInt8](repeating: 0, count: PLMSpec.preambleSize - p.count))
        return p
    }
}

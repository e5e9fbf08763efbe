#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a file so that readers see the old file or the complete new one, never a partial one:
/// data goes to a temporary file in the same folder, is fsync'ed, then renamed over the target
/// (and the folder is fsync'ed so the rename survives a crash). An interrupted write leaves the
/// target untouched; `abandon()` (or deinit without `commit()`) removes the temporary file.
public final class AtomicFileWriter {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false
    /// Bytes written sequentially so far (the offset of the next `write`).
    public private(set) var position = 0

    public init(path: String) throws(FileAccessError) {
        self.path = path
        temporaryPath = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileAccessError(path: temporaryPath, reason: "cannot create: \(MappedFile.errnoText())") }
    }

    deinit { if !committed { abandon() } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileAccessError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileAccessError(path: path, reason: "write failed: \(MappedFile.errnoText())")
            }
            offset += n
        }
        position += bytes.count
    }

    /// Overwrites bytes already written (a header placeholder), without moving `position`.
    public func write(_ bytes: [UInt8], at offset: Int) throws(FileAccessError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileAccessError(path: path, reason: "write failed: \(MappedFile.errnoText())")
            }
            done += n
        }
    }

    public func write(_ bytes: [UInt8]) throws(FileAccessError) {
        var failure: FileAccessError?
        bytes.withUnsafeBytes { raw in
            do throws(FileAccessError) { try write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// fsync, close, rename over the target, fsync the folder.
    public func commit() throws(FileAccessError) {
        guard fsync(fd) == 0 else { throw FileAccessError(path: path, reason: "fsync failed: \(MappedFile.errnoText())") }
        close(fd)
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            throw FileAccessError(path: path, reason: "rename failed: \(MappedFile.errnoText())")
        }
        committed = true
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dfd = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(temporaryPath)
    }
}

/// A tensor to write to a safetensors file.
public struct TensorRecord {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    public let bytes: [UInt8]

    public init(name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public init(name: String, shape: [Int], floats: [Float]) {
        self.init(name: name, dtype: .f32, shape: shape, bytes: floats.withUnsafeBytes { Array($0) })
    }

    public init(name: String, shape: [Int], int64s: [Int]) {
        self.init(name: name, dtype: .i64, shape: shape, bytes: int64s.map { Int64($0) }.withUnsafeBytes { Array($0) })
    }
}

public enum SafetensorsWriter {
    /// Writes tensors (in the given order) atomically. The header is padded with spaces to a
    /// multiple of 8 bytes, as the reference writer does, so f32/i64 data stays aligned.
    public static func write(_ tensors: [TensorRecord], metadata: [String: String] = [:], to path: String) throws(FileAccessError) {
        var header = JSONObject()
        if !metadata.isEmpty {
            header["__metadata__"] = .object(JSONObject(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
        }
        var offset = 0
        for t in tensors {
            header[t.name] = .object(JSONObject([
                ("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.map { .int($0) })),
                ("data_offsets", .array([.int(offset), .int(offset + t.bytes.count)])),
            ]))
            offset += t.bytes.count
        }
        var headerBytes = Array(JSONValue.object(header).serialized().utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian, Array.init))
        try writer.write(headerBytes)
        for t in tensors { try writer.write(t.bytes) }
        try writer.commit()
    }
}

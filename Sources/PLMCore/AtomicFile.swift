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


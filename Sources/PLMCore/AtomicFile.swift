#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a file so that readers see the old file or the complete new one, never a partial one:
/// data goes to a temporary file in the same folder, is fsync'ed, then renamed over the target
/// (and the folder is fsync'ed so the rename survives a crash). An interrupted write leaves the
/// target untouched; `abandon()` (or deinit without `commit()`) removes the temporary file.
///
/// The target must be a regular file or not exist (a device such as /dev/full, a FIFO or a
/// folder is refused, never replaced), and must not be one of the command's inputs (compared by
/// device and inode, so symlinks and hard links are seen through). The temporary file is named
/// `TARGET.plmq-tmp-PID`; one left by a run that was killed (its process is gone) is removed
/// when the next write to the same target starts.
public final class AtomicFileWriter {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false
    /// Bytes written sequentially so far (the offset of the next `write`).
    public private(set) var position = 0

    public static let temporarySuffix = ".plmq-tmp-"

    public init(path: String, protecting inputs: [String] = []) throws(FileAccessError) {
        self.path = path
        try Self.checkTarget(path, inputs: inputs)
        Self.removeStaleTemporaries(of: path)
        temporaryPath = path + Self.temporarySuffix + "\(getpid())"
        unlink(temporaryPath)  // our own, from an earlier writer in this process that was not cleaned
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileAccessError(path: temporaryPath, reason: "cannot create: \(MappedFile.errnoText())") }
    }

    /// Refuses a target that is not a regular file or that is one of `inputs`.
    public static func checkTarget(_ path: String, inputs: [String]) throws(FileAccessError) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }  // does not exist yet: nothing to protect
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileAccessError(path: path, reason: "exists and is not a regular file; plmq only replaces regular files")
        }
        for input in inputs {
            var other = stat()
            if stat(input, &other) == 0, other.st_dev == st.st_dev, other.st_ino == st.st_ino {
                throw FileAccessError(path: path, reason: "is an input of this command (\(input)); choose another output path")
            }
        }
    }

    /// Removes `TARGET.plmq-tmp-PID` files whose process no longer runs (a killed earlier run).
    static func removeStaleTemporaries(of path: String) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard let dir = opendir(folder.isEmpty ? "/" : folder) else { return }
        defer { closedir(dir) }
        let prefix = base + temporarySuffix
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count)), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink((folder.isEmpty ? "" : folder + "/") + name) }
        }
    }

    deinit { if !committed { abandon() } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileAccessError) {
        var offset = 0
        while offset < bytes.count {
            guard let base = bytes.baseAddress else { return }
            let n = Glibc.write(fd, base + offset, bytes.count - offset)
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
        let folder = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let dfd = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(temporaryPath)
    }
}


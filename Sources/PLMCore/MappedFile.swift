#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be opened or mapped.
public struct FileAccessError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// A read-only memory mapping of a whole file. Tensor views point into it, so it stays alive as
/// long as any view holds it. Pages are only read when touched: opening a 3 GB checkpoint and
/// parsing its header reads a few kilobytes.
public final class MappedFile: @unchecked Sendable {
    // Immutable after init and the mapping is read-only, so sharing across threads is safe.
    public let path: String
    public let size: Int
    private let base: UnsafeRawPointer?
    /// True for an in-memory copy (`init(copying:path:)`), which is freed rather than unmapped.
    private let isCopy: Bool

    public init(path: String) throws(FileAccessError) {
        self.path = path
        isCopy = false
        // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused
        // below as not a regular file. Reads of regular files ignore the flag.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileAccessError(path: path, reason: MappedFile.errnoText()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileAccessError(path: path, reason: MappedFile.errnoText()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileAccessError(path: path, reason: "not a regular file (a FIFO, device or folder cannot be read as one)")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil  // mmap of length 0 is invalid; an empty file has no bytes to view.
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw FileAccessError(path: path, reason: "mmap failed: \(MappedFile.errnoText())") }
        base = UnsafeRawPointer(p)
    }

    /// Bytes already in memory, read exactly as a mapping of a file at `path` would be (the path
    /// only names the bytes in errors). The copy is page-aligned like a mapping, so the readers'
    /// alignment checks see the same offsets; the fuzz targets and tests use it to hand a reader
    /// bytes without a file.
    public init(copying bytes: UnsafeRawBufferPointer, path: String) {
        self.path = path
        size = bytes.count
        isCopy = true
        guard let source = bytes.baseAddress, size > 0 else {
            base = nil
            return
        }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        copy.copyMemory(from: source, byteCount: size)
        base = UnsafeRawPointer(copy)
    }

    deinit {
        guard let base else { return }
        if isCopy { UnsafeMutableRawPointer(mutating: base).deallocate() } else { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The whole file as bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// A byte range of the file. The caller has validated the range.
    public func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// Drops the pages of a range from this process's memory (they are re-read from the file if
    /// touched again). Used after widening a tensor so the mapping does not double the footprint.
    public func dropPages(_ range: UnsafeRawBufferPointer) {
        // An in-memory copy has no file to re-read pages from: MADV_DONTNEED would zero them.
        guard !isCopy, let base, let start = range.baseAddress, range.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (start - base) / page * page
        let hi = start - base + range.count
        let first = (hi - lo) / page * page  // whole pages only; the tail page may hold the next tensor
        guard first > 0 else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), first, MADV_DONTNEED)
    }

    public static func errnoText() -> String { String(cString: strerror(errno)) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small file helpers shared by every module.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func readBytes(_ path: String) throws(FileAccessError) -> [UInt8] {
        let mapped = try MappedFile(path: path)
        return Array(mapped.bytes)
    }

    /// Creates a folder (its parent must exist); an existing folder is fine.
    public static func makeDirectory(_ path: String) throws(FileAccessError) {
        if isDirectory(path) { return }
        guard mkdir(path, 0o755) == 0 else { throw FileAccessError(path: path, reason: "cannot create folder: \(MappedFile.errnoText())") }
    }

    public static func join(_ a: String, _ b: String) -> String {
        a.hasSuffix("/") ? a + b : a + "/" + b
    }

    public static func fileName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

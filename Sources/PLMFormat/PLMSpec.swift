import PLMCore
import PLMCheckpoint
import PLMQuant

/// Constants of the `.plm` container (Formats/PLM.md).
public enum PLMSpec {
    public static let magic: [UInt8] = [0x89, 0x50, 0x4C, 0x4D, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let majorVersion: UInt16 = 1
    public static let minorVersion: UInt16 = 0
    public static let preambleSize = 64
    public static let alignment = 64
    public static let maxHeaderLength = 256 << 20

    // Limits a reader enforces, far above any real model (PLM-8B has ~1,100 tensors, 4-D shapes,
    // names under 100 bytes and a 2.1 GB largest tensor), so a hostile header cannot make a reader
    // allocate or loop without bound. Formats/PLM.md lists them.
    /// Tensor entries in one header.
    public static let maxTensors = 1 << 20
    /// Side-file entries in one header.
    public static let maxFiles = 1_024
    /// Bytes of UTF-8 in a tensor or side-file name.
    public static let maxNameBytes = 4_096
    /// Dimensions of a tensor.
    public static let maxRank = 8
    /// Elements of a tensor (2^48).
    public static let maxElements = 1 << 48
    /// Uncompressed bytes of a side file (1 GiB; tokenizer.json is ~9 MB).
    public static let maxSideFileSize = 1 << 30
    /// Uncompressed bytes of one zstd part (64 GiB).
    public static let maxPartSize = 1 << 36

    public static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}

/// Everything that can be wrong with a `.plm` file; each case names the file, and the tensor or
/// part where one is involved.
public enum PLMError: Error, Equatable, CustomStringConvertible {
    case fileAccess(FileAccessError)
    case tooSmall(file: String, size: Int)
    case badMagic(file: String)
    case unsupportedVersion(file: String, major: Int, minor: Int)
    case unknownFlags(file: String, flags: UInt32)
    case headerOutOfBounds(file: String, detail: String)
    case headerChecksum(file: String, stored: String, computed: String)
    case headerInvalid(file: String, detail: String)
    case tensorInvalid(file: String, tensor: String, detail: String)
    case unknownStorage(file: String, tensor: String, detail: String)
    case partOutOfBounds(file: String, item: String, part: String, detail: String)
    case partsOverlap(file: String, first: String, second: String)
    case checksumMismatch(file: String, item: String, part: String, stored: String, computed: String)
    case decompression(file: String, item: String, part: String, detail: String)
    case tensorNotFound(file: String, tensor: String)
    /// A byte outside every part and the header (reserved preamble bytes, padding) is not zero.
    case nonZeroFiller(file: String, offset: Int, detail: String)

    public var description: String {
        switch self {
        case .fileAccess(let e): return e.description
        case .tooSmall(let f, let n): return "\(f): \(n) bytes is too small for a .plm file (truncated?)"
        case .badMagic(let f): return "\(f): not a .plm file (bad magic bytes)"
        case .unsupportedVersion(let f, let major, let minor):
            return "\(f): .plm version \(major).\(minor) is not supported (this plmq reads version \(PLMSpec.majorVersion).x)"
        case .unknownFlags(let f, let flags): return "\(f): unknown flags 0x\(String(flags, radix: 16)) in the preamble"
        case .headerOutOfBounds(let f, let d): return "\(f): header \(d) (truncated or damaged file)"
        case .headerChecksum(let f, let s, let c): return "\(f): header checksum mismatch (stored \(s), computed \(c)): the file is damaged"
        case .headerInvalid(let f, let d): return "\(f): invalid header: \(d)"
        case .tensorInvalid(let f, let t, let d): return "\(f): tensor '\(t)': \(d)"
        case .unknownStorage(let f, let t, let d): return "\(f): tensor '\(t)': \(d) (written by a newer plmq?)"
        case .partOutOfBounds(let f, let i, let p, let d): return "\(f): '\(i)' part '\(p)': \(d)"
        case .partsOverlap(let f, let a, let b): return "\(f): payloads of \(a) and \(b) overlap"
        case .checksumMismatch(let f, let i, let p, let s, let c):
            return "\(f): checksum mismatch in '\(i)' part '\(p)' (stored \(s), computed \(c)): the file is damaged"
        case .decompression(let f, let i, let p, let d): return "\(f): '\(i)' part '\(p)' does not decompress: \(d)"
        case .tensorNotFound(let f, let t): return "\(f): no tensor named '\(t)'"
        case .nonZeroFiller(let f, let offset, let d): return "\(f): byte \(offset) is not zero (\(d)): the file is damaged"
        }
    }
}

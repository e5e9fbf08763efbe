import CZstd
import PLMCore

public struct ZstdError: Error, CustomStringConvertible {
    public let description: String
}

/// One-shot zstd frames for `.plm` parts and side files.
public enum Zstd {
    /// The most one zstd frame can expand per stored byte: a block holds at most 128 KiB and the
    /// smallest block (an RLE block) takes 4 bytes, so a frame of n bytes decompresses to at most
    /// 32,768·n bytes. A larger claimed size is refused before anything is allocated.
    public static let maxExpansion = 32_768

    /// Level 17 on the side files (tokenizer.json shrinks ~40×); tensors use a faster level.
    /// Nil when zstd fails (it can only run out of memory with a bound-sized output buffer); the
    /// writer then stores the part uncompressed.
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_compress(dst.baseAddress, bound, input.baseAddress, input.count, level)
        }
        guard ZSTD_isError(n) == 0 else { return nil }
        out.removeSubrange(n...)
        return out
    }

    public static func compress(_ input: [UInt8], level: Int32) -> [UInt8]? {
        input.withUnsafeBytes { compress($0, level: level) }
    }

    /// Decompresses one frame that must expand to exactly `size` bytes, at most `maxSize`.
    /// Before allocating, the frame's own content size must equal `size` and `size` must be
    /// possible for a frame of this length (`maxExpansion`), so a header that claims a huge
    /// size costs nothing.
    public static func decompress(_ input: UnsafeRawBufferPointer, size: Int, maxSize: Int = Int.max) throws(ZstdError) -> [UInt8] {
        guard size >= 0, size <= maxSize else {
            throw ZstdError(description: "claimed size \(size) exceeds the \(formatBytes(maxSize)) limit")
        }
        guard size <= (Checked.multiply(input.count, maxExpansion) ?? Int.max) else {
            throw ZstdError(description: "claimed size \(size) is more than a \(input.count)-byte frame can hold")
        }
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        // ZSTD_CONTENTSIZE_UNKNOWN (2^64 − 1) and ZSTD_CONTENTSIZE_ERROR (2^64 − 2) are not sizes.
        guard declared < UInt64.max - 1 else {
            throw ZstdError(description: declared == UInt64.max ? "the frame does not record its size" : "not a zstd frame")
        }
        guard declared == UInt64(size) else {
            throw ZstdError(description: "frame records \(declared) bytes, expected \(size)")
        }
        var out = [UInt8](repeating: 0, count: size)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_decompress(dst.baseAddress, size, input.baseAddress, input.count)
        }
        if ZSTD_isError(n) != 0 { throw ZstdError(description: String(cString: ZSTD_getErrorName(n))) }
        guard n == size else { throw ZstdError(description: "frame holds \(n) bytes, expected \(size)") }
        return out
    }
}

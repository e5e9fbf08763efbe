import CZstd

public struct ZstdError: Error, CustomStringConvertible {
    public let description: String
}

/// One-shot zstd frames for `.plm` parts and side files.
public enum Zstd {
    /// Level 19 on small side files (tokenizer.json shrinks ~5×); tensors use a faster level.
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_compress(dst.baseAddress, bound, input.baseAddress, input.count, level)
        }
        precondition(ZSTD_isError(n) == 0, "zstd compression failed: a bound-sized buffer cannot be too small")
        out.removeSubrange(n...)
        return out
    }

    public static func compress(_ input: [UInt8], level: Int32) -> [UInt8] {
        input.withUnsafeBytes { compress($0, level: level) }
    }

    /// Decompresses one frame that must expand to exactly `size` bytes.
    public static func decompress(_ input: UnsafeRawBufferPointer, size: Int) throws(ZstdError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_decompress(dst.baseAddress, size, input.baseAddress, input.count)
        }
        if ZSTD_isError(n) != 0 { throw ZstdError(description: String(cString: ZSTD_getErrorName(n))) }
        guard n == size else { throw ZstdError(description: "frame holds \(n) bytes, expected \(size)") }
        return out
    }
}

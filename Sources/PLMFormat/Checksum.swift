import CPLMKernels

/// Streaming XXH64 (seed 0), the checksum of every `.plm` part and of the header.
public struct XXH64 {
    private var state = plm_xxh64_state()

    public init() { plm_xxh64_reset(&state, 0) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        plm_xxh64_update(&state, base, bytes.count)
    }

    public var digest: UInt64 {
        var copy = state
        return plm_xxh64_digest(&copy)
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        plm_xxh64(bytes.baseAddress, bytes.count, 0)
    }

    public static func hash(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// 16 lower-case hex digits, as stored in the header.
    public static func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

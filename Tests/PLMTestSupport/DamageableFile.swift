// Damaging files in place for the corruption sweeps (Tests/*/…SweepTests.swift).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file on disk that a sweep damages in place, one byte or one length at a time, and restores.
public final class DamageableFile {
    public let path: String
    public let original: [UInt8]
    private let fd: Int32

    public init(path: String, bytes: [UInt8]) throws {
        self.path = path
        original = bytes
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw CocoaError(.fileReadNoPermission, userInfo: [NSFilePathErrorKey: path]) }
    }

    deinit { close(fd) }

    public func set(_ offset: Int, _ value: UInt8) {
        var v = value
        _ = pwrite(fd, &v, 1, off_t(offset))
    }

    public func set(_ offset: Int, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) }
    }

    /// Runs `body` with bit `bit` of byte `offset` flipped.
    public func withFlip<R>(_ offset: Int, bit: Int, _ body: () throws -> R) rethrows -> R {
        set(offset, original[offset] ^ UInt8(1 << bit))
        defer { set(offset, original[offset]) }
        return try body()
    }

    /// Calls `body` with the file cut to each of `lengths` (longest first, so each cut is one
    /// ftruncate), then restores it.
    public func forEachLength(_ lengths: [Int], _ body: (Int) throws -> Void) rethrows {
        defer { _ = ftruncate(fd, off_t(original.count)); set(0, original) }
        for length in Set(lengths).sorted(by: >) where length < original.count {
            _ = ftruncate(fd, off_t(length))
            try body(length)
        }
    }
}

/// Seeded choices for the sampled sweeps (a 64-bit LCG).
public struct SeededBits {
    public var state: UInt64
    public init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    public mutating func below(_ n: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(n))
    }
}

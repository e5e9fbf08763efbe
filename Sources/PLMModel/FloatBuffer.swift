#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A large, immutable-after-fill fp32 buffer for weights. It is an anonymous mapping with
/// transparent huge pages requested: first-touch page faults dominate loading a multi-gigabyte
/// model otherwise (measured: 26 % of a 1B-shaped `plmq forward` went to zeroing 4 KiB pages).
public final class FloatBuffer: @unchecked Sendable {
    // Written once while loading, then only read (possibly from several threads).
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private let mappedBytes: Int

    public init(count: Int) {
        self.count = count
        let bytes = max(4 * count, 4)
        let huge = 2 << 20
        mappedBytes = (bytes + huge - 1) / huge * huge
        let p = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let p, p != MAP_FAILED {
            #if canImport(Glibc)
            _ = madvise(p, mappedBytes, MADV_HUGEPAGE)
            #endif
            pointer = p.assumingMemoryBound(to: Float.self)
        } else {
            // Out of address space: fall back to the allocator (which would fail the same way).
            pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        }
    }

    deinit { munmap(pointer, mappedBytes) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public subscript(i: Int) -> Float { pointer[i] }
}

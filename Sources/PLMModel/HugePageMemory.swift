#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Zero-filled memory for large buffers filled once at load and then streamed by the kernels:
/// an anonymous mapping aligned to 2 MiB with transparent huge pages requested. Huge pages save
/// first-touch faults while loading and, for the decode copies that every token reads from end to
/// end, the TLB misses of 4 KiB pages.
final class HugePageMemory: @unchecked Sendable {
    // The mapping is owned here; its bytes are written while loading, then only read.
    let pointer: UnsafeMutableRawPointer
    private let mapping: UnsafeMutableRawPointer?
    private let mappedBytes: Int

    static let hugePage = 2 << 20

    init(byteCount: Int) {
        let bytes = max(byteCount, 1)
        // Whole huge pages only: the tail (and a buffer under 2 MiB) stays on 4 KiB pages, so a
        // small matrix's copy does not grow to a huge page of resident memory.
        let hugeBytes = bytes / Self.hugePage * Self.hugePage
        // One huge page extra, so the start can move to a 2 MiB boundary (the kernel backs only
        // aligned 2 MiB ranges with huge pages).
        let total = bytes + Self.hugePage
        let p = hugeBytes > 0 ? mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : nil
        if let p, p != MAP_FAILED {
            let address = UInt(bitPattern: p), page = UInt(Self.hugePage)
            let start = p + Int((address + page - 1) / page * page - address)
            #if canImport(Glibc)
            _ = madvise(start, hugeBytes, MADV_HUGEPAGE)
            #endif
            pointer = start
            mapping = p
            mappedBytes = total
        } else {
            // Small, or no address space for a mapping: the allocator, zeroed like a mapping.
            pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            mapping = nil
            mappedBytes = 0
        }
    }

    deinit {
        if let mapping { munmap(mapping, mappedBytes) } else { pointer.deallocate() }
    }
}

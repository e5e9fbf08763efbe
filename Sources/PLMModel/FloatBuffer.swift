#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A large, immutable-after-fill fp32 buffer for weights, in HugePageMemory: first-touch page
/// faults dominate loading a multi-gigabyte model otherwise (measured: 26 % of a 1B-shaped
/// `plmq forward` went to zeroing 4 KiB pages).
public final class FloatBuffer: @unchecked Sendable {
    // Written once while loading, then only read (possibly from several threads).
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private let memory: HugePageMemory

    public init(count: Int) {
        self.count = count
        memory = HugePageMemory(byteCount: 4 * max(count, 1))
        pointer = memory.pointer.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public subscript(i: Int) -> Float { pointer[i] }
}

// What every test target shares: where the committed fixtures are, scratch folders, seeded
// random data, the list of storage types, and which kernels this CPU can run.
import CPLMKernels
import Foundation
import PLMQuant

/// Paths to the committed transformers fixtures (Tests/Fixtures).
public enum Fixtures {
    public static let root: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path
    }()
    public static func model(_ variant: String) -> String { root + "/models/" + variant }
    public static func cases(_ variant: String) -> String { root + "/cases/" + variant }
    public static func testCase(_ variant: String, _ name: String) -> String { cases(variant) + "/" + name + ".safetensors" }
    /// The fixture model variants: fp32 MHA tied, bf16 GQA llama3 RoPE untied, PE-G without CLS.
    public static let variants = ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3", "tiny-g-nocls"]
}

/// A scratch folder, removed when the value goes away.
public final class TemporaryFolder: @unchecked Sendable {
    public let path: String

    public init(_ label: String = "test") throws {
        path = NSTemporaryDirectory() + "plmq-\(label)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = path + "/" + name
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    @discardableResult
    public func write(_ name: String, text: String) -> String { write(name, Array(text.utf8)) }

    public func copy(from source: String, _ name: String) throws {
        try FileManager.default.copyItem(atPath: source + "/" + name, toPath: path + "/" + name)
    }
}

/// Deterministic Gaussian values (Box–Muller over a 64-bit LCG).
public func gaussian(_ count: Int, seed: UInt64, scale: Float) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    func uniform() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return max(Float((state >> 40) & 0xFFFFFF) / Float(1 << 24), 1e-7)
    }
    return (0..<count).map { _ in (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) * scale }
}

/// Every quantized storage type the kernels implement, at every group size.
public let kernelTypes: [StorageType] = StorageType.groupSizes.flatMap { g in
    [.int8(.symmetric, groupSize: g), .int8(.asymmetric, groupSize: g), .int4(.symmetric, groupSize: g, scales: .f16),
     .int4(.asymmetric, groupSize: g, scales: .f16), .int4(.asymmetric, groupSize: g, scales: .k6)]
}

/// What this CPU runs, for `.enabled(if:)` on tests of one instruction set: a machine without it
/// reports those tests as skipped instead of quietly testing the portable path a second time.
public enum CPU {
    public static var hasAVX2: Bool { plm_best_impl() >= PLM_IMPL_AVX2 }
    public static var hasAVX512: Bool { plm_best_impl() >= PLM_IMPL_AVX512 }
}

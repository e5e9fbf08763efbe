import PLMCore
import PLMCheckpoint
import PLMModel

/// The inputs of `plmq forward` / `plmq generate`, read from a safetensors file:
/// `input_ids` (I64 or I32, [B, L] or [L]), optional `pixel_values` and `pixel_values_videos`
/// ([N, T, 3, S, S] or [T, 3, S, S], F32/F16/BF16).
struct ModelInputs {
    var sequences: [[Int]]
    var images: PixelTiles?
    var videos: PixelTiles?

    init(path: String) throws {
        let file = try SafetensorsFile(path: path)
        guard let ids = file.info("input_ids") else {
            throw UserFacingError("\(path): no 'input_ids' tensor (expected I64 or I32 with shape [B, L] or [L])")
        }
        guard ids.shape.count == 1 || ids.shape.count == 2, ids.elementCount > 0 else {
            throw UserFacingError("\(path): 'input_ids' has shape \(formatShape(ids.shape)); expected [B, L] or [L] with L > 0")
        }
        let flat = try file.view(ids).integers()
        let length = ids.shape.last!
        sequences = stride(from: 0, to: flat.count, by: length).map { Array(flat[$0..<($0 + length)]) }
        images = try Self.tiles(file, "pixel_values", path: path)
        videos = try Self.tiles(file, "pixel_values_videos", path: path)
    }

    private static func tiles(_ file: SafetensorsFile, _ name: String, path: String) throws -> PixelTiles? {
        guard let info = file.info(name) else { return nil }
        let s = info.shape
        guard (s.count == 4 || s.count == 5), s[s.count - 3] == 3 else {
            throw UserFacingError("\(path): '\(name)' has shape \(formatShape(s)); expected [N, T, 3, H, W] or [T, 3, H, W]")
        }
        let count = s.dropLast(3).reduce(1, *)
        return try PixelTiles(count: count, height: s[s.count - 2], width: s[s.count - 1], values: file.view(info).floats())
    }
}

/// Options every compute command shares.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for the matrix products (default: all cores).")
    var threads: Int?

    @Option(help: "Quantized kernels: auto, avx512, avx2 or portable (for comparisons).")
    var kernel = "auto"

    @Option(help: "Activations of quantized matmuls: int8 (integer dot products) or f32 (for comparisons).")
    var activations = "int8"

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard KernelSettings.Implementation(rawValue: kernel) != nil else { throw ValidationError("--kernel must be auto, avx512, avx2 or portable") }
        guard KernelSettings.Activations(rawValue: activations) != nil else { throw ValidationError("--activations must be int8 or f32") }
    }

    func apply() {
        let n = threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        BLAS.setThreads(n)
        KernelSettings.threads = n
        KernelSettings.implementation = KernelSettings.Implementation(rawValue: kernel) ?? .auto
        KernelSettings.activations = KernelSettings.Activations(rawValue: activations) ?? .int8
    }
}

/// Loads MODEL: a checkpoint folder (fp32 engine) or a `.plm` file (quantized kernels).
func loadModel(_ path: String) throws -> PerceptionLM {
    guard FileSystem.exists(path) else { throw UserFacingError("\(path): no such file or folder") }
    return try PerceptionLM.load(path)
}

import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

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

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func apply() {
        BLAS.setThreads(threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

/// Loads MODEL: a checkpoint folder (fp32 engine).
func loadModel(_ path: String) throws -> PerceptionLM {
    guard FileSystem.isDirectory(path) else {
        throw UserFacingError("\(path): expected a checkpoint folder (config.json + safetensors)")
    }
    return try PerceptionLM.load(checkpoint: path)
}

import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

import Foundation
import ArgumentParser
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
        let count = Checked.product(of: s.dropLast(3)) ?? -1  // -1: PixelTiles refuses it
        return try PixelTiles(count: count, height: s[s.count - 2], width: s[s.count - 1], values: file.view(info).floats())
    }
}

/// Options every compute command shares; they become the model's `EngineOptions`.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for the matrix products and attention (default: all cores).")
    var threads: Int?

    @Option(help: "Kernels: auto, avx512, avx2 or portable. An explicit choice this CPU cannot run is an error.")
    var kernel: KernelImplementation = .auto

    @Option(help: "Activations of quantized matmuls: auto (per phase: int16 for decode; for prefill fp32 sgemm, or the int8 VNNI tile GEMM on AVX-512), int8, int16 or f32 (the same at every row count).")
    var activations: ActivationPrecision = .auto

    @Option(help: "Attention products in prefill and vision tiles: auto (bf16 for a .plm on CPUs with AVX512-BF16, else fp32; a checkpoint folder always fp32), bf16 or f32. Decoding steps always run fp32.")
    var attention: AttentionPrecision = .auto

    @Option(name: .customLong("kv-cache"), help: "How the KV cache stores keys and values: auto (f16 for a .plm, fp32 for a checkpoint folder), f16 (half the bytes a decoding step reads) or f32.")
    var kvCache: KVCachePrecision = .auto

    @Flag(name: .customLong("no-verify"),
          help: "Load a .plm without checking its tensor payload checksums (the header and directory are always checked). Saves about 0.1 s per GB of a cached file; a damaged payload then silently changes the answers.")
    var noVerify = false

    var engine: EngineOptions { EngineOptions(threads: threads, kernel: kernel, activations: activations, attention: attention,
                                          kvCache: kvCache, verifyPayloads: !noVerify) }

    func validate() throws {
        do { try engine.validate() } catch { throw ValidationError(error.description) }
    }
}

extension KernelImplementation: ExpressibleByArgument {}
extension ActivationPrecision: ExpressibleByArgument {}
extension AttentionPrecision: ExpressibleByArgument {}
extension KVCachePrecision: ExpressibleByArgument {}

/// The files MODEL consists of (a .plm file, or every file of a checkpoint folder), which an
/// output must never replace.
func modelFiles(_ path: String) -> [String] {
    guard FileSystem.isDirectory(path) else { return [path] }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []  // unlistable: nothing more to protect than the path
    return [path] + names.map { FileSystem.join(path, $0) }
}

/// Loads MODEL: a checkpoint folder (fp32 engine) or a `.plm` file (quantized kernels).
func loadModel(_ path: String, _ compute: ComputeOptions) throws -> PerceptionLM {
    try PerceptionLM.load(path, options: compute.engine)
}

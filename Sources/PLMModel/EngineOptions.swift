import CPLMKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which family of kernels runs the quantized matrix products and the vector maths.
public enum KernelImplementation: String, CaseIterable, Sendable, Hashable {
    /// The best this CPU supports, chosen at run time.
    case auto
    /// Plain C, for every CPU (the reference the others are tested against).
    case portable
    /// AVX2 + FMA (x86-64 since 2013).
    case avx2
    /// AVX-512 with VNNI (Zen 4/5, Ice Lake and later).
    case avx512

    /// The C dispatcher's code (`PLM_IMPL_*`).
    var code: Int32 {
        switch self {
        case .auto: return plm_best_impl()
        case .portable: return Int32(PLM_IMPL_PORTABLE)
        case .avx2: return Int32(PLM_IMPL_AVX2)
        case .avx512: return Int32(PLM_IMPL_AVX512)
        }
    }

    /// Int8 multiply-adds per second of one core with this family's dot-product instruction,
    /// from registers only (0 for the portable C): the peak `plmq bench` rates the GEMMs against.
    public func int8DotPeak(iterations: Int) -> Double { plm_int8_dot_peak(Int64(iterations), code) }

    /// The best implementation this CPU runs.
    public static var best: KernelImplementation {
        switch plm_best_impl() {
        case Int32(PLM_IMPL_AVX512): return .avx512
        case Int32(PLM_IMPL_AVX2): return .avx2
        default: return .portable
        }
    }
}

/// How the activations enter the quantized matrix products. On a trained model (SmolLM2-135M,
/// Examples/real-model) int8 activations cost int8 weights 3.3x their KLD, so `auto` keeps them
/// only where nothing more precise is as fast (Formats/PLM.md, Activations): decode runs int16
/// activations (integer dot products, error ~1e-5 relative), prefill without AVX-512 runs fp32
/// (dequantized blocks + sgemm).
public enum ActivationPrecision: String, CaseIterable, Sendable, Hashable {
    /// Per phase, the most accurate choice that costs little speed. Decode (fewer than
    /// `QuantizedLinear.denseFallbackRows` rows): int16 per block of 32 on every CPU (as fast
    /// as int8 on AVX-512 within measurement noise, 6–11 % slower on AVX2). Prefill: fp32
    /// through dequantized blocks and sgemm without AVX-512; with it the int8 VNNI tile GEMM,
    /// because int16 there needs two vpdpbusd per product and ran PLM-1B prefill at 0.62× the
    /// int8 speed.
    case auto
    /// Quantized to int8 per block of 32 at every row count (integer dot products; on CPUs
    /// without AVX-512 prefill is slower than `auto`): W·A8 everywhere, for comparisons.
    case int8
    /// Quantized to int16 per block of 32 at every row count: fp32-exact to about 1e-5 relative
    /// everywhere. Prefill runs the split-byte tile GEMM on AVX-512 (0.62× int8's speed) and row
    /// by row elsewhere (slow: for measuring what decode computes).
    case int16
    /// fp32 at every row count (on AVX-512 machines prefill is slower than `auto`).
    case f32
}

/// How attention multiplies queries with keys (the scores) and probabilities with values in
/// prefill and vision tiles. A decoding step's single query always runs fp32 (it reads the cache
/// once and is bound by memory, not arithmetic), and the softmax between the products is fp32.
///
/// On the trained SmolLM2-135M (int8 weights, int16 activations, held-out text, `plmq eval`),
/// bf16 scores raised the mean KLD against fp32 by 11 % at ctx 512 and 16 % at ctx 2048, bf16
/// probabilities × values by 0.5 %: a score's error is bf16's 2⁻⁹ of |q|·|k| and moves its
/// probability exponentially, while P·V averages many rounded terms (Formats/PLM.md, Attention).
public enum AttentionPrecision: String, CaseIterable, Sendable, Hashable {
    /// For a `.plm` model on a CPU with AVX512-BF16: scores fp32, probabilities × values bf16.
    /// fp32 elsewhere, and always for a checkpoint folder (the fp32 reference eval measures
    /// against).
    case auto
    /// Both products bf16: queries, keys, values and probabilities rounded to bf16 (8 significant
    /// bits), exact products summed in fp32 by vdpbf16ps, twice fp32's multiply-adds per
    /// instruction. Fastest; costs the KLD above. Needs AVX512-BF16 and the AVX-512 kernels.
    case bf16
    /// fp32 products (OpenBLAS sgemm) everywhere.
    case f32
}

/// How the KV cache stores the keys (after RoPE) and values of the positions seen so far.
/// A decoding step reads the whole cache once per layer, so at long contexts its bytes rival the
/// weights': on PLM-1B at 4,096 positions fp32 keys and values are 268 MB per token beside the
/// 0.8 GB of int4 weights. Both kinds are widened to fp32 in registers and summed in fp32.
public enum KVCachePrecision: String, CaseIterable, Sendable, Hashable {
    /// f16 for a `.plm` model; fp32 for a checkpoint folder (the fp32 reference eval measures
    /// against).
    case auto
    /// IEEE half precision (11 significant bits, round to nearest even): half the bytes. Values
    /// beyond ±65,504 become infinite, as in llama.cpp's default f16 cache.
    case f16
    /// fp32: the keys and values as computed.
    case f32
}

/// What attention's products run in, resolved from AttentionPrecision for one source.
enum AttentionProducts: Equatable, Sendable {
    case f32
    /// Scores fp32, probabilities × values bf16.
    case bf16Values
    /// Both bf16.
    case bf16
}

/// How a model computes: passed to `PerceptionLM.load(_:options:)` and held by every layer, so
/// two models with different options can run side by side in one process.
public struct EngineOptions: Sendable, Hashable, CustomStringConvertible {
    /// More threads than this is a mistake, not a machine (the worker pool's own limit is 64).
    public static let maxThreads = 64

    /// Workers for the matrix products and attention heads.
    public var threads: Int
    public var kernel: KernelImplementation
    public var activations: ActivationPrecision
    public var attention: AttentionPrecision
    public var kvCache: KVCachePrecision
    /// Check the checksum of every tensor payload of a `.plm` file when it is loaded (the header
    /// and directory are always checked). On by default: it costs about 0.1 s per GB of a cached
    /// file, and without it a damaged byte silently changes the answers (Formats/PLM.md).
    public var verifyPayloads: Bool

    /// All online cores, the best kernels, activations chosen per phase, payloads verified at load.
    public init(threads: Int? = nil, kernel: KernelImplementation = .auto, activations: ActivationPrecision = .auto,
                attention: AttentionPrecision = .auto, kvCache: KVCachePrecision = .auto, verifyPayloads: Bool = true) {
        self.threads = threads ?? EngineOptions.availableCores
        self.kernel = kernel
        self.activations = activations
        self.attention = attention
        self.kvCache = kvCache
        self.verifyPayloads = verifyPayloads
    }

    /// The cores this process may use.
    public static var availableCores: Int {
        max(1, min(maxThreads, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    }

    /// Checks the values against this machine: a thread count out of range or a kernel the CPU
    /// cannot run is an error, never a silent fallback.
    public func validate() throws(EngineError) {
        guard (1...EngineOptions.maxThreads).contains(threads) else {
            throw .invalidOptions("threads must be between 1 and \(EngineOptions.maxThreads), not \(threads)")
        }
        if kernel != .auto, kernel.code > plm_best_impl() {
            throw .invalidOptions("this CPU cannot run the \(kernel.rawValue) kernels (the best it supports is \(KernelImplementation.best.rawValue))")
        }
        if attention == .bf16, !Self.bf16AttentionAvailable(implCode) {
            throw .invalidOptions(plm_cpu_has_avx512_bf16() == 0
                ? "bf16 attention needs a CPU with AVX512-BF16; this one has none (use --attention f32 or auto)"
                : "bf16 attention runs on the AVX-512 kernels, not \(effectiveKernel.rawValue)")
        }
    }

    /// vdpbf16ps can run: the CPU has AVX512-BF16 and the AVX-512 kernels are chosen.
    static func bf16AttentionAvailable(_ impl: Int32) -> Bool {
        impl >= PLM_IMPL_AVX512 && plm_cpu_has_avx512_bf16() != 0
    }

    /// The products attention runs, `auto` resolved per source (see AttentionPrecision);
    /// `reference` is the fp32 checkpoint engine.
    func attentionProducts(reference: Bool) -> AttentionProducts {
        guard Self.bf16AttentionAvailable(implCode) else { return .f32 }
        switch attention {
        case .f32: return .f32
        case .bf16: return .bf16
        case .auto: return reference ? .f32 : .bf16Values
        }
    }

    /// The cache's element kind (`PLM_KV_*`), `auto` resolved per source (see KVCachePrecision).
    func kvCacheKind(reference: Bool) -> Int32 {
        switch kvCache {
        case .f16: return Int32(PLM_KV_F16)
        case .f32: return Int32(PLM_KV_F32)
        case .auto: return reference ? Int32(PLM_KV_F32) : Int32(PLM_KV_F16)
        }
    }

    /// The implementation that runs (auto resolved to the CPU's best).
    public var effectiveKernel: KernelImplementation { kernel == .auto ? .best : kernel }

    /// The code handed to the C kernels.
    var implCode: Int32 { effectiveKernel.code }

    public var description: String {
        "\(threads) thread\(threads == 1 ? "" : "s"), kernels \(effectiveKernel.rawValue), activations \(activations.rawValue), attention \(attention.rawValue), KV cache \(kvCache.rawValue)"
    }
}

import COpenBLAS
import CPLMKernels
#if canImport(Glibc)
import Glibc
#endif

/// The fp32 matrix products of the reference engine, through OpenBLAS. Row-major throughout.
public enum BLAS {
    /// OpenBLAS runs single-threaded inside plmq's own workers (dense layers split their
    /// columns, attention its heads). Its own pool would otherwise spin in sched_yield beside
    /// the quantized kernels (measured: a quarter of a 1B forward pass), and changing its
    /// process-wide thread count per call allocates and races between models.
    private static let pinned: Void = {
        repairCoreSelection()
        openblas_set_num_threads(1)
    }()

    /// The kernel family OpenBLAS chose for this CPU ("SkylakeX", "Haswell", "Prescott", …).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Debian 12's OpenBLAS (0.3.21) does not know CPUs newer than itself, such as Emerald
    /// Rapids (family 6 model 207), and falls back to its Prescott (SSE3) kernels there: sgemm
    /// ran at 32 GFLOP/s per core instead of 150 with its SkylakeX kernels (`plmq bench`, (c)).
    /// When the user has not chosen a core (OPENBLAS_CORETYPE) and OpenBLAS took that fallback
    /// on a CPU with AVX-512 or AVX2, its core selection is run again with the matching family.
    /// The selection functions exist only in builds with DYNAMIC_ARCH (Debian's), so they are
    /// looked up at run time; without them nothing changes.
    private static func repairCoreSelection() {
        guard getenv("OPENBLAS_CORETYPE") == nil, coreName == "Prescott" else { return }
        let family: String
        switch plm_best_impl() {
        case Int32(PLM_IMPL_AVX512): family = "SkylakeX"
        case Int32(PLM_IMPL_AVX2): family = "Haswell"
        default: return
        }
        typealias Hook = @convention(c) () -> Void
        guard let handle = dlopen(nil, RTLD_NOW), let quit = dlsym(handle, "gotoblas_dynamic_quit"),
              let initialize = dlsym(handle, "gotoblas_dynamic_init") else { return }
        setenv("OPENBLAS_CORETYPE", family, 1)
        unsafeBitCast(quit, to: Hook.self)()
        unsafeBitCast(initialize, to: Hook.self)()
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// Pins OpenBLAS to one thread (idempotent; called by every layer that uses it).
    public static func useSingleThreadedKernels() { _ = pinned }

    /// C[m×n] = alpha · A[m×k] · B[n×k]ᵀ + beta · C  (B given row-major as n rows of k: a weight [out, in]).
    @inline(__always)
    public static func gemmABt(m: Int, n: Int, k: Int, alpha: Float = 1,
                               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                               beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C[m×n] = alpha · A[m×k] · B[k×n] + beta · C.
    @inline(__always)
    public static func gemmAB(m: Int, n: Int, k: Int, alpha: Float = 1,
                              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                              beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

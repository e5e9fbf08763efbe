import COpenBLAS

/// The fp32 matrix products of the reference engine, through OpenBLAS. Row-major throughout.
public enum BLAS {
    /// OpenBLAS runs single-threaded inside plmq's own workers (dense layers split their
    /// columns, attention its heads). Its own pool would otherwise spin in sched_yield beside
    /// the quantized kernels (measured: a quarter of a 1B forward pass), and changing its
    /// process-wide thread count per call allocates and races between models.
    private static let pinned: Void = openblas_set_num_threads(1)

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

import COpenBLAS

/// The fp32 matrix products of the reference engine, through OpenBLAS. Row-major throughout.
public enum BLAS {
    /// The thread count last given to OpenBLAS (changing it allocates, so it is only set when it
    /// changes: the quantized engine, whose only sgemm is attention's, never changes it again).
    nonisolated(unsafe) private static var current = -1

    /// Sets how many threads OpenBLAS uses (plmq's `--threads`).
    public static func setThreads(_ n: Int) {
        let wanted = max(1, n)
        guard wanted != current else { return }
        current = wanted
        openblas_set_num_threads(Int32(wanted))
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

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

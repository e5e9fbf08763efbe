/// y[:, first..<last] = x · Wᵀ for weights stored in another form (bf16, quantized): blocks of
/// weight rows are decoded to fp32 into scratch and multiplied with single-threaded sgemm, so the
/// arithmetic is OpenBLAS's on a widened matrix without a widened copy of the weights. One worker
/// calls it for its own range of weight rows.
enum BlockedDense {
    /// Weight rows decoded at a time: about 1 Mi values (4 MiB of fp32), at least 64 rows. Each
    /// sgemm call packs all of x again, so narrow blocks spend their time packing (measured on
    /// PLM-1B bf16, 512-token prefill: 64-row blocks ran 2.5× slower than the widened matrix).
    static func blockRows(columns k: Int) -> Int { max(64, min(1024, (1 << 20) / max(k, 1) / 16 * 16)) }

    /// `decode(first, count, out)` writes weight rows first ..< first + count as fp32 into out
    /// (row stride k).
    static func multiply(_ x: UnsafePointer<Float>, rows: Int, columns k: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
                         weightRows: Range<Int>, decode: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        guard !weightRows.isEmpty else { return }
        let blockRows = min(Self.blockRows(columns: k), weightRows.count)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * k)
        defer { scratch.deallocate() }
        var rb = weightRows.lowerBound
        while rb < weightRows.upperBound {
            let nb = min(blockRows, weightRows.upperBound - rb)
            decode(rb, nb, scratch)
            BLAS.gemmABt(m: rows, n: nb, k: k, a: x, lda: k, b: scratch, ldb: k, c: y + rb, ldc: ldy)
            rb += nb
        }
    }
}

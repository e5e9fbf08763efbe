import CPLMKernels
import Synchronization
import PLMFormat
import PLMQuant

/// y = x·Wᵀ + b with W quantized in a mapped `.plm` file: the weight bytes are used in place.
/// Output rows are split across `options.threads` workers; with several input rows
/// (prefill, vision tiles) each worker takes a tile of weight rows and runs every input row
/// against it while the tile is in cache.
public final class QuantizedLinear: LinearMap, @unchecked Sendable {
    // The matrix points into `keepAlive` (mapped file slices or decompressed copies); immutable.
    public let inFeatures: Int
    public let outFeatures: Int
    public let type: StorageType
    let options: EngineOptions
    let matrix: plm_qmatrix
    let bias: [Float]?
    private let keepAlive: [PartBytes]
    private let rawPointers: [UnsafeRawPointer?]
    /// The decode layout (int4 k6 g32 on AVX2 and AVX-512 machines), built at load.
    let repacked: RepackedMatrix?
    /// The int8 kinds' levels interleaved four rows at a time (AVX2 and AVX-512 machines), built
    /// at load: decode, the fp32 prefill path and embedding lookups read it.
    let int8Tiles: InterleavedInt8?
    /// Activation scratch for single-row calls, so a decode step allocates nothing; the lock
    /// keeps a model usable from several threads (they take turns on this matrix).
    private let singleLock = Mutex(())
    private let single: RowScratch

    init(file: PLMFile, tensor t: PLMTensor, bias: [Float]?, options: EngineOptions) throws(PLMError) {
        self.options = options
        BLAS.useSingleThreadedKernels()
        var parts: [String: PartBytes] = [:]
        for p in t.parts { parts[p.name] = try file.bytes(t, part: p.name) }
        keepAlive = Array(parts.values)
        func pointer(_ name: String) -> UnsafeRawPointer? { parts[name]?.withBytes { $0.baseAddress } }
        rawPointers = [pointer("data"), pointer("scales"), pointer("mins")]
        let layout = t.layout
        guard let kind = t.type.kernelKind else {
            throw .tensorInvalid(file: file.path, tensor: t.name, detail: "not a quantized type")
        }
        var matrix = plm_qmatrix(kind: kind, group: Int32(t.type.groupSize!), rows: Int64(layout.rows), cols: Int64(layout.columns),
                             data: rawPointers[0]?.assumingMemoryBound(to: UInt8.self),
                             scales: rawPointers[1]?.assumingMemoryBound(to: UInt8.self),
                             mins: rawPointers[2]?.assumingMemoryBound(to: UInt8.self),
                             data_row_bytes: Int64(layout.dataBytesPerRow), scale_row_bytes: Int64(layout.scaleBytesPerRow),
                             min_row_bytes: Int64(layout.minBytesPerRow), q8_tiles: nil)
        inFeatures = layout.columns
        outFeatures = layout.rows
        type = t.type
        self.bias = bias
        single = RowScratch(columns: layout.columns)
        // The portable build keeps the file layout: its reference GEMV over the repacked bytes
        // is no faster, and the copy would only add memory.
        repacked = options.implCode >= PLM_IMPL_AVX2 ? RepackedMatrix(matrix, threads: options.threads) : nil
        // AVX-512 machines decode the int8 kinds from the interleaved copy with the AVX2 kernel
        // too: interleaved decode A/B on a 2-core Zen 4 (PLM-1B, `plmq bench --depth 0`), the
        // AVX-512 kernel over a huge-page copy of the file's rows vs this: int8 8.5–9.3 →
        // 10.8–14.0 tokens/s on 1 thread, 9.2–12.0 → 12.7–17.2 on 2; int4 with its int8 head
        // 22.6–25.1 → 25.8–29.8 on 2. Their AVX-512 tile GEMMs (prefill) read the rows from the
        // copy too (q8_tiles).
        int8Tiles = options.implCode >= PLM_IMPL_AVX2 ? InterleavedInt8(matrix, threads: options.threads) : nil
        matrix.q8_tiles = int8Tiles?.bytes
        self.matrix = matrix
        // A copy serves decode and prefill (the fp32 path dequantizes from it too), so release
        // the mapped levels: RSS stays about the file size. Only the fp32-activation GEMV beside
        // a copy, and int8 activations on AVX2, re-read them.
        if repacked != nil || int8Tiles != nil { parts["data"]?.dropResidentPages() }
    }

    deinit { single.deallocate() }

    /// From this many input rows on, a matrix product is prefill-like (bound by arithmetic, not
    /// by the weight bytes). There, fp32 activations go through blocks of dequantized weight rows
    /// and OpenBLAS's sgemm: a row-by-row GEMV re-reads the weights for every row and ran a
    /// PLM-1B vision tile in two minutes on an AVX2 machine. Dequantizing 64 rows costs less
    /// than the sgemm from about this many rows on.
    static let denseFallbackRows = 32

    /// How a call of `rows` input rows computes, from the options (see ActivationPrecision).
    enum Path: Equatable { case int8, int16Gemv, f32Gemv, denseF32 }

    /// `repackedInt4`: the matrix has the repacked int4 copy, whose AVX2 tile GEMM runs int8
    /// activations at about 1.5× the fp32 path (Formats/PLM.md, Activations).
    static func path(rows: Int, options: EngineOptions, repackedInt4: Bool = false) -> Path {
        let prefill = rows >= denseFallbackRows
        switch options.activations {
        case .int8: return .int8
        case .int16: return .int16Gemv
        case .f32: return prefill ? .denseF32 : .f32Gemv
        case .auto:
            // Decode: int16 activations cost about what int8 costs (vpdpwssd or split bytes on
            // AVX-512, vpmaddwd on AVX2) and are about fp32-exact; the fp32 GEMV dequantizes in
            // registers and is compute-bound (Formats/PLM.md, Activations).
            if !prefill { return .int16Gemv }
            // Prefill: the int8 tile GEMMs where they exist (VNNI on AVX-512 for every type, the
            // AVX2 one over repacked int4), so both machine kinds compute the same; elsewhere
            // fp32 through sgemm (the int8 kinds on AVX2 have no faster GEMM).
            let int8Gemm = options.implCode >= PLM_IMPL_AVX512 || (options.implCode >= PLM_IMPL_AVX2 && repackedInt4)
            return int8Gemm ? .int8 : .denseF32
        }
    }

    /// Weight rows per work item: a tile that stays in cache while every input row runs over it
    /// (declared with the repacked layout in plm_layout.h).
    static let tileRows = Int(PLM_TILE_ROWS)

    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        if rows == 1 {
            singleLock.withLock { _ in compute(x, rows: 1, into: y) }
        } else {
            compute(x, rows: rows, into: y)
        }
    }

    private func compute(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let k = inFeatures, n = outFeatures
        let blocks = (k + 31) / 32
        let path = Self.path(rows: rows, options: options, repackedInt4: repacked != nil)
        // Activations quantized once per call (per 32-block), shared by all workers. A single
        // row uses the preallocated buffers (under singleLock); the fp32 paths never touch
        // them, so several rows allocate only where the integer kernels run.
        let quantized = path == .int8 || path == .int16Gemv
        let perCall = quantized && rows > 1
        let wide = path == .int16Gemv
        let q = perCall && !wide ? UnsafeMutablePointer<Int8>.allocate(capacity: rows * blocks * 32) : single.act.q
        let q16 = perCall && wide ? UnsafeMutablePointer<Int16>.allocate(capacity: rows * blocks * 32) : single.act.q16
        let d = perCall ? UnsafeMutablePointer<Float>.allocate(capacity: rows * blocks) : single.act.d
        let sums = perCall ? UnsafeMutablePointer<Float>.allocate(capacity: rows * blocks) : single.act.sums
        let act = QuantizedRows(q: q, q16: q16, d: d, sums: sums)
        defer {
            if perCall {
                if wide { q16.deallocate() } else { q.deallocate() }
                d.deallocate(); sums.deallocate()
            }
        }
        if quantized {
            // Rows are independent: quantize them on the workers too (8 % of a forward pass otherwise).
            var job = QuantizeJob(x: x, act: act, wide: wide, rows: rows, k: k,
                                  workers: max(1, min(options.threads, rows / 8)), impl: options.implCode)
            WorkerPool.run(job.workers, &job) { context, worker in
                guard let j = context?.assumingMemoryBound(to: QuantizeJob.self).pointee else { return }
                for m in stride(from: Int(worker), to: j.rows, by: j.workers) {
                    j.act.quantize(row: m, of: j.x, columns: j.k, wide: j.wide, impl: j.impl)
                }
            }
        }
        let tiles = tileCount
        let workers = max(1, min(options.threads, tiles))
        // A single row (decode) is bound by the weight bytes: its tiles go out in chunks, so a
        // worker slowed by the rest of the machine does not keep the others waiting at the end.
        let claim = rows == 1 && workers > 1 ? single.claim : nil
        claim?.pointee = 0
        var job = MatmulJob(linear: Unmanaged.passUnretained(self), x: x, y: y, act: act, rows: rows, k: k, n: n,
                            blocks: blocks, tiles: tiles, workers: workers, impl: options.implCode, path: path,
                            claim: claim, chunkTiles: Self.chunkTiles(tiles: tiles, workers: workers))
        WorkerPool.run(job.workers, &job) { context, worker in
            guard let j = context?.assumingMemoryBound(to: MatmulJob.self).pointee else { return }
            j.linear.takeUnretainedValue().computeTiles(j, worker: Int(worker))
        }
    }

    /// Adds the bias to the worker's columns [r0, r1) of every row: on the workers, since a
    /// serial pass over a vision tile's outputs (1,025 × 4,096 values) held back two threads.
    private func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, n: Int, columns: Range<Int>) {
        guard let bias else { return }
        bias.withUnsafeBufferPointer { b in
            for m in 0..<rows {
                let row = y + m * n
                for o in columns { row[o] += b[o] }
            }
        }
    }

    /// One worker's share of the weight tiles: a contiguous range (each worker streams its own
    /// part of the weights and writes its own columns of y), or chunks claimed in turn.
    fileprivate func computeTiles(_ j: MatmulJob, worker: Int) {
        guard let claim = j.claim else {
            computeTiles(j, first: worker * j.tiles / j.workers, last: (worker + 1) * j.tiles / j.workers)
            return
        }
        while true {
            let first = Int(plm_pool_claim(claim, Int64(j.chunkTiles)))
            guard first < j.tiles else { return }
            computeTiles(j, first: first, last: min(j.tiles, first + j.chunkTiles))
        }
    }

    /// Chunks per worker of a single-row call: enough to even out workers running at different
    /// speeds, few enough that the per-call setup (the int16 split) stays negligible.
    static let chunksPerWorker = 4

    /// Tiles per claimed chunk of a single-row call over `tiles` tiles.
    static func chunkTiles(tiles: Int, workers: Int) -> Int { max(2, tiles / (workers * chunksPerWorker)) }

    /// Weight tiles of tileRows rows (the last one may be short).
    var tileCount: Int { (outFeatures + Self.tileRows - 1) / Self.tileRows }

    /// Weight tiles [first, last) for every input row.
    func computeTiles(_ j: MatmulJob, first: Int, last: Int) {
        var matrix = self.matrix
        let r0 = first * Self.tileRows, r1 = min(j.n, last * Self.tileRows)
        guard r0 < r1 else { return }
        defer { addBias(j.y, rows: j.rows, n: j.n, columns: r0..<r1) }
        if j.path == .denseF32 {
            // Blocks of weight rows dequantized (the C reference definition), then sgemm.
            let layout = repacked?.layout
            BlockedDense.multiply(j.x, rows: j.rows, columns: j.k, into: j.y, ldy: j.n, weightRows: r0..<r1) { r, count, out in
                for i in 0..<count {
                    if var layout {
                        plm_repacked_dequantize_row(&layout, Int64(r + i), out + i * j.k)
                    } else if let tiles = int8Tiles?.bytes {
                        plm_q8tiles_dequantize_row(&matrix, tiles, Int64(r + i), out + i * j.k)
                    } else {
                        plm_dequantize_row(&matrix, Int64(r + i), out + i * j.k)
                    }
                }
            }
        } else if j.path == .int16Gemv {
            let layout = repacked?.layout
            if j.rows >= 4, j.impl >= PLM_IMPL_AVX512 {
                // The AVX-512 tile GEMM over int16 activations split into bytes.
                if var layout, plm_qgemm16_repacked(&layout, j.act.q16, j.act.d, j.act.sums, Int64(j.rows), j.y + r0, Int64(j.n), Int64(first), Int64(last), j.impl) == 1 {
                    return
                }
                plm_qgemm16(&matrix, j.act.q16, j.act.d, j.act.sums, j.x, Int64(j.rows), j.y + r0, Int64(j.n), Int64(r0), Int64(r1), j.impl)
                return
            }
            // Decode passes the worker's whole range in one call (the repacked kernel splits the
            // activations once per call); a few rows go tile by tile, every row against the
            // tile while it is in cache.
            let step = j.rows == 1 ? max(1, last - first) : 1
            for t in stride(from: first, to: last, by: step) {
                let tEnd = min(last, t + step)
                let t0 = t * Self.tileRows, t1 = min(j.n, tEnd * Self.tileRows)
                for m in 0..<j.rows {
                    var act = plm_qact16(q: j.act.q16 + m * j.blocks * 32, d: j.act.d + m * j.blocks, sum: j.act.sums + m * j.blocks,
                                         x: j.x + m * j.k, cols: Int64(j.k))
                    if var layout {
                        plm_qgemv16_repacked(&layout, &act, j.y + m * j.n + t0, Int64(t), Int64(tEnd), j.impl)
                    } else if let tiles = int8Tiles?.bytes {
                        plm_qgemv16_q8tiles(&matrix, tiles, &act, j.y + m * j.n + t0, Int64(t0), Int64(t1), j.impl)
                    } else {
                        plm_qgemv16(&matrix, &act, j.y + m * j.n + t0, Int64(t0), Int64(t1), j.impl)
                    }
                }
            }
        } else if j.path == .f32Gemv {
            // y[m, r0..<r1] is contiguous: written in place (a decode step allocates nothing).
            for m in 0..<j.rows {
                plm_qgemv_f32(&matrix, j.x + m * j.k, j.y + m * j.n + r0, Int64(r0), Int64(r1), j.impl)
            }
        } else if j.rows == 1, let repacked {
            var act = plm_qact(q: j.act.q, d: j.act.d, sum: j.act.sums, x: j.x, cols: Int64(j.k))
            var r = repacked.layout
            plm_qgemv_repacked(&r, &act, j.y + r0, Int64(first), Int64(last), j.impl)
        } else if let repacked, j.rows >= 4 || j.impl < PLM_IMPL_AVX512 {
            // The AVX-512 tile GEMM, or one repacked GEMV per row and tile elsewhere.
            var r = repacked.layout
            plm_qgemm_repacked(&r, j.act.q, j.act.d, j.act.sums, Int64(j.rows), j.y + r0, Int64(j.n), Int64(first), Int64(last), j.impl)
        } else {
            // Writes y[m, r0..<r1] in place (row stride n): the tile GEMM for several rows,
            // one GEMV for a single row (decode).
            plm_qgemm(&matrix, j.act.q, j.act.d, j.act.sums, j.x, Int64(j.rows), j.y + r0, Int64(j.n), Int64(r0), Int64(r1), j.impl)
        }
    }

    /// Dequantizes row `r` (an embedding lookup of a quantized table), without allocating,
    /// through the C reference that every kernel is tested against.
    func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        var matrix = self.matrix
        if let tiles = int8Tiles?.bytes {
            plm_q8tiles_dequantize_row(&matrix, tiles, Int64(r), out)
        } else {
            plm_dequantize_row(&matrix, Int64(r), out)
        }
    }
}

/// A row-interleaved copy of an int4 k6 matrix for the decode kernel (see CPLMKernels.h), built
/// on all workers at load. Tiles are `QuantizedLinear.tileRows` (PLM_TILE_ROWS) rows.
final class RepackedMatrix: @unchecked Sendable {
    // Written once in init, then only read.
    let layout: plm_q4k6_repacked
    private let storage: HugePageMemory

    init?(_ matrix: plm_qmatrix, threads: Int) {
        guard matrix.kind == PLM_Q4_ASYM_K6, matrix.group == 32, matrix.cols % 256 == 0 else { return nil }
        let tiles = (Int(matrix.rows) + QuantizedLinear.tileRows - 1) / QuantizedLinear.tileRows
        let tileBytes = Int(plm_repacked_tile_bytes(matrix.cols))
        storage = HugePageMemory(byteCount: tiles * tileBytes)
        layout = plm_q4k6_repacked(rows: matrix.rows, cols: matrix.cols, tiles: Int64(tiles), tile_bytes: Int64(tileBytes),
                                   bytes: storage.pointer.bindMemory(to: UInt8.self, capacity: max(1, tiles * tileBytes)))
        var job = LoadCopyJob(matrix: matrix, tiles: tiles, workers: max(1, min(threads, tiles)), repacked: layout, int8Tiles: nil)
        job.run()
    }
}

/// An int8 matrix's levels interleaved PLM_Q8_TILE_ROWS rows at a time (plm_layout.h), built on
/// all workers at load: the AVX2 decode GEMV then reads one stream, where four rows at once
/// reached about 0.65 of a plain read's bandwidth (0.85 interleaved, 131 MB matrix).
final class InterleavedInt8: @unchecked Sendable {
    // Written once in init, then only read.
    let bytes: UnsafePointer<UInt8>
    private let storage: HugePageMemory

    init?(_ matrix: plm_qmatrix, threads: Int) {
        var m = matrix
        let byteCount = Int(plm_q8_tiles_bytes(&m))
        guard matrix.kind == PLM_Q8_SYM || matrix.kind == PLM_Q8_ASYM, matrix.cols % 32 == 0, matrix.group > 0,
              matrix.cols % Int64(matrix.group) == 0, byteCount > 0 else { return nil }
        let tiles = (Int(matrix.rows) + Int(PLM_Q8_TILE_ROWS) - 1) / Int(PLM_Q8_TILE_ROWS)
        storage = HugePageMemory(byteCount: byteCount)
        let target = storage.pointer.bindMemory(to: UInt8.self, capacity: byteCount)
        bytes = UnsafePointer(target)
        var job = LoadCopyJob(matrix: matrix, tiles: tiles, workers: max(1, min(threads, tiles)), repacked: nil, int8Tiles: target)
        job.run()
    }
}

/// One load-time copy of a matrix (the int4 repack or the int8 interleave) on the worker pool,
/// each worker taking a contiguous range of tiles.
fileprivate struct LoadCopyJob {
    let matrix: plm_qmatrix
    let tiles: Int, workers: Int
    let repacked: plm_q4k6_repacked?
    let int8Tiles: UnsafeMutablePointer<UInt8>?

    mutating func run() {
        WorkerPool.run(workers, &self) { context, worker in
            guard let j = context?.assumingMemoryBound(to: LoadCopyJob.self).pointee else { return }
            var m = j.matrix
            let t0 = Int64(Int(worker) * j.tiles / j.workers), t1 = Int64((Int(worker) + 1) * j.tiles / j.workers)
            if var r = j.repacked {
                _ = plm_repack_q4k6(&m, &r, t0, t1)
            } else if let target = j.int8Tiles {
                _ = plm_interleave_q8(&m, target, t0, t1)
            }
        }
    }
}

/// The shared inputs of one parallel matmul (read by every worker; each writes its own rows of y).
struct MatmulJob {
    let linear: Unmanaged<QuantizedLinear>
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    let act: QuantizedRows
    let rows: Int, k: Int, n: Int, blocks: Int, tiles: Int, workers: Int
    let impl: Int32
    let path: QuantizedLinear.Path
    /// Single-row calls: the shared counter of claimed tiles, and how many a claim takes.
    let claim: UnsafeMutablePointer<Int64>?
    let chunkTiles: Int
}

/// Activation rows to quantize, strided across workers.
fileprivate struct QuantizeJob {
    let x: UnsafePointer<Float>
    let act: QuantizedRows
    /// int16 levels into act.q16, else int8 into act.q.
    let wide: Bool
    let rows: Int, k: Int, workers: Int
    let impl: Int32
}

/// Rows of quantized activations: int8 levels (q) or int16 ones (q16), 32 per block, with each
/// block's scale (d) and sum of values (sums).
struct QuantizedRows {
    let q: UnsafeMutablePointer<Int8>
    let q16: UnsafeMutablePointer<Int16>
    let d: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Float>

    /// Quantizes row m of x (rows of `columns` values) into row m: int16 levels when `wide`,
    /// else int8.
    func quantize(row m: Int, of x: UnsafePointer<Float>, columns k: Int, wide: Bool, impl: Int32) {
        let blocks = (k + 31) / 32
        let xm = x + m * k, dm = d + m * blocks, sm = sums + m * blocks
        if wide {
            plm_quantize_activations16(xm, Int64(k), q16 + m * blocks * 32, dm, sm, impl)
        } else {
            plm_quantize_activations(xm, Int64(k), q + m * blocks * 32, dm, sm, impl)
        }
    }
}

/// One activation row's quantized levels and the claim counter of a single-row call: allocated
/// once per matrix (or fused group), so a decode step allocates nothing.
struct RowScratch {
    let act: QuantizedRows
    let claim: UnsafeMutablePointer<Int64>

    init(columns: Int) {
        let blocks = (columns + 31) / 32
        act = QuantizedRows(q: .allocate(capacity: blocks * 32), q16: .allocate(capacity: blocks * 32),
                            d: .allocate(capacity: blocks), sums: .allocate(capacity: blocks))
        claim = .allocate(capacity: 1)
    }

    func deallocate() { act.q.deallocate(); act.q16.deallocate(); act.d.deallocate(); act.sums.deallocate(); claim.deallocate() }
}

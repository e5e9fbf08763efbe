import CPLMKernels
import Synchronization

/// Quantized matrices that read the same input, run over one row as a single parallel section:
/// a decoding step's q/k/v projections and its gate/up pair. Computed apart, each matrix
/// quantizes the row again and ends in its own wait for the slowest worker (seven sections a
/// layer, two of them over the 512-row k and v); together the activations are quantized once
/// and the workers claim chunks of every member's tiles from one counter, so a layer has four
/// sections. Each member computes its tiles with its own kernel (the members may be of
/// different storage types), so the output is exactly the members' outputs, one after another.
final class FusedRowLinear: @unchecked Sendable {
    // Immutable after init; the scratch is used only under `lock`.
    let members: [QuantizedLinear]
    /// The sum of the members' outputs; `apply` writes them back to back in member order.
    let outFeatures: Int
    let inFeatures: Int
    private let offsets: [Int]
    private let chunks: [Chunk]
    private let path: QuantizedLinear.Path
    private let workers: Int
    private let impl: Int32
    private let lock = Mutex(())
    private let scratch: RowScratch

    /// Tiles [first, last) of one member.
    struct Chunk { let member: Int, first: Int, last: Int }

    /// nil unless every map is a QuantizedLinear over the same input width with the same engine
    /// options (the fp32 reference and observed layers run apart).
    init?(_ maps: [any LinearMap]) {
        let members = maps.compactMap { $0 as? QuantizedLinear }
        guard members.count == maps.count, members.count > 1, let head = members.first,
              members.allSatisfy({ $0.inFeatures == head.inFeatures && $0.options == head.options }) else { return nil }
        self.members = members
        inFeatures = head.inFeatures
        impl = head.options.implCode
        // One row: the path does not depend on the storage type (see QuantizedLinear.path).
        path = QuantizedLinear.path(rows: 1, options: head.options)
        var offsets: [Int] = [], chunks: [Chunk] = [], total = 0
        workers = max(1, min(head.options.threads, members.reduce(0) { $0 + $1.tileCount }))
        for (i, m) in members.enumerated() {
            offsets.append(total)
            total += m.outFeatures
            let tiles = m.tileCount, size = QuantizedLinear.chunkTiles(tiles: tiles, workers: workers)
            for first in stride(from: 0, to: tiles, by: size) { chunks.append(Chunk(member: i, first: first, last: min(tiles, first + size))) }
        }
        self.offsets = offsets
        self.chunks = chunks
        outFeatures = total
        scratch = RowScratch(columns: inFeatures)
    }

    deinit { scratch.deallocate() }

    /// y[0 ..< outFeatures] = every member's x·Wᵀ + b for one row x, in member order.
    func apply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        lock.withLock { _ in
            if path == .int8 || path == .int16Gemv {
                scratch.act.quantize(row: 0, of: x, columns: inFeatures, wide: path == .int16Gemv, impl: impl)
            }
            scratch.claim.pointee = 0
            var job = FusedJob(group: Unmanaged.passUnretained(self), x: x, y: y)
            WorkerPool.run(workers, &job) { context, _ in
                guard let j = context?.assumingMemoryBound(to: FusedJob.self).pointee else { return }
                j.group.takeUnretainedValue().claimChunks(x: j.x, y: j.y)
            }
        }
    }

    /// One worker: chunks claimed in turn until none is left.
    private func claimChunks(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        while true {
            let c = Int(plm_pool_claim(scratch.claim, 1))
            guard c < chunks.count else { return }
            let chunk = chunks[c], member = members[chunk.member]
            let k = member.inFeatures, n = member.outFeatures
            let job = MatmulJob(linear: Unmanaged.passUnretained(member), x: x, y: y + offsets[chunk.member], act: scratch.act,
                                rows: 1, k: k, n: n, blocks: (k + 31) / 32, tiles: member.tileCount, workers: workers,
                                impl: impl, path: path, claim: nil, chunkTiles: chunk.last - chunk.first)
            member.computeTiles(job, first: chunk.first, last: chunk.last)
        }
    }
}

/// The shared inputs of one fused call (each worker writes the tiles it claims).
private struct FusedJob {
    let group: Unmanaged<FusedRowLinear>
    let x: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
}

/// Quantizes and dequantizes the rows of one tensor in one storage type. Rows are independent,
/// so a tensor can be split across threads in any way and the bytes are the same.
///
/// This is the scalar reference: the format's definition in code. Fast kernels are tested
/// against `dequantize`.
public struct RowQuantizer: Sendable {
    public let layout: StorageLayout

    public init(layout: StorageLayout) {
        precondition(layout.type.isQuantized, "RowQuantizer handles int8/int4 types")
        self.layout = layout
    }

    var groupSize: Int { layout.type.groupSize! }

    /// Pointers to one row's slices of the data, scales and mins parts.
    public struct RowParts {
        public var data: UnsafeMutableRawPointer
        public var scales: UnsafeMutableRawPointer?
        public var mins: UnsafeMutableRawPointer?

        public init(data: UnsafeMutableRawPointer, scales: UnsafeMutableRawPointer?, mins: UnsafeMutableRawPointer?) {
            self.data = data
            self.scales = scales
            self.mins = mins
        }
    }

    /// Quantizes `rows` consecutive rows of `w` (rows × K floats) into the part buffers, which
    /// point at the first of these rows.
    ///
    /// `importance` (K positive floats, shared by all rows) weighs each column's squared error in
    /// the scale searches: calibration's mean squared activation of that input. Without it every
    /// column counts alike. int8-asym is range-based (no search) and ignores it.
    public func quantize(_ w: UnsafePointer<Float>, rows: Int, into parts: RowParts, importance: UnsafePointer<Float>? = nil) {
        var lanes = GroupLanes(capacity: groupSize)
        defer { lanes.deallocate() }
        for r in 0..<rows {
            quantizeRow(w + r * layout.columns, into: RowParts(
                data: parts.data + r * layout.dataBytesPerRow,
                scales: parts.scales.map { $0 + r * layout.scaleBytesPerRow },
                mins: parts.mins.map { $0 + r * layout.minBytesPerRow }), importance: importance, lanes: &lanes)
        }
    }

    public func quantizeRow(_ w: UnsafePointer<Float>, into p: RowParts, importance: UnsafePointer<Float>? = nil) {
        var lanes = GroupLanes(capacity: groupSize)
        defer { lanes.deallocate() }
        quantizeRow(w, into: p, importance: importance, lanes: &lanes)
    }

    /// The f16 NaN that marks a group holding a NaN or ±Inf weight (`plmq convert
    /// --allow-nonfinite`): its levels are stored as 0 and its scale (and minimum) as NaN, so every
    /// weight of the group dequantizes to NaN and every output that reads it is NaN, never a
    /// finite value made up from the rest of the group. For `k6` the super-block's `d` and `dmin`
    /// are NaN, which covers its 8 groups.
    public static let nonFiniteMarker = Float16.nan

    func quantizeRow(_ w: UnsafePointer<Float>, into p: RowParts, importance: UnsafePointer<Float>?, lanes: inout GroupLanes) {
        let g = groupSize
        switch layout.type {
        case .int8(let scheme, _):
            for i in 0..<layout.groupsPerRow {
                let n = layout.groupLength(i)
                let q = p.data + i * g
                if !Self.allFinite(w + i * g, n) {
                    _ = q.initializeMemory(as: UInt8.self, repeating: 0, count: n)
                    storeF16(Self.nonFiniteMarker, p.scales!, i)
                    if scheme == .asymmetric { storeF16(Self.nonFiniteMarker, p.mins!, i) }
                } else if scheme == .symmetric {
                    lanes.load(w + i * g, count: n, importance: importance.map { $0 + i * g })
                    let s = Int8Codec.symmetric(lanes, into: q.assumingMemoryBound(to: Int8.self))
                    storeF16(s, p.scales!, i)
                } else {
                    let (s, m) = Int8Codec.asymmetric(w + i * g, count: n, into: q.assumingMemoryBound(to: UInt8.self))
                    storeF16(s, p.scales!, i)
                    storeF16(m, p.mins!, i)
                }
            }
        case .int4(.symmetric, _, _):
            var levels = [UInt8](repeating: 0, count: g)
            for i in 0..<layout.groupsPerRow {
                let n = layout.groupLength(i), x = w + i * g
                lanes.load(x, count: n, importance: importance.map { $0 + i * g })
                guard lanes.isFinite else {
                    for j in 0..<n { levels[j] = 8 }  // q = 0
                    Nibbles.pack(levels, count: n, into: p.data + (i * g / 2))
                    storeF16(Self.nonFiniteMarker, p.scales!, i)
                    continue
                }
                let s = GroupSearch.symmetric(lanes, lo: -8, hi: 7)
                let inverse: Float = s == 0 ? 0 : 1 / Float(s)
                for j in 0..<n { levels[j] = UInt8(GroupSearch.level(x[j] * inverse, -8, 7) + 8) }
                Nibbles.pack(levels, count: n, into: p.data + (i * g / 2))
                storeF16(s, p.scales!, i)
            }
        case .int4(.asymmetric, _, .f16):
            var levels = [UInt8](repeating: 0, count: g)
            for i in 0..<layout.groupsPerRow {
                let n = layout.groupLength(i), x = w + i * g
                lanes.load(x, count: n, importance: importance.map { $0 + i * g })
                guard lanes.isFinite else {
                    for j in 0..<n { levels[j] = 0 }
                    Nibbles.pack(levels, count: n, into: p.data + (i * g / 2))
                    storeF16(Self.nonFiniteMarker, p.scales!, i)
                    storeF16(Self.nonFiniteMarker, p.mins!, i)
                    continue
                }
                let fit = GroupSearch.asymmetric(lanes, levels: 15, nonPositiveMin: false)
                // Round to f16 and keep the neighbour pair with the lowest error.
                var best = (e: Float.infinity, s: Float16(0), m: Float16(0))
                for s in GroupSearch.f16Neighbours(fit.scale) {
                    for m in GroupSearch.f16Neighbours(fit.min) {
                        let e = GroupSearch.asymmetricError(lanes, scale: Float(s), min: Float(m), levels: 15)
                        if e < best.e { best = (e, s, m) }
                    }
                }
                assignAsymmetric(x, n, scale: Float(best.s), min: Float(best.m), levels: &levels)
                Nibbles.pack(levels, count: n, into: p.data + (i * g / 2))
                storeF16(best.s, p.scales!, i)
                storeF16(best.m, p.mins!, i)
            }
        case .int4(.asymmetric, _, .k6):
            for b in 0..<layout.superBlocksPerRow {
                quantizeSuperBlock(w, block: b, into: p, importance: importance, lanes: &lanes)
            }
        default:
            preconditionFailure("not a quantized type")
        }
    }

    /// k6: search each group's (scale, min ≤ 0), then quantize the 8 scales and 8 mins to 6-bit
    /// indices under f16 super-scales, then improve each group's indices by a ±1 local search on
    /// its real error (llama.cpp's Q4_K stops after rounding the indices).
    private func quantizeSuperBlock(_ w: UnsafePointer<Float>, block b: Int, into p: RowParts, importance: UnsafePointer<Float>?,
                                    lanes: inout GroupLanes) {
        let g = groupSize
        let first = b * 8, count = min(8, layout.groupsPerRow - first)
        var fits: [(scale: Float, min: Float)] = []
        for j in 0..<count {
            let i = first + j
            lanes.load(w + i * g, count: layout.groupLength(i), importance: importance.map { $0 + i * g })
            guard lanes.isFinite else { return storeNonFiniteSuperBlock(block: b, into: p) }
            fits.append(GroupSearch.asymmetric(lanes, levels: 15, nonPositiveMin: true))
        }
        let maxScale = fits.map(\.scale).max() ?? 0
        let maxNegMin = fits.map { -$0.min }.max() ?? 0
        let d = Float16(maxScale / 63), dmin = Float16(maxNegMin / 63)
        var a = [Int](repeating: 0, count: 8), bIdx = [Int](repeating: 0, count: 8)
        var levels = [UInt8](repeating: 0, count: g)
        for j in 0..<count {
            let i = first + j, n = layout.groupLength(i), x = w + i * g
            lanes.load(x, count: n, importance: importance.map { $0 + i * g })
            let a0 = d == 0 ? 0 : GroupSearch.clamp((fits[j].scale / Float(d)).rounded(), 0, 63)
            let b0 = dmin == 0 ? 0 : GroupSearch.clamp((-fits[j].min / Float(dmin)).rounded(), 0, 63)
            var best = (e: Float.infinity, a: a0, b: b0)
            for da in -1...1 {
                for db in -1...1 {
                    let ca = a0 + da, cb = b0 + db
                    guard (0...63).contains(ca), (0...63).contains(cb) else { continue }
                    let e = GroupSearch.asymmetricError(lanes, scale: Float(d) * Float(ca), min: -Float(dmin) * Float(cb), levels: 15)
                    if e < best.e { best = (e, ca, cb) }
                }
            }
            a[j] = best.a
            bIdx[j] = best.b
            assignAsymmetric(x, n, scale: Float(d) * Float(best.a), min: -Float(dmin) * Float(best.b), levels: &levels)
            Nibbles.pack(levels, count: n, into: p.data + (i * g / 2))
        }
        let s = p.scales! + b * 16
        s.storeBytes(of: d.bitPattern.littleEndian, toByteOffset: 0, as: UInt16.self)
        s.storeBytes(of: dmin.bitPattern.littleEndian, toByteOffset: 2, as: UInt16.self)
        SixBit.pack(a, into: s + 4)
        SixBit.pack(bIdx, into: s + 10)
    }

    /// A k6 super-block with a non-finite weight: levels and indices 0, `d` and `dmin` NaN.
    private func storeNonFiniteSuperBlock(block b: Int, into p: RowParts) {
        let g = groupSize
        let first = b * 8, count = min(8, layout.groupsPerRow - first)
        let zeros = [UInt8](repeating: 0, count: g)
        for j in 0..<count {
            let i = first + j
            Nibbles.pack(zeros, count: layout.groupLength(i), into: p.data + (i * g / 2))
        }
        let s = p.scales! + b * 16
        s.storeBytes(of: Self.nonFiniteMarker.bitPattern.littleEndian, toByteOffset: 0, as: UInt16.self)
        s.storeBytes(of: Self.nonFiniteMarker.bitPattern.littleEndian, toByteOffset: 2, as: UInt16.self)
        SixBit.pack([Int](repeating: 0, count: 8), into: s + 4)
        SixBit.pack([Int](repeating: 0, count: 8), into: s + 10)
    }

    static func allFinite(_ w: UnsafePointer<Float>, _ n: Int) -> Bool {
        for j in 0..<n where !w[j].isFinite { return false }
        return true
    }

    /// The levels `asymmetricError` evaluates: the same rounding, so the stored error is the chosen one.
    private func assignAsymmetric(_ x: UnsafePointer<Float>, _ n: Int, scale: Float, min: Float, levels: inout [UInt8]) {
        let inverse: Float = scale > 0 ? 1 / scale : 0
        for j in 0..<n { levels[j] = UInt8(GroupSearch.level((x[j] - min) * inverse, 0, 15)) }
    }

    /// Reconstructs `rows` rows into `out` (rows × K floats).
    public func dequantize(_ parts: RowParts, rows: Int, into out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            dequantizeRow(RowParts(data: parts.data + r * layout.dataBytesPerRow,
                                   scales: parts.scales.map { $0 + r * layout.scaleBytesPerRow },
                                   mins: parts.mins.map { $0 + r * layout.minBytesPerRow }),
                          into: out + r * layout.columns)
        }
    }

    public func dequantizeRow(_ p: RowParts, into out: UnsafeMutablePointer<Float>) {
        let g = groupSize
        var levels = [UInt8](repeating: 0, count: g)
        for i in 0..<layout.groupsPerRow {
            let n = layout.groupLength(i), y = out + i * g
            switch layout.type {
            case .int8(.symmetric, _):
                let s = loadF16(p.scales!, i)
                let q = (p.data + i * g).assumingMemoryBound(to: Int8.self)
                for j in 0..<n { y[j] = s * Float(q[j]) }
            case .int8(.asymmetric, _):
                let s = loadF16(p.scales!, i), m = loadF16(p.mins!, i)
                let q = (p.data + i * g).assumingMemoryBound(to: UInt8.self)
                for j in 0..<n { y[j] = s * Float(q[j]) + m }
            case .int4(.symmetric, _, _):
                let s = loadF16(p.scales!, i)
                Nibbles.unpack(p.data + (i * g / 2), count: n, into: &levels)
                for j in 0..<n { y[j] = s * Float(Int(levels[j]) - 8) }
            case .int4(.asymmetric, _, .f16):
                let s = loadF16(p.scales!, i), m = loadF16(p.mins!, i)
                Nibbles.unpack(p.data + (i * g / 2), count: n, into: &levels)
                for j in 0..<n { y[j] = s * Float(levels[j]) + m }
            case .int4(.asymmetric, _, .k6):
                let (s, m) = K6.groupScaleMin(p.scales!, group: i)
                Nibbles.unpack(p.data + (i * g / 2), count: n, into: &levels)
                for j in 0..<n { y[j] = s * Float(levels[j]) + m }
            default:
                preconditionFailure("not a quantized type")
            }
        }
    }

    @inline(__always) func storeF16(_ v: Float16, _ base: UnsafeMutableRawPointer, _ i: Int) {
        base.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
    }

    @inline(__always) func loadF16(_ base: UnsafeMutableRawPointer, _ i: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
    }
}

/// int8 group codecs: range-based, quantized with the stored f16 values, so every weight is
/// within half a step of its reconstruction.
enum Int8Codec {
    static func symmetric(_ g: GroupLanes, into q: UnsafeMutablePointer<Int8>) -> Float16 {
        var amax: Float = 0
        for c in 0..<g.chunks { amax = max(amax, g.values[c].replacing(with: -g.values[c], where: g.values[c] .< 0).max()) }
        let n = g.count
        guard amax > 0 else { for i in 0..<n { q[i] = 0 }; return 0 }
        // Candidates: the f16 neighbours of amax/127 shrunk by up to 0.3 %. Shrinking can clip the
        // largest weight by at most 127 × 0.35 % ≈ 0.44 of a step, so every weight stays within
        // half a step, and the squared error can only go down versus plain absmax rounding.
        var candidates: [Float16] = []
        for k in 0..<4 { candidates.append(contentsOf: GroupSearch.f16Neighbours(amax / 127 * (1 - 0.001 * Float(k)))) }
        let s = GroupSearch.pickBest(candidates) { GroupSearch.symmetricError(g, scale: Float($0), lo: -127, hi: 127) }
        let inverse = 1 / Float(s)
        for i in 0..<n { q[i] = Int8(GroupSearch.level(g.values[i / 8][i % 8] * inverse, -127, 127)) }
        return s
    }

    static func asymmetric(_ w: UnsafePointer<Float>, count n: Int, into q: UnsafeMutablePointer<UInt8>) -> (Float16, Float16) {
        var lo = Float.infinity, hi = -Float.infinity
        for i in 0..<n { lo = min(lo, w[i]); hi = max(hi, w[i]) }
        var m = Float16(lo)
        if Float(m) > lo { m = m.nextDown }  // the minimum sits at or below every weight
        var s = Float16((hi - Float(m)) / 255)
        if Float(s) * 255 + Float(m) < hi { s = s.nextUp }
        let inverse: Float = Float(s) > 0 ? 1 / Float(s) : 0, minimum = Float(m)
        for i in 0..<n { q[i] = UInt8(GroupSearch.level((w[i] - minimum) * inverse, 0, 255)) }
        return (s, m)
    }
}

/// Two int4 levels per byte; for a group of n values with h = ceil(n/2), byte j holds value j
/// (low nibble) and value j + h (high nibble).
public enum Nibbles {
    public static func pack(_ levels: [UInt8], count n: Int, into out: UnsafeMutableRawPointer) {
        let h = (n + 1) / 2
        for j in 0..<h {
            let high: UInt8 = j + h < n ? levels[j + h] : 0
            out.storeBytes(of: (levels[j] & 0x0F) | (high << 4), toByteOffset: j, as: UInt8.self)
        }
    }

    public static func unpack(_ bytes: UnsafeRawPointer, count n: Int, into levels: inout [UInt8]) {
        let h = (n + 1) / 2
        for j in 0..<h {
            let b = bytes.load(fromByteOffset: j, as: UInt8.self)
            levels[j] = b & 0x0F
            if j + h < n { levels[j + h] = b >> 4 }
        }
    }
}

/// Eight 6-bit fields in 6 bytes: field i is bits 6i…6i+5 of the 48-bit little-endian number.
public enum SixBit {
    public static func pack(_ values: [Int], into out: UnsafeMutableRawPointer) {
        var bits: UInt64 = 0
        for (i, v) in values.prefix(8).enumerated() { bits |= UInt64(v & 0x3F) << (6 * UInt64(i)) }
        for k in 0..<6 { out.storeBytes(of: UInt8(truncatingIfNeeded: bits >> (8 * UInt64(k))), toByteOffset: k, as: UInt8.self) }
    }

    public static func unpack(_ bytes: UnsafeRawPointer, field i: Int) -> Int {
        var bits: UInt64 = 0
        for k in 0..<6 { bits |= UInt64(bytes.load(fromByteOffset: k, as: UInt8.self)) << (8 * UInt64(k)) }
        return Int((bits >> (6 * UInt64(i))) & 0x3F)
    }
}

/// Reading the k6 two-level scales of a row.
public enum K6 {
    /// (scale, min) of group `group` of a row whose k6 scale bytes start at `scales`.
    public static func groupScaleMin(_ scales: UnsafeRawPointer, group: Int) -> (Float, Float) {
        let block = scales + (group / 8) * 16
        let d = Float(Float16(bitPattern: UInt16(littleEndian: block.loadUnaligned(as: UInt16.self))))
        let dmin = Float(Float16(bitPattern: UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))))
        let a = SixBit.unpack(block + 4, field: group % 8)
        let b = SixBit.unpack(block + 10, field: group % 8)
        return (d * Float(a), -dmin * Float(b))
    }
}

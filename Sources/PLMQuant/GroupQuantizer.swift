/// One group of weights laid out in 8-lane chunks; lanes past the group's end hold 0 and have
/// mask 0, so they add nothing to any sum.
///
/// `weights` are the lanes' weights in every error the searches minimise: the mask itself
/// (plain squared error) or, with calibration, each column's importance (masked). With weights
/// equal to the mask every weighted sum is bit for bit the unweighted one (products with 1 and
/// 0 are exact), so an uncalibrated conversion writes the same bytes as before calibration existed.
struct GroupLanes {
    let values: UnsafeMutablePointer<SIMD8<Float>>
    let masks: UnsafeMutablePointer<SIMD8<Float>>
    let weights: UnsafeMutablePointer<SIMD8<Float>>
    var count = 0
    var chunks = 0
    /// Whether every loaded value is finite (no NaN or ±Inf).
    var isFinite = true

    /// Scratch for groups of up to `capacity` values; free with `deallocate()`.
    init(capacity: Int) {
        let c = (capacity + 7) / 8
        values = .allocate(capacity: c)
        masks = .allocate(capacity: c)
        weights = .allocate(capacity: c)
    }

    func deallocate() { values.deallocate(); masks.deallocate(); weights.deallocate() }

    /// Loads n values; `importance` (n values, all > 0) weights their errors, nil weighs all alike.
    mutating func load(_ w: UnsafePointer<Float>, count n: Int, importance: UnsafePointer<Float>? = nil) {
        count = n
        chunks = (n + 7) / 8
        var finite = true
        for c in 0..<chunks {
            var v = SIMD8<Float>(), m = SIMD8<Float>(), iw = SIMD8<Float>()
            for lane in 0..<8 where c * 8 + lane < n {
                v[lane] = w[c * 8 + lane]
                m[lane] = 1
                finite = finite && v[lane].isFinite
                iw[lane] = importance.map { $0[c * 8 + lane] } ?? 1
            }
            values[c] = v
            masks[c] = m
            weights[c] = iw
        }
        isFinite = finite
    }
}

/// Scale searches for one group of weights. All minimise the weighted squared error
/// Σ ω_j (w_j − ŵ_j)² of the group, deterministically: ω is 1 without calibration (plmq's quality
/// metric is relative RMSE) and each input column's mean squared activation with it (the
/// expected squared output error of the row, as llama.cpp's imatrix weighs it).
///
/// The searches follow the idea of llama.cpp's `make_qx_quants` / `make_qkx2_quants`: try a grid
/// of candidate inverse scales around the range-derived one, assign integer levels for each,
/// solve the least-squares scale (and minimum) for that assignment, keep the best. Then a few
/// Lloyd steps (re-assign levels for the fitted scale, re-fit) polish the winner, and the result
/// is re-evaluated after rounding the scale to its stored precision. The plain range-based
/// rounding (absmax / min-max) is always one of the candidates, so a searched group is never worse
/// than it.
///
/// Speed: each candidate is one vectorised pass (8-lane SIMD accumulators, so the summation order
/// and thus the bytes are the same on every x86 or ARM CPU). Its error follows in closed form
/// from the sums the least-squares fit needs anyway (Σq, Σq², Σw, Σqw, Σw²).
enum GroupSearch {
    static let steps = 20
    static let stepSize: Float = 0.1

    /// Round half to even for |x| < 2^22 (levels are clamped first): the 1.5·2^23 trick.
    @inline(__always)
    static func roundEven(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let magic = SIMD8<Float>(repeating: 12_582_912)
        return (x + magic) - magic
    }

    /// Levels: x clamped to [lo, hi], then rounded. (Masks, not `clamped(lowerBound:upperBound:)`,
    /// which calls unspecialised generic helpers and was 28 % of the quantizer's time.)
    @inline(__always)
    static func levels(_ x: SIMD8<Float>, _ lo: SIMD8<Float>, _ hi: SIMD8<Float>) -> SIMD8<Float> {
        roundEven(x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi))
    }

    /// The scalar form of the same rounding, for storing levels. Defined for every input: NaN
    /// gives `lo` (the comparisons are false), so converting the level to an integer never traps.
    @inline(__always)
    static func level(_ x: Float, _ lo: Float, _ hi: Float) -> Float {
        let c = x >= lo ? (x <= hi ? x : hi) : lo
        return (c + 12_582_912) - 12_582_912
    }

    // MARK: symmetric

    /// Best scale for levels in [lo, hi] (w ≈ s·q); returns the stored (f16) scale.
    static func symmetric(_ g: GroupLanes, lo: Int, hi: Int) -> Float16 {
        var vmax: Float = 0
        var ww = SIMD8<Float>()
        for c in 0..<g.chunks {
            let x = g.values[c]
            ww += g.weights[c] * x * x
            for lane in 0..<8 where abs(x[lane]) > abs(vmax) { vmax = x[lane] }
        }
        guard vmax != 0 else { return 0 }
        let sumWW = ww.sum()
        let flo = Float(lo), vlo = SIMD8<Float>(repeating: flo), vhi = SIMD8<Float>(repeating: Float(hi))
        // As in Q4_0, the largest-magnitude value maps to the most negative level (the scale takes
        // its sign), which uses all 2^b levels instead of 2^b − 1.
        var best: (sse: Float, scale: Float) = (.infinity, 0)
        func consider(inverse: Float) {
            let vi = SIMD8<Float>(repeating: inverse)
            var qq = SIMD8<Float>(), qw = SIMD8<Float>()
            for c in 0..<g.chunks {
                let x = g.values[c]
                let q = levels(vi * x, vlo, vhi) * g.masks[c]
                let wq = g.weights[c] * q
                qq += wq * q
                qw += wq * x
            }
            let sqq = qq.sum(), sqw = qw.sum()
            guard sqq > 0 else { return }
            let s = sqw / sqq
            let sse = sumWW - s * sqw  // Σω(w − s·q)² at the least-squares s
            if sse < best.sse { best = (sse, s) }
        }
        for step in -steps...steps { consider(inverse: (flo + stepSize * Float(step)) / vmax) }
        for _ in 0..<2 where best.scale != 0 {
            let before = best.sse
            consider(inverse: 1 / best.scale)
            if best.sse >= before { break }
        }
        // Round to f16 (both neighbours) and compare with plain absmax rounding.
        var candidates = f16Neighbours(best.scale)
        candidates.append(contentsOf: f16Neighbours(vmax / flo))
        return pickBest(candidates) { symmetricError(g, scale: Float($0), lo: lo, hi: hi) }
    }

    static func symmetricError(_ g: GroupLanes, scale s: Float, lo: Int, hi: Int) -> Float {
        let vs = SIMD8<Float>(repeating: s), vi = SIMD8<Float>(repeating: s == 0 ? 0 : 1 / s)
        let vlo = SIMD8<Float>(repeating: Float(lo)), vhi = SIMD8<Float>(repeating: Float(hi))
        var e = SIMD8<Float>()
        for c in 0..<g.chunks {
            let x = g.values[c]
            let d = vs * levels(x * vi, vlo, vhi) - x
            e += g.weights[c] * d * d
        }
        return e.sum()
    }

    // MARK: asymmetric

    /// Best (scale, min) for levels 0…levels (w ≈ s·q + m), before storage rounding.
    /// With `nonPositiveMin` the minimum is kept ≤ 0 (the `k6` layout stores −dmin·b, b ≥ 0).
    static func asymmetric(_ g: GroupLanes, levels top: Int, nonPositiveMin: Bool) -> (scale: Float, min: Float) {
        var lo = Float.infinity, hi = -Float.infinity
        var sw = SIMD8<Float>(), ww = SIMD8<Float>(), w1 = SIMD8<Float>()
        for c in 0..<g.chunks {
            let x = g.values[c], omega = g.weights[c]
            sw += omega * x
            ww += omega * x * x
            w1 += omega
            for lane in 0..<8 where c * 8 + lane < g.count { lo = min(lo, x[lane]); hi = max(hi, x[lane]) }
        }
        if nonPositiveMin { lo = min(lo, 0) }
        guard hi > lo else { return (0, lo) }
        // fn = Σω: the count itself without calibration (a sum of ones is exact).
        let ftop = Float(top), fn = w1.sum(), sumW = sw.sum(), sumWW = ww.sum()
        let zero = SIMD8<Float>(), vtop = SIMD8<Float>(repeating: ftop)
        var best = (sse: Float.infinity, scale: (hi - lo) / ftop, min: lo)

        func consider(inverse: Float, offset: Float) {
            let vi = SIMD8<Float>(repeating: inverse), vo = SIMD8<Float>(repeating: offset)
            var q1 = SIMD8<Float>(), qq = SIMD8<Float>(), qw = SIMD8<Float>()
            for c in 0..<g.chunks {
                let x = g.values[c]
                let q = levels(vi * (x - vo), zero, vtop) * g.masks[c]
                let wq = g.weights[c] * q
                q1 += wq; qq += wq * q; qw += wq * x
            }
            let sq = q1.sum(), sqq = qq.sum(), sqw = qw.sum()
            let det = fn * sqq - sq * sq
            guard det > 0 else { return }
            var s = (fn * sqw - sq * sumW) / det
            var m = (sqq * sumW - sq * sqw) / det
            if nonPositiveMin && m > 0 { m = 0; s = sqw / sqq }
            guard s > 0 else { return }
            // Σω(s·q + m − w)² expanded over the weighted moments.
            let sse = s * s * sqq + 2 * s * m * sq - 2 * s * sqw + fn * m * m - 2 * m * sumW + sumWW
            if sse < best.sse { best = (sse, s, m) }
        }
        consider(inverse: ftop / (hi - lo), offset: lo)  // plain min-max rounding
        for step in 0...steps { consider(inverse: (-1 + stepSize * Float(step) + ftop) / (hi - lo), offset: lo) }
        for _ in 0..<3 {
            let before = best.sse
            consider(inverse: 1 / best.scale, offset: best.min)
            if best.sse >= before { break }
        }
        return (best.scale, best.min)
    }

    static func asymmetricError(_ g: GroupLanes, scale s: Float, min m: Float, levels top: Int) -> Float {
        let vs = SIMD8<Float>(repeating: s), vm = SIMD8<Float>(repeating: m)
        let vi = SIMD8<Float>(repeating: s > 0 ? 1 / s : 0), vtop = SIMD8<Float>(repeating: Float(top))
        var e = SIMD8<Float>()
        for c in 0..<g.chunks {
            let x = g.values[c]
            let d = (vs * levels((x - vm) * vi, .zero, vtop) + vm - x) * g.masks[c]
            e += g.weights[c] * d * d
        }
        return e.sum()
    }

    // MARK: helpers

    @inline(__always)
    static func clamp(_ x: Float, _ lo: Int, _ hi: Int) -> Int {
        guard x.isFinite else { return x > 0 ? hi : lo }
        return Int(Swift.min(Swift.max(x, Float(lo)), Float(hi)))
    }

    /// The f16 values just below and above x (x itself when exact).
    static func f16Neighbours(_ x: Float) -> [Float16] {
        let h = Float16(x)
        if Float(h) == x { return [h] }
        return Float(h) < x ? [h, h.nextUp] : [h.nextDown, h]
    }

    static func pickBest(_ candidates: [Float16], error: (Float16) -> Float) -> Float16 {
        var best = candidates[0], bestError = error(best)
        for c in candidates.dropFirst() {
            let e = error(c)
            if e < bestError { best = c; bestError = e }
        }
        return best
    }
}

/// Scale searches for one group of weights. All minimise the plain squared error of the group
/// (plmq's quality metric is relative RMSE), deterministically.
///
/// The searches follow the idea of llama.cpp's `make_qx_quants` / `make_qkx2_quants`: try a grid
/// of candidate inverse scales around the range-derived one, assign integer levels for each,
/// solve the least-squares scale (and minimum) for that assignment, keep the best. Then a few
/// Lloyd steps (re-assign levels for the fitted scale, re-fit) polish the winner, and the result
/// is re-evaluated after rounding the scale to its stored precision. The plain range-based
/// rounding (absmax / min-max) is always one of the candidates, so a searched group is never worse
/// than it.
enum GroupSearch {
    static let steps = 20
    static let stepSize: Float = 0.1

    // MARK: symmetric

    /// Best scale for levels in [lo, hi] (w ≈ s·q); returns the stored (f16) scale.
    static func symmetric(_ w: UnsafePointer<Float>, count n: Int, lo: Int, hi: Int) -> Float16 {
        var vmax: Float = 0
        for i in 0..<n where abs(w[i]) > abs(vmax) { vmax = w[i] }
        guard vmax != 0 else { return 0 }
        // As in Q4_0, the largest-magnitude value maps to the most negative level (the scale takes
        // its sign), which uses all 2^b levels instead of 2^b − 1.
        let edge = Float(lo)
        var best: (sse: Float, scale: Float) = (.infinity, 0)
        for step in -steps...steps {
            let inverse = (edge + stepSize * Float(step)) / vmax
            guard inverse != 0 else { continue }
            var sumWQ: Float = 0, sumQQ: Float = 0
            for i in 0..<n {
                let q = Float(clamp((inverse * w[i]).rounded(), lo, hi))
                sumWQ += w[i] * q
                sumQQ += q * q
            }
            guard sumQQ > 0 else { continue }
            let s = sumWQ / sumQQ
            let e = symmetricError(w, n, scale: s, lo: lo, hi: hi)
            if e < best.sse { best = (e, s) }
        }
        // Lloyd polish.
        var scale = best.scale
        for _ in 0..<3 {
            guard scale != 0 else { break }
            var sumWQ: Float = 0, sumQQ: Float = 0
            for i in 0..<n {
                let q = Float(clamp((w[i] / scale).rounded(), lo, hi))
                sumWQ += w[i] * q
                sumQQ += q * q
            }
            guard sumQQ > 0 else { break }
            let s = sumWQ / sumQQ
            let e = symmetricError(w, n, scale: s, lo: lo, hi: hi)
            if e < best.sse { best = (e, s); scale = s } else { break }
        }
        // Round to f16 (both neighbours) and compare with plain absmax rounding.
        var candidates = f16Neighbours(best.scale)
        candidates.append(contentsOf: f16Neighbours(vmax / Float(lo)))
        return pickBest(candidates) { symmetricError(w, n, scale: Float($0), lo: lo, hi: hi) }
    }

    static func symmetricError(_ w: UnsafePointer<Float>, _ n: Int, scale s: Float, lo: Int, hi: Int) -> Float {
        var e: Float = 0
        if s == 0 { for i in 0..<n { e += w[i] * w[i] }; return e }
        for i in 0..<n {
            let q = Float(clamp((w[i] / s).rounded(), lo, hi))
            let d = s * q - w[i]
            e += d * d
        }
        return e
    }

    // MARK: asymmetric

    /// Best (scale, min) for levels 0…levels (w ≈ s·q + m), before storage rounding.
    /// With `nonPositiveMin` the minimum is kept ≤ 0 (the `k6` layout stores −dmin·b, b ≥ 0).
    static func asymmetric(_ w: UnsafePointer<Float>, count n: Int, levels: Int, nonPositiveMin: Bool) -> (scale: Float, min: Float) {
        var lo = Float.infinity, hi = -Float.infinity
        for i in 0..<n { lo = min(lo, w[i]); hi = max(hi, w[i]) }
        if nonPositiveMin { lo = min(lo, 0) }
        guard hi > lo else { return (0, lo) }
        let top = Float(levels)
        var best = (sse: asymmetricError(w, n, scale: (hi - lo) / top, min: lo, levels: levels), scale: (hi - lo) / top, min: lo)
        for step in 0...steps {
            let inverse = (-1 + stepSize * Float(step) + top) / (hi - lo)
            guard let fit = leastSquares(w, n, levels: levels, nonPositiveMin: nonPositiveMin, assign: { x in
                clamp((inverse * (x - lo)).rounded(), 0, levels)
            }) else { continue }
            let e = asymmetricError(w, n, scale: fit.scale, min: fit.min, levels: levels)
            if e < best.sse { best = (e, fit.scale, fit.min) }
        }
        for _ in 0..<3 {
            let (s, m) = (best.scale, best.min)
            guard s > 0, let fit = leastSquares(w, n, levels: levels, nonPositiveMin: nonPositiveMin, assign: { x in
                clamp(((x - m) / s).rounded(), 0, levels)
            }) else { break }
            let e = asymmetricError(w, n, scale: fit.scale, min: fit.min, levels: levels)
            if e < best.sse { best = (e, fit.scale, fit.min) } else { break }
        }
        return (best.scale, best.min)
    }

    /// Least-squares (scale, min) for a fixed assignment of levels.
    static func leastSquares(_ w: UnsafePointer<Float>, _ n: Int, levels: Int, nonPositiveMin: Bool,
                             assign: (Float) -> Int) -> (scale: Float, min: Float)? {
        var sq: Float = 0, sqq: Float = 0, sw: Float = 0, sqw: Float = 0
        for i in 0..<n {
            let q = Float(assign(w[i]))
            sq += q; sqq += q * q; sw += w[i]; sqw += q * w[i]
        }
        let fn = Float(n)
        let det = fn * sqq - sq * sq
        guard det > 0 else { return nil }
        var s = (fn * sqw - sq * sw) / det
        var m = (sqq * sw - sq * sqw) / det
        if nonPositiveMin && m > 0 {
            m = 0
            s = sqw / sqq
        }
        guard s > 0 else { return nil }
        return (s, m)
    }

    static func asymmetricError(_ w: UnsafePointer<Float>, _ n: Int, scale s: Float, min m: Float, levels: Int) -> Float {
        var e: Float = 0
        for i in 0..<n {
            let q = s > 0 ? Float(clamp(((w[i] - m) / s).rounded(), 0, levels)) : 0
            let d = s * q + m - w[i]
            e += d * d
        }
        return e
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

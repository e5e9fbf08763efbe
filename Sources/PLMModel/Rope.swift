import PLMCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PLMCheckpoint

/// The decoder's 1-D rotary embedding, rotate-half convention: dimension i pairs with i + d/2.
/// Inverse frequencies and angles are computed in fp32 in the same order as transformers
/// (`_compute_default_rope_parameters`, `_compute_llama3_parameters`, fp32 pos · inv_freq),
/// because at the ~9.5k positions of image prompts an angle computed in double differs by ~1e-4.
public struct LlamaRope: Sendable {
    public let headDim: Int
    public let inverseFrequencies: [Float]

    public init(headDim: Int, parameters: RopeParameters) {
        self.headDim = headDim
        let half = headDim / 2
        let base = Float(parameters.theta)
        var inv = (0..<half).map { i -> Float in
            let exponent = Float(2 * i) / Float(headDim)
            return 1 / powf(base, exponent)
        }
        switch parameters.scaling {
        case .none:
            break
        case .linear(let factor):
            inv = inv.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let original):
            let f = Float(factor)
            let lowWavelength = Float(Double(original) / low)
            let highWavelength = Float(Double(original) / high)
            let twoPi = Float(2 * Double.pi)
            inv = inv.map { freq in
                let wavelength = twoPi / freq
                let scaled = wavelength > lowWavelength ? freq / f : freq
                let isMedium = !(wavelength < highWavelength) && !(wavelength > lowWavelength)
                guard isMedium else { return scaled }
                let smooth = (Float(original) / wavelength - Float(low)) / Float(high - low)
                return (1 - smooth) * scaled / f + smooth * scaled
            }
        }
        inverseFrequencies = inv
    }

    /// Applies RoPE to rows of a [rows, stride] buffer whose first `heads · headDim` columns are
    /// heads. Each angle's cos/sin is computed once and applied to every head (no scratch).
    func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int, firstPosition: Int) {
        let half = headDim / 2
        for r in 0..<rows {
            let row = x + r * stride
            let position = Float(firstPosition + r)
            for i in 0..<half {
                let angle = position * inverseFrequencies[i]
                let c = cosf(angle), s = sinf(angle)
                for h in 0..<heads {
                    let v = row + h * headDim
                    let a = v[i], b = v[i + half]
                    v[i] = a * c - b * s
                    v[i + half] = b * c + a * s
                }
            }
        }
    }
}

/// The vision tower's 2-D rotary embedding (timm `RotaryEmbeddingCat` in language mode): per patch
/// an angle vector of length d with column angles then row angles ('xy' indexing), each repeated
/// for an interleaved pair (2k, 2k+1).
public struct VisionRope: Sendable {
    public let headDim: Int
    /// [patches, headDim] cos and sin tables, in patch (row-major) order.
    public let cosTable: [Float]
    public let sinTable: [Float]

    public init(config v: VisionConfig) {
        let d = v.headDim, bands = d / 4
        headDim = d
        let freq = (0..<bands).map { j -> Float in 1 / powf(Float(v.ropeTemperature), Float(j) / Float(bands)) }
        // Positions as timm computes them: (index + offset) / size * reference, in fp32.
        func coordinate(_ i: Int, size: Int, reference: Int?) -> Float {
            let t = Float(i) + Float(v.ropeGridOffset)
            guard let reference else { return t }
            return t / Float(size) * Float(reference)
        }
        var cosT = [Float](repeating: 0, count: v.patchCount * d)
        var sinT = cosT
        for r in 0..<v.gridHeight {
            for c in 0..<v.gridWidth {
                let x = coordinate(c, size: v.gridWidth, reference: v.refFeatShape?.1)
                let y = coordinate(r, size: v.gridHeight, reference: v.refFeatShape?.0)
                let (first, second) = v.ropeGridIndexingXY ? (x, y) : (y, x)
                let base = (r * v.gridWidth + c) * d
                for j in 0..<bands {
                    for (half, coord) in [(0, first), (1, second)] {
                        let angle = coord * freq[j]
                        let k = base + half * (d / 2) + 2 * j
                        cosT[k] = cosf(angle); cosT[k + 1] = cosT[k]
                        sinT[k] = sinf(angle); sinT[k + 1] = sinT[k]
                    }
                }
            }
        }
        cosTable = cosT
        sinTable = sinT
    }

    /// Rotates interleaved pairs of every head of patch `patch`: x' = x·cos + rot(x)·sin with
    /// rot(x) = [−x1, x0, −x3, x2, …].
    @inline(__always)
    func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, patch: Int) {
        let base = patch * headDim
        for h in 0..<heads {
            let v = x + h * headDim
            var k = 0
            while k < headDim {
                let a = v[k], b = v[k + 1]
                v[k] = a * cosTable[base + k] - b * sinTable[base + k]
                v[k + 1] = b * cosTable[base + k + 1] + a * sinTable[base + k + 1]
                k += 2
            }
        }
    }
}

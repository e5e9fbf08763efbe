import CPLMImage
import Dispatch

/// The weights of one axis of torch's antialiased bicubic resize on uint8 (CPU), computed as
/// `_compute_index_ranges_int16_weights` does: Keys cubic with a = −0.5, the support widened by
/// the scale when shrinking, double-precision weights normalised per output, then scaled to
/// int16 with the largest precision that keeps 2·max weight below 2¹⁵.
struct ResampleAxis: Sendable, Equatable {
    let inSize: Int
    let outSize: Int
    let taps: Int
    let precision: Int
    let start: [Int32]
    let count: [Int32]
    let weights: [Int16]

    init(inSize: Int, outSize: Int) {
        self.inSize = inSize
        self.outSize = outSize
        let scale = Double(inSize) / Double(outSize)
        let support = scale >= 1.0 ? 2.0 * scale : 2.0
        let taps = Int(support.rounded(.up)) * 2 + 1
        let invScale = scale >= 1.0 ? 1.0 / scale : 1.0
        var start = [Int32](repeating: 0, count: outSize)
        var count = [Int32](repeating: 0, count: outSize)
        var w = [Double](repeating: 0, count: outSize * taps)
        var maxWeight = 0.0
        for i in 0..<outSize {
            let center = scale * (Double(i) + 0.5)
            // C++ int64 conversion truncates toward zero.
            let xmin = max(Int((center - support + 0.5).rounded(.towardZero)), 0)
            var xsize = min(Int((center + support + 0.5).rounded(.towardZero)), inSize) - xmin
            xsize = min(max(xsize, 0), taps)
            var total = 0.0
            for j in 0..<xsize {
                let v = Self.keysCubic((Double(j + xmin) - center + 0.5) * invScale)
                w[i * taps + j] = v
                total += v
            }
            if total != 0.0 {
                for j in 0..<xsize {
                    w[i * taps + j] /= total
                    maxWeight = max(maxWeight, w[i * taps + j])
                }
            }
            start[i] = Int32(xmin)
            count[i] = Int32(xsize)
        }
        var precision = 0
        while precision < 22 {
            let next = Int(0.5 + maxWeight * Double(1 << (precision + 1)))
            if next >= 1 << 15 { break }
            precision += 1
        }
        let unit = Double(1 << precision)
        self.weights = w.map { x in
            let v = x * unit
            return Int16(truncatingIfNeeded: Int(v < 0 ? -0.5 + v : 0.5 + v))
        }
        self.taps = taps
        self.precision = precision
        self.start = start
        self.count = count
    }

    /// Keys' cubic convolution kernel with a = −0.5 (torch's antialias bicubic, as PIL's).
    static func keysCubic(_ t: Double) -> Double {
        let a = -0.5
        let x = abs(t)
        if x < 1.0 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2.0 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return 0.0
    }

    func withC<R>(_ body: (UnsafePointer<plm_resample_axis>) -> R) -> R {
        start.withUnsafeBufferPointer { s in
            count.withUnsafeBufferPointer { c in
                weights.withUnsafeBufferPointer { w in
                    var axis = plm_resample_axis(
                        start: s.baseAddress, count: c.baseAddress, weights: w.baseAddress,
                        taps: Int32(taps), precision: Int32(precision), out_size: Int32(outSize))
                    return body(&axis)
                }
            }
        }
    }
}

/// Which implementation of the passes to run: `fast` (C, vectorised where the CPU allows) or
/// `reference` (the plain C twin), for tests.
public enum ResizeKernel: Sendable {
    case fast, reference
}

/// Interleaved uint8 images resized like `torchvision.transforms.v2.functional.resize(img,
/// BICUBIC, antialias=True)` on the CPU: the horizontal pass first (into a uint8 intermediate,
/// as torch does), then the vertical one; an axis whose size does not change is skipped, and an
/// unchanged size returns the input untouched.
public struct Resizer: Sendable {
    public var threads: Int
    public var kernel: ResizeKernel

    public init(threads: Int = 1, kernel: ResizeKernel = .fast) {
        self.threads = max(1, threads)
        self.kernel = kernel
    }

    public func resize(_ image: DecodedImage, width: Int, height: Int) throws(ImageError) -> DecodedImage {
        guard width > 0, height > 0 else {
            throw .invalidSize(source: "resize", reason: "target size \(width)×\(height)")
        }
        let pixels = resize(image.pixels, width: image.width, height: image.height, channels: 3, toWidth: width, toHeight: height)
        return DecodedImage(unchecked: width, height: height, pixels: pixels)
    }

    func resize(_ src: [UInt8], width: Int, height: Int, channels: Int, toWidth: Int, toHeight: Int) -> [UInt8] {
        var current = src
        if toWidth != width {
            let axis = ResampleAxis(inSize: width, outSize: toWidth)
            var out = [UInt8](repeating: 0, count: toWidth * height * channels)
            current.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { d in
                    let sp = SendablePointer(s.baseAddress), dp = SendableMutablePointer(d.baseAddress)
                    axis.withC { a in
                        let ap = SendableAxis(pointer: a)
                        split(rows: height) { begin, end in
                            if kernel == .fast {
                                plm_resample_horizontal(sp.pointer, Int32(width), Int32(channels), dp.pointer, ap.pointer, Int32(begin), Int32(end))
                            } else {
                                plm_resample_horizontal_ref(sp.pointer, Int32(width), Int32(channels), dp.pointer, ap.pointer, Int32(begin), Int32(end))
                            }
                        }
                    }
                }
            }
            current = out
        }
        if toHeight != height {
            let axis = ResampleAxis(inSize: height, outSize: toHeight)
            let rowBytes = toWidth * channels
            var out = [UInt8](repeating: 0, count: rowBytes * toHeight)
            current.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { d in
                    let sp = SendablePointer(s.baseAddress), dp = SendableMutablePointer(d.baseAddress)
                    axis.withC { a in
                        let ap = SendableAxis(pointer: a)
                        split(rows: toHeight) { begin, end in
                            if kernel == .fast {
                                plm_resample_vertical(sp.pointer, Int32(rowBytes), dp.pointer, ap.pointer, Int32(begin), Int32(end))
                            } else {
                                plm_resample_vertical_ref(sp.pointer, Int32(rowBytes), dp.pointer, ap.pointer, Int32(begin), Int32(end))
                            }
                        }
                    }
                }
            }
            current = out
        }
        return current
    }

    /// Runs body over [0, rows) in `threads` contiguous chunks (rows are independent).
    private func split(rows: Int, _ body: @Sendable (Int, Int) -> Void) {
        let parts = min(threads, max(1, rows / 16))
        if parts <= 1 { body(0, rows); return }
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            body(rows * p / parts, rows * (p + 1) / parts)
        }
    }
}

/// Pointers handed to worker threads that only read (or write disjoint rows of) buffers the
/// caller keeps alive for the duration of the call.
struct SendablePointer: @unchecked Sendable {
    let pointer: UnsafePointer<UInt8>?
    init(_ p: UnsafePointer<UInt8>?) { pointer = p }
}

struct SendableMutablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt8>?
    init(_ p: UnsafeMutablePointer<UInt8>?) { pointer = p }
}

struct SendableAxis: @unchecked Sendable {
    let pointer: UnsafePointer<plm_resample_axis>
}

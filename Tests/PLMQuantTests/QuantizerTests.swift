import Foundation
import Testing
@testable import PLMQuant

/// Deterministic pseudo-random weights: a Gaussian body with a few outliers, like trained matrices.
func sampleWeights(rows: Int, columns: Int, seed: UInt64 = 1) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15
    func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float((state >> 40) & 0xFFFFFF) / Float(1 << 24)
    }
    var out: [Float] = []
    out.reserveCapacity(rows * columns)
    for _ in 0..<(rows * columns) {
        let u1 = max(next(), 1e-7), u2 = next()
        var g = (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2) * 0.02
        if next() < 0.002 { g *= 8 }  // outliers
        out.append(g)
    }
    return out
}

struct Quantized {
    let layout: StorageLayout
    /// The stored parts, for byte comparisons.
    var bytes: [[UInt8]] { [data, scales, mins] }
    var data: [UInt8], scales: [UInt8], mins: [UInt8]

    /// `importance` (one weight per column) weighs each column's error in the scale searches.
    init(_ w: [Float], rows: Int, columns: Int, type: StorageType, importance: [Float]? = nil) {
        layout = StorageLayout(shape: [rows, columns], type: type)
        data = [UInt8](repeating: 0, count: layout.dataBytes)
        scales = [UInt8](repeating: 0, count: layout.scaleBytes)
        mins = [UInt8](repeating: 0, count: layout.minBytes)
        let q = RowQuantizer(layout: layout)
        w.withUnsafeBufferPointer { wp in
            data.withUnsafeMutableBytes { d in
                scales.withUnsafeMutableBytes { s in
                    mins.withUnsafeMutableBytes { m in
                        let parts = RowQuantizer.RowParts(data: d.baseAddress!, scales: s.baseAddress, mins: m.baseAddress)
                        if let importance {
                            importance.withUnsafeBufferPointer { q.quantize(wp.baseAddress!, rows: rows, into: parts, importance: $0.baseAddress!) }
                        } else {
                            q.quantize(wp.baseAddress!, rows: rows, into: parts)
                        }
                    }
                }
            }
        }
    }

    func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: layout.elementCount)
        var d = data, s = scales, m = mins
        d.withUnsafeMutableBytes { dp in
            s.withUnsafeMutableBytes { sp in
                m.withUnsafeMutableBytes { mp in
                    out.withUnsafeMutableBufferPointer { o in
                        RowQuantizer(layout: layout).dequantize(.init(data: dp.baseAddress!, scales: sp.baseAddress, mins: mp.baseAddress), rows: layout.rows, into: o.baseAddress!)
                    }
                }
            }
        }
        return out
    }
}

func relativeRMSE(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for i in a.indices { num += Double(a[i] - b[i]) * Double(a[i] - b[i]); den += Double(a[i]) * Double(a[i]) }
    return (num / den).squareRoot()
}

let allQuantizedTypes: [StorageType] = StorageType.groupSizes.flatMap { g in
    [.int8(.symmetric, groupSize: g), .int8(.asymmetric, groupSize: g), .int4(.symmetric, groupSize: g, scales: .f16),
     .int4(.asymmetric, groupSize: g, scales: .f16), .int4(.asymmetric, groupSize: g, scales: .k6)]
}

@Suite struct QuantizerTests {
    @Test func typeNamesRoundTrip() {
        for t in allQuantizedTypes + [.f32, .f16, .bf16] {
            #expect(StorageType.parse(t.description) == t, "\(t)")
        }
        #expect(StorageType.parse("int4") == .int4(.asymmetric, groupSize: 32, scales: .k6))
        #expect(StorageType.parse("int8") == .int8(.symmetric, groupSize: 32))
        #expect(StorageType.parse("int4-g64", defaultGroupSize: 32) == .int4(.asymmetric, groupSize: 64, scales: .k6))
        #expect(StorageType.parse("int4-sym-k6") == nil)
        #expect(StorageType.parse("int4-g48") == nil)
        #expect(StorageType.parse("int3") == nil)
    }

    @Test func bitsPerWeightMatchTheSpec() {
        let expected: [String: Double] = [
            "int8-sym-g32": 8.5, "int8-asym-g64": 8.5, "int4-sym-g32": 4.5, "int4-asym-f16-g32": 5.0,
            "int4-asym-k6-g32": 4.5, "int4-asym-k6-g64": 4.25, "int4-asym-k6-g128": 4.125,
        ]
        for (name, bpw) in expected {
            let layout = StorageLayout(shape: [16, 2048], type: StorageType.parse(name)!)
            #expect(layout.bitsPerWeight == bpw, "\(name)")
        }
    }

    @Test func shortLastGroupIsPartOfTheFormat() {
        let layout = StorageLayout(shape: [1024, 588], type: .int4(.asymmetric, groupSize: 32, scales: .k6))
        #expect(layout.groupsPerRow == 19 && layout.groupLength(18) == 12)
        #expect(layout.dataBytesPerRow == 18 * 16 + 6)
        #expect(layout.scaleBytesPerRow == 3 * 16)
    }

    @Test func nibbleAndSixBitPackingRoundTrip() {
        for n in [1, 5, 12, 31, 32] {
            let levels = (0..<n).map { UInt8(($0 * 7 + 3) % 16) }
            var bytes = [UInt8](repeating: 0xAA, count: 16)
            bytes.withUnsafeMutableBytes { Nibbles.pack(levels, count: n, into: $0.baseAddress!) }
            var back = [UInt8](repeating: 0, count: 32)
            bytes.withUnsafeBytes { Nibbles.unpack($0.baseAddress!, count: n, into: &back) }
            #expect(Array(back.prefix(n)) == levels)
        }
        let values = [0, 63, 1, 62, 17, 42, 5, 33]
        var six = [UInt8](repeating: 0, count: 6)
        six.withUnsafeMutableBytes { SixBit.pack(values, into: $0.baseAddress!) }
        #expect(six.withUnsafeBytes { raw in (0..<8).map { SixBit.unpack(raw.baseAddress!, field: $0) } } == values)
    }

    @Test(arguments: allQuantizedTypes)
    func roundTripIsCloseAndDeterministic(_ type: StorageType) {
        let rows = 5, columns = 588  // K = 588: a short last group for every group size
        let w = sampleWeights(rows: rows, columns: columns)
        let q = Quantized(w, rows: rows, columns: columns, type: type)
        let again = Quantized(w, rows: rows, columns: columns, type: type)
        #expect(q.data == again.data && q.scales == again.scales && q.mins == again.mins)
        // Splitting rows differently gives the same bytes (threads may split anywhere).
        let firstRow = Quantized(Array(w.prefix(columns)), rows: 1, columns: columns, type: type)
        #expect(Array(q.data.prefix(q.layout.dataBytesPerRow)) == firstRow.data)
        let error = relativeRMSE(w, q.dequantized())
        let bound: Double = type.description.hasPrefix("int8") ? 0.02 : 0.25  // a sanity bound; quality is measured elsewhere
        #expect(error < bound, "\(type): relative RMSE \(error)")
    }

    @Test(arguments: StorageType.groupSizes)
    func int8IsWithinHalfAStepOfEveryWeight(_ g: Int) {
        let rows = 4, columns = 300
        let w = sampleWeights(rows: rows, columns: columns, seed: 7)
        for scheme in QuantScheme.allCases {
            let q = Quantized(w, rows: rows, columns: columns, type: .int8(scheme, groupSize: g))
            let back = q.dequantized()
            for r in 0..<rows {
                for i in 0..<q.layout.groupsPerRow {
                    let step = q.scales.withUnsafeBytes { raw in
                        Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * (r * q.layout.groupsPerRow + i), as: UInt16.self)))
                    }
                    for j in 0..<q.layout.groupLength(i) {
                        let k = r * columns + i * g + j
                        // Half a step, plus float rounding of the reconstruction itself.
                        #expect(abs(back[k] - w[k]) <= step / 2 * 1.0001 + 1e-9, "\(scheme) row \(r) group \(i)")
                    }
                }
            }
        }
    }

    /// Plain range-based rounding with f16 scales: the baseline every search must not lose to.
    func rangeRoundingError(_ w: [Float], columns: Int, g: Int, symmetric: Bool) -> Double {
        var sse = 0.0
        for start in stride(from: 0, to: w.count, by: columns) {
            for g0 in stride(from: 0, to: columns, by: g) {
                let x = w[(start + g0)..<(start + min(g0 + g, columns))]
                if symmetric {
                    let vmax = x.max { abs($0) < abs($1) }!
                    let s = Float(Float16(vmax / -8))
                    for v in x { let q = s == 0 ? 0 : min(max((v / s).rounded(), -8), 7); sse += Double(s * q - v) * Double(s * q - v) }
                } else {
                    let lo = Float(Float16(x.min()!)), s = Float(Float16((x.max()! - lo) / 15))
                    for v in x { let q = s == 0 ? 0 : min(max(((v - lo) / s).rounded(), 0), 15); sse += Double(s * q + lo - v) * Double(s * q + lo - v) }
                }
            }
        }
        return sse
    }

    @Test(arguments: StorageType.groupSizes)
    func searchedInt4IsNeverWorseThanRangeRounding(_ g: Int) {
        let rows = 16, columns = 512
        let w = sampleWeights(rows: rows, columns: columns, seed: 3)
        let norm = w.reduce(0.0) { $0 + Double($1) * Double($1) }
        for (type, symmetric) in [(StorageType.int4(.symmetric, groupSize: g, scales: .f16), true),
                                  (StorageType.int4(.asymmetric, groupSize: g, scales: .f16), false)] {
            let back = Quantized(w, rows: rows, columns: columns, type: type).dequantized()
            let searched = zip(w, back).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            let baseline = rangeRoundingError(w, columns: columns, g: g, symmetric: symmetric)
            #expect(searched <= baseline, "\(type)")
            // Report the gain (visible with `swift test --verbose`).
            print("\(type): relative RMSE \((searched / norm).squareRoot()) vs range rounding \((baseline / norm).squareRoot()), \(Int(100 * (1 - (searched / baseline).squareRoot())))% lower")
        }
    }
}

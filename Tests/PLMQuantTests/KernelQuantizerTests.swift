import CPLMKernels
import Foundation
import PLMTestSupport
import Testing
@testable import PLMQuant

/// The C scale searches (portable and AVX2) against the Swift reference, byte for byte.
@Suite struct KernelQuantizerTests {
    static let columns = 300  // a short last group at every group size (300 = 9·32 + 12 = 4·64 + 44 = 2·128 + 44)

    /// Rows that stress the searches' edge cases, plus Gaussian rows with outliers.
    static func adversarialRows(seed: UInt64) -> [[Float]] {
        let c = columns
        var rows: [[Float]] = []
        let g = sampleWeights(rows: 8, columns: c, seed: seed)
        func gauss(_ r: Int) -> [Float] { Array(g[(r * c)..<((r + 1) * c)]) }
        rows.append([Float](repeating: 0, count: c))                                     // all zero
        rows.append([Float](repeating: 0.5, count: c))                                   // constant
        rows.append([Float](repeating: -3, count: c))                                    // constant negative
        rows.append((0..<c).map { $0 == 77 ? 0.25 : 0 })                                  // one value in a zero row
        rows.append((0..<c).map { $0 % 2 == 0 ? 1 : -1 })                                 // equal magnitudes, both signs
        rows.append((0..<c).map { $0 % 3 == 0 ? -2 : 2 })                                 // the sign of the first maximum
        rows.append(gauss(0).map { $0 * 1e30 })                                           // huge
        rows.append(gauss(1).enumerated().map { (j: Int, x: Float) -> Float in j % 17 != 0 ? x * 1e36 : (j % 2 == 0 ? 3e38 : -3e38) })  // near Float.max
        rows.append(gauss(2).map { $0 * 1e-30 })                                          // tiny
        rows.append(gauss(3).map { $0 * Float(bitPattern: 0x0080_0000) * 0.1 })                                        // subnormal floats
        rows.append(gauss(4).enumerated().map { (j: Int, x: Float) -> Float in x * Float(pow(10, Double(j % 41 - 20))) })  // mixed magnitudes
        rows.append(gauss(5).map { $0 * 2e7 })                                            // scales past f16's range
        rows.append(gauss(6).map { $0 * 3e-4 })                                           // scales in f16's subnormals
        rows.append((0..<c).map { (j: Int) -> Float in
            if j % 5 == 0 { return -0.0 }
            if j % 5 == 1 { return 0.0 }
            return Float(j % 7) * 0.1
        })  // ±0 at the minimum
        rows.append((0..<c).map { (j: Int) -> Float in j % 4 == 0 ? -0.0 : -Float(j % 9) * 0.1 })  // ±0 at the maximum
        rows.append((0..<c).map { Float($0 % 2) })                                        // two levels
        rows.append((0..<c).map { Float($0 % 16 - 8) })                                   // exact int4 symmetric levels
        rows.append((0..<c).map { Float($0 % 16) * 0.125 - 0.5 })                         // exact asymmetric levels
        rows.append(gauss(7).map { 100 + $0 })                                            // a large offset
        rows.append(gauss(0).map { -abs($0) - 0.01 })                                     // all negative
        rows.append((0..<c).map { Float(1).nextUp * Float(1 + $0 % 3) })                 // one-ulp steps
        rows.append(gauss(1).enumerated().map { (j: Int, x: Float) -> Float in j % 37 == 3 ? .nan : (j % 53 == 9 ? -.infinity : x) })  // non-finite groups
        rows.append(gauss(2).enumerated().map { (j: Int, x: Float) -> Float in j == 299 ? .infinity : x })             // non-finite in the short group
        for r in 3..<8 { rows.append(gauss(r)) }
        return rows
    }

    static var implementations: [Int32] {
        [Int32(PLM_IMPL_PORTABLE)] + (CPU.hasAVX2 ? [Int32(PLM_IMPL_AVX2)] : [])
    }

    /// Parts written by the C path.
    static func kernelBytes(_ w: [Float], rows: Int, columns: Int = columns, type: StorageType, impl: Int32, weights: [Float]?,
                            perElement: Bool = false) throws -> [[UInt8]] {
        let layout = StorageLayout(shape: [rows, columns], type: type)
        var data = [UInt8](repeating: 0, count: layout.dataBytes)
        var scales = [UInt8](repeating: 0, count: layout.scaleBytes)
        var mins = [UInt8](repeating: 0, count: layout.minBytes)
        let q = try KernelQuantizer(layout: layout, implementation: impl)
        w.withUnsafeBufferPointer { wp in
            data.withUnsafeMutableBytes { d in
                scales.withUnsafeMutableBytes { s in
                    mins.withUnsafeMutableBytes { m in
                        let parts = RowQuantizer.RowParts(data: d.baseAddress!, scales: s.baseAddress, mins: m.baseAddress)
                        if let weights {
                            weights.withUnsafeBufferPointer {
                                q.quantize(wp.baseAddress!, rows: rows, into: parts,
                                           weights: perElement ? .perElement($0.baseAddress!) : .perColumn($0.baseAddress!))
                            }
                        } else {
                            q.quantize(wp.baseAddress!, rows: rows, into: parts)
                        }
                    }
                }
            }
        }
        return [data, scales, mins]
    }

    static func typeName(_ t: StorageType) -> String { "\(t)" }

    /// Every storage type and group size, every path, with and without importance weights: the
    /// same bytes as RowQuantizer on the adversarial rows.
    @Test(arguments: allQuantizedTypes)
    func kernelPathsWriteTheReferenceBytes(_ type: StorageType) throws {
        let rows = Self.adversarialRows(seed: 5)
        let w = rows.flatMap { $0 }
        let importance = sampleImportance(columns: Self.columns, seed: 9)
        let reference = Quantized(w, rows: rows.count, columns: Self.columns, type: type)
        let weighted = Quantized(w, rows: rows.count, columns: Self.columns, type: type, importance: importance)
        for impl in Self.implementations {
            let plain = try Self.kernelBytes(w, rows: rows.count, type: type, impl: impl, weights: nil)
            let withImportance = try Self.kernelBytes(w, rows: rows.count, type: type, impl: impl, weights: importance)
            for part in 0..<3 {
                #expect(plain[part] == reference.bytes[part], "\(type) impl \(impl) part \(part): \(Self.firstDifference(plain[part], reference.bytes[part]))")
                #expect(withImportance[part] == weighted.bytes[part], "\(type) impl \(impl) weighted part \(part): \(Self.firstDifference(withImportance[part], weighted.bytes[part]))")
            }
        }
    }

    /// Many random groups (random scales and lengths, with outliers) through every path.
    @Test(arguments: [StorageType.int4(.asymmetric, groupSize: 32, scales: .k6), .int4(.symmetric, groupSize: 32, scales: .f16),
                      .int4(.asymmetric, groupSize: 64, scales: .f16), .int8(.symmetric, groupSize: 32)])
    func manyRandomGroupsMatchTheReference(_ type: StorageType) throws {
        let rows = 40
        var w = sampleWeights(rows: rows, columns: Self.columns, seed: 23)
        for r in 0..<rows {
            let scale = Float(pow(10, Double(r % 9 - 4)))
            for j in 0..<Self.columns { w[r * Self.columns + j] *= scale }
        }
        let importance = (0..<Self.columns).map { j in Float(exp(Double((j * 7919) % 23) / 4 - 3)) }  // 0.05…12
        let reference = Quantized(w, rows: rows, columns: Self.columns, type: type, importance: importance)
        for impl in Self.implementations {
            let got = try Self.kernelBytes(w, rows: rows, type: type, impl: impl, weights: importance)
            #expect(got == reference.bytes, "\(type) impl \(impl)")
        }
    }

    /// Rows of whole super-blocks (the shapes of real checkpoints), where the AVX2 searches take
    /// their fast paths: unweighted full groups, finite ranges. Rows of ordinary, tiny and huge
    /// magnitudes, and one whose range overflows.
    @Test(arguments: allQuantizedTypes)
    func fullWidthRowsMatchTheReference(_ type: StorageType) throws {
        let rows = 6, columns = 1024
        var w = sampleWeights(rows: rows, columns: columns, seed: 41)
        for (r, scale) in [Float(1), 0.02, 1e-6, 3e4, 1e36, 1].enumerated() {
            for j in 0..<columns { w[r * columns + j] *= scale }
        }
        for j in stride(from: 0, to: columns, by: 29) { w[5 * columns + j] = j % 2 == 0 ? 3e38 : -3e38 }
        let importance = sampleImportance(columns: columns, seed: 12)
        let plain = Quantized(w, rows: rows, columns: columns, type: type)
        let weighted = Quantized(w, rows: rows, columns: columns, type: type, importance: importance)
        for impl in Self.implementations {
            #expect(try Self.kernelBytes(w, rows: rows, columns: columns, type: type, impl: impl, weights: nil) == plain.bytes, "\(type) impl \(impl)")
            #expect(try Self.kernelBytes(w, rows: rows, columns: columns, type: type, impl: impl, weights: importance) == weighted.bytes,
                    "\(type) impl \(impl) weighted")
        }
    }

    /// The choice among candidates: the first of the lowest errors, NaN never chosen, ±0 equal,
    /// on arrays of every length the searches use, with ties, NaN, ±Inf and signed zeros mixed.
    @Test func candidateChoiceIsTheFirstOfTheLowest() {
        var state: UInt64 = 77
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        let specials: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, 1, 1, 2.5]
        for trial in 0..<4000 {
            let count = 1 + trial % 24
            var err = [Float](repeating: .nan, count: 32)  // past count: garbage the kernels must ignore
            for k in 0..<32 {
                err[k] = next() % 3 == 0 ? specials[Int(next() % UInt64(specials.count))] : Float(next() % 7) * 0.5
            }
            if trial % 5 == 0 { for k in count..<32 { err[k] = -1 } }  // lower values past the end
            var expected = -1
            var best = Float.infinity
            for k in 0..<count where err[k] < best { best = err[k]; expected = k }
            for impl in Self.implementations {
                #expect(plm_qsearch_first_min(err, Int32(count), impl) == Int32(expected), "trial \(trial) impl \(impl): \(err[0..<count])")
            }
        }
    }

    /// Per-element weights (the layout data-free weightings need) that repeat one row of column
    /// weights give exactly the per-column bytes, and the AVX2 path agrees with the portable one
    /// on weights that differ from row to row.
    @Test(arguments: allQuantizedTypes)
    func perElementWeightsFollowTheSameSearch(_ type: StorageType) throws {
        let rows = 6
        let w = sampleWeights(rows: rows, columns: Self.columns, seed: 31)
        let importance = sampleImportance(columns: Self.columns, seed: 4)
        let tiled = (0..<rows).flatMap { _ in importance }
        let varying = w.map { $0 * $0 + 1e-4 }  // e.g. w² + σ²
        let portable = Int32(PLM_IMPL_PORTABLE)
        let perColumn = try Self.kernelBytes(w, rows: rows, type: type, impl: portable, weights: importance)
        let varyingPortable = try Self.kernelBytes(w, rows: rows, type: type, impl: portable, weights: varying, perElement: true)
        for impl in Self.implementations {
            #expect(try Self.kernelBytes(w, rows: rows, type: type, impl: impl, weights: tiled, perElement: true) == perColumn, "\(type) impl \(impl)")
            #expect(try Self.kernelBytes(w, rows: rows, type: type, impl: impl, weights: varying, perElement: true) == varyingPortable, "\(type) impl \(impl)")
        }
    }

    /// The converter's error sums from C equal the reference's: RowQuantizer.dequantize, then
    /// doubles summed in element order over the finite pairs.
    @Test(arguments: allQuantizedTypes)
    func errorSumsMatchTheReference(_ type: StorageType) throws {
        let rows = Self.adversarialRows(seed: 8)
        let w = rows.flatMap { $0 }
        let importance = sampleImportance(columns: Self.columns, seed: 2)
        let q = Quantized(w, rows: rows.count, columns: Self.columns, type: type, importance: importance)
        let r = q.dequantized()
        var sse = 0.0, norm = 0.0, weighted = 0.0
        for k in 0..<w.count {
            let a = w[k], b = r[k]
            guard a.isFinite, b.isFinite else { continue }
            let e = Double(a - b)
            sse += e * e
            weighted += Double(importance[k % Self.columns]) * e * e
            norm += Double(a) * Double(a)
        }
        var d = q.data, s = q.scales, m = q.mins
        var scratch = [Float](repeating: 0, count: Self.columns)
        let kq = try KernelQuantizer(layout: q.layout)
        let got = w.withUnsafeBufferPointer { wp in
            importance.withUnsafeBufferPointer { ip in
                d.withUnsafeMutableBytes { dp in
                    s.withUnsafeMutableBytes { sp in
                        m.withUnsafeMutableBytes { mp in
                            scratch.withUnsafeMutableBufferPointer { t in
                                kq.errorSums(wp.baseAddress!, rows: rows.count,
                                             parts: .init(data: dp.baseAddress!, scales: sp.baseAddress, mins: mp.baseAddress),
                                             weights: .perColumn(ip.baseAddress!), scratch: t.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
        #expect(got.sse.bitPattern == sse.bitPattern, "\(type): \(got.sse) vs \(sse)")
        #expect(got.norm.bitPattern == norm.bitPattern, "\(type)")
        #expect(got.weighted.bitPattern == weighted.bitPattern, "\(type)")
        // The sums the quantizer measures as it stores each group are the same doubles.
        for impl in Self.implementations {
            let kernel = try KernelQuantizer(layout: q.layout, implementation: impl)
            var d2 = q.data, s2 = q.scales, m2 = q.mins
            let fused = w.withUnsafeBufferPointer { wp in
                importance.withUnsafeBufferPointer { ip in
                    d2.withUnsafeMutableBytes { dp in
                        s2.withUnsafeMutableBytes { sp in
                            m2.withUnsafeMutableBytes { mp in
                                kernel.quantizeMeasuringError(
                                    wp.baseAddress!, rows: rows.count, into: .init(data: dp.baseAddress!, scales: sp.baseAddress, mins: mp.baseAddress),
                                    weights: .perColumn(ip.baseAddress!))
                            }
                        }
                    }
                }
            }
            #expect(fused.sse.bitPattern == sse.bitPattern && fused.norm.bitPattern == norm.bitPattern
                    && fused.weighted.bitPattern == weighted.bitPattern, "\(type) impl \(impl): \(fused) vs \((sse, norm, weighted))")
            #expect([d2, s2, m2] == q.bytes, "\(type) impl \(impl)")
        }
        let plain = Quantized(w, rows: rows.count, columns: Self.columns, type: type)
        var d3 = plain.data, s3 = plain.scales, m3 = plain.mins
        let unweightedKernel = try KernelQuantizer(layout: q.layout)
        let unweighted = w.withUnsafeBufferPointer { wp in
            d3.withUnsafeMutableBytes { dp in
                s3.withUnsafeMutableBytes { sp in
                    m3.withUnsafeMutableBytes { mp in
                        unweightedKernel.quantizeMeasuringError(
                            wp.baseAddress!, rows: rows.count, into: .init(data: dp.baseAddress!, scales: sp.baseAddress, mins: mp.baseAddress))
                    }
                }
            }
        }
        let r3 = plain.dequantized()
        var sse3 = 0.0
        for k in 0..<w.count where w[k].isFinite && r3[k].isFinite { let e = Double(w[k] - r3[k]); sse3 += e * e }
        #expect(unweighted.sse.bitPattern == sse3.bitPattern && unweighted.weighted.bitPattern == sse3.bitPattern, "\(type) unweighted")
    }

    /// Layouts the C searches do not take are a typed error when the quantizer is made (the
    /// converter reports it for the tensor), never a trap inside a later call.
    @Test func unsupportedLayoutsAreErrors() {
        #expect(throws: KernelQuantizer.Unsupported.self) { try KernelQuantizer(layout: StorageLayout(shape: [4, 64], type: .bf16)) }
        #expect(throws: KernelQuantizer.Unsupported.self) {
            try KernelQuantizer(layout: StorageLayout(shape: [4, 0], type: .int8(.symmetric, groupSize: 32)))
        }
        #expect(throws: KernelQuantizer.Unsupported.self) {
            try KernelQuantizer(layout: StorageLayout(shape: [4, 64], type: .int4(.symmetric, groupSize: 512, scales: .f16)))
        }
        #expect((try? KernelQuantizer(layout: StorageLayout(shape: [4, 64], type: .int8(.symmetric, groupSize: 32)))) != nil)
    }

    /// The C f16 rounding (the scale searches store through it) against Swift's Float16(x), on
    /// every f16 boundary region and random bit patterns, NaNs included.
    @Test func f16RoundingMatchesSwift() {
        var state: UInt64 = 0x1234_5678
        var values: [Float] = [0, -0, .infinity, -.infinity, .nan, 65504, 65519.99, 65520, 65536, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, Float.leastNonzeroMagnitude]
        for _ in 0..<20_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            values.append(Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32)))
        }
        for e in -26...16 {  // around every power of two that f16 reaches, with halfway cases
            for k in 0..<64 { values.append(Float(sign: .plus, exponent: e, significand: 1 + Float(k) / 2048)) }
        }
        // Each value through a one-value group of int8-asym, whose stored minimum is Float16(x)
        // (rounded down when above x): compare against Swift's own conversion of the same x.
        for x in values where x.isFinite {
            let bytes = Self.kernelBytesOne(x)
            var m = Float16(x)
            if Float(m) > x { m = m.nextDown }
            #expect(bytes == m.bitPattern, "\(x)")
        }
    }

    static func kernelBytesOne(_ x: Float) -> UInt16 {
        var q = [UInt8](repeating: 0, count: 1), s = [UInt8](repeating: 0, count: 2), m = [UInt8](repeating: 0, count: 2)
        let status = [x].withUnsafeBufferPointer { xp in
            plm_quantize_rows(Int32(PLM_Q8_ASYM), 32, xp.baseAddress!, nil, 0, 1, 1, &q, &s, &m, nil, Int32(PLM_IMPL_PORTABLE))
        }
        precondition(status == 0)
        return UInt16(m[0]) | UInt16(m[1]) << 8
    }

    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String {
        guard a.count == b.count else { return "sizes \(a.count) vs \(b.count)" }
        guard let i = a.indices.first(where: { a[$0] != b[$0] }) else { return "same" }
        return "byte \(i): \(a[i]) vs \(b[i])"
    }
}

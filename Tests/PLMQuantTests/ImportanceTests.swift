import Foundation
import Testing
@testable import PLMQuant

/// Σ ω_j (w − ŵ)², in Double.
func weightedError(_ w: [Float], _ r: [Float], columns: Int, importance: [Float]) -> Double {
    var e = 0.0
    for k in 0..<w.count { let d = Double(w[k] - r[k]); e += Double(importance[k % columns]) * d * d }
    return e
}

/// Skewed positive column weights like trained activations' mean x²: a log-normal body (σ = 1.5)
/// and a few columns a hundred times stronger.
func sampleImportance(columns: Int, seed: UInt64) -> [Float] {
    let g = sampleWeights(rows: 1, columns: columns, seed: seed)  // Gaussian·0.02 with outliers
    return g.enumerated().map { j, x in Float(exp(Double(x) / 0.02 * 1.5)) * (j % 97 == 5 ? 100 : 1) }
}

@Suite struct ImportanceWeightedSearchTests {
    static let types = ["int8-sym", "int8-asym", "int4-sym", "int4-asym-f16", "int4-asym-k6"]

    /// All-ones importance is the unweighted search, byte for byte: weights equal to the mask leave
    /// every sum of the searches unchanged. (K = 300 leaves a short last group at every size.)
    @Test(arguments: StorageType.groupSizes)
    func onesImportanceGivesTheUnweightedBytes(_ g: Int) {
        let rows = 6, columns = 300
        let w = sampleWeights(rows: rows, columns: columns, seed: 11)
        for name in Self.types {
            let type = StorageType.parse(name + "-g\(g)")!
            let plain = Quantized(w, rows: rows, columns: columns, type: type)
            let ones = Quantized(w, rows: rows, columns: columns, type: type, importance: [Float](repeating: 1, count: columns))
            #expect(plain.bytes == ones.bytes, "\(type)")
        }
    }

    /// The searched types lower the importance-weighted error they are given (summed over many
    /// groups; the unweighted search minimises another error, so it loses on this one). int8-asym
    /// is range-based and must simply be unaffected.
    @Test(arguments: StorageType.groupSizes)
    func importanceLowersTheWeightedError(_ g: Int) {
        let rows = 64, columns = 512
        let w = sampleWeights(rows: rows, columns: columns, seed: 5)
        let importance = sampleImportance(columns: columns, seed: 9)
        for name in Self.types {
            let type = StorageType.parse(name + "-g\(g)")!
            let plain = Quantized(w, rows: rows, columns: columns, type: type)
            let weighted = Quantized(w, rows: rows, columns: columns, type: type, importance: importance)
            let e0 = weightedError(w, plain.dequantized(), columns: columns, importance: importance)
            let e1 = weightedError(w, weighted.dequantized(), columns: columns, importance: importance)
            if name == "int8-asym" {
                #expect(plain.bytes == weighted.bytes)
            } else if name == "int8-sym" {
                // Only four candidate scales, each within half a step: a small but real gain.
                #expect(e1 <= e0, "\(type): \(e1) vs \(e0)")
            } else {
                #expect(e1 < 0.97 * e0, "\(type): \(e1) vs \(e0)")
            }
        }
    }

    @Test func searchWeightsAreNormalisedWithAFloor() throws {
        let c = ColumnImportance(meanSquares: ["a": [0, 2, 4, 2], "z": [0, 0]], kind: "text", source: "t.txt", sha256: "", tokens: 1, items: 1)
        let w = try #require(c.searchWeights("a"))
        #expect(w == [ColumnImportance.floor, 1, 2, 1])
        // Columns that never fired everywhere: every column alike.
        #expect(c.searchWeights("z") == [1, 1])
        #expect(c.searchWeights("missing") == nil)
    }
}

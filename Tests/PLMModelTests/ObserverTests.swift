import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
import PLMConvert
@testable import PLMModel

/// The calibration tap: linear maps report their inputs without changing what they compute.
@Suite struct ActivationObserverTests {
    /// Mean x² per column equals the plain definition, over rows that arrive in several calls,
    /// and the observed map's output is the wrapped map's, bit for bit.
    @Test func meanSquaresAreThePlainMeansOverAllCalls() throws {
        let (n, k) = (5, 7)
        let w = FloatBuffer(count: n * k)
        for i in 0..<(n * k) { w.pointer[i] = Float(i % 5) * 0.25 - 0.5 }
        let dense = try DenseLinear(weight: w, bias: nil, outFeatures: n, inFeatures: k, threads: 1)
        let observer = ActivationObserver()
        let observed = ObservedLinear(base: dense, name: "layer.weight", observer: observer)
        let x1: [Float] = (0..<(3 * k)).map { Float($0) * 0.1 - 1 }
        let x2: [Float] = (0..<(2 * k)).map { Float($0 * $0) * 0.01 }
        #expect(observed(x1, rows: 3) == dense(x1, rows: 3))
        #expect(observed(x2, rows: 2) == dense(x2, rows: 2))
        let all = x1 + x2
        let expected: [Float] = (0..<k).map { j in
            Float((0..<5).reduce(0.0) { $0 + Double(all[$1 * k + j]) * Double(all[$1 * k + j]) } / 5)
        }
        #expect(observer.meanSquares()["layer.weight"] == expected)
        #expect(observer.rows()["layer.weight"] == 5)
    }

    /// On a whole model with an image: the logits are unchanged, every linear weight (tower,
    /// projector, decoder, the tied head under the embedding's name) is observed, the decoder's
    /// maps saw one row per token, and a second run gives the same statistics exactly.
    @Test func aWholeModelIsObservedWithoutChangingItsOutput() async throws {
        let variant = "tiny-fp32-mha-tied"
        let plain = try await ModelCache.shared.model(variant)
        let file = try SafetensorsFile(path: Fixtures.testCase(variant, "tile1"))
        let (ids, images) = try caseInputs(file)
        func observedRun() throws -> (ActivationObserver, [Float]) {
            let observer = ActivationObserver()
            let model = try PerceptionLM.load(ModelBundle.open(Fixtures.model(variant)), options: EngineOptions(threads: 2), observer: observer)
            return (observer, try model.forward(inputIds: ids, images: images).logits)
        }
        let (a, logits) = try observedRun()
        #expect(logits == (try plain.forward(inputIds: ids, images: images).logits))
        let stats = a.meanSquares(), rows = a.rows()
        // What a conversion quantizes is what calibration must have seen.
        let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model(variant)), options: ConversionOptions())
        let matrices = plan.tensors.filter { $0.type.isQuantized }
        #expect(matrices.count > 20)
        for t in matrices {
            let m = try #require(stats[t.name], "\(t.name) was not observed")
            #expect(m.count == t.shape.dropFirst().reduce(1, *), "\(t.name)")
            #expect(m.allSatisfy { $0.isFinite && $0 >= 0 } && m.contains { $0 > 0 }, "\(t.name)")
        }
        #expect(rows["model.language_model.layers.0.mlp.down_proj.weight"] == ids.count)
        #expect(rows["model.language_model.embed_tokens.weight"] == ids.count)
        let (b, _) = try observedRun()
        #expect(b.meanSquares() == stats)
    }
}

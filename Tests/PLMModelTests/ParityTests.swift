import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMModel

/// Models are loaded once per variant and shared by the tests.
actor ModelCache {
    static let shared = ModelCache()
    private var models: [String: PerceptionLM] = [:]
    func model(_ variant: String) throws -> PerceptionLM {
        if let m = models[variant] { return m }
        let m = try PerceptionLM.load(Fixtures.model(variant), options: EngineOptions(threads: 2))
        models[variant] = m
        return m
    }
}


/// Max |a − b| and the reference's max |b|, to report the error relative to the tensor's scale.
struct Difference: CustomStringConvertible {
    let maxAbs: Float
    let scale: Float
    init(_ a: [Float], _ b: [Float]) {
        precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
        var m: Float = 0, s: Float = 0
        for i in a.indices { m = max(m, abs(a[i] - b[i])); s = max(s, abs(b[i])) }
        maxAbs = m
        scale = s
    }
    var description: String { "max |Δ| \(maxAbs) (relative to max |ref| \(scale): \(scale > 0 ? maxAbs / scale : 0))" }
}

/// A fixture case's `input_ids` and, when present, its `pixel_values` as tiles.
func caseInputs(_ file: SafetensorsFile) throws -> ([Int], PixelTiles?) {
    let ids = try file.view("input_ids").integers()
    guard let info = file.info("pixel_values") else { return (ids, nil) }
    let s = info.shape
    return (ids, try PixelTiles(count: s.dropLast(3).reduce(1, *), height: s[s.count - 2], width: s[s.count - 1], values: file.view(info).floats()))
}

struct ParityCase: CustomTestStringConvertible, Sendable {
    let variant: String
    let name: String
    var testDescription: String { "\(variant)/\(name)" }
}

let parityCases: [ParityCase] = ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3", "tiny-g-nocls"].flatMap { v in
    ["text", "tile1", "tiles3", "png"].map { ParityCase(variant: v, name: $0) }
}

/// Every numeric path checked against transformers: tower, projector, logits, greedy tokens.
@Suite struct ParityTests {
    static let tolerance: Float = 1e-4

    @Test(arguments: parityCases)
    func forwardMatchesTransformers(_ c: ParityCase) async throws {
        let model = try await ModelCache.shared.model(c.variant)
        let file = try SafetensorsFile(path: Fixtures.testCase(c.variant, c.name))
        let (ids, images) = try caseInputs(file)
        let result = try model.forward(inputIds: ids, images: images)
        let logits = Difference(result.logits, try file.view("logits").floats())
        #expect(logits.maxAbs <= Self.tolerance, "logits: \(logits)")
        if images != nil {
            let hidden = Difference(try #require(result.images).visionHidden, try file.view("vision_hidden").floats())
            #expect(hidden.maxAbs <= Self.tolerance, "vision_hidden: \(hidden)")
            let features = Difference(try #require(result.images).features, try file.view("image_features").floats())
            #expect(features.maxAbs <= Self.tolerance, "image_features: \(features)")
        }
        let expected = try file.view("greedy_tokens").integers()
        let tokens = try model.generate(inputIds: ids, images: images, maxNewTokens: expected.count, stopTokens: [])
        #expect(tokens == expected)
    }

    @Test func longPromptMatchesAtFarPositions() async throws {
        let model = try await ModelCache.shared.model("tiny-bf16-gqa-llama3")
        let file = try SafetensorsFile(path: Fixtures.testCase("tiny-bf16-gqa-llama3", "long"))
        let ids = try file.view("input_ids").integers()
        let reference = try file.view("logits_last")
        let keep = reference.shape[1]
        let result = try model.forward(inputIds: ids, lastPositions: keep)
        let d = Difference(result.logits, try reference.floats())
        #expect(d.maxAbs <= Self.tolerance, "logits at positions \(ids.count - keep)..<\(ids.count): \(d)")
        let expected = try file.view("greedy_tokens").integers()
        #expect(try model.generate(inputIds: ids, maxNewTokens: expected.count, stopTokens: []) == expected)
    }
}

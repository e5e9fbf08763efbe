import PLMCore
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMModel

/// RoPE tables, a prompt with images and video, and a batch, against transformers.
@Suite struct FixtureExtrasTests {
    @Test(arguments: ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3", "tiny-g-nocls"])
    func ropeTablesMatchTransformersAndTimm(_ variant: String) async throws {
        let model = try await ModelCache.shared.model(variant)
        let file = try SafetensorsFile(path: Fixtures.root + "/cases/\(variant)/rope.safetensors")
        // Inverse frequencies computed in fp32 as transformers does: bit for bit.
        let inv = try file.view("text_inv_freq").floats()
        #expect(model.decoder.rope.inverseFrequencies.map(\.bitPattern) == inv.map(\.bitPattern))
        // Angles at position 2999 (fp32 product), cos/sin in the rotate-half layout.
        let half = inv.count
        let cos = try file.view("text_cos_3000").floats(), sin = try file.view("text_sin_3000").floats()
        for i in 0..<half {
            let angle = Float(2999) * model.decoder.rope.inverseFrequencies[i]
            #expect(abs(cosf(angle) - cos[i]) <= 2e-6 && abs(cosf(angle) - cos[i + half]) <= 2e-6)
            #expect(abs(sinf(angle) - sin[i]) <= 2e-6 && abs(sinf(angle) - sin[i + half]) <= 2e-6)
        }
        // The vision tower's interleaved [column | row] tables.
        let vcos = try file.view("vision_rope_cos").floats(), vsin = try file.view("vision_rope_sin").floats()
        let rope = model.vision.rope
        #expect(rope.cosTable.count == vcos.count)
        for i in vcos.indices {
            #expect(abs(rope.cosTable[i] - vcos[i]) <= 2e-6 && abs(rope.sinTable[i] - vsin[i]) <= 2e-6, "\(variant) entry \(i)")
        }
    }

    @Test func imagesAndVideosFillTheirOwnPositions() async throws {
        let model = try await ModelCache.shared.model("tiny-fp32-mha-tied")
        let file = try SafetensorsFile(path: Fixtures.root + "/cases/tiny-fp32-mha-tied/image_video.safetensors")
        let (ids, images) = try caseInputs(file)
        let v = try file.view("pixel_values_videos")
        let videos = try PixelTiles(count: 2, height: v.shape[3], width: v.shape[4], values: v.floats())
        let result = try model.forward(inputIds: ids, images: images, videos: videos)
        let logits = Difference(result.logits, try file.view("logits").floats())
        #expect(logits.maxAbs <= ParityTests.tolerance, "logits: \(logits)")
        let features = Difference(try #require(result.videos).features, try file.view("video_features").floats())
        #expect(features.maxAbs <= ParityTests.tolerance, "video features: \(features)")
        let expected = try file.view("greedy_tokens").integers()
        #expect(try model.generate(inputIds: ids, images: images, videos: videos, maxNewTokens: expected.count, stopTokens: []) == expected)
    }

    @Test func aBatchFillsImagePositionsInRowMajorOrder() async throws {
        let model = try await ModelCache.shared.model("tiny-g-nocls")
        let file = try SafetensorsFile(path: Fixtures.root + "/cases/tiny-g-nocls/batch2.safetensors")
        let ids = try file.view("input_ids")
        let flat = try ids.integers(), length = ids.shape[1]
        let (_, images) = try caseInputs(file)
        let results = try model.forward(batch: [Array(flat[0..<length]), Array(flat[length...])], images: images)
        let logits = Difference(results.flatMap(\.logits), try file.view("logits").floats())
        #expect(logits.maxAbs <= ParityTests.tolerance, "logits: \(logits)")
    }
}

#if canImport(Glibc)
import Glibc
#endif

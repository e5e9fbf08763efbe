import PLMCore
import Testing
@testable import PLMTokenizer

@Suite struct PromptExpanderTests {
    /// The processor fixture (make_fixtures.py): tile 56, patch 14, pooling 2 → 4 tokens per tile.
    static let config = PlaceholderConfig(tileSize: 56, patchSize: 14, poolingRatio: 2)

    @Test func tokensPerTileFollowsTheProcessorFormula() {
        #expect(Self.config.tokensPerTile == 4)
        #expect(PlaceholderConfig(tileSize: 448, patchSize: 14, poolingRatio: 2).tokensPerTile == 256)
    }

    @Test func expandsEachPlaceholderByItsCountWithoutASecondBOS() throws {
        let tokenizer = try Fixtures.tokenizer("models/tiny-fp32-mha-tied/tokenizer.json")
        let chat = try Fixtures.json("cases/tokenizer_cases.json")["chat"]
        let prompt = try #require(chat?["rendered"]?.stringValue)
        let renderedIds = chat?["ids"]?.intArray ?? []
        let expander = PromptExpander(tokenizer: tokenizer, config: Self.config)
        // With the placeholder counted once, the ids are the processor's own tokenization.
        let ids = try expander.ids(prompt: prompt, imageTiles: [5], videoFrames: [])
        let image = try #require(tokenizer.tokenId(for: "<|image|>"))
        #expect(ids.filter { $0 == image }.count == 5 * 4)
        #expect(ids.filter { $0 == 512 }.count == 1 && ids.first == 512)
        #expect(ids.filter { $0 != image } == renderedIds.filter { $0 != image })
        let firstImage = try #require(ids.firstIndex(of: image))
        #expect(Array(ids[firstImage..<(firstImage + 20)]) == Array(repeating: image, count: 20))
    }

    @Test func imagesAndVideosInOrderAndCountChecks() throws {
        let tokenizer = try Fixtures.tokenizer("models/tiny-fp32-mha-tied/tokenizer.json")
        let expander = PromptExpander(tokenizer: tokenizer, config: Self.config)
        let ids = try expander.ids(prompt: "<|image|>a<|video|>b<|image|>", imageTiles: [1, 2], videoFrames: [3])
        let image = 514, video = 515
        let a = tokenizer.encode("a", addSpecialTokens: false), b = tokenizer.encode("b", addSpecialTokens: false)
        #expect(ids == Array(repeating: image, count: 4) + a + Array(repeating: video, count: 12) + b + Array(repeating: image, count: 8))
        #expect(throws: PromptExpansionError.placeholderCountMismatch(kind: "image", inPrompt: 2, given: 1)) {
            try expander.ids(prompt: "<|image|><|image|>", imageTiles: [1], videoFrames: [])
        }
        #expect(throws: PromptExpansionError.tooManyTokens(0)) {
            try expander.ids(prompt: "<|image|>", imageTiles: [0], videoFrames: [])
        }
    }
}

import Testing
@testable import PLMEval

@Suite struct TextChunkingTests {
    /// The tokens 1000, 1001, … with a BOS (7) first, as the tokenizer gives them.
    func text(_ count: Int) -> [Int32] { [7] + (1..<count).map { Int32(1000 + $0) } }

    @Test func chunksFollowLlamaPerplexity() throws {
        let tokens = text(37)
        let chunks = try TextChunking.chunks(tokens: tokens, context: 8, bos: 7)
        #expect(chunks.count == 4)  // ⌊37/8⌋, the last 5 tokens are dropped
        for (i, c) in chunks.enumerated() {
            #expect(c.index == i && c.start == 8 * i)
            #expect(c.inputs.count == 8)
            #expect(c.inputs[0] == 7)  // the first token is replaced by BOS, not shifted
            #expect(Array(c.inputs[1...]) == Array(tokens[(8 * i + 1)..<(8 * i + 8)]))
            #expect(c.scoredPositions == 4..<7)  // n_ctx/2 ..< n_ctx−1
            // position j predicts the original token start + j + 1
            #expect(c.targets == c.scoredPositions.map { tokens[8 * i + $0 + 1] })
        }
        #expect(chunks[1].inputs[0] == 7 && tokens[8] == 1008)  // chunk 1 lost token 1008 to BOS
    }

    @Test func oddContextAndNoBOS() throws {
        let tokens: [Int32] = (0..<20).map { Int32($0) }
        let chunks = try TextChunking.chunks(tokens: tokens, context: 5, bos: nil)
        #expect(chunks.count == 4)
        #expect(chunks[2].inputs == [10, 11, 12, 13, 14])
        #expect(chunks[2].scoredPositions == 2..<4 && chunks[2].targets == [13, 14])
        #expect(TextChunking.scoredPerChunk(context: 5) == 2 && TextChunking.scoredPerChunk(context: 512) == 255)
    }

    @Test func scoredCountMatchesTheDefinitionForManyContexts() throws {
        for n in 3...40 {
            let tokens = text(3 * n + 1)
            let chunks = try TextChunking.chunks(tokens: tokens, context: n, bos: 7)
            #expect(chunks.count == 3)
            #expect(chunks.allSatisfy { $0.targets.count == n - 1 - n / 2 && $0.scoredPositions.count == $0.targets.count })
        }
    }

    @Test func chunkCapAndErrors() throws {
        #expect(try TextChunking.chunks(tokens: text(100), context: 10, bos: 7, maxChunks: 3).count == 3)
        #expect(throws: TextChunkingError.tooFewTokens(have: 15, need: 16, context: 8)) {
            try TextChunking.chunks(tokens: text(15), context: 8, bos: 7)
        }
        #expect(throws: TextChunkingError.contextTooSmall(2)) { try TextChunking.chunks(tokens: text(15), context: 2, bos: 7) }
    }
}

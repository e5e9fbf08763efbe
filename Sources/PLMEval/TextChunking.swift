import PLMCore
// `--text` mode: a raw text scored in chunks exactly as `llama-perplexity` does, so plmq's
// perplexity and KLD of a file can be set beside llama.cpp's (tools/perplexity/perplexity.cpp,
// `perplexity` and `kl_divergence`):
//
// - The text is tokenized once with the tokenizer's special tokens (`common_tokenize(ctx, text,
//   true)`: for Llama 3 a BOS first). At least 2·n_ctx tokens are required.
// - n_chunk = ⌊tokens / n_ctx⌋ (optionally capped, `--chunks`); the tail is dropped.
// - Chunk i is tokens[i·n_ctx ..< (i+1)·n_ctx], evaluated from an empty KV cache at positions
//   0 ..< n_ctx. When the model adds BOS, the chunk's FIRST TOKEN IS REPLACED by BOS (not
//   shifted: the chunk keeps n_ctx tokens and loses its original first token).
// - Only positions j in n_ctx/2 ..< n_ctx−1 are scored, position j against the original token
//   i·n_ctx + j + 1: n_ctx − 1 − n_ctx/2 tokens per chunk (255 for n_ctx = 512).

public enum TextChunkingError: Error, Sendable, Equatable, CustomStringConvertible {
    case contextTooSmall(Int)
    case tooFewTokens(have: Int, need: Int, context: Int)

    public var description: String {
        switch self {
        case .contextTooSmall(let n): return "--ctx \(n): at least 3 is needed to score any token (n_ctx − 1 − n_ctx/2 > 0)"
        case .tooFewTokens(let have, let need, let ctx):
            return "the text tokenizes to \(have) tokens; at least \(need) (2 × --ctx \(ctx)) are needed, as llama-perplexity requires"
        }
    }
}

/// One chunk: what the model is fed and which of its output positions are scored against what.
public struct TextChunk: Sendable, Equatable {
    public let index: Int
    /// Offset of the chunk in the tokenized text.
    public let start: Int
    /// The n_ctx input tokens, BOS first when the model adds one.
    public let inputs: [Int32]
    /// Output positions whose logits are scored: n_ctx/2 ..< n_ctx−1.
    public let scoredPositions: Range<Int>
    /// The token each scored position predicts (inputs' successor in the original text).
    public let targets: [Int32]
}

public enum TextChunking {
    /// Splits tokenized text into llama-perplexity's chunks. `tokens` must be the tokenizer's
    /// output with special tokens (BOS first for Llama 3); `bos` is the model's BOS when it adds
    /// one (llama.cpp's `llama_vocab_get_add_bos`), nil otherwise.
    public static func chunks(tokens: [Int32], context n: Int, bos: Int32?, maxChunks: Int? = nil) throws(TextChunkingError) -> [TextChunk] {
        guard n >= 3 else { throw .contextTooSmall(n) }
        let need = Checked.multiply(n, 2)
        guard let need, tokens.count >= need else { throw .tooFewTokens(have: tokens.count, need: need ?? Int.max, context: n) }
        var count = tokens.count / n
        if let maxChunks, maxChunks >= 0 { count = min(count, maxChunks) }
        let first = n / 2
        return (0..<count).map { i in
            let start = i * n
            var inputs = Array(tokens[start..<(start + n)])
            if let bos { inputs[0] = bos }
            let targets = Array(tokens[(start + first + 1)..<(start + n)])
            return TextChunk(index: i, start: start, inputs: inputs, scoredPositions: first..<(n - 1), targets: targets)
        }
    }

    /// Scored tokens per chunk: n_ctx − 1 − n_ctx/2.
    public static func scoredPerChunk(context n: Int) -> Int { max(0, n - 1 - n / 2) }
}

import Testing
@testable import PLMRunner

@Suite struct SamplerTests {
    func draw(_ logits: [Float], _ p: SamplingParameters, history: [Int] = []) -> Int {
        var sampler = Sampler(p)
        var l = logits
        return l.withUnsafeMutableBufferPointer { sampler.next($0, history: history) }
    }

    @Test func greedyIsTheFirstMaximum() {
        #expect(draw([1, 3, 3, 2], .greedy) == 1)
    }

    @Test func aSeedReproducesTheSameTokens() {
        let logits: [Float] = (0..<50).map { Float($0 % 7) * 0.3 }
        let p = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, seed: 42)
        var a = Sampler(p), b = Sampler(p)
        var x = logits, y = logits
        let first = (0..<100).map { _ in x.withUnsafeMutableBufferPointer { a.next($0, history: []) } }
        let second = (0..<100).map { _ in y.withUnsafeMutableBufferPointer { b.next($0, history: []) } }
        #expect(first == second)
        #expect(Set(first).count > 3, "temperature 1 over a flat-ish distribution should vary")
    }

    /// Draw frequencies follow softmax(logits / T): logits [0, ln 2] give 1/3 and 2/3.
    @Test func frequenciesFollowTheSoftmax() {
        let p = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, seed: 7)
        var sampler = Sampler(p)
        var ones = 0
        let n = 6000
        for _ in 0..<n {
            var l: [Float] = [0, Float(0.6931471805599453)]
            if l.withUnsafeMutableBufferPointer({ sampler.next($0, history: []) }) == 1 { ones += 1 }
        }
        let share = Double(ones) / Double(n)
        #expect(abs(share - 2.0 / 3.0) < 0.03, "share \(share)")
    }

    @Test func topKOneAndTinyTopPAreGreedy() {
        let logits: [Float] = [0.1, 2, 1.9, -1]
        for seed in 0..<20 as Range<UInt64> {
            #expect(draw(logits, SamplingParameters(temperature: 1, topK: 1, topP: 1, minP: 0, repeatPenalty: 1, seed: seed)) == 1)
            #expect(draw(logits, SamplingParameters(temperature: 1, topK: 0, topP: 0.01, minP: 0, repeatPenalty: 1, seed: seed)) == 1)
        }
    }

    @Test func minPDropsUnlikelyTokens() {
        // p ∝ [e^0, e^-5]: with min-p 0.1 the second (0.7 % of the first) is never drawn.
        for seed in 0..<50 as Range<UInt64> {
            #expect(draw([0, -5], SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0.1, repeatPenalty: 1, seed: seed)) == 0)
        }
    }

    /// transformers' RepetitionPenaltyLogitsProcessor: positive logits divided, negative multiplied,
    /// each id once however often it occurs.
    @Test func repetitionPenaltyAsTransformers() {
        var sampler = Sampler(SamplingParameters(temperature: 0, topK: 0, topP: 1, minP: 0, repeatPenalty: 2, seed: 0))
        var l: [Float] = [4, -1, 3.5, 0.5]
        let picked = l.withUnsafeMutableBufferPointer { sampler.next($0, history: [0, 0, 1]) }
        #expect(l == [2, -2, 3.5, 0.5])
        #expect(picked == 2)
    }

    @Test func outOfRangeParametersAreErrors() {
        #expect(throws: RunnerError.self) { try SamplingParameters(temperature: -1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, seed: 0).validate() }
        #expect(throws: RunnerError.self) { try SamplingParameters(temperature: 1, topK: -2, topP: 1, minP: 0, repeatPenalty: 1, seed: 0).validate() }
        #expect(throws: RunnerError.self) { try SamplingParameters(temperature: 1, topK: 0, topP: 0, minP: 0, repeatPenalty: 1, seed: 0).validate() }
        #expect(throws: RunnerError.self) { try SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 2, repeatPenalty: 1, seed: 0).validate() }
        #expect(throws: RunnerError.self) { try SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 0, seed: 0).validate() }
    }
}

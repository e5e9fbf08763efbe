import Foundation
import PLMQ
import PLMTestSupport
import Testing

/// Two models used at once from several threads through the library API (what `make tsan` runs
/// under the thread sanitizer): each model's worker pool, KV caches and vision tower serve
/// requests from several tasks, and every answer is the one each model gives alone. The models
/// use different thread counts, so the shared pool runs sections of 2 and 3 workers back to back
/// (workers left out of one section must not take part in the next by mistake).
@Suite struct ConcurrencyTests {
    @Test func twoModelsFromSeveralTasksGiveWhatEachGivesAlone() async throws {
        let image = Fixtures.root + "/cases/tiny-fp32-mha-tied/png.png"
        let models = [
            try VisionLanguageModel(path: Fixtures.model("tiny-fp32-mha-tied"), options: EngineOptions(threads: 2)),
            try VisionLanguageModel(path: Fixtures.model("tiny-bf16-gqa-llama3"), options: EngineOptions(threads: 3)),
        ]
        let options = GenerateOptions(maxNewTokens: 6)
        let questions: [[Message]] = [
            [.user("What is in this picture?", images: [.file(image)])],
            [.user("Hello there")],
        ]
        // Alone, one request at a time: the expected answers.
        var alone: [[Int]] = []
        for model in models {
            for question in questions { alone.append(try model.session().respond(to: question, options: options).ids) }
        }
        // Both models, both questions, twice each, all at once.
        let results = try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for run in 0..<8 {
                let modelIndex = run % 2, questionIndex = (run / 2) % 2
                group.addTask {
                    let ids = try models[modelIndex].session().respond(to: questions[questionIndex], options: options).ids
                    return (modelIndex * 2 + questionIndex, ids)
                }
            }
            var collected: [(Int, [Int])] = []
            for try await result in group { collected.append(result) }
            return collected
        }
        #expect(results.count == 8)
        for (slot, ids) in results { #expect(ids == alone[slot], "model \(slot / 2), question \(slot % 2)") }
    }

    /// The engine API directly: two `PerceptionLM`s, forward passes from a task group.
    @Test func twoEnginesForwardFromATaskGroup() async throws {
        let engines = [
            try PerceptionLM.load(Fixtures.model("tiny-fp32-mha-tied"), options: EngineOptions(threads: 2)),
            try PerceptionLM.load(Fixtures.model("tiny-g-nocls"), options: EngineOptions(threads: 3)),
        ]
        let ids = [1, 5, 9, 13, 2, 7]
        let alone = try engines.map { try $0.forward(inputIds: ids).logits }
        let results = try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for run in 0..<6 {
                group.addTask { (run % 2, try engines[run % 2].forward(inputIds: ids).logits) }
            }
            var collected: [(Int, [Float])] = []
            for try await result in group { collected.append(result) }
            return collected
        }
        #expect(results.count == 6)
        for (index, logits) in results { #expect(logits == alone[index], "engine \(index)") }
    }
}

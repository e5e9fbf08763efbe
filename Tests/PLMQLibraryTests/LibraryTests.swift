import Foundation
import PLMQ
import PLMTestSupport
import Testing

@Suite struct LibraryTests {
    /// The README example compiles (it is this target's code) and runs against a fixture model.
    @Test func readmeExampleRuns() async throws {
        let answer = try await readmeExample(modelPath: Fixtures.model("tiny-fp32-mha-tied"),
                                             imagePath: Fixtures.root + "/cases/tiny-fp32-mha-tied/png.png")
        #expect(!answer.isEmpty)
    }

    /// What the README shows is exactly the code above (markers included in both).
    @Test func readmeShowsTheTestedExample() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let source = try String(contentsOf: here.appendingPathComponent("ReadmeExample.swift"), encoding: .utf8)
        let readme = try String(contentsOf: here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        func block(_ text: String) -> [String] {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let a = lines.firstIndex(where: { $0.contains("README-EXAMPLE-BEGIN") }),
                  let b = lines.firstIndex(where: { $0.contains("README-EXAMPLE-END") }), a < b else { return [] }
            return Array(lines[(a + 1)..<b])
        }
        let tested = block(source)
        #expect(!tested.isEmpty)
        #expect(block(readme) == tested)
    }

    /// A cancellation flag stops generation at the next token.
    @Test func aCancellationFlagStopsTheAnswer() throws {
        let model = try VisionLanguageModel(path: Fixtures.model("tiny-bf16-gqa-llama3"), options: EngineOptions(threads: 1))
        let flag = CancellationFlag()
        var pieces = 0
        let result = try model.session().respond(to: [.user("Tell me a long story.")], options: GenerateOptions(maxNewTokens: 400),
                                                 cancellation: flag) { _, _ in
            pieces += 1
            if pieces == 3 { flag.cancel() }
        }
        #expect(result.finish == .cancelled)
        #expect(result.ids.count <= 4)
    }

    /// Leaving the stream early stops the generation behind it: an answer of thousands of tokens
    /// (tens of seconds on this model) is abandoned, so the next request, which must wait for
    /// its turn, comes back at once.
    @Test func leavingTheStreamStopsGeneration() async throws {
        let model = try VisionLanguageModel(path: Fixtures.model("tiny-bf16-gqa-llama3"), options: EngineOptions(threads: 1))
        var pieces = 0
        for try await event in model.stream([.user("Tell me a long story.")], options: GenerateOptions(maxNewTokens: 11000, stopTokens: [])) {
            if case .text = event { pieces += 1 }
            if pieces == 3 { break }
        }
        let started = ContinuousClock.now
        _ = try model.session().respond(to: [.user("Hi")], options: GenerateOptions(maxNewTokens: 4))
        #expect(ContinuousClock.now - started < .seconds(10), "the abandoned answer kept the model busy")
    }

    /// Two requests on one shared model from two tasks both complete (they take turns) and give
    /// what each gives alone.
    @Test func concurrentRequestsTakeTurns() async throws {
        let model = try VisionLanguageModel(path: Fixtures.model("tiny-fp32-mha-tied"), options: EngineOptions(threads: 1))
        let options = GenerateOptions(maxNewTokens: 8)
        let alone = try model.session().respond(to: [.user("Hello there")], options: options).ids
        async let a = model.session().respond(to: [.user("Hello there")], options: options).ids
        async let b = model.session().respond(to: [.user("Hello there")], options: options).ids
        let (x, y) = try await (a, b)
        #expect(x == alone && y == alone)
    }
}

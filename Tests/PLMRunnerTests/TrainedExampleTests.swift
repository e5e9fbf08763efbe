import Foundation
import PLMCore
import PLMModel
import PLMTestSupport
import Testing
@testable import PLMRunner

/// The trained example (Examples/shapes-plm) answers its held-out samples with exactly the
/// tokens transformers' fp32 generate gave (Examples/shapes-plm-eval.json): the whole pipeline
/// on a model that has learned something, from PNG files to answers.
@Suite struct TrainedExampleTests {
    static let examples = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Examples").path

    @Test func heldOutAnswersEqualTransformers() throws {
        let eval = try #require(try JSONParser.parse(try FileSystem.readBytes(Self.examples + "/shapes-plm-eval.json")).objectValue)
        var expected: [String: [Int]] = [:]
        for s in eval["fp32"]?.arrayValue ?? [] {
            guard let o = s.objectValue, let id = o["id"]?.stringValue else { continue }
            expected[id] = (o["tokens"]?.arrayValue ?? []).compactMap(\.intValue)
        }
        #expect(expected.count == 200)
        let model = try VisionLanguageModel(path: Self.examples + "/shapes-plm", options: EngineOptions(threads: 2))
        let lines = try String(contentsOfFile: Self.examples + "/samples/samples.jsonl", encoding: .utf8).split(separator: "\n")
        var same = 0, checked = 0
        for line in lines.prefix(100) {
            let o = try #require(try JSONParser.parse(String(line)).objectValue)
            let id = try #require(o["id"]?.stringValue), prompt = try #require(o["prompt"]?.stringValue)
            let images = (o["images"]?.arrayValue ?? []).compactMap(\.stringValue).map { ImageInput.file(Self.examples + "/samples/" + $0) }
            let result = try model.session().respond(to: [.user(prompt, images: images)], options: GenerateOptions(maxNewTokens: 8))
            checked += 1
            if result.ids == expected[id] { same += 1 } else { Issue.record("\(id): \(result.ids) vs transformers \(expected[id] ?? [])") }
        }
        #expect(checked == 100 && same == checked)
    }
}

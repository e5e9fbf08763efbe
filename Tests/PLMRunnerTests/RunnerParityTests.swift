import Foundation
import PLMCore
import PLMModel
import PLMTestSupport
import PLMCheckpoint
import PLMConvert
import Testing
@testable import PLMRunner

/// One case of Tests/Fixtures/runner/runner_cases.json: a conversation with media, and what
/// transformers' processor and generate() made of it.
struct RunnerCase: Sendable, CustomTestStringConvertible {
    let variant: String
    let name: String
    let messages: [Message]
    let inputIds: [Int]
    let greedyIds: [Int]
    let text: String
    var testDescription: String { "\(variant)/\(name)" }
}

enum RunnerFixtures {
    static let maxNewTokens = 10

    static func load() throws -> [RunnerCase] {
        let bytes = try FileSystem.readBytes(Fixtures.root + "/runner/runner_cases.json")
        let root = try JSONParser.parse(bytes)
        var out: [RunnerCase] = []
        for (variant, cases) in root.objectValue?["variants"]?.objectValue?.entries ?? [] {
            for c in cases.arrayValue ?? [] {
                guard let o = c.objectValue else { continue }
                let images = (o["images"]?.arrayValue ?? []).compactMap { $0.stringValue }.map { Fixtures.root + "/" + $0 }
                let video = o["video"]?.stringValue.map { Fixtures.root + "/" + $0 }
                var nextImage = 0
                var messages: [Message] = []
                for m in o["messages"]?.arrayValue ?? [] {
                    guard let mo = m.objectValue, let role = mo["role"]?.stringValue else { continue }
                    var parts: [Message.Part] = []
                    if let text = mo["content"]?.stringValue {
                        parts = [.text(text)]
                    } else {
                        for p in mo["content"]?.arrayValue ?? [] {
                            switch p.objectValue?["type"]?.stringValue {
                            case "text": parts.append(.text(p.objectValue?["text"]?.stringValue ?? ""))
                            case "image": parts.append(.image(.file(images[nextImage]))); nextImage += 1
                            case "video": if let video { parts.append(.video(.file(video))) }
                            default: break
                            }
                        }
                    }
                    messages.append(Message(role: role, parts: parts))
                }
                out.append(RunnerCase(variant: variant, name: o["name"]?.stringValue ?? "?", messages: messages,
                                      inputIds: (o["input_ids"]?.arrayValue ?? []).compactMap(\.intValue),
                                      greedyIds: (o["greedy_ids"]?.arrayValue ?? []).compactMap(\.intValue),
                                      text: o["text"]?.stringValue ?? ""))
            }
        }
        return out
    }
}

/// Models are loaded once per path and shared (they are Sendable; requests take turns).
actor RunnerModels {
    static let shared = RunnerModels()
    private var models: [String: VisionLanguageModel] = [:]
    func model(_ path: String) throws -> VisionLanguageModel {
        if let m = models[path] { return m }
        let m = try VisionLanguageModel(path: path, options: EngineOptions(threads: 2))
        models[path] = m
        return m
    }
}

@Suite struct RunnerParityTests {
    static let cases: [RunnerCase] = (try? RunnerFixtures.load()) ?? []

    @Test func fixturesArePresent() { #expect(Self.cases.count == 14) }

    /// From image files and a conversation to greedy tokens: the prompt ids (template, tokenizer,
    /// image/video processors, placeholder expansion) and the answer equal transformers'.
    @Test(arguments: cases)
    func wholePipelineMatchesTransformers(_ c: RunnerCase) async throws {
        let model = try await RunnerModels.shared.model(Fixtures.model(c.variant))
        let session = model.session()
        let options = GenerateOptions(maxNewTokens: RunnerFixtures.maxNewTokens)
        let prompt = try session.prompt(c.messages, options: options)
        #expect(prompt.ids == c.inputIds, "prompt ids differ")
        let result = try session.respond(to: c.messages, options: options)
        #expect(result.ids == c.greedyIds)
        #expect(result.text == c.text)
    }

    /// A second chat turn reuses the cache: only the positions after the first prompt's common
    /// prefix are prefilled, and the answer still equals transformers' on the whole conversation.
    @Test(arguments: Fixtures.variants.prefix(2))
    func secondTurnPrefillsOnlyWhatIsNew(_ variant: String) async throws {
        let first = try #require(Self.cases.first { $0.variant == variant && $0.name == "one_image" })
        let second = try #require(Self.cases.first { $0.variant == variant && $0.name == "second_turn" })
        let model = try await RunnerModels.shared.model(Fixtures.model(variant))
        let session = model.session()
        let options = GenerateOptions(maxNewTokens: RunnerFixtures.maxNewTokens)
        let answer = try session.send(try #require(first.messages.last), options: options)
        #expect(answer.ids == first.greedyIds)
        let followUp = try #require(second.messages.last)
        let result = try session.send(followUp, options: options)
        #expect(result.ids == second.greedyIds)
        #expect(result.stats.cachedTokens >= first.inputIds.count - 1, "the first turn's prompt should stay cached")
        #expect(result.stats.prefillTokens < second.inputIds.count - first.inputIds.count + first.greedyIds.count + 2)
        #expect(result.stats.visionTiles == 0, "the first turn's image must not go through the tower again")
    }

    /// `.plm` files run through the same path: the same prompt ids (they do not depend on the
    /// weights), the tokenizer, template and processor config read from inside the file, and an
    /// answer of the requested length (or ending on an eos id).
    @Test(arguments: [8, 4])
    func plmFilesRunThroughTheSamePipeline(_ bits: Int) async throws {
        let folder = try TemporaryFolder("runner-plm")
        var options = ConversionOptions()
        options.bits = bits
        options.threads = 2
        let path = folder.path + "/m.plm"
        let plan = try ConversionPlan(folder: CheckpointFolder(path: Fixtures.model("tiny-fp32-mha-tied")), options: options)
        _ = try Converter(plan: plan, producer: "test").run(output: path, dryRun: false)
        let model = try VisionLanguageModel(path: path, options: EngineOptions(threads: 2))
        for c in Self.cases where c.variant == "tiny-fp32-mha-tied" && ["one_image", "video", "system"].contains(c.name) {
            let session = model.session()
            let generate = GenerateOptions(maxNewTokens: RunnerFixtures.maxNewTokens)
            #expect(try session.prompt(c.messages, options: generate).ids == c.inputIds, "\(c.name)")
            let result = try session.respond(to: c.messages, options: generate)
            let eos = Set(model.generation.eosTokenIds)
            #expect(result.ids.count == RunnerFixtures.maxNewTokens || result.ids.last.map(eos.contains) == true)
            let agree = zip(result.ids, c.greedyIds).prefix { $0 == $1 }.count
            print("int\(bits) \(c.name): first \(agree) of \(c.greedyIds.count) greedy tokens equal the fp32 checkpoint's")
        }
    }
}

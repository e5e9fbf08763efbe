import PLMQ

// The README's library example, verbatim between the markers: a test compares the two, so the
// README can never show code that does not compile and run.
func readmeExample(modelPath: String, imagePath: String) async throws -> String {
    // README-EXAMPLE-BEGIN
    let model = try VisionLanguageModel(path: modelPath)        // a .plm file or a checkpoint folder
    let question = Message.user("What is in this picture?", images: [.file(imagePath)])
    var answer = ""
    for try await event in model.stream([question], options: GenerateOptions(maxNewTokens: 32)) {
        switch event {
        case .text(let piece): answer += piece                  // streamed as it is generated
        case .finished(let result): print(result.stats.decodeTokensPerSecond, "tokens/s")
        }
    }
    // README-EXAMPLE-END
    return answer
}

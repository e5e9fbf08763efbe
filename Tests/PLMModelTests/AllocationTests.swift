import PLMCore
import CAllocationCounter
import Testing
import PLMTestSupport
import PLMCheckpoint
@testable import PLMModel

/// A decode step allocates nothing: generating 8 more tokens costs no more heap allocations
/// than generating fewer (the prefill, the cache and the step buffers are allocated once).
/// Counted on the calling thread, which runs every step and hands parallel sections to the
/// worker pool; with one thread all the work happens there.
@Suite(.serialized) struct AllocationTests {
    func allocations(_ model: PerceptionLM, ids: [Int], tokens: Int) throws -> Int {
        plm_count_allocations(1)
        let before = plm_allocations()
        _ = try model.generate(inputIds: ids, maxNewTokens: tokens, stopTokens: [])
        let after = plm_allocations()
        plm_count_allocations(0)
        return after - before  // counted on this thread; the test's body must not hop threads in between
    }

    @Test(arguments: [1, 2])
    func decodeStepsDoNotAllocate(threads: Int) async throws {
        guard plm_allocations() >= 0 else { return }  // counting needs glibc
        // Own instances: the shared test models may be busy in suites running in parallel.
        let plm = try await ConvertedModels.shared.path("tiny-bf16-gqa-llama3", bits: 4)
        // Both engines on 1 and 2 threads: OpenBLAS stays single-threaded inside plmq's workers.
        let options = EngineOptions(threads: threads)
        let models = [try PerceptionLM.load(plm, options: options),
                      try PerceptionLM.load(Fixtures.model("tiny-bf16-gqa-llama3"), options: options)]
        for model in models {
            let ids = try SafetensorsFile(path: Fixtures.testCase("tiny-bf16-gqa-llama3", "text")).view("input_ids").integers()
            _ = try allocations(model, ids: ids, tokens: 4)  // warm-up: lazily sized scratch
            let short = try allocations(model, ids: ids, tokens: 4)
            let long = try allocations(model, ids: ids, tokens: 12)
            #expect(long == short, "8 more decode steps made \(long - short) more allocations (threads \(threads))")
        }
    }
}

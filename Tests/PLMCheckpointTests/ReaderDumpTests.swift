import Testing
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

/// The reader's values against dumps written by PyTorch from the same files.
@Suite struct ReaderDumpTests {
    @Test(arguments: ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3", "tiny-g-nocls"])
    func widenedTensorsEqualTorchsFloatCopies(_ variant: String) throws {
        let dump = try SafetensorsFile(path: Fixtures.cases(variant) + "/tensors.safetensors")
        let weights = try CheckpointWeights(folder: Fixtures.model(variant))
        #expect(dump.tensors.count >= 4)
        for t in dump.tensors {
            let ours = try weights.view(t.name)
            #expect(ours.shape == t.shape)
            #expect(try ours.floats().map(\.bitPattern) == dump.view(t).floats().map(\.bitPattern), "\(variant) \(t.name)")
        }
    }

    @Test func f16AndBF16WideningEqualsTorch() throws {
        let file = try SafetensorsFile(path: Fixtures.root + "/cases/f16_values.safetensors")
        for (narrow, wide) in [("h", "h_as_f32"), ("b", "b_as_f32")] {
            let a = try file.view(narrow).floats(), b = try file.view(wide).floats()
            #expect(a.count == 4096)
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(narrow)")
        }
    }
}

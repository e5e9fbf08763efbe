import Foundation
import PLMCheckpoint
import PLMConvert
import PLMTestSupport
import Testing
import CPLMKernels
@testable import PLMModel

/// The real-model test bed (Examples/real-model/make_real_model.py: SmolLM2-135M-Instruct inside a
/// PerceptionLM checkpoint, ~270 MB, not committed). Opt-in: runs only when PLMQ_REAL_MODEL names
/// the built folder, e.g. `PLMQ_REAL_MODEL=/work/smol-plm swift test --filter RealModelTests`.
let realModelFolder: String? = {
    guard let p = ProcessInfo.processInfo.environment["PLMQ_REAL_MODEL"], !p.isEmpty,
          FileManager.default.fileExists(atPath: p + "/reference_case.safetensors") else { return nil }
    return p
}()

@Suite(.enabled(if: realModelFolder != nil, "set PLMQ_REAL_MODEL to the folder make_real_model.py wrote"))
struct RealModelTests {
    /// Mean KL(reference ‖ model) over the positions of one sequence, from raw logits.
    func meanKL(_ want: [Float], _ got: [Float], vocab: Int) -> Double {
        let positions = want.count / vocab
        var total = 0.0
        for t in 0..<positions {
            let p = logSoftmax(want[(t * vocab)..<((t + 1) * vocab)]), q = logSoftmax(got[(t * vocab)..<((t + 1) * vocab)])
            for i in 0..<vocab where p[i] > -60 { total += exp(p[i]) * (p[i] - q[i]) }
        }
        return total / Double(positions)
    }

    func logSoftmax(_ x: ArraySlice<Float>) -> [Double] {
        let m = Double(x.max() ?? 0)
        let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        return x.map { Double($0) - lse }
    }

    /// The fp32 engine on the trained weights gives transformers' logits (max |Δ| ≤ 1e-3 at
    /// logit scale ~40), and the int8 conversion with the default activations stays close to them
    /// while int8 activations everywhere are measurably further away (the reason for `auto`).
    @Test func fp32MatchesTransformersAndInt8StaysClose() async throws {
        let folder = try #require(realModelFolder)
        let file = try SafetensorsFile(path: folder + "/reference_case.safetensors")
        let ids = try file.view("input_ids").integers()
        let want = try file.view("logits").floats()
        let vocab = want.count / ids.count
        let fp32 = try PerceptionLM.load(folder, options: EngineOptions(threads: 2)).forward(inputIds: ids, images: nil).logits
        #expect(fp32.count == want.count)
        let delta = zip(fp32, want).map { abs($0 - $1) }.max() ?? .infinity
        #expect(delta <= 1e-3, "max |plmq fp32 − transformers| \(delta)")

        let tmp = try TemporaryFolder("real-model")
        var options = ConversionOptions()
        options.bits = 8
        options.threads = 2
        let plm = tmp.path + "/smol-int8.plm"
        _ = try Converter(plan: ConversionPlan(folder: CheckpointFolder(path: folder), options: options), producer: "test").run(output: plm, dryRun: false)
        let auto = try PerceptionLM.load(plm, options: EngineOptions(threads: 2)).forward(inputIds: ids, images: nil).logits
        let a8 = try PerceptionLM.load(plm, options: EngineOptions(threads: 2, activations: .int8)).forward(inputIds: ids, images: nil).logits
        let a16 = try PerceptionLM.load(plm, options: EngineOptions(threads: 2, activations: .int16)).forward(inputIds: ids, images: nil).logits
        let klAuto = meanKL(want, auto, vocab: vocab), klA8 = meanKL(want, a8, vocab: vocab), klA16 = meanKL(want, a16, vocab: vocab)
        #expect(klAuto < 0.01, "int8 weights, auto activations: mean KL \(klAuto)")
        #expect(klA16 < klA8, "int16 activations \(klA16) should beat int8 activations \(klA8) on a trained model")
        // This 42-token prompt is a prefill: auto takes int8 activations there on AVX-512 (the VNNI
        // tile GEMM), fp32 elsewhere.
        if plm_best_impl() >= PLM_IMPL_AVX512 {
            #expect(klAuto == klA8, "auto prefills on int8 activations on AVX-512")
        } else {
            #expect(klAuto < klA8, "auto \(klAuto) should beat int8 activations \(klA8) on a trained model")
        }
    }
}

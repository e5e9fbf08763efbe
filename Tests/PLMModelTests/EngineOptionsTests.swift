import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import PLMCore
import PLMCheckpoint
import PLMTestSupport
import Synchronization
import Testing
@testable import PLMModel

@Suite struct EngineOptionsTests {
    /// Two models of one file with different options, run at the same time from two threads,
    /// give exactly what each gives alone: no setting leaks from one model into the other.
    @Test func twoModelsWithDifferentOptionsRunSideBySide() async throws {
        let plm = try await ConvertedModels.shared.path("tiny-bf16-gqa-llama3", bits: 4)
        let a = try PerceptionLM.load(plm, options: EngineOptions(threads: 1, activations: .int8))
        let b = try PerceptionLM.load(plm, options: EngineOptions(threads: 2, activations: .f32))
        let file = try SafetensorsFile(path: Fixtures.testCase("tiny-bf16-gqa-llama3", "tile1"))
        let (ids, images) = try caseInputs(file)
        let aloneA = try a.forward(inputIds: ids, images: images).logits
        let aloneB = try b.forward(inputIds: ids, images: images).logits
        #expect(aloneA != aloneB, "int8 and f32 activations should not give identical logits")
        let results = Mutex<[Int: [Float]]>([:])
        let failures = Mutex<[String]>([])
        let models = [a, b]
        DispatchQueue.concurrentPerform(iterations: 6) { i in
            do {
                let logits = try models[i % 2].forward(inputIds: ids, images: images).logits
                results.withLock { $0[i] = logits }
            } catch { failures.withLock { $0.append("\(error)") } }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        for (i, logits) in results.withLock({ $0 }) { #expect(logits == (i % 2 == 0 ? aloneA : aloneB), "run \(i)") }
    }

    @Test func optionsOutOfRangeAreErrors() {
        #expect(throws: EngineError.self) { try EngineOptions(threads: 0).validate() }
        #expect(throws: EngineError.self) { try EngineOptions(threads: EngineOptions.maxThreads + 1).validate() }
        #expect(throws: Never.self) { try EngineOptions(threads: 1).validate() }
        #expect(EngineOptions().threads >= 1)
    }

    /// The dispatcher never runs a lesser implementation than the one asked for without saying
    /// so: a kernel above what the CPU supports is refused at load.
    @Test func anUnavailableKernelIsRefusedNotDowngraded() throws {
        let best = KernelImplementation.best
        for kernel in KernelImplementation.allCases where kernel != .auto {
            let supported = kernel.code <= KernelImplementation.best.code
            do {
                try EngineOptions(kernel: kernel).validate()
                #expect(supported, "\(kernel) accepted on a CPU whose best is \(best)")
            } catch {
                #expect(!supported)
                #expect("\(error)".contains("cannot run the \(kernel.rawValue) kernels"))
            }
        }
        #expect(EngineOptions(kernel: .auto).effectiveKernel == best)
        #expect(throws: EngineError.self) {
            try PerceptionLM.load(Fixtures.model("tiny-fp32-mha-tied"), options: EngineOptions(threads: 0))
        }
    }
}

@Suite struct OpenBLASCoreTests {
    /// Debian 12's OpenBLAS falls back to its Prescott (SSE3) kernels on CPUs newer than itself
    /// (sgemm 5× slower on an Emerald Rapids core); BLAS re-selects the family that matches the
    /// CPU unless the user chose one with OPENBLAS_CORETYPE.
    @Test func openBLASDoesNotRunItsSSE3FallbackOnAVXMachines() {
        BLAS.useSingleThreadedKernels()
        if CPU.hasAVX2, getenv("OPENBLAS_CORETYPE") == nil {
            #expect(BLAS.coreName != "Prescott", "OpenBLAS core \(BLAS.coreName) on a CPU with AVX2")
        }
        #expect(!BLAS.coreName.isEmpty)
    }
}

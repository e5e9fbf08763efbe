// swift-tools-version: 6.1
// plmq: PerceptionLM checkpoints → compact quantized files → a CPU engine that runs them.
//
// The targets follow the data flow:
//   PLMCore (JSON, files, pixel tiles) → PLMCheckpoint (safetensors + config readers) → PLMQuant
//   (quantizers) → PLMFormat (.plm writer and mapped reader) → PLMConvert (streaming conversion)
//   → PLMModel (engine, model bundle) → PLMQ (the library product) and plmq (the CLI)
import PackageDescription

let package = Package(
    name: "plmq",
    products: [
        .executable(name: "plmq", targets: ["plmq"]),
        // The one library other packages depend on: `import PLMQ` re-exports the modules.
        .library(name: "PLMQ", targets: ["PLMQ"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // OpenBLAS from Debian's libopenblas-dev (cblas_sgemm for the fp32 engine).
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // Oniguruma from Debian's libonig-dev: the regex engine `tokenizers` uses for pre-tokenizer patterns.
        // libedit from Debian's libedit-dev: line editing and history for `plmq chat` on a terminal.
        .systemLibrary(name: "CEditLine", path: "Sources/CEditLine", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        .systemLibrary(name: "COniguruma", path: "Sources/COniguruma", pkgConfig: "oniguruma", providers: [.apt(["libonig-dev"])]),
        // libpng and libjpeg(-turbo) from Debian, reached through the setjmp shims in CPLMImage.
        .systemLibrary(name: "CLibPNG", path: "Sources/CLibPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CLibJPEG", path: "Sources/CLibJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        // The C edge of PLMImage: decoder shims (no longjmp crosses a Swift frame) and the uint8
        // resampling passes with their reference twins.
        .target(name: "CPLMImage", dependencies: ["CLibPNG", "CLibJPEG"]),
        // Hot loops in C (checksums, later the quantized matmul kernels), each with a reference twin.
        .target(name: "CPLMKernels"),
        // Shared basics with no model knowledge: strict JSON, mapped and atomically written files,
        // number formatting, the pixel tiles that the image processor hands to the engine.
        .target(name: "PLMCore", dependencies: ["CCrypto"]),
        // Readers: memory-mapped safetensors (single or sharded) and config.json.
        .target(name: "PLMCheckpoint", dependencies: ["PLMCore"]),
        // Storage types, the reference (Swift) quantizers and the fast path to their C twins.
        .target(name: "PLMQuant", dependencies: ["CPLMKernels"]),
        // The .plm container: spec constants, streaming writer, validating mapped reader.
        .target(name: "PLMFormat", dependencies: ["PLMCore", "PLMQuant", "PLMCheckpoint", "CPLMKernels", "CZstd"]),
        // checkpoint folder → .plm: policy, plan, multi-threaded streaming conversion.
        .target(name: "PLMConvert", dependencies: ["PLMCore", "PLMCheckpoint", "PLMQuant", "PLMFormat"]),
        // The fp32 reference engine: vision tower, projector, Llama decoder.
        .target(name: "PLMModel", dependencies: ["PLMCore", "PLMCheckpoint", "PLMFormat", "PLMQuant", "CPLMKernels", "COpenBLAS"]),
        // The runner: processor (tokenizer, template, image/video), sampling, generation, chat sessions.
        .target(name: "PLMRunner", dependencies: ["PLMCore", "PLMCheckpoint", "PLMModel", "PLMTokenizer", "PLMImage"]),
        // Evaluation of a quantized model against its fp32 reference: the samples folder reader,
        // llama-perplexity's KL metrics, text chunking, the reference cache, reports, and the
        // evaluation loop over the runner.
        .target(name: "PLMEval", dependencies: ["PLMCore", "PLMModel", "PLMQuant", "PLMRunner", "PLMTokenizer"]),
        // The umbrella library: re-exports what a user of plmq as a library needs.
        .target(name: "PLMQ", dependencies: ["PLMCore", "PLMCheckpoint", "PLMQuant", "PLMFormat", "PLMConvert", "PLMModel",
                                             "PLMTokenizer", "PLMImage", "PLMRunner", "PLMEval"]),
        // tokenizer.json (byte-level BPE), chat templates (a small Jinja interpreter), placeholder expansion.
        .target(name: "PLMTokenizer", dependencies: ["PLMCore", "COniguruma"]),
        // Images and video → the engine's PixelTiles, as transformers' PerceptionLM processors.
        .target(name: "PLMImage", dependencies: ["PLMCore", "CPLMImage"]),
        .executableTarget(
            name: "plmq",
            dependencies: [
                "PLMCore", "PLMCheckpoint", "PLMModel", "PLMImage", "PLMRunner", "PLMTokenizer", "PLMEval", "CEditLine", "PLMFormat", "PLMConvert", "PLMQuant",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The fuzz targets, one binary (PLMQ_FUZZ_TARGET picks the target). A plain build gives a
        // replayer that runs inputs through a target once; `make fuzz` builds it with libFuzzer and
        // the address sanitizer (see the Makefile).
        .executableTarget(name: "plmq-fuzz", dependencies: ["PLMQ"], path: "Fuzz/Sources"),
        // Test support shared by every test target: fixture paths, scratch folders, seeded data,
        // the storage types, the CPU's instruction sets.
        .target(name: "PLMTestSupport", dependencies: ["PLMCore", "PLMFormat", "PLMQuant", "CPLMKernels"], path: "Tests/PLMTestSupport"),
        .testTarget(name: "PLMCheckpointTests", dependencies: ["PLMCore", "PLMCheckpoint", "PLMTestSupport"]),
        .testTarget(name: "PLMQuantTests", dependencies: ["PLMQuant", "PLMTestSupport"]),
        .testTarget(name: "PLMFormatTests", dependencies: ["PLMTestSupport", "PLMCore", "PLMFormat", "PLMConvert", "PLMQuant", "PLMCheckpoint"]),
        .testTarget(name: "PLMTokenizerTests", dependencies: ["PLMCore", "PLMTokenizer", "CZstd", "PLMTestSupport"]),
        .testTarget(name: "PLMImageTests", dependencies: ["PLMCore", "PLMImage", "CPLMImage", "PLMTestSupport"]),
        // Test support: counts the process's heap allocations (decode must not allocate).
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .testTarget(name: "PLMModelTests", dependencies: ["PLMTestSupport", "PLMCore", "PLMModel", "PLMCheckpoint", "PLMConvert", "PLMFormat", "PLMQuant", "CPLMKernels", "CAllocationCounter"]),
        .testTarget(name: "PLMRunnerTests", dependencies: ["PLMRunner", "PLMModel", "PLMCore", "PLMCheckpoint", "PLMConvert", "PLMTestSupport"]),
        // The library as another package sees it (`import PLMQ`), including the README example.
        .testTarget(name: "PLMQLibraryTests", dependencies: ["PLMQ", "PLMTestSupport"]),
        .testTarget(name: "PLMEvalTests", dependencies: ["PLMEval", "PLMCore", "PLMTestSupport"]),
        // Every input a fuzzer ever crashed (Tests/Fixtures/fuzz/TARGET/) and the generated seeds,
        // replayed through the fuzz targets themselves.
        .testTarget(name: "FuzzRegressionTests", dependencies: ["plmq-fuzz", "PLMQ", "PLMTestSupport"]),
        // Runs the built `plmq` binary: exit codes, messages, files written.
        .testTarget(name: "PLMQCLITests", dependencies: ["plmq", "PLMModel", "PLMImage", "PLMTestSupport", "PLMCore", "PLMCheckpoint", "PLMFormat"]),
    ]
)

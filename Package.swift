// swift-tools-version: 6.1
// plmq: PerceptionLM checkpoints → compact quantized files → a CPU engine that runs them.
//
// The targets follow the data flow:
//   PLMCheckpoint (safetensors + config readers) → PLMQuant (quantizers) → PLMFormat (.plm writer
//   and mapped reader) → PLMConvert (streaming conversion) → PLMModel (engine) → plmq (CLI)
import PackageDescription

let package = Package(
    name: "plmq",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "plmq", targets: ["plmq"]),
        .library(name: "PLMCheckpoint", targets: ["PLMCheckpoint"]),
        .library(name: "PLMQuant", targets: ["PLMQuant"]),
        .library(name: "PLMFormat", targets: ["PLMFormat"]),
        .library(name: "PLMConvert", targets: ["PLMConvert"]),
        .library(name: "PLMModel", targets: ["PLMModel"]),
        .library(name: "PLMImage", targets: ["PLMImage"]),
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
        .target(name: "PLMCore"),
        // Readers: memory-mapped safetensors (single or sharded) and config.json.
        .target(name: "PLMCheckpoint", dependencies: ["PLMCore"]),
        // Storage types and the reference (scalar) quantizers.
        .target(name: "PLMQuant"),
        // The .plm container: spec constants, streaming writer, validating mapped reader.
        .target(name: "PLMFormat", dependencies: ["PLMCore", "PLMQuant", "PLMCheckpoint", "CPLMKernels", "CZstd"]),
        // checkpoint folder → .plm: policy, plan, multi-threaded streaming conversion.
        .target(name: "PLMConvert", dependencies: ["PLMCore", "PLMCheckpoint", "PLMQuant", "PLMFormat", "CCrypto"]),
        // The fp32 reference engine: vision tower, projector, Llama decoder.
        .target(name: "PLMModel", dependencies: ["PLMCore", "PLMCheckpoint", "PLMFormat", "PLMQuant", "CPLMKernels", "COpenBLAS"]),
        // Images and video → the engine's PixelTiles, as transformers' PerceptionLM processors.
        .target(name: "PLMImage", dependencies: ["PLMCore", "CPLMImage"]),
        // Decode + preprocess timings (ImageBenchmark) until `plmq bench` grows an image mode.
        .executableTarget(name: "plmq-image-bench", dependencies: ["PLMImage"]),
        .executableTarget(
            name: "plmq",
            dependencies: [
                "PLMCore", "PLMCheckpoint", "PLMModel", "PLMFormat", "PLMConvert", "PLMQuant",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "PLMCheckpointTests", dependencies: ["PLMCore", "PLMCheckpoint"]),
        .testTarget(name: "PLMQuantTests", dependencies: ["PLMQuant"]),
        .testTarget(name: "PLMImageTests", dependencies: ["PLMCore", "PLMImage", "CPLMImage"]),
        .testTarget(name: "PLMFormatTests", dependencies: ["PLMCore", "PLMFormat", "PLMConvert", "PLMQuant", "PLMCheckpoint"]),
        // Test support: counts the process's heap allocations (decode must not allocate).
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .testTarget(name: "PLMModelTests", dependencies: ["PLMCore", "PLMModel", "PLMCheckpoint", "PLMConvert", "PLMFormat", "PLMQuant", "CPLMKernels", "CAllocationCounter"]),
        // Runs the built `plmq` binary: exit codes, messages, files written.
        .testTarget(name: "PLMQCLITests", dependencies: ["plmq", "PLMCore", "PLMCheckpoint", "PLMFormat"]),
    ]
)

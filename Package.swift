// swift-tools-version: 6.1
// plmq: PerceptionLM checkpoints → compact quantized files → a CPU engine that runs them.
//
// The targets follow the data flow:
//   PLMCheckpoint (safetensors + config readers) → PLMModel (fp32 reference engine) → plmq (CLI)
import PackageDescription

let package = Package(
    name: "plmq",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "plmq", targets: ["plmq"]),
        .library(name: "PLMCheckpoint", targets: ["PLMCheckpoint"]),
        .library(name: "PLMModel", targets: ["PLMModel"]),
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
        // Readers: memory-mapped safetensors (single or sharded) and config.json.
        .target(name: "PLMCheckpoint"),
        // The fp32 reference engine: vision tower, projector, Llama decoder.
        .target(name: "PLMModel", dependencies: ["PLMCheckpoint", "COpenBLAS"]),
        .executableTarget(
            name: "plmq",
            dependencies: [
                "PLMCheckpoint", "PLMModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "PLMCheckpointTests", dependencies: ["PLMCheckpoint"]),
        .testTarget(name: "PLMModelTests", dependencies: ["PLMModel", "PLMCheckpoint"]),
        // Runs the built `plmq` binary: exit codes, messages, files written.
        .testTarget(name: "PLMQCLITests", dependencies: ["plmq", "PLMCheckpoint"]),
    ]
)

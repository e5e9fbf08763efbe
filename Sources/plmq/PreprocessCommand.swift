import ArgumentParser
import PLMCheckpoint
import PLMCore
import PLMImage
import PLMModel
import PLMRunner

struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Show what the model sees of an image: its tiles, as transformers' processor makes them.",
        discussion: """
            Decodes the image (PNG or JPEG, detected from its bytes; EXIF orientation applied), \
            chooses the tile canvas and resizes as PerceptionLMImageProcessor does, and prints the \
            arrangement and the placeholder tokens it costs. --output writes `pixel_values` \
            [1, T, 3, S, S] (f32) for parity checks; --preview writes each tile as a PNG a person \
            can look at (the thumbnail first, then the tiles row by row).
            """
    )

    @Argument(help: "A checkpoint folder or a .plm file (its processor config is used).")
    var model: String

    @Option(help: "The image (PNG or JPEG).")
    var image: String

    @Option(help: "Most tiles per image (default: the processor config's max_num_tiles).")
    var maxTiles: Int?

    @Option(help: "Write pixel_values here (safetensors, written atomically).")
    var output: String?

    @Option(help: "Write the tiles as tile-00.png, tile-01.png … into this folder.")
    var preview: String?

    @Option(help: "Time decode and preprocessing over N runs (median) instead; compare with Tests/Fixtures/bench_image.py.")
    var bench: Int?

    @Option(help: "Threads for resizing (default 1, as the benchmark's single-threaded figure).")
    var threads = 1

    @Flag(help: "With --bench: PerceptionLM's published processor settings (448-pixel tiles, up to 36) instead of the model's.")
    var processorDefaults = false

    func validate() throws {
        if let maxTiles, !(1...256).contains(maxTiles) { throw ValidationError("--max-tiles must be between 1 and 256") }
        if let bench, !(1...1000).contains(bench) { throw ValidationError("--bench must be between 1 and 1000") }
        guard (1...EngineOptions.maxThreads).contains(threads) else { throw ValidationError("--threads must be between 1 and \(EngineOptions.maxThreads)") }
    }

    func run() throws {
        try reportingErrors {
            let bundle = try ModelBundle.open(model)
            let processor = try Processor(bundle: bundle, threads: threads)
            if let bench {
                var config = processorDefaults ? ImageProcessorConfig.perceptionLM : processor.images.config
                if let maxTiles { config.maxNumTiles = maxTiles }
                print(try ImageBenchmark.run(file: image, config: config, threads: threads, repeats: bench))
                return
            }
            let started = monotonicSeconds()
            let decoded = try ImageDecoder.decode(file: image)
            let processed = try processor.images.preprocess(decoded, maxTiles: maxTiles)
            let elapsed = monotonicSeconds() - started
            let tiles = processed.tiles
            let perTile = bundle.config.tokensPerTile
            print("\(image): \(decoded.width)×\(decoded.height) → \(tiles.count) tile\(tiles.count == 1 ? "" : "s") of \(tiles.width)×\(tiles.height) "
                + "(grid \(processed.arrangement)), \(tiles.count * perTile) image tokens, \(seconds(elapsed))")
            if let output {
                try SafetensorsWriter.write([TensorRecord(name: "pixel_values", shape: [1, tiles.count, 3, tiles.height, tiles.width], floats: tiles.values)],
                                            metadata: ["producer": "plmq \(PLMQ.version)", "image": image], to: output,
                                            protecting: modelFiles(model) + [image])
                print("wrote \(output)")
            }
            if let preview {
                if !FileSystem.isDirectory(preview) { try FileSystem.makeDirectory(preview) }
                for i in 0..<tiles.count {
                    let tile = try PixelTilesPreview.image(of: tiles, index: i, normalization: processor.images.config.normalization)
                    let path = FileSystem.join(preview, "tile-" + String(i).leftPadded(2) + ".png")
                    let writer = try AtomicFileWriter(path: path, protecting: modelFiles(model) + [image])
                    try writer.write(PNGWriter.encode(tile))
                    try writer.commit()
                }
                print("wrote \(tiles.count) PNG files to \(preview) (tile-00.png is the thumbnail when the processor makes one)")
            }
        }
    }
}

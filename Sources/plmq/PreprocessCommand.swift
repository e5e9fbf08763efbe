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

    func validate() throws {
        if let maxTiles, !(1...256).contains(maxTiles) { throw ValidationError("--max-tiles must be between 1 and 256") }
    }

    func run() throws {
        try reportingErrors {
            let bundle = try ModelBundle.open(model)
            let processor = try Processor(bundle: bundle, threads: EngineOptions.availableCores)
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
                                            metadata: ["producer": "plmq \(PLMQ.version)", "image": image], to: output)
                print("wrote \(output)")
            }
            if let preview {
                if !FileSystem.isDirectory(preview) { try FileSystem.makeDirectory(preview) }
                for i in 0..<tiles.count {
                    let tile = try PixelTilesPreview.image(of: tiles, index: i, normalization: processor.images.config.normalization)
                    let path = FileSystem.join(preview, "tile-" + String(i).leftPadded(2) + ".png")
                    let writer = try AtomicFileWriter(path: path)
                    try writer.write(PNGWriter.encode(tile))
                    try writer.commit()
                }
                print("wrote \(tiles.count) PNG files to \(preview) (tile-00.png is the thumbnail when the processor makes one)")
            }
        }
    }
}

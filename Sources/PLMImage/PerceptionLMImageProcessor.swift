import PLMCore

/// A grid of tiles: `columns` across (n_w) and `rows` down (n_h).
public struct TileArrangement: Sendable, Equatable, CustomStringConvertible {
    public let columns: Int
    public let rows: Int
    public init(columns: Int, rows: Int) {
        self.columns = columns
        self.rows = rows
    }
    public var count: Int { columns * rows }
    public var description: String { "(\(columns), \(rows))" }
}

/// What the processor made of one image.
public struct ProcessedImage: Sendable, Equatable {
    /// [T, 3, tile, tile]: the thumbnail first (for thumb+tile), then the tiles row by row.
    public let tiles: PixelTiles
    /// The tile grid of the canvas, or (1, 1) when there is no tiling.
    public let arrangement: TileArrangement
    /// T, what the text side needs to expand `<|image|>` into 256·T placeholders.
    public var tileCount: Int { tiles.count }
}

/// transformers' PerceptionLMImageProcessor (the torchvision backend) for one image.
///
/// thumb+tile: the image resized to tile×tile (no aspect preservation) comes first; then the
/// canvas of n_w×n_h tiles chosen by `arrangement(width:height:maxTiles:)` is filled by one more
/// resize and cut row-major. Every resize is torch's uint8 antialiased bicubic; the uint8 tiles
/// are then normalised in fp32.
public struct PerceptionLMImageProcessor: Sendable {
    public let config: ImageProcessorConfig
    public var resizer: Resizer
    private let tables: [[Float]]

    public init(config: ImageProcessorConfig = .perceptionLM, threads: Int = 1) {
        self.config = config
        self.resizer = Resizer(threads: threads)
        self.tables = config.normalization.lookupTables()
    }

    /// `maxTiles` overrides the config's `max_num_tiles`.
    public func preprocess(_ image: DecodedImage, maxTiles: Int? = nil) throws(ImageError) -> ProcessedImage {
        let tile = config.tileSize
        let limit = maxTiles ?? config.maxNumTiles
        guard limit > 0, limit <= 1024 else {
            throw .invalidSize(source: "preprocess", reason: "max tiles must be 1...1024, found \(limit)")
        }
        guard config.doResize else {
            // No resizing: the image itself is the single "tile".
            let values = normalised([image.pixels], width: image.width, height: image.height)
            return ProcessedImage(tiles: try makeTiles(1, image.height, image.width, values), arrangement: TileArrangement(columns: 1, rows: 1))
        }
        let thumbnail = try resizer.resize(image, width: tile, height: tile)
        guard config.visionInputType == .thumbAndTiles else {
            let values = normalised([thumbnail.pixels], width: tile, height: tile)
            return ProcessedImage(tiles: try makeTiles(1, tile, tile, values), arrangement: TileArrangement(columns: 1, rows: 1))
        }
        let grid = limit > 1
            ? Self.arrangement(width: image.width, height: image.height, tileSize: tile, maxTiles: limit)
            : TileArrangement(columns: 1, rows: 1)
        let canvas = try resizer.resize(image, width: grid.columns * tile, height: grid.rows * tile)
        // Thumbnail, then the canvas cut row-major, normalised straight into the output.
        let plane = tile * tile
        let count = (1 + grid.count) * 3 * plane
        let canvasStride = canvas.width * 3
        let values = [Float](unsafeUninitializedCapacity: count) { dst, initialised in
            guard let out = dst.baseAddress else { initialised = 0; return }
            normalise(thumbnail.pixels, rowStride: tile * 3, width: tile, height: tile, into: out)
            canvas.pixels.withUnsafeBufferPointer { src in
                for r in 0..<grid.rows {
                    for c in 0..<grid.columns {
                        let t: Int = 1 + r * grid.columns + c
                        let first: Int = (r * tile * canvas.width + c * tile) * 3
                        let origin = UnsafeBufferPointer(rebasing: src[first...])
                        let target: UnsafeMutablePointer<Float> = out + t * 3 * plane
                        normalise(origin, rowStride: canvasStride, width: tile, height: tile, into: target)
                    }
                }
            }
            initialised = count
        }
        return ProcessedImage(tiles: try makeTiles(1 + grid.count, tile, tile, values), arrangement: grid)
    }

    /// One width×height window of interleaved RGB (rows `rowStride` bytes apart) → three planes.
    private func normalise(_ src: [UInt8], rowStride: Int, width: Int, height: Int, into dst: UnsafeMutablePointer<Float>) {
        src.withUnsafeBufferPointer { normalise($0, rowStride: rowStride, width: width, height: height, into: dst) }
    }

    private func normalise(_ src: UnsafeBufferPointer<UInt8>, rowStride: Int, width: Int, height: Int, into dst: UnsafeMutablePointer<Float>) {
        let plane = width * height
        tables[0].withUnsafeBufferPointer { l0 in
            tables[1].withUnsafeBufferPointer { l1 in
                tables[2].withUnsafeBufferPointer { l2 in
                    for y in 0..<height {
                        let row = y * rowStride, o = y * width
                        for x in 0..<width {
                            let s = row + 3 * x
                            dst[o + x] = l0[Int(src[s])]
                            dst[plane + o + x] = l1[Int(src[s + 1])]
                            dst[2 * plane + o + x] = l2[Int(src[s + 2])]
                        }
                    }
                }
            }
        }
    }

    private func makeTiles(_ count: Int, _ height: Int, _ width: Int, _ values: [Float]) throws(ImageError) -> PixelTiles {
        do { return try PixelTiles(count: count, height: height, width: width, values: values) } catch {
            throw .invalidSize(source: "preprocess", reason: error.description)
        }
    }

    /// Interleaved uint8 tiles → planar normalised floats, [tile][channel][y][x].
    func normalised(_ tiles: [[UInt8]], width: Int, height: Int) -> [Float] {
        let plane = width * height
        var out = [Float](repeating: 0, count: tiles.count * 3 * plane)
        out.withUnsafeMutableBufferPointer { dst in
            for (t, pixels) in tiles.enumerated() {
                pixels.withUnsafeBufferPointer { src in
                    for c in 0..<3 {
                        tables[c].withUnsafeBufferPointer { lut in
                            let base = (t * 3 + c) * plane
                            for i in 0..<plane { dst[base + i] = lut[Int(src[3 * i + c])] }
                        }
                    }
                }
            }
        }
        return out
    }

    // MARK: Canvas selection (transformers' _find_supported_aspect_ratios and friends)

    /// The candidate grids in the reference's order: for n from maxTiles down to 1, the factor
    /// pairs (x, n/x) with x ascending, grouped by the ratio x/(n/x) in first-seen order.
    static func supportedAspectRatios(maxTiles: Int) -> [(ratio: Double, grids: [TileArrangement])] {
        var groups: [(ratio: Double, grids: [TileArrangement])] = []
        for n in stride(from: maxTiles, through: 1, by: -1) {
            for x in 1...n where n % x == 0 {
                let grid = TileArrangement(columns: x, rows: n / x)
                let ratio = Double(x) / Double(n / x)
                if let i = groups.firstIndex(where: { $0.ratio == ratio }) {
                    groups[i].grids.append(grid)
                } else {
                    groups.append((ratio, [grid]))
                }
            }
        }
        return groups
    }

    /// The aspect-preserving size of the image fitted into a canvas, as the reference computes it
    /// (one side is a float product, the other floored).
    static func fittedSize(width: Int, height: Int, canvasWidth: Int, canvasHeight: Int) -> (width: Double, height: Double) {
        let scale = Double(width) / Double(height)
        let factor = min(Double(canvasWidth) / Double(width), Double(canvasHeight) / Double(height))
        if scale > 1.0 {
            let w = factor * Double(width)
            return (w, (w / scale).rounded(.down))
        } else {
            let h = factor * Double(height)
            return ((h * scale).rounded(.down), h)
        }
    }

    /// The tile grid for a width×height image: the canvas it fits in whose fitted short side is
    /// largest (later candidates win ties), or, when none fits, the closest aspect ratio.
    public static func arrangement(width: Int, height: Int, tileSize: Int, maxTiles: Int) -> TileArrangement {
        let groups = supportedAspectRatios(maxTiles: maxTiles)
        let scale = Double(width) / Double(height)
        var best: TileArrangement?
        var bestSize = (width: 0.0, height: 0.0)
        for grid in groups.flatMap(\.grids) {
            let cw = grid.columns * tileSize, ch = grid.rows * tileSize
            guard cw >= width, ch >= height else { continue }
            let size = fittedSize(width: width, height: height, canvasWidth: cw, canvasHeight: ch)
            if best == nil || (scale < 1.0 && size.width >= bestSize.width) || (scale >= 1.0 && size.height >= bestSize.height) {
                best = grid
                bestSize = size
            }
        }
        if let best { return best }
        // Nothing fits: downsample into the closest supported ratio.
        var chosen: (ratio: Double, grids: [TileArrangement])?
        var distance = Double.infinity
        for g in groups {
            let d: Double
            if scale >= 1 {
                guard g.ratio <= scale else { continue }
                d = abs(g.ratio - scale)
            } else {
                guard g.ratio > scale else { continue }
                d = abs(1 / g.ratio - 1 / scale)
            }
            if d < distance { distance = d; chosen = g }
        }
        guard let grids = chosen?.grids, var pick = grids.first else { return TileArrangement(columns: 1, rows: 1) }
        for g in grids.dropFirst() where (scale >= 1 ? g.columns > pick.columns : g.rows > pick.rows) { pick = g }
        return pick
    }
}

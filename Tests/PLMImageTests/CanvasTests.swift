import Testing
@testable import PLMImage

@Suite struct CanvasTests {
    /// 1280 (width, height, max tiles) rows computed by transformers' own selection code.
    @Test func arrangementsMatchTransformersTable() throws {
        let table = try #require(Fixtures.manifest["canvas_table"]?.objectValue)
        let tile = try #require(table["tile_size"]?.intValue)
        let rows = try #require(table["rows"]?.arrayValue)
        #expect(rows.count == 1280)
        var mismatches: [String] = []
        for row in rows {
            let ints = row.arrayValue?.compactMap { $0.intValue }
            let r = try #require(ints)
            try #require(r.count == 5)
            let got = PerceptionLMImageProcessor.arrangement(width: r[0], height: r[1], tileSize: tile, maxTiles: r[2])
            if got != TileArrangement(columns: r[3], rows: r[4]) { mismatches.append("\(r[0])×\(r[1]) max \(r[2]): \(got), expected (\(r[3]), \(r[4]))") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    /// The measured table of the reference (perception-lm.md §4.1), row by row, through the
    /// transformers-computed fixture table (so the numbers come from Python, not from here).
    @Test(arguments: [(448, 448), (640, 480), (300, 200), (1920, 1080), (200, 900), (4000, 3000)])
    func referenceTableRows(_ size: (Int, Int)) throws {
        let rows = try #require(Fixtures.manifest["canvas_table"]?.objectValue?["rows"]?.arrayValue)
        let match = rows.compactMap { $0.arrayValue?.compactMap(\.intValue) }.first { $0[0] == size.0 && $0[1] == size.1 && $0[2] == 36 }
        if let r = match {
            let got = PerceptionLMImageProcessor.arrangement(width: size.0, height: size.1, tileSize: 448, maxTiles: 36)
            #expect(got == TileArrangement(columns: r[3], rows: r[4]))
        } else {
            // Sizes the sweep does not hold: the reference document's table is the spec.
            let spec: [String: (Int, Int)] = ["448x448": (6, 6), "640x480": (7, 5), "300x200": (7, 5), "1920x1080": (8, 4), "200x900": (3, 12), "4000x3000": (4, 3)]
            let want = try #require(spec["\(size.0)x\(size.1)"])
            let got = PerceptionLMImageProcessor.arrangement(width: size.0, height: size.1, tileSize: 448, maxTiles: 36)
            #expect(got == TileArrangement(columns: want.0, rows: want.1))
        }
    }

    @Test func aspectRatioGroupsFollowTheReferenceOrder() {
        // transformers' docstring example for max_num_tiles = 5.
        let groups = PerceptionLMImageProcessor.supportedAspectRatios(maxTiles: 5)
        #expect(groups.map(\.ratio) == [0.2, 5.0, 0.25, 1.0, 4.0, 1.0 / 3.0, 3.0, 0.5, 2.0])
        #expect(groups[3].grids == [TileArrangement(columns: 2, rows: 2), TileArrangement(columns: 1, rows: 1)])
    }
}

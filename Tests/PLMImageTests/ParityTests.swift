import Foundation
import PLMCore
import Testing
@testable import PLMImage

/// Decoding and preprocessing against transformers 5.24 (load_image + PerceptionLMImageProcessor).
@Suite struct ParityTests {
    static let cases = ImageCase.all

    @Test func fixturesArePresent() {
        #expect(Self.cases.count >= 40, "manifest at \(Fixtures.images) lists \(Self.cases.count) cases")
        #expect(Fixtures.normalisation.count == 256)
    }

    @Test func normalisationTableMatchesTransformersBitForBit() throws {
        let ours = try Fixtures.tinyConfig.normalization.lookupTables()
        let theirs = Fixtures.normalisation
        try #require(theirs.count == 256)
        for c in 0..<3 {
            for u in 0..<256 { #expect(ours[c][u].bitPattern == theirs[u].bitPattern, "channel \(c) value \(u)") }
        }
    }

    @Test(arguments: cases.map(\.input).uniqued())
    func decodesLikeLoadImage(_ input: String) throws {
        let c = try #require(Self.cases.first { $0.input == input })
        let ours = try ImageDecoder.decode(file: Fixtures.images + "/inputs/" + c.input)
        let theirs = try ImageDecoder.decode(file: Fixtures.images + "/expected/" + c.decodedFile)
        #expect(ours.width == c.decodedWidth && ours.height == c.decodedHeight, "\(c): \(ours.width)×\(ours.height)")
        try #require(ours.pixels.count == theirs.pixels.count)
        let differing = zip(ours.pixels, theirs.pixels).filter { $0 != $1 }.count
        #expect(differing == 0, "\(c): \(differing) of \(ours.pixels.count) bytes differ")
    }

    @Test(arguments: cases.indices.map { $0 })
    func preprocessesLikeTransformers(_ index: Int) throws {
        let c = Self.cases[index]
        var config = c.processor == "tiny" ? try Fixtures.tinyConfig : ImageProcessorConfig.perceptionLM
        if let m = c.maxTiles { config.maxNumTiles = m }
        let image = try ImageDecoder.decode(file: Fixtures.images + "/inputs/" + c.input)
        let out = try PerceptionLMImageProcessor(config: config).preprocess(image)
        #expect(out.tileCount == c.tileCount, "\(c): \(out.tileCount) tiles")
        #expect(out.arrangement == c.arrangement, "\(c): grid \(out.arrangement)")
        #expect(out.tiles.height == c.tileSize && out.tiles.width == c.tileSize)
        let expected = try ImageDecoder.decode(file: Fixtures.images + "/expected/" + c.tilesFile)
        try #require(expected.height == c.tileCount * c.tileSize && out.tiles.count == c.tileCount)
        let diff = PixelDiff(ours: out.tiles, expected: expected, lut: Fixtures.normalisation)
        print("parity \(c): \(diff)")
        #expect(diff.unmatched == 0, "\(c): \(diff)")
        #expect(diff.worst == 0, "\(c): \(diff)")
    }

    @Test(arguments: [1, 2])
    func threadsDoNotChangePixels(_ threads: Int) throws {
        let image = try ImageDecoder.decode(file: Fixtures.images + "/inputs/rocket.png")
        let one = try PerceptionLMImageProcessor(config: .perceptionLM, threads: 1).preprocess(image, maxTiles: 4)
        let many = try PerceptionLMImageProcessor(config: .perceptionLM, threads: threads).preprocess(image, maxTiles: 4)
        #expect(one == many)
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}

import Foundation
import PLMCore
@testable import PLMImage

/// The committed fixtures of Tests/Fixtures/images (made by make_image_fixtures.py).
enum Fixtures {
    static let root: String = {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path
    }()
    static let images = root + "/images"

    static func bytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static let manifest: JSONObject = {
        // A missing or broken manifest fails every test that reads it, with this message.
        guard let b = try? bytes(images + "/manifest.json"), let v = try? JSONParser.parse(b), let o = v.objectValue else {
            return JSONObject()
        }
        return o
    }()

    static var tinyConfig: ImageProcessorConfig {
        get throws { try ImageProcessorConfig.fromProcessorConfig(try bytes(root + "/models/tiny-fp32-mha-tied/processor_config.json")) }
    }

    static var tinyVideoConfig: VideoProcessorConfig {
        get throws { try VideoProcessorConfig.fromProcessorConfig(try bytes(root + "/models/tiny-fp32-mha-tied/processor_config.json")) }
    }

    /// transformers' float for every uint8 value, bit for bit.
    static var normalisation: [Float] {
        (manifest["normalisation"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Self.parseHexFloat) }
    }

    static func parseHexFloat(_ s: String) -> Float? { Double(s).map { Float($0) } }
}

struct ImageCase: CustomStringConvertible {
    let input: String
    let processor: String
    let maxTiles: Int?
    let decodedWidth: Int
    let decodedHeight: Int
    let decodedFile: String
    let tileCount: Int
    let tileSize: Int
    let arrangement: TileArrangement
    let tilesFile: String
    var description: String { "\(input) [\(processor)\(maxTiles.map { " max \($0)" } ?? "")]" }

    static var all: [ImageCase] {
        (Fixtures.manifest["cases"]?.arrayValue ?? []).compactMap { v in
            guard let o = v.objectValue, let input = o["input"]?.stringValue, let p = o["processor"]?.stringValue,
                  let d = o["decoded"]?.objectValue, let t = o["tiles"]?.objectValue,
                  let dw = d["width"]?.intValue, let dh = d["height"]?.intValue, let df = d["file"]?.stringValue,
                  let tc = t["count"]?.intValue, let ts = t["size"]?.intValue, let tf = t["file"]?.stringValue,
                  let a = t["arrangement"]?.arrayValue, a.count == 2, let nw = a[0].intValue, let nh = a[1].intValue
            else { return nil }
            return ImageCase(input: input, processor: p, maxTiles: o["max_tiles"]?.intValue, decodedWidth: dw, decodedHeight: dh,
                             decodedFile: df, tileCount: tc, tileSize: ts, arrangement: TileArrangement(columns: nw, rows: nh), tilesFile: tf)
        }
    }
}

/// Differences between our tiles and the reference, in grey levels.
struct PixelDiff: CustomStringConvertible {
    var histogram: [Int: Int] = [:]
    var unmatched = 0   // our floats that no uint8 maps to
    var total = 0
    var worst: Int { histogram.keys.max() ?? 0 }

    /// ours: normalised floats; expected: uint8 tiles stacked as [T·H][W][3]; lut: the reference's
    /// float of each uint8.
    init(ours: PixelTiles, expected: DecodedImage, lut: [Float]) {
        var inverse: [UInt32: Int] = [:]
        for (u, f) in lut.enumerated() { inverse[f.bitPattern] = u }
        let plane = ours.height * ours.width
        for t in 0..<ours.count {
            for c in 0..<3 {
                for i in 0..<plane {
                    let f = ours.values[(t * 3 + c) * plane + i]
                    let y = t * ours.height + i / ours.width, x = i % ours.width
                    let e = Int(expected.pixels[(y * expected.width + x) * 3 + c])
                    total += 1
                    guard let u = inverse[f.bitPattern] else { unmatched += 1; continue }
                    histogram[abs(u - e), default: 0] += 1
                }
            }
        }
    }

    var description: String {
        let parts = histogram.keys.sorted().map { "\($0): \(histogram[$0] ?? 0)" }.joined(separator: ", ")
        return "worst \(worst) grey level(s) over \(total) values {\(parts)}" + (unmatched > 0 ? ", \(unmatched) not a uint8 image" : "")
    }
}

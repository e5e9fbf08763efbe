import CPLMImage
import Testing
@testable import PLMImage

@Suite(.serialized) struct ResizeTests {
    static func noise(_ w: Int, _ h: Int, seed: UInt64) -> DecodedImage {
        var state = seed
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for i in px.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            px[i] = UInt8(truncatingIfNeeded: state >> 56)
        }
        return DecodedImage(unchecked: w, height: h, pixels: px)
    }

    static let shapes: [(Int, Int, Int, Int)] = [
        (1, 1, 56, 56), (13, 7, 112, 56), (640, 480, 448, 448), (97, 211, 56, 168), (2000, 1, 224, 56),
        (1, 2000, 56, 224), (448, 448, 448, 448), (300, 200, 3136, 2240), (1000, 3, 7, 1),
    ]

    @Test(arguments: shapes.indices.map { $0 })
    func fastPassesEqualReferenceTwin(_ i: Int) throws {
        let (w, h, ow, oh) = Self.shapes[i]
        let image = Self.noise(w, h, seed: UInt64(i + 1))
        let reference = try Resizer(kernel: .reference).resize(image, width: ow, height: oh)
        plm_image_set_avx2(0)
        let portable = try Resizer(kernel: .fast).resize(image, width: ow, height: oh)
        plm_image_set_avx2(1)
        let fast = try Resizer(threads: 2, kernel: .fast).resize(image, width: ow, height: oh)
        #expect(portable == reference, "\(w)×\(h) → \(ow)×\(oh) portable")
        #expect(fast == reference, "\(w)×\(h) → \(ow)×\(oh) fast")
    }

    @Test func unchangedSizeIsUntouched() throws {
        let image = Self.noise(31, 17, seed: 9)
        #expect(try Resizer().resize(image, width: 31, height: 17) == image)
    }

    @Test func weightsAreNormalisedFixedPoint() {
        for (i, o) in [(4000, 448), (13, 56), (448, 448), (3, 1000), (640, 1792)] {
            let axis = ResampleAxis(inSize: i, outSize: o)
            #expect(axis.precision > 0 && axis.precision <= 22)
            for k in 0..<o {
                let sum = (0..<Int(axis.count[k])).reduce(0) { $0 + Int(axis.weights[k * axis.taps + $1]) }
                // Each row of rounded weights sums to 1.0 in fixed point, give or take rounding.
                #expect(abs(sum - (1 << axis.precision)) <= axis.taps, "\(i)→\(o) row \(k): \(sum)")
                #expect(axis.start[k] >= 0 && Int(axis.start[k] + axis.count[k]) <= i)
            }
        }
    }

    @Test func zeroTargetIsAnError() {
        #expect(throws: ImageError.self) { try Resizer().resize(Self.noise(4, 4, seed: 1), width: 0, height: 4) }
    }
}

/// The EXIF Orientation tag (0x0112) and the transposition that makes the image upright, as
/// PIL's `ImageOps.exif_transpose` (which transformers' `load_image` calls) maps it:
/// 2 flip left-right, 3 rotate 180°, 4 flip top-bottom, 5 transpose, 6 rotate 90° clockwise,
/// 7 transverse, 8 rotate 90° anticlockwise. Any other value (1, absent, out of range) is upright.
public enum Orientation: Int, Sendable, Equatable, CaseIterable {
    case up = 1, mirrored = 2, down = 3, downMirrored = 4
    case leftMirrored = 5, right = 6, rightMirrored = 7, left = 8

    /// Reads the tag from a TIFF-structured EXIF block (what follows "Exif\0\0" in a JPEG APP1
    /// segment, or a PNG eXIf chunk). Damaged EXIF reads as upright, as PIL ignores it too.
    public static func fromExif(_ exif: [UInt8]) -> Orientation {
        var tiff = exif[...]
        if tiff.starts(with: Array("Exif\0\0".utf8)) { tiff = tiff.dropFirst(6) }
        let b = Array(tiff)
        guard b.count >= 8 else { return .up }
        let little: Bool
        switch (b[0], b[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return .up
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= b.count else { return nil }
            return little ? Int(b[at]) | Int(b[at + 1]) << 8 : Int(b[at]) << 8 | Int(b[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let lo = u16(little ? at : at + 2), let hi = u16(little ? at + 2 : at) else { return nil }
            return hi << 16 | lo
        }
        guard u16(2) == 42, let ifd = u32(4), let entries = u16(ifd) else { return .up }
        for e in 0..<entries {
            let at = ifd + 2 + 12 * e
            guard let tag = u16(at), let type = u16(at + 2) else { return .up }
            guard tag == 0x0112 else { continue }
            let value: Int?
            switch type {
            case 3: value = u16(at + 8)   // SHORT
            case 4: value = u32(at + 8)   // LONG
            default: value = nil
            }
            return value.flatMap(Orientation.init(rawValue:)) ?? .up
        }
        return .up
    }

    /// Whether the upright image swaps width and height.
    public var swapsAxes: Bool { rawValue >= 5 }
}

extension DecodedImage {
    /// The upright image for this orientation.
    public func transposed(for orientation: Orientation) -> DecodedImage {
        if orientation == .up { return self }
        let w = width, h = height
        let (ow, oh) = orientation.swapsAxes ? (h, w) : (w, h)
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        // The source pixel that lands at (ox, oy).
                        let (sx, sy): (Int, Int)
                        switch orientation {
                        case .up: (sx, sy) = (ox, oy)
                        case .mirrored: (sx, sy) = (w - 1 - ox, oy)
                        case .down: (sx, sy) = (w - 1 - ox, h - 1 - oy)
                        case .downMirrored: (sx, sy) = (ox, h - 1 - oy)
                        case .leftMirrored: (sx, sy) = (oy, ox)                      // transpose
                        case .right: (sx, sy) = (oy, h - 1 - ox)                     // 90° clockwise
                        case .rightMirrored: (sx, sy) = (w - 1 - oy, h - 1 - ox)     // transverse
                        case .left: (sx, sy) = (w - 1 - oy, ox)                      // 90° anticlockwise
                        }
                        let s = (sy * w + sx) * 3, d = (oy * ow + ox) * 3
                        dst[d] = src[s]
                        dst[d + 1] = src[s + 1]
                        dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return DecodedImage(unchecked: ow, height: oh, pixels: out)
    }
}

import PLMCore

/// Writes 8-bit RGB PNG files without a compressor: the image data go into stored (uncompressed)
/// deflate blocks, which every PNG reader accepts. Used for `plmq preprocess --preview`, where
/// a person looks at what the model sees; size does not matter there, simplicity does.
public enum PNGWriter {
    /// The PNG bytes of an RGB image (width × height × 3 bytes, row-major).
    public static func encode(_ image: DecodedImage) -> [UInt8] {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header: [UInt8] = []
        header += bigEndian(UInt32(image.width)) + bigEndian(UInt32(image.height))
        header += [8, 2, 0, 0, 0]  // 8 bits, truecolour, deflate, adaptive filtering, no interlace
        chunk("IHDR", header, into: &out)
        // Scanlines with filter type 0, then zlib: header, stored blocks of ≤ 65535 bytes, Adler-32.
        var raw: [UInt8] = []
        raw.reserveCapacity(image.height * (image.width * 3 + 1))
        for y in 0..<image.height {
            raw.append(0)
            raw += image.pixels[(y * image.width * 3)..<((y + 1) * image.width * 3)]
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            let last: UInt8 = offset + n == raw.count ? 1 : 0
            zlib += [last, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            zlib += raw[offset..<(offset + n)]
            offset += n
        } while offset < raw.count
        zlib += bigEndian(adler32(raw))
        chunk("IDAT", zlib, into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    private static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        out += bigEndian(UInt32(data.count)) + typeBytes + data
        out += bigEndian(crc32(typeBytes + data))
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for x in bytes { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        return (b << 16) | a
    }
}


/// Turns normalised tiles back into pixels a person can look at.
public enum PixelTilesPreview {
    /// Tile `index` of `tiles` as an RGB image, undoing the (x − mean)/std normalisation.
    public static func image(of tiles: PixelTiles, index: Int, normalization: PixelNormalization) throws(ImageError) -> DecodedImage {
        let h = tiles.height, w = tiles.width, plane = h * w
        var pixels = [UInt8](repeating: 0, count: plane * 3)
        let base = index * 3 * plane
        for c in 0..<3 {
            let mean = normalization.mean.count == 3 ? normalization.mean[c] : 0.5
            let std = normalization.std.count == 3 ? normalization.std[c] : 0.5
            let scale = normalization.doRescale ? 1 / normalization.rescaleFactor : 1
            for i in 0..<plane {
                var v = Double(tiles.values[base + c * plane + i])
                if normalization.doNormalize { v = v * std + mean }
                let u = (v * scale).rounded()
                pixels[i * 3 + c] = UInt8(max(0, min(255, u.isFinite ? u : 0)))
            }
        }
        return try DecodedImage(width: w, height: h, pixels: pixels)
    }
}

import PLMCore
/// An image as 8-bit RGB, row-major and interleaved (R, G, B of pixel 0, then pixel 1, ...):
/// what transformers' loading path hands to the image processor as a [3, H, W] uint8 tensor.
public struct DecodedImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// width × height × 3 bytes.
    public let pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) throws(ImageError) {
        guard width > 0, height > 0, let bytes = Checked.product(of: [width, height, 3]), pixels.count == bytes else {
            throw .invalidSize(source: "pixels", reason: "\(pixels.count) bytes are not a \(width)×\(height) RGB image")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// For internal producers that already guarantee the size.
    init(unchecked width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The pixel at (x, y) as (r, g, b); for tests and previews.
    public func rgb(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}

/// Bounds checked against the header before any pixel memory is allocated.
public struct ImageLimits: Sendable, Equatable {
    /// Largest width × height accepted.
    public var maxPixels: Int
    /// Largest decoded buffer (all channels, all samples) accepted, in bytes.
    public var maxDecodedBytes: Int
    /// Largest width or height accepted (libpng enforces it too).
    public var maxDimension: Int

    /// 16384² pixels (a 268-megapixel image) and 1 GiB decoded: far beyond any photo, well
    /// below what would exhaust a 24 GiB machine.
    public static let `default` = ImageLimits(maxPixels: 16384 * 16384, maxDecodedBytes: 1 << 30, maxDimension: 65535)

    public init(maxPixels: Int, maxDecodedBytes: Int, maxDimension: Int) {
        self.maxPixels = maxPixels
        self.maxDecodedBytes = maxDecodedBytes
        self.maxDimension = maxDimension
    }

    /// Throws unless a width × height image of `bytesPerPixel` fits; returns the buffer size.
    func check(source: String, width: Int, height: Int, bytesPerPixel: Int) throws(ImageError) -> Int {
        guard width > 0, height > 0 else {
            throw .invalidSize(source: source, reason: "image of \(width)×\(height) pixels")
        }
        guard width <= maxDimension, height <= maxDimension else {
            throw .tooLarge(source: source, width: width, height: height, limit: "\(maxDimension) pixels a side")
        }
        guard let area = Checked.multiply(width, height), area <= maxPixels else {
            throw .tooLarge(source: source, width: width, height: height, limit: "\(maxPixels) pixels")
        }
        guard let bytes = Checked.multiply(area, bytesPerPixel), bytes <= maxDecodedBytes else {
            throw .tooLarge(source: source, width: width, height: height, limit: "\(maxDecodedBytes) decoded bytes")
        }
        return bytes
    }
}

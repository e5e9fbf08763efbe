/// Image tiles (or video frames) as normalised pixels, [count, 3, height, width]: what the image
/// processor produces and the vision tower consumes. It lives here so that the image module and the
/// engine share it without depending on each other.
public struct PixelTiles: Sendable, Equatable {
    public let count: Int
    public let height: Int
    public let width: Int
    public let values: [Float]

    /// The value count does not match count × 3 × height × width.
    public struct ShapeError: Error, Equatable, CustomStringConvertible {
        public let values: Int
        public let count: Int
        public let height: Int
        public let width: Int
        public var description: String {
            "pixel values hold \(values) numbers, not \(count) tiles of 3×\(height)×\(width)"
        }
    }

    public init(count: Int, height: Int, width: Int, values: [Float]) throws(ShapeError) {
        guard count >= 0, height >= 0, width >= 0 else {
            throw ShapeError(values: values.count, count: count, height: height, width: width)
        }
        guard let c = Checked.product(of: [count, 3, height, width]), values.count == c else {
            throw ShapeError(values: values.count, count: count, height: height, width: width)
        }
        self.count = count
        self.height = height
        self.width = width
        self.values = values
    }
}

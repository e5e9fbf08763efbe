import PLMCore

/// Why an image (or video) could not be turned into pixels. Every case names the source (a path,
/// or whatever label the caller gave the bytes) so a message stands on its own.
public enum ImageError: Error, Equatable, CustomStringConvertible {
    /// The first bytes are neither a PNG nor a JPEG signature.
    case unknownFormat(source: String, firstBytes: [UInt8])
    /// The header declares more than the limits allow; nothing was allocated.
    case tooLarge(source: String, width: Int, height: Int, limit: String)
    /// The decoder rejected the data.
    case corrupt(source: String, format: ImageFormat, reason: String)
    /// The data ends before the image does.
    case truncated(source: String, format: ImageFormat, reason: String)
    /// Valid data that this decoder does not handle (e.g. a 2-component JPEG).
    case unsupported(source: String, format: ImageFormat, reason: String)
    case outOfMemory(source: String)
    /// A file could not be read.
    case unreadable(source: String, reason: String)
    /// Sizes that make no image (zero width, a resize to zero, too many tiles).
    case invalidSize(source: String, reason: String)

    public var description: String {
        switch self {
        case .unknownFormat(let source, let bytes):
            let hex = bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: " ")
            return "\(source): not a PNG or JPEG file (first bytes: \(hex.isEmpty ? "none" : hex))"
        case .tooLarge(let source, let w, let h, let limit):
            return "\(source): \(w)×\(h) image exceeds the limit of \(limit)"
        case .corrupt(let source, let format, let reason):
            return "\(source): corrupt \(format.rawValue) data: \(reason)"
        case .truncated(let source, let format, let reason):
            return "\(source): truncated \(format.rawValue) data: \(reason)"
        case .unsupported(let source, let format, let reason):
            return "\(source): unsupported \(format.rawValue): \(reason)"
        case .outOfMemory(let source):
            return "\(source): out of memory while decoding"
        case .unreadable(let source, let reason):
            return "\(source): cannot read: \(reason)"
        case .invalidSize(let source, let reason):
            return "\(source): \(reason)"
        }
    }
}

public enum ImageFormat: String, Sendable, Equatable {
    case png = "PNG"
    case jpeg = "JPEG"

    /// Detects the format from the signature, never from a file name.
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= png.count, zip(bytes.prefix(png.count), png).allSatisfy({ $0 == $1 }) { return .png }
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        return nil
    }
}

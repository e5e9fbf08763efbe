import PLMCore
import CPLMImage
import Foundation

/// PNG and JPEG bytes → upright 8-bit RGB, as transformers' `load_image` produces it:
/// `PIL.ImageOps.exif_transpose` followed by `convert("RGB")`. That conversion drops alpha
/// without compositing (an RGBA pixel (10, 20, 30, 0) stays (10, 20, 30)), replicates grey,
/// keeps the high byte of 16-bit colour, clips 16-bit grey (PIL mode I;16) to 255, and turns
/// CMYK (read with Adobe's inverted polarity, as PIL always does) into RGB with PIL's integer
/// formula. The format comes from the signature, never from a file name.
public enum ImageDecoder {
    public static func decode(bytes: [UInt8], source: String = "image", limits: ImageLimits = .default) throws(ImageError) -> DecodedImage {
        // withUnsafeBytes only rethrows untyped errors; carry the typed one out in a Result.
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(ImageError) -> DecodedImage in try decode(raw, source: source, limits: limits) }
        }
        return try result.get()
    }

    public static func decode(file path: String, limits: ImageLimits = .default) throws(ImageError) -> DecodedImage {
        // Through MappedFile: a FIFO or device is refused instead of waited on, and the bytes are
        // mapped rather than copied.
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch {
            let missing = !FileSystem.exists(path)
            throw .unreadable(source: path, reason: missing ? "no such file" : error.reason)
        }
        return try decode(file.bytes, source: path, limits: limits)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, source: String, limits: ImageLimits = .default) throws(ImageError) -> DecodedImage {
        switch ImageFormat.detect(bytes) {
        case .png: return try decodePNG(bytes, source: source, limits: limits)
        case .jpeg: return try decodeJPEG(bytes, source: source, limits: limits)
        case nil: throw .unknownFormat(source: source, firstBytes: Array(bytes.prefix(8)))
        }
    }

    // MARK: PNG

    static func decodePNG(_ bytes: UnsafeRawBufferPointer, source: String, limits: ImageLimits) throws(ImageError) -> DecodedImage {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw .truncated(source: source, format: .png, reason: "no data")
        }
        var message = Message()
        var reader: OpaquePointer?
        var info = plm_png_info()
        let side = UInt32(clamping: limits.maxDimension)
        let opened = message.withPointer { plm_png_open(base, bytes.count, side, side, &reader, &info, $0) }
        defer { plm_png_close(reader) }
        try check(opened, message, source: source, format: .png)
        let width = Int(info.width), height = Int(info.height)
        let channels = Int(info.channels), sampleBytes = Int(info.sample_bytes)
        let total = try limits.check(source: source, width: width, height: height, bytesPerPixel: channels * sampleBytes + 3)
        _ = total
        let rowBytes = width * channels * sampleBytes
        var raw = [UInt8](repeating: 0, count: rowBytes * height)
        let status = raw.withUnsafeMutableBufferPointer { out in
            message.withPointer { plm_png_read(reader, out.baseAddress, rowBytes, $0) }
        }
        try check(status, message, source: source, format: .png)
        var exif = [UInt8](repeating: 0, count: Int(plm_png_exif_size(reader)))
        if !exif.isEmpty { exif.withUnsafeMutableBufferPointer { plm_png_copy_exif(reader, $0.baseAddress) } }

        let layout: SampleLayout
        switch (channels, sampleBytes) {
        case (1, 1): layout = .grey
        case (1, 2): layout = .grey16
        case (2, 1): layout = .greyAlpha
        case (3, 1): layout = .rgb
        case (4, 1): layout = .rgba
        default:
            throw .unsupported(source: source, format: .png, reason: "\(channels) channels of \(8 * sampleBytes) bits after expansion")
        }
        let rgb = ColorConversion.toRGB(raw, layout: layout, pixelCount: width * height)
        let image = DecodedImage(unchecked: width, height: height, pixels: rgb)
        return exif.isEmpty ? image : image.transposed(for: Orientation.fromExif(exif))
    }

    // MARK: JPEG

    static func decodeJPEG(_ bytes: UnsafeRawBufferPointer, source: String, limits: ImageLimits) throws(ImageError) -> DecodedImage {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw .truncated(source: source, format: .jpeg, reason: "no data")
        }
        var message = Message()
        var reader: OpaquePointer?
        var info = plm_jpeg_info()
        let opened = message.withPointer { plm_jpeg_open(base, bytes.count, &reader, &info, $0) }
        defer { plm_jpeg_close(reader) }
        try check(opened, message, source: source, format: .jpeg)
        let width = Int(info.width), height = Int(info.height), channels = Int(info.channels)
        _ = try limits.check(source: source, width: width, height: height, bytesPerPixel: channels + 3)
        var exif = [UInt8](repeating: 0, count: Int(info.exif_size))
        if !exif.isEmpty { exif.withUnsafeMutableBufferPointer { plm_jpeg_copy_exif(reader, $0.baseAddress) } }

        let rowBytes = width * channels
        let rgb: [UInt8]
        if channels == 3 {
            // Decode straight into the result: no conversion pass for the common case.
            var out = [UInt8](repeating: 0, count: rowBytes * height)
            let status = out.withUnsafeMutableBufferPointer { o in
                message.withPointer { plm_jpeg_read(reader, o.baseAddress, rowBytes, $0) }
            }
            try check(status, message, source: source, format: .jpeg)
            rgb = out
        } else {
            var raw = [UInt8](repeating: 0, count: rowBytes * height)
            let status = raw.withUnsafeMutableBufferPointer { o in
                message.withPointer { plm_jpeg_read(reader, o.baseAddress, rowBytes, $0) }
            }
            try check(status, message, source: source, format: .jpeg)
            rgb = ColorConversion.toRGB(raw, layout: channels == 1 ? .grey : .invertedCMYK, pixelCount: width * height)
        }
        let image = DecodedImage(unchecked: width, height: height, pixels: rgb)
        return exif.isEmpty ? image : image.transposed(for: Orientation.fromExif(exif))
    }

    // MARK: Shared

    private static func check(_ status: Int32, _ message: Message, source: String, format: ImageFormat) throws(ImageError) {
        switch Int(status) {
        case PLM_IMAGE_OK: return
        case PLM_IMAGE_TRUNCATED: throw .truncated(source: source, format: format, reason: message.text)
        case PLM_IMAGE_NO_MEMORY: throw .outOfMemory(source: source)
        case PLM_IMAGE_UNSUPPORTED: throw .unsupported(source: source, format: format, reason: message.text)
        default:
            let text = message.text
            // libpng's own limit check (png_set_user_limits) reads as a size error, not corruption.
            if text.contains("exceeds user limit") {
                throw .tooLarge(source: source, width: 0, height: 0, limit: "the decoder's side limit")
            }
            throw .corrupt(source: source, format: format, reason: text)
        }
    }
}

/// The C side's fixed-size message buffer.
struct Message {
    var bytes = [CChar](repeating: 0, count: Int(PLM_IMAGE_MESSAGE_SIZE))

    mutating func withPointer<R>(_ body: (UnsafeMutablePointer<CChar>) -> R) -> R {
        bytes.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    var text: String {
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        let s = String(decoding: bytes[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.isEmpty ? "no details" : s
    }
}

import Testing
@testable import PLMImage

@Suite struct DecoderTests {
    static func input(_ name: String) throws -> [UInt8] { try Fixtures.bytes(Fixtures.images + "/inputs/" + name) }

    @Test func formatComesFromTheBytesNotTheName() throws {
        let png = try Self.input("rocket.png"), jpeg = try Self.input("rocket.jpg")
        let a = try ImageDecoder.decode(bytes: png, source: "named.jpg")
        let b = try ImageDecoder.decode(bytes: jpeg, source: "named.png")
        #expect(a.width == b.width && a.height == b.height)
    }

    @Test func unknownBytesAreNamed() {
        #expect(throws: ImageError.unknownFormat(source: "x.gif", firstBytes: Array("GIF89a".utf8))) {
            try ImageDecoder.decode(bytes: Array("GIF89a".utf8), source: "x.gif")
        }
        #expect(throws: ImageError.unknownFormat(source: "empty", firstBytes: [])) { try ImageDecoder.decode(bytes: [], source: "empty") }
    }

    @Test(arguments: ["rocket.png", "interlaced.png", "rocket.jpg", "progressive.jpg", "cmyk.jpg", "restart.jpg"])
    func truncatedFilesAreTruncatedOrCorrupt(_ name: String) throws {
        let full = try Self.input(name)
        for keep in [full.count / 2, full.count - 20, 40, 9] {
            do {
                _ = try ImageDecoder.decode(bytes: Array(full.prefix(keep)), source: name)
                Issue.record("\(name) cut to \(keep) bytes decoded")
            } catch {
                switch error {
                case .truncated, .corrupt: break
                default: Issue.record("\(name) cut to \(keep): \(error)")
                }
            }
        }
    }

    @Test(arguments: ["rocket.png", "rocket.jpg", "progressive.jpg"])
    func damagedBytesNeverCrash(_ name: String) throws {
        let full = try Self.input(name)
        var state: UInt64 = 12345
        for trial in 0..<40 {
            var b = full
            for _ in 0..<8 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let at = 8 + Int(state >> 33) % (b.count - 8)
                b[at] ^= UInt8(truncatingIfNeeded: state >> 20) | 1
            }
            // Either pixels or a named error; JPEG often decodes damaged data with warnings, as PIL does.
            do { _ = try ImageDecoder.decode(bytes: b, source: "\(name)#\(trial)") } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }

    @Test func pngCRCDamageInTheHeaderIsCorrupt() throws {
        var b = try Self.input("rocket.png")
        b[20] ^= 0xFF  // inside IHDR: its CRC no longer matches
        #expect(throws: ImageError.self) { try ImageDecoder.decode(bytes: b, source: "bad.png") }
    }

    /// A header claiming 60000×60000 is refused before anything of that size is allocated.
    @Test func hostileDimensionsAreRefusedBeforeAllocating() throws {
        var png = try Self.input("tiny_1x1.png")
        // IHDR width/height at offsets 16 and 20; fix the CRC so libpng gets as far as the limits.
        for o in [16, 20] { png[o] = 0; png[o + 1] = 0; png[o + 2] = 0xEA; png[o + 3] = 0x60 }
        let crc = Self.crc32(Array(png[12..<29]))
        png[29] = UInt8(crc >> 24); png[30] = UInt8((crc >> 16) & 0xFF); png[31] = UInt8((crc >> 8) & 0xFF); png[32] = UInt8(crc & 0xFF)
        do { _ = try ImageDecoder.decode(bytes: png, source: "huge.png"); Issue.record("decoded") } catch {
            guard case .tooLarge = error else { Issue.record("\(error)"); return }
        }
        let small = ImageLimits(maxPixels: 100, maxDecodedBytes: 1 << 20, maxDimension: 1000)
        let rocket = try Self.input("rocket.jpg")
        do { _ = try ImageDecoder.decode(bytes: rocket, source: "rocket.jpg", limits: small); Issue.record("decoded") } catch {
            #expect(error == .tooLarge(source: "rocket.jpg", width: 160, height: 106, limit: "100 pixels"))
        }
        var jpeg = try Self.input("rocket.jpg")
        // SOF0 height/width → 65000×65000.
        if let sof = (0..<(jpeg.count - 9)).first(where: { jpeg[$0] == 0xFF && (jpeg[$0 + 1] == 0xC0 || jpeg[$0 + 1] == 0xC2) }) {
            jpeg[sof + 5] = 0xFD; jpeg[sof + 6] = 0xE8; jpeg[sof + 7] = 0xFD; jpeg[sof + 8] = 0xE8
            do { _ = try ImageDecoder.decode(bytes: jpeg, source: "huge.jpg"); Issue.record("decoded") } catch {
                guard case .tooLarge = error else { Issue.record("\(error)"); return }
            }
        } else { Issue.record("no SOF marker") }
    }

    @Test func exifOrientationParsing() {
        // Big-endian TIFF, one IFD entry: Orientation SHORT 6.
        let be: [UInt8] = Array("Exif\0\0".utf8) + [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]
        #expect(Orientation.fromExif(be) == .right)
        let le: [UInt8] = [0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]
        #expect(Orientation.fromExif(le) == .left)
        #expect(Orientation.fromExif([0x49, 0x49, 42, 0, 0xFF, 0xFF, 0, 0]) == .up)  // offset out of range
        #expect(Orientation.fromExif([]) == .up)
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
        }
        return ~c
    }
}

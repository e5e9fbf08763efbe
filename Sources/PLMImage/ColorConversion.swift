/// Sample layouts the decoders produce, before conversion to RGB.
enum SampleLayout {
    case grey, grey16, greyAlpha, rgb, rgba
    /// CMYK as stored by Adobe applications (0 = full ink), which PIL assumes for every CMYK JPEG.
    case invertedCMYK
}

/// PIL's `convert("RGB")` for the modes our decoders produce.
enum ColorConversion {
    static func toRGB(_ raw: [UInt8], layout: SampleLayout, pixelCount n: Int) -> [UInt8] {
        if layout == .rgb { return raw }
        var out = [UInt8](repeating: 0, count: n * 3)
        raw.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                switch layout {
                case .rgb:
                    break
                case .grey:
                    for i in 0..<n { let v = s[i]; d[3 * i] = v; d[3 * i + 1] = v; d[3 * i + 2] = v }
                case .grey16:
                    // Mode I;16 → RGB in PIL clips to 255 rather than scaling (native-endian samples).
                    s.withMemoryRebound(to: UInt16.self) { w in
                        for i in 0..<n { let v = UInt8(min(w[i], 255)); d[3 * i] = v; d[3 * i + 1] = v; d[3 * i + 2] = v }
                    }
                case .greyAlpha:
                    for i in 0..<n { let v = s[2 * i]; d[3 * i] = v; d[3 * i + 1] = v; d[3 * i + 2] = v }
                case .rgba:
                    for i in 0..<n { d[3 * i] = s[4 * i]; d[3 * i + 1] = s[4 * i + 1]; d[3 * i + 2] = s[4 * i + 2] }
                case .invertedCMYK:
                    for i in 0..<n {
                        // Stored s = 255 − ink. PIL: r = (255 − k) − (c·(255 − k) / 255, rounded its way).
                        let nk = Int(s[4 * i + 3])
                        d[3 * i] = cmykChannel(ink: 255 - Int(s[4 * i]), notK: nk)
                        d[3 * i + 1] = cmykChannel(ink: 255 - Int(s[4 * i + 1]), notK: nk)
                        d[3 * i + 2] = cmykChannel(ink: 255 - Int(s[4 * i + 2]), notK: nk)
                    }
                }
            }
        }
        return out
    }

    /// PIL's MULDIV255 (a·b/255 rounded with two shifts) inside cmyk2rgb.
    @inline(__always)
    static func cmykChannel(ink: Int, notK: Int) -> UInt8 {
        let t = ink * notK + 128
        let scaled = ((t >> 8) + t) >> 8
        return UInt8(clamping: notK - scaled)
    }
}

import Foundation
import PLMCore

/// Why a video could not be read.
public enum VideoError: Error, Equatable, CustomStringConvertible {
    /// No `ffmpeg` executable on PATH (Debian: `apt-get install ffmpeg`).
    case ffmpegMissing
    /// ffmpeg or ffprobe failed on the file (its last stderr line says why).
    case decodeFailed(source: String, reason: String)
    /// Fewer frames than asked for (transformers refuses this too).
    case notEnoughFrames(source: String, available: Int, requested: Int)
    case noFrames(source: String)
    /// One frame of a folder could not be decoded.
    case frame(ImageError)
    case tooLarge(source: String, reason: String)

    public var description: String {
        switch self {
        case .ffmpegMissing:
            return "ffmpeg is not installed (or not on PATH); install it with `apt-get install ffmpeg` to read video files, or pass a folder of frames"
        case .decodeFailed(let source, let reason): return "\(source): ffmpeg could not decode the video: \(reason)"
        case .notEnoughFrames(let source, let available, let requested):
            return "\(source): \(requested) frames requested but the video has only \(available)"
        case .noFrames(let source): return "\(source): no frames"
        case .frame(let e): return e.description
        case .tooLarge(let source, let reason): return "\(source): \(reason)"
        }
    }
}

/// The `video_processor` part of processor_config.json (PerceptionLMVideoProcessor).
public struct VideoProcessorConfig: Sendable, Equatable {
    public var height: Int
    public var width: Int
    public var doResize: Bool
    public var normalization: PixelNormalization

    public static let perceptionLM = VideoProcessorConfig(height: 448, width: 448, doResize: true, normalization: .perceptionLM)

    public init(height: Int, width: Int, doResize: Bool, normalization: PixelNormalization) {
        self.height = height
        self.width = width
        self.doResize = doResize
        self.normalization = normalization
    }

    public init(json o: JSONObject, path: String = "video_processor") throws(ProcessorConfigError) {
        let r = Fields(object: o, path: path)
        var c = VideoProcessorConfig.perceptionLM
        if let s = try r.size("size") { (c.height, c.width) = (s.height, s.width) }
        c.doResize = try r.bool("do_resize") ?? c.doResize
        if try r.bool("do_center_crop") == true { throw r.error("do_center_crop", "center cropping is not supported") }
        try r.requireBicubic()
        c.normalization = try PixelNormalization.read(o, path: path)
        self = c
    }

    public static func fromProcessorConfig(_ bytes: [UInt8]) throws(ProcessorConfigError) -> VideoProcessorConfig {
        let root = try Fields.root(bytes)
        guard let o = root["video_processor"]?.objectValue else {
            throw ProcessorConfigError(field: "video_processor", problem: "missing or not an object")
        }
        return try VideoProcessorConfig(json: o)
    }
}

/// transformers' PerceptionLMVideoProcessor: `frames` frames sampled uniformly (indices
/// i·total/frames, integer division, as `default_sample_indices_fn`), each resized to
/// height×width with the same bicubic as images (no tiling), normalised the same way.
public struct VideoProcessor: Sendable {
    public let config: VideoProcessorConfig
    public var resizer: Resizer
    public var limits: ImageLimits
    private let tables: [[Float]]

    public init(config: VideoProcessorConfig = .perceptionLM, threads: Int = 1, limits: ImageLimits = .default) {
        self.config = config
        self.resizer = Resizer(threads: threads)
        self.limits = limits
        self.tables = config.normalization.lookupTables()
    }

    /// transformers' frame indices: every frame when `frames` is nil.
    public static func sampleIndices(total: Int, frames: Int?) throws(VideoError) -> [Int] {
        guard let n = frames else { return Array(0..<total) }
        guard n <= total else { throw .notEnoughFrames(source: "video", available: total, requested: n) }
        guard n > 0 else { return [] }
        return (0..<n).map { $0 * total / n }
    }

    /// Frames already decoded (e.g. a folder of images, sorted by the caller).
    public func preprocess(frames: [DecodedImage], sample: Int? = 32) throws(VideoError) -> PixelTiles {
        guard !frames.isEmpty else { throw .noFrames(source: "video") }
        let indices = try Self.sampleIndices(total: frames.count, frames: sample)
        return try tiles(indices.map { frames[$0] })
    }

    /// A folder of PNG/JPEG frames, in file-name order; only the sampled ones are decoded.
    public func preprocess(folder: String, sample: Int? = 32) throws(VideoError) -> PixelTiles {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
                .filter { !$0.hasPrefix(".") }
                .sorted()
        } catch {
            throw .decodeFailed(source: folder, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        guard !names.isEmpty else { throw .noFrames(source: folder) }
        let indices = try Self.sampleIndices(total: names.count, frames: sample)
        var frames: [DecodedImage] = []
        for i in indices {
            do { frames.append(try ImageDecoder.decode(file: folder + "/" + names[i], limits: limits)) } catch { throw .frame(error) }
        }
        return try tiles(frames)
    }

    /// A video file decoded by the `ffmpeg` command into raw RGB frames.
    public func preprocess(videoFile path: String, sample: Int? = 32) throws(VideoError) -> PixelTiles {
        let reader = try FFmpegReader(path: path, limits: limits)
        // The frame count is only known at the end of the stream, so every frame is resized as it
        // arrives (bounded memory: one source frame at a time) and the sample is taken after.
        var resized: [DecodedImage] = []
        while let frame = try reader.next() {
            do {
                resized.append(config.doResize ? try resizer.resize(frame, width: config.width, height: config.height) : frame)
            } catch {
                throw .frame(error)
            }
            guard resized.count <= 100_000 else { throw .tooLarge(source: path, reason: "more than 100000 frames") }
        }
        guard !resized.isEmpty else { throw .noFrames(source: path) }
        let indices: [Int]
        do { indices = try Self.sampleIndices(total: resized.count, frames: sample) } catch {
            throw .notEnoughFrames(source: path, available: resized.count, requested: sample ?? 0)
        }
        return try normalisedTiles(indices.map { resized[$0] })
    }

    private func tiles(_ frames: [DecodedImage]) throws(VideoError) -> PixelTiles {
        var resized: [DecodedImage] = []
        for f in frames {
            do { resized.append(config.doResize ? try resizer.resize(f, width: config.width, height: config.height) : f) } catch { throw .frame(error) }
        }
        return try normalisedTiles(resized)
    }

    private func normalisedTiles(_ frames: [DecodedImage]) throws(VideoError) -> PixelTiles {
        guard let first = frames.first else { throw .noFrames(source: "video") }
        guard frames.allSatisfy({ $0.width == first.width && $0.height == first.height }) else {
            throw .decodeFailed(source: "video", reason: "frames of different sizes cannot be stacked without resizing")
        }
        let plane = first.width * first.height
        var out = [Float](repeating: 0, count: frames.count * 3 * plane)
        out.withUnsafeMutableBufferPointer { dst in
            for (t, f) in frames.enumerated() {
                f.pixels.withUnsafeBufferPointer { src in
                    for c in 0..<3 {
                        tables[c].withUnsafeBufferPointer { lut in
                            let base = (t * 3 + c) * plane
                            for i in 0..<plane { dst[base + i] = lut[Int(src[3 * i + c])] }
                        }
                    }
                }
            }
        }
        do { return try PixelTiles(count: frames.count, height: first.height, width: first.width, values: out) } catch {
            throw .decodeFailed(source: "video", reason: error.description)
        }
    }
}

/// Runs `ffprobe` for the frame size, then streams `ffmpeg -f rawvideo -pix_fmt rgb24` frames.
///
/// Why the command and not libavformat/libavcodec through system-library targets: the command
/// is a stable interface across FFmpeg versions (the C API changes every major release), a
/// crash or hostile file stays in another process, and the build does not grow; the cost, one
/// process start (~30 ms) and a pipe copy, is small next to decoding and resizing.
final class FFmpegReader {
    let path: String
    let width: Int
    let height: Int
    private let process: Process
    private let output: FileHandle
    /// ffmpeg's stderr goes to a file: a pipe that nobody drains while we read frames could fill
    /// up with error lines and stall ffmpeg.
    private let errorLog: URL

    static func executable(_ name: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for d in dirs {
            let candidate = "\(d)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    init(path: String, limits: ImageLimits) throws(VideoError) {
        guard let ffmpeg = Self.executable("ffmpeg"), let ffprobe = Self.executable("ffprobe") else { throw .ffmpegMissing }
        guard FileManager.default.isReadableFile(atPath: path) else { throw .decodeFailed(source: path, reason: "no readable file") }
        self.path = path
        let probe = try Self.run(ffprobe, ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0", path], source: path)
        let parts = probe.split(whereSeparator: { $0 == "," || $0 == "\n" }).compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count >= 2, parts[0] > 0, parts[1] > 0 else {
            throw .decodeFailed(source: path, reason: "no video stream with a size (ffprobe said \(probe.debugDescription))")
        }
        width = parts[0]
        height = parts[1]
        do { _ = try limits.check(source: path, width: width, height: height, bytesPerPixel: 3) } catch {
            throw .tooLarge(source: path, reason: error.description)
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: ffmpeg)
        process.arguments = ["-v", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        let out = Pipe()
        errorLog = FileManager.default.temporaryDirectory.appendingPathComponent("plmq-ffmpeg-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: errorLog.path, contents: nil),
              let log = try? FileHandle(forWritingTo: errorLog) else {
            throw .decodeFailed(source: path, reason: "cannot create a log file in \(FileManager.default.temporaryDirectory.path)")
        }
        process.standardOutput = out
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw .decodeFailed(source: path, reason: error.localizedDescription) }
        try? log.close()
        output = out.fileHandleForReading
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: errorLog)
    }

    /// The next frame, or nil at the end of a cleanly finished stream.
    func next() throws(VideoError) -> DecodedImage? {
        let frameBytes = width * height * 3
        var buffer = [UInt8]()
        buffer.reserveCapacity(frameBytes)
        while buffer.count < frameBytes {
            let chunk: Data?
            do { chunk = try output.read(upToCount: frameBytes - buffer.count) } catch {
                throw .decodeFailed(source: path, reason: error.localizedDescription)
            }
            guard let chunk, !chunk.isEmpty else { break }
            buffer.append(contentsOf: chunk)
        }
        if buffer.count == frameBytes { return DecodedImage(unchecked: width, height: height, pixels: buffer) }
        process.waitUntilExit()
        let message = Self.lastLine((try? Data(contentsOf: errorLog)) ?? Data())
        if process.terminationStatus != 0 {
            throw .decodeFailed(source: path, reason: message.isEmpty ? "exit status \(process.terminationStatus)" : message)
        }
        if !buffer.isEmpty { throw .decodeFailed(source: path, reason: "the stream ended inside a frame") }
        return nil
    }

    static func lastLine(_ data: Data) -> String {
        String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
    }

    static func run(_ exe: String, _ args: [String], source: String) throws(VideoError) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw .decodeFailed(source: source, reason: error.localizedDescription) }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let m = lastLine(errData)
            throw .decodeFailed(source: source, reason: m.isEmpty ? "exit status \(p.terminationStatus)" : m)
        }
        return String(decoding: data, as: UTF8.self)
    }
}

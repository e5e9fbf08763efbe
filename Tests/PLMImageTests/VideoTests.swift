import Foundation
import Testing
@testable import PLMImage

@Suite struct VideoTests {
    static var cases: [(kind: String, input: String, frames: Int, count: Int, file: String)] {
        (Fixtures.manifest["videos"]?.arrayValue ?? []).compactMap { v in
            guard let o = v.objectValue, let k = o["kind"]?.stringValue, let i = o["input"]?.stringValue,
                  let f = o["frames"]?.intValue, let c = o["count"]?.intValue, let file = o["file"]?.stringValue else { return nil }
            return (k, i, f, c, file)
        }
    }

    @Test func sampleIndicesAsTransformers() throws {
        #expect(try VideoProcessor.sampleIndices(total: 12, frames: 5) == [0, 2, 4, 7, 9])
        #expect(try VideoProcessor.sampleIndices(total: 3, frames: nil) == [0, 1, 2])
        #expect(throws: VideoError.self) { try VideoProcessor.sampleIndices(total: 3, frames: 4) }
    }

    @Test func framesMatchTransformers() throws {
        let cases = Self.cases
        #expect(cases.count == 4)
        let processor = VideoProcessor(config: try Fixtures.tinyVideoConfig)
        for c in cases {
            let path = Fixtures.images + "/inputs/" + c.input
            if c.kind == "file" && FFmpegReader.executable("ffmpeg") == nil {
                Issue.record("ffmpeg is not installed (make deps installs it); \(c.input) not checked")
                continue
            }
            let tiles = c.kind == "folder" ? try processor.preprocess(folder: path, sample: c.frames) : try processor.preprocess(videoFile: path, sample: c.frames)
            #expect(tiles.count == c.count)
            let expected = try ImageDecoder.decode(file: Fixtures.images + "/expected/" + c.file)
            let diff = PixelDiff(ours: tiles, expected: expected, lut: Fixtures.normalisation)
            print("parity video \(c.kind) \(c.frames) frames: \(diff)")
            #expect(diff.worst == 0 && diff.unmatched == 0, "\(c.kind) \(c.frames): \(diff)")
        }
    }

    @Test func corruptVideoIsACleanError() throws {
        guard FFmpegReader.executable("ffmpeg") != nil else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plmq-video-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let junk = dir.appendingPathComponent("junk.mp4")
        try Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: junk)
        #expect(throws: VideoError.self) { try VideoProcessor().preprocess(videoFile: junk.path, sample: 4) }
        let clip = try Fixtures.bytes(Fixtures.images + "/inputs/clip.mp4")
        let cut = dir.appendingPathComponent("cut.mp4")
        try Data(clip.prefix(clip.count / 3)).write(to: cut)
        #expect(throws: VideoError.self) { try VideoProcessor().preprocess(videoFile: cut.path, sample: 4) }
        #expect(throws: VideoError.self) { try VideoProcessor().preprocess(videoFile: dir.appendingPathComponent("missing.mp4").path) }
    }

    @Test func missingFFmpegIsNamed() {
        #expect(VideoError.ffmpegMissing.description.contains("apt-get install ffmpeg"))
    }
}

import Foundation

/// Times decode and preprocess of image files, for `plmq bench` (not a test: numbers depend on
/// the machine). Each phase is the median of `repeats` runs.
public enum ImageBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public let file: String
        public let width: Int
        public let height: Int
        public let tiles: Int
        public let threads: Int
        public let decodeSeconds: Double
        public let preprocessSeconds: Double
        public var totalSeconds: Double { decodeSeconds + preprocessSeconds }
        public var description: String {
            let f = { (s: Double) in String(format: "%.1f ms", s * 1000) }
            return "\((file as NSString).lastPathComponent) \(width)×\(height) → \(tiles) tiles, \(threads) thread(s): decode \(f(decodeSeconds)), preprocess \(f(preprocessSeconds)), total \(f(totalSeconds))"
        }
    }

    public static func run(file: String, config: ImageProcessorConfig = .perceptionLM, threads: Int = 1, repeats: Int = 5) throws(ImageError) -> Result {
        let processor = PerceptionLMImageProcessor(config: config, threads: threads)
        var decodeTimes: [Double] = [], processTimes: [Double] = []
        var last: (DecodedImage, ProcessedImage)?
        for _ in 0..<max(1, repeats) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let image = try ImageDecoder.decode(file: file)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let out = try processor.preprocess(image)
            let t2 = DispatchTime.now().uptimeNanoseconds
            decodeTimes.append(Double(t1 - t0) / 1e9)
            processTimes.append(Double(t2 - t1) / 1e9)
            last = (image, out)
        }
        let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
        return Result(file: file, width: last?.0.width ?? 0, height: last?.0.height ?? 0, tiles: last?.1.tileCount ?? 0,
                      threads: threads, decodeSeconds: median(decodeTimes), preprocessSeconds: median(processTimes))
    }
}

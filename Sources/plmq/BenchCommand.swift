import ArgumentParser
import CPLMKernels
import PLMCheckpoint
import PLMFormat
import PLMModel
import PLMQuant
#if canImport(Glibc)
import Glibc
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure memory bandwidth, kernels and end-to-end speed of a .plm model.",
        discussion: """
            (a) read bandwidth of this machine on a buffer far larger than the caches; (b) for each \
            weight shape, matrix × vector time, GB/s of weight bytes and the share of the measured \
            bandwidth; (c) matrix × matrix at 64 and 512 rows against OpenBLAS sgemm on the same \
            shape; (d) prefill tokens/s at 64 and 512 tokens, decode tokens/s over 64 tokens, and \
            the vision tower per tile. Each figure is the median of --runs runs, with min and max. \
            The bandwidth is measured again right before each end-to-end run and the ratios use \
            that nearby value, because two-thread bandwidth drifts over tens of seconds on some hosts.
            """
    )

    @Argument(help: "A .plm file.")
    var model: String

    @Option(help: "Runs per measurement.")
    var runs = 5

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Skip the end-to-end measurements (d).")
    var kernelsOnly = false

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        do {
            compute.apply()
            let report = try Bench(path: model, runs: max(1, runs), threads: KernelSettings.threads, endToEnd: !kernelsOnly).run()
            print(json ? report.json.serialized(pretty: true) : report.text)
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}

/// Median, minimum and maximum of repeated timings.
struct Stat {
    let median: Double, min: Double, max: Double
    init(_ values: [Double]) {
        let s = values.sorted()
        median = s[s.count / 2]
        min = s.first!
        max = s.last!
    }
    func map(_ f: (Double) -> Double) -> Stat { Stat(values: (f(median), f(min), f(max))) }
    init(values: (Double, Double, Double)) {
        median = values.0
        min = Swift.min(values.1, values.2)
        max = Swift.max(values.1, values.2)
    }
    var text: String { "\(String(format2: median)) (\(String(format2: min))–\(String(format2: max)))" }
    var json: JSONValue { .object(JSONObject([("median", .double(median)), ("min", .double(min)), ("max", .double(max))])) }
}

struct Bench {
    let path: String
    let runs: Int
    let threads: Int
    let endToEnd: Bool

    struct Report {
        var lines: [String] = []
        var object = JSONObject()
        var text: String { lines.joined(separator: "\n") }
        var json: JSONValue { .object(object) }
    }

    /// Bytes per second reading a 1 GiB buffer (every thread reads its own slice).
    static func bandwidth(threads: Int) -> Double {
        let bytes = 1 << 30
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { buffer.deallocate() }
        memset(buffer, 1, bytes)
        nonisolated(unsafe) let base = buffer
        var best = 0.0
        for _ in 0..<3 {
            let start = monotonicSeconds()
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let slice = bytes / threads
                _ = plm_read_bytes(base + t * slice, slice)
            }
            best = max(best, Double(bytes) / (monotonicSeconds() - start))
        }
        return best
    }

    func time(_ body: () throws -> Void) rethrows -> Double {
        let start = monotonicSeconds()
        try body()
        return monotonicSeconds() - start
    }

    func run() throws -> Report {
        var r = Report()
        let file = try PLMFile(path: path)
        let impl = KernelSettings.effective
        r.lines.append("plmq bench \(path): \(threads) thread\(threads == 1 ? "" : "s"), kernels \(impl.rawValue), activations \(KernelSettings.activations.rawValue)")
        r.object["model"] = .string(path)
        r.object["threads"] = .int(threads)
        r.object["kernels"] = .string(impl.rawValue)

        // (a)
        let bw = Stat((0..<runs).map { _ in Self.bandwidth(threads: threads) / 1e9 })
        r.lines.append("")
        r.lines.append("(a) read bandwidth, 1 GiB buffer: \(bw.text) GB/s")
        r.object["bandwidth_gbs"] = bw.json

        // (b) GEMV per quantized weight shape.
        let source = PLMWeightSource(file: file)
        var seen = Set<String>()
        var shapes: [(PLMTensor, QuantizedLinear)] = []
        for t in file.tensors where t.type.isQuantized && t.shape.count >= 2 {
            let key = "\(t.type) \(t.layout.rows)x\(t.layout.columns)"
            guard !seen.contains(key) else { continue }
            seen.insert(key)
            if let q = try source.linear(weight: t.name, bias: nil, outFeatures: t.layout.rows, inFeatures: t.layout.columns) as? QuantizedLinear {
                shapes.append((t, q))
            }
        }
        r.lines.append("")
        r.lines.append("(b) matrix × vector (decode), median (min–max)")
        var gemvRows: [[String]] = [["shape [out, in]", "storage", "weight bytes", "µs", "GB/s", "% of bandwidth"]]
        var gemvJSON: [JSONValue] = []
        for (t, q) in shapes {
            let x = [Float](repeating: 0.5, count: q.inFeatures)
            var y = [Float](repeating: 0, count: q.outFeatures)
            // Repeat so one run streams ≥ 256 MiB: small matrices would otherwise be timed from cache.
            let repeats = max(1, (256 << 20) / max(t.storedBytes, 1))
            let seconds = Stat((0..<runs).map { _ in
                time { for _ in 0..<repeats { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { q.apply(xp.baseAddress!, rows: 1, into: $0.baseAddress!) } } } } / Double(repeats)
            })
            let gbs = seconds.map { Double(t.storedBytes) / $0 / 1e9 }
            let share = gbs.median / bw.median * 100
            gemvRows.append([formatShape([t.layout.rows, t.layout.columns]), t.type.description, formatBytes(t.storedBytes),
                             seconds.map { $0 * 1e6 }.text, gbs.text, String(format2: share)])
            gemvJSON.append(.object(JSONObject([("rows", .int(t.layout.rows)), ("cols", .int(t.layout.columns)), ("storage", .string(t.type.description)),
                                                ("bytes", .int(t.storedBytes)), ("seconds", seconds.json), ("gbs", gbs.json), ("percent_of_bandwidth", .double(share))])))
        }
        r.lines.append(contentsOf: alignColumns(gemvRows, rightAligned: [2, 3, 4, 5]).map { "  " + $0 })
        r.object["gemv"] = .array(gemvJSON)

        // (c) GEMM at 64 and 512 rows against OpenBLAS on the same shapes (linear weights only).
        r.lines.append("")
        r.lines.append("(c) matrix × matrix (prefill), GFLOP/s as 2·M·N·K / time, median (min–max)")
        var gemmRows: [[String]] = [["shape [out, in]", "rows", "plmq", "OpenBLAS sgemm", "speed-up"]]
        var gemmJSON: [JSONValue] = []
        for (t, q) in shapes where !t.name.contains("embed_tokens") && t.name != Component.lmHead {
            for m in [64, 512] {
                let x = (0..<(m * q.inFeatures)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 }
                var y = [Float](repeating: 0, count: m * q.outFeatures)
                let flops = 2.0 * Double(m) * Double(q.outFeatures) * Double(q.inFeatures)
                let ours = Stat((0..<runs).map { _ in
                    time { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { q.apply(xp.baseAddress!, rows: m, into: $0.baseAddress!) } } }
                }).map { flops / $0 / 1e9 }
                let dense = DenseLinear(weight: FloatBuffer(count: q.outFeatures * q.inFeatures), bias: nil, outFeatures: q.outFeatures, inFeatures: q.inFeatures)
                let blas = Stat((0..<runs).map { _ in
                    time { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { dense.apply(xp.baseAddress!, rows: m, into: $0.baseAddress!) } } }
                }).map { flops / $0 / 1e9 }
                gemmRows.append([formatShape([q.outFeatures, q.inFeatures]), "\(m)", ours.text, blas.text, String(format2: ours.median / blas.median) + "×"])
                gemmJSON.append(.object(JSONObject([("rows", .int(q.outFeatures)), ("cols", .int(q.inFeatures)), ("m", .int(m)),
                                                    ("plmq_gflops", ours.json), ("openblas_gflops", blas.json)])))
            }
        }
        r.lines.append(contentsOf: alignColumns(gemmRows, rightAligned: [1, 2, 3, 4]).map { "  " + $0 })
        r.object["gemm"] = .array(gemmJSON)

        guard endToEnd else { return r }

        // (d) End to end.
        let model = try PerceptionLM.load(plm: path)
        let config = model.config
        let special: Set<Int> = [config.imageTokenId, config.videoTokenId]
        let ids = (0..<600).map { i -> Int in
            var id = (i * 7919 + 13) % config.text.vocabSize
            while special.contains(id) { id = (id + 1) % config.text.vocabSize }
            return id
        }
        r.lines.append("")
        r.lines.append("(d) end to end, median (min–max); bandwidth re-measured before each run")
        var e2e = JSONObject()
        for n in [64, 512] {
            var rates: [Double] = []
            for _ in 0..<max(1, runs / 2) {
                let seconds = try time { _ = try model.forward(inputIds: Array(ids.prefix(n)), lastPositions: 1) }
                rates.append(Double(n) / seconds)
            }
            let s = Stat(rates)
            r.lines.append("  prefill \(n) tokens: \(s.text) tokens/s")
            e2e["prefill_\(n)_tokens_per_s"] = s.json
        }
        let perToken = decodeBytesPerToken(file)
        var decodeRates: [Double] = [], ratios: [Double] = []
        for _ in 0..<max(1, runs / 2) {
            let bandwidthNow = Self.bandwidth(threads: threads)
            var stamps: [Double] = []
            _ = try model.generate(inputIds: Array(ids.prefix(16)), maxNewTokens: 65, stopTokens: []) { _ in stamps.append(monotonicSeconds()) }
            let rate = Double(stamps.count - 1) / (stamps.last! - stamps.first!)
            decodeRates.append(rate)
            ratios.append(rate / (bandwidthNow / Double(perToken)))
        }
        let decode = Stat(decodeRates), ratio = Stat(ratios)
        r.lines.append("  decode 64 tokens: \(decode.text) tokens/s; weights read per token \(formatBytes(perToken)); "
            + "\(String(format2: ratio.median * 100))% of the bandwidth limit (bandwidth ÷ bytes per token)")
        e2e["decode_tokens_per_s"] = decode.json
        e2e["decode_bytes_per_token"] = .int(perToken)
        e2e["decode_fraction_of_bandwidth_limit"] = ratio.json
        let v = config.vision
        let tile = try PixelTiles(count: 1, height: v.imageHeight, width: v.imageWidth,
                                  values: (0..<(3 * v.imageHeight * v.imageWidth)).map { Float(($0 * 31) % 255) / 127.5 - 1 })
        let vision = Stat(try (0..<max(1, runs / 2)).map { _ in try time { _ = try model.encode(tile) } })
        r.lines.append("  vision tower + projector per \(v.imageHeight)-pixel tile: \(vision.text) s")
        e2e["vision_seconds_per_tile"] = vision.json
        r.object["end_to_end"] = .object(e2e)
        return r
    }

    /// Weight bytes a decode step reads: every language-model matrix and norm, plus the head
    /// (the embedding itself when tied); an embedding lookup reads one row.
    func decodeBytesPerToken(_ file: PLMFile) -> Int {
        let tied = file.tensor(Component.lmHead) == nil
        return file.tensors.reduce(0) { sum, t in
            guard Component.of(t.name) == .languageModel else { return sum }
            if t.name.hasSuffix("embed_tokens.weight") && !tied { return sum }
            return sum + t.storedBytes
        }
    }
}

import Dispatch

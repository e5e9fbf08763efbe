import PLMCore
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

            With --prompt, --depth or --vision-tiles only those measurements run, each --runs times \
            after one untimed warm-up, for side-by-side comparisons with llama-bench and \
            transformers: --prompt N times the prefill of N tokens (llama-bench -p N), --depth N \
            times decoding 64 tokens after a context of N tokens (0: from an empty context) whose \
            prefill is not timed (llama-bench -p 0 -n 64 -d N), --vision-tiles N times the vision tower and projector on \
            N tiles. Each may be given several times. Token ids are fixed pseudo-random ids (the \
            speed does not depend on them).
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

    @Option(help: "A checkpoint folder to run the same end-to-end measurements on with the fp32 engine, for the ratios.")
    var compare: String?

    @Option(help: ArgumentHelp("Time the prefill of N tokens, like llama-bench -p N (repeatable).", valueName: "N"))
    var prompt: [Int] = []

    @Option(help: ArgumentHelp("Time decoding \(TargetedBench.decodeTokens) tokens after a context of N tokens, like llama-bench -d N -n \(TargetedBench.decodeTokens); the context's prefill is not timed (repeatable).", valueName: "N"))
    var depth: [Int] = []

    @Option(help: ArgumentHelp("Time the vision tower and projector on N tiles (repeatable).", valueName: "N"))
    var visionTiles: [Int] = []

    @Flag(help: "With --prompt: also time the language model's matrix products alone at the same row counts, to split the prefill into matmul time and the rest (attention, norms, RoPE).")
    var breakdown = false

    @OptionGroup var compute: ComputeOptions

    /// The most tiles --vision-tiles takes: 8 videos of 32 frames; each tile's pixels are 2.4 MB.
    static let maxVisionTiles = 256

    var targeted: Bool { !prompt.isEmpty || !depth.isEmpty || !visionTiles.isEmpty }

    func validate() throws {
        guard (1...1000).contains(runs) else { throw ValidationError("--runs must be between 1 and 1000") }
        // The model's max_position_embeddings is checked once the model is loaded; these are the
        // bounds of any config (ConfigLimits) so that nothing huge is allocated before that.
        for n in prompt where !(1...ConfigLimits.positions).contains(n) {
            throw ValidationError("--prompt \(n): the prompt length must be between 1 and \(ConfigLimits.positions) tokens")
        }
        for n in depth where !(0...ConfigLimits.positions).contains(n) {
            throw ValidationError("--depth \(n): the context must be between 0 and \(ConfigLimits.positions) tokens")
        }
        for n in visionTiles where !(1...Self.maxVisionTiles).contains(n) {
            throw ValidationError("--vision-tiles \(n): the tile count must be between 1 and \(Self.maxVisionTiles)")
        }
        if targeted && kernelsOnly { throw ValidationError("--kernels-only measures no end-to-end figures; it cannot be combined with --prompt, --depth or --vision-tiles") }
        if breakdown && prompt.isEmpty { throw ValidationError("--breakdown splits the --prompt measurements; give --prompt N") }
        if targeted && compare != nil { throw ValidationError("--compare applies to the default measurements, not to --prompt, --depth or --vision-tiles") }
    }

    func run() throws {
        try reportingErrors {
            let report: Bench.Report
            if targeted {
                report = try TargetedBench(path: model, runs: runs, options: compute.engine, prompts: prompt, depths: depth, visionTiles: visionTiles,
                                           breakdown: breakdown).run()
            } else {
                report = try Bench(path: model, runs: runs, options: compute.engine, endToEnd: !kernelsOnly, compare: compare).run()
            }
            print(json ? report.json.serialized(pretty: true) : report.text)
        }
    }
}

/// The measurements of --prompt, --depth and --vision-tiles: only those asked for, on the loaded
/// model, each the median of `runs` timed runs after one untimed warm-up.
struct TargetedBench {
    /// Tokens decoded after a --depth context (llama-bench's default -n is 128; the comparison uses 64).
    static let decodeTokens = 64

    let path: String
    let runs: Int
    let options: EngineOptions
    let prompts: [Int]
    let depths: [Int]
    let visionTiles: [Int]
    let breakdown: Bool

    /// Rows per call of the MLP matrices in a prefill (LlamaDecoder's mlpChunkRows).
    static let mlpChunkRows = 512

    /// Seconds the language model's matrix products of an `n`-token prefill take on their own: each
    /// distinct (storage, shape) is timed at the row counts the decoder uses (attention projections
    /// on all rows, the MLP in chunks) and counted once per layer that has it. The head is left
    /// out (a prefill computes one row of logits).
    func matmulSeconds(_ file: PLMFile, rows n: Int) throws -> Stat {
        let source = PLMWeightSource(file: file, options: options)
        var groups: [String: (linear: any LinearMap, calls: [Int], count: Int)] = [:]
        var order: [String] = []
        let chunks = Array(repeating: Self.mlpChunkRows, count: n / Self.mlpChunkRows) + (n % Self.mlpChunkRows > 0 ? [n % Self.mlpChunkRows] : [])
        for t in file.tensors where t.shape.count == 2 && t.name.hasPrefix(Component.languagePrefix + "layers.") && t.name.hasSuffix("_proj.weight") {
            let calls = t.name.contains(".mlp.") ? chunks : [n]
            let key = "\(t.type) \(t.layout.rows)x\(t.layout.columns) \(calls)"
            if let g = groups[key] { groups[key] = (g.linear, g.calls, g.count + 1); continue }
            let linear = try source.linear(weight: t.name, bias: nil, outFeatures: t.layout.rows, inFeatures: t.layout.columns)
            groups[key] = (linear, calls, 1)
            order.append(key)
        }
        var perRun = [Double](repeating: 0, count: runs)
        for key in order {
            guard let g = groups[key] else { continue }
            let x = (0..<(n * g.linear.inFeatures)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 }
            var y = [Float](repeating: 0, count: n * g.linear.outFeatures)
            func once() {
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        var row = 0
                        for m in g.calls {
                            g.linear.apply(xp.baseAddress! + row * g.linear.inFeatures, rows: m, into: yp.baseAddress! + row * g.linear.outFeatures)
                            row += m
                        }
                    }
                }
            }
            once()  // warm-up
            for i in 0..<runs { perRun[i] += time { once() } * Double(g.count) }
        }
        return Stat(perRun)
    }

    /// Fixed pseudo-random ids of the vocabulary that are not image or video placeholders.
    static func tokenIds(_ count: Int, config: PerceptionLMConfig) -> [Int] {
        let special: Set<Int> = [config.imageTokenId, config.videoTokenId]
        let vocab = config.text.vocabSize
        return (0..<count).map { i -> Int in
            var id = (i * 7919 + 13) % vocab
            while special.contains(id) { id = (id + 1) % vocab }
            return id
        }
    }

    func time(_ body: () throws -> Void) rethrows -> Double {
        let start = monotonicSeconds()
        try body()
        return monotonicSeconds() - start
    }

    func run() throws -> Bench.Report {
        let model = try PerceptionLM.load(path, options: options)
        let config = model.config
        let context = config.text.maxPositionEmbeddings
        for n in prompts where n > context {
            throw ValidationError("--prompt \(n): \(path) takes at most \(context) positions (max_position_embeddings)")
        }
        for n in depths where n + Self.decodeTokens > context {
            throw ValidationError("--depth \(n): \(path) takes at most \(context) positions (max_position_embeddings), "
                + "so the context can be at most \(context - Self.decodeTokens) tokens before \(Self.decodeTokens) decoded ones")
        }
        var r = Bench.Report()
        r.lines.append("plmq bench \(path): \(options); median (min–max) of \(runs) runs after one warm-up")
        r.object["model"] = .string(path)
        r.object["threads"] = .int(options.threads)
        r.object["kernels"] = .string(options.effectiveKernel.rawValue)
        r.object["runs"] = .int(runs)

        let longest = max(prompts.max() ?? 0, (depths.max() ?? 0) + Self.decodeTokens)
        let ids = Self.tokenIds(max(longest, 1), config: config)
        if !prompts.isEmpty || !depths.isEmpty {
            // Warm-up: maps every weight page and starts the worker threads.
            _ = try model.forward(inputIds: Array(ids.prefix(16)), lastPositions: 1)
        }

        var promptJSON: [JSONValue] = []
        for n in prompts {
            let input = Array(ids.prefix(n))
            let seconds = Stat(try (0..<runs).map { _ in try time { _ = try model.forward(inputIds: input, lastPositions: 1) } })
            let rate = seconds.map { Double(n) / $0 }
            r.lines.append("prefill \(n) tokens: \(rate.text) tokens/s")
            var entry = JSONObject([("tokens", .int(n)), ("tokens_per_s", rate.json), ("seconds", seconds.json)])
            if breakdown {
                let matmul = try matmulSeconds(try PLMFile(path: path), rows: n)
                let rest = seconds.median - matmul.median
                r.lines.append("  of which the language model's matrix products alone: \(matmul.text) s (\(String(format2: matmul.median / seconds.median * 100))%); "
                    + "attention, norms, RoPE and the rest ≈ \(String(format2: rest)) s")
                entry["matmul_seconds"] = matmul.json
                entry["other_seconds"] = .double(rest)
            }
            promptJSON.append(.object(entry))
        }
        if !prompts.isEmpty { r.object["prompt"] = .array(promptJSON) }

        var depthJSON: [JSONValue] = []
        for n in depths {
            // One untimed prefill of the context; every run then rewinds to it and decodes anew.
            let session = InferenceContext(model: model, reserve: n + Self.decodeTokens)
            if n > 0 { _ = try session.append(Array(ids.prefix(n)), logits: .none) }
            let next = Array(ids[n..<(n + Self.decodeTokens)])
            func decode() throws {
                session.rewind(to: n)
                for token in next { _ = try session.step(token) }
            }
            try decode()  // warm-up
            let seconds = Stat(try (0..<runs).map { _ in try time { try decode() } })
            let rate = seconds.map { Double(Self.decodeTokens) / $0 }
            r.lines.append("decode \(Self.decodeTokens) tokens after \(n) tokens of context: \(rate.text) tokens/s")
            depthJSON.append(.object(JSONObject([("depth", .int(n)), ("tokens", .int(Self.decodeTokens)), ("tokens_per_s", rate.json), ("seconds", seconds.json)])))
        }
        if !depths.isEmpty { r.object["depth"] = .array(depthJSON) }

        var visionJSON: [JSONValue] = []
        let v = config.vision
        let tileValues = 3 * v.imageHeight * v.imageWidth
        if !visionTiles.isEmpty {
            let one = try PixelTiles(count: 1, height: v.imageHeight, width: v.imageWidth, values: Self.pixels(tileValues))
            _ = try model.encode(one)  // warm-up
        }
        for n in visionTiles {
            var values: [Float] = []
            values.reserveCapacity(n * tileValues)
            let tile = Self.pixels(tileValues)
            for _ in 0..<n { values.append(contentsOf: tile) }
            let tiles = try PixelTiles(count: n, height: v.imageHeight, width: v.imageWidth, values: values)
            let seconds = Stat(try (0..<runs).map { _ in try time { _ = try model.encode(tiles) } })
            let perTile = seconds.map { $0 / Double(n) }
            r.lines.append("vision tower + projector, \(n) tile\(n == 1 ? "" : "s") of \(v.imageHeight) pixels: \(seconds.text) s, \(perTile.text) s per tile")
            visionJSON.append(.object(JSONObject([("tiles", .int(n)), ("seconds", seconds.json), ("seconds_per_tile", perTile.json)])))
        }
        if !visionTiles.isEmpty { r.object["vision"] = .array(visionJSON) }
        return r
    }

    /// One tile of fixed pixel values in [-1, 1], as the default bench uses.
    static func pixels(_ count: Int) -> [Float] { (0..<count).map { Float(($0 * 31) % 255) / 127.5 - 1 } }
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
    let options: EngineOptions
    var threads: Int { options.threads }
    let endToEnd: Bool
    let compare: String?

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
        let impl = options.effectiveKernel
        r.lines.append("plmq bench \(path): \(options)")
        r.object["model"] = .string(path)
        r.object["threads"] = .int(threads)
        r.object["kernels"] = .string(impl.rawValue)

        // (a)
        let bw = Stat((0..<runs).map { _ in Self.bandwidth(threads: threads) / 1e9 })
        r.lines.append("")
        r.lines.append("(a) read bandwidth, 1 GiB buffer: \(bw.text) GB/s")
        r.object["bandwidth_gbs"] = bw.json

        // (b) GEMV per quantized weight shape. All tensors of a shape are cycled through, so the
        // weights stream from memory: one 9 MB matrix repeated would be timed from the 32 MB L3.
        let source = PLMWeightSource(file: file, options: options)
        var order: [String] = []
        var byShape: [String: [(PLMTensor, QuantizedLinear)]] = [:]
        for t in file.tensors where t.type.isQuantized && t.shape.count >= 2 {
            let key = "\(t.type) \(t.layout.rows)x\(t.layout.columns)"
            if byShape[key] == nil { order.append(key) }
            if let q = try source.linear(weight: t.name, bias: nil, outFeatures: t.layout.rows, inFeatures: t.layout.columns) as? QuantizedLinear {
                byShape[key, default: []].append((t, q))
            }
        }
        let shapes = order.compactMap { byShape[$0]?.first }
        r.lines.append("")
        r.lines.append("(b) matrix × vector (decode), median (min–max); tensors of a shape are cycled so weights come from memory")
        var gemvRows: [[String]] = [["shape [out, in]", "storage", "tensors", "weight bytes", "µs", "GB/s", "% of bandwidth"]]
        var gemvJSON: [JSONValue] = []
        let cacheBytes = 64 << 20  // more than this machine's L2 + L3
        for key in order {
            guard let group = byShape[key], let (t, _) = group.first else { continue }
            let x = [Float](repeating: 0.5, count: t.layout.columns)
            var y = [Float](repeating: 0, count: t.layout.rows)
            let groupBytes = group.reduce(0) { $0 + $1.0.storedBytes }
            let passes = max(1, (256 << 20) / max(groupBytes, 1))
            func sweep() { for _ in 0..<passes { for (_, q) in group { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { q.apply(xp.baseAddress!, rows: 1, into: $0.baseAddress!) } } } } }
            sweep()  // warm-up: the first pass over mapped matrices pays their page faults
            let seconds = Stat((0..<runs).map { _ in time { sweep() } / Double(passes * group.count) })
            let gbs = seconds.map { Double(t.storedBytes) / $0 / 1e9 }
            let share = gbs.median / bw.median * 100
            let cached = groupBytes < cacheBytes
            gemvRows.append([formatShape([t.layout.rows, t.layout.columns]), t.type.description, "\(group.count)", formatBytes(t.storedBytes),
                             seconds.map { $0 * 1e6 }.text, gbs.text, String(format2: share) + (cached ? " (in cache)" : "")])
            gemvJSON.append(.object(JSONObject([("rows", .int(t.layout.rows)), ("cols", .int(t.layout.columns)), ("storage", .string(t.type.description)),
                                                ("tensors", .int(group.count)), ("bytes", .int(t.storedBytes)), ("seconds", seconds.json), ("gbs", gbs.json),
                                                ("percent_of_bandwidth", .double(share)), ("fits_in_cache", .bool(cached))])))
        }
        r.lines.append(contentsOf: alignColumns(gemvRows, rightAligned: [2, 3, 4, 5, 6]).map { "  " + $0 })
        r.object["gemv"] = .array(gemvJSON)

        // (c) GEMM at 64 and 512 rows against OpenBLAS on the same shapes (linear weights only).
        r.lines.append("")
        r.lines.append("(c) matrix × matrix (prefill), GFLOP/s as 2·M·N·K / time, median (min–max)")
        // The ceiling of the integer GEMMs: the int8 dot-product instruction from registers only,
        // on one core (so the share is per thread), 2 FLOP per multiply-add.
        let peak = Stat((0..<runs).map { _ in 2 * options.effectiveKernel.int8DotPeak(iterations: 20_000_000) / 1e9 })
        let perThreadPeak = peak.median
        if perThreadPeak > 0 {
            r.lines.append("  int8 dot-product peak of one core (\(options.effectiveKernel.rawValue), registers only): \(peak.text) GFLOP/s; "
                           + "% of peak below is against \(max(1, threads)) × that")
            r.object["int8_peak_gflops_per_core"] = peak.json
        }
        var gemmRows: [[String]] = [["shape [out, in]", "rows", "plmq", "OpenBLAS sgemm", "speed-up", "% of int8 peak"]]
        var gemmJSON: [JSONValue] = []
        for (t, q) in shapes where !t.name.contains("embed_tokens") && t.name != Component.lmHead {
            for m in [64, 512] {
                let x = (0..<(m * q.inFeatures)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 }
                var y = [Float](repeating: 0, count: m * q.outFeatures)
                let flops = 2.0 * Double(m) * Double(q.outFeatures) * Double(q.inFeatures)
                let ours = Stat((0..<runs).map { _ in
                    time { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { q.apply(xp.baseAddress!, rows: m, into: $0.baseAddress!) } } }
                }).map { flops / $0 / 1e9 }
                let dense = try DenseLinear(weight: FloatBuffer(count: q.outFeatures * q.inFeatures), bias: nil, outFeatures: q.outFeatures, inFeatures: q.inFeatures, threads: threads)
                let blas = Stat((0..<runs).map { _ in
                    time { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { dense.apply(xp.baseAddress!, rows: m, into: $0.baseAddress!) } } }
                }).map { flops / $0 / 1e9 }
                let share = perThreadPeak > 0 ? String(format2: ours.median / (perThreadPeak * Double(max(1, threads))) * 100) : "–"
                gemmRows.append([formatShape([q.outFeatures, q.inFeatures]), "\(m)", ours.text, blas.text, String(format2: ours.median / blas.median) + "×", share])
                gemmJSON.append(.object(JSONObject([("rows", .int(q.outFeatures)), ("cols", .int(q.inFeatures)), ("m", .int(m)),
                                                    ("plmq_gflops", ours.json), ("openblas_gflops", blas.json)])))
            }
        }
        r.lines.append(contentsOf: alignColumns(gemmRows, rightAligned: [1, 2, 3, 4, 5]).map { "  " + $0 })
        r.object["gemm"] = .array(gemmJSON)

        guard endToEnd else { return r }

        // (d) End to end.
        let model = try PerceptionLM.load(path, options: options)
        r.lines.append("")
        r.lines.append("(d) end to end, median (min–max); bandwidth re-measured before each decode run")
        let ours = try endToEndFigures(model, decodeBytes: decodeBytesPerToken(file))
        r.lines.append(contentsOf: ours.lines.map { "  " + $0 })
        r.object["end_to_end"] = .object(ours.json)
        if let compare {
            let reference = try PerceptionLM.load(compare, options: options)
            let fp32 = try endToEndFigures(reference, decodeBytes: nil)
            r.lines.append("  fp32 engine on \(compare) (OpenBLAS):")
            r.lines.append(contentsOf: fp32.lines.map { "    " + $0 })
            var ratios: [String] = []
            for (key, label) in [("prefill_64_tokens_per_s", "prefill 64"), ("prefill_512_tokens_per_s", "prefill 512"), ("decode_tokens_per_s", "decode")] {
                if let a = ours.medians[key], let b = fp32.medians[key] { ratios.append("\(label) \(String(format2: a / b))×") }
            }
            if let a = ours.medians["vision_seconds_per_tile"], let b = fp32.medians["vision_seconds_per_tile"] { ratios.append("vision \(String(format2: b / a))×") }
            r.lines.append("  speed-up over fp32: " + ratios.joined(separator: ", "))
            r.object["fp32_end_to_end"] = .object(fp32.json)
        }
        return r
    }

    struct Figures {
        var lines: [String] = []
        var json = JSONObject()
        var medians: [String: Double] = [:]
        mutating func add(_ key: String, _ stat: Stat, _ line: String) {
            lines.append(line)
            json[key] = stat.json
            medians[key] = stat.median
        }
    }

    func endToEndFigures(_ model: PerceptionLM, decodeBytes: Int?) throws -> Figures {
        var f = Figures()
        let config = model.config
        let special: Set<Int> = [config.imageTokenId, config.videoTokenId]
        let ids = (0..<600).map { i -> Int in
            var id = (i * 7919 + 13) % config.text.vocabSize
            while special.contains(id) { id = (id + 1) % config.text.vocabSize }
            return id
        }
        let repeats = max(1, runs / 2)
        _ = try model.forward(inputIds: Array(ids.prefix(64)), lastPositions: 1)  // warm-up: page faults, thread start
        for n in [64, 512] {
            let s = Stat(try (0..<repeats).map { _ in Double(n) / (try time { _ = try model.forward(inputIds: Array(ids.prefix(n)), lastPositions: 1) }) })
            f.add("prefill_\(n)_tokens_per_s", s, "prefill \(n) tokens: \(s.text) tokens/s")
        }
        var decodeRates: [Double] = [], ratios: [Double] = []
        for _ in 0..<repeats {
            let bandwidthNow = decodeBytes == nil ? 0 : Self.bandwidth(threads: threads)
            var stamps: [Double] = []
            _ = try model.generate(inputIds: Array(ids.prefix(16)), maxNewTokens: 65, stopTokens: []) { _ in stamps.append(monotonicSeconds()) }
            let rate = Double(stamps.count - 1) / (stamps.last! - stamps.first!)
            decodeRates.append(rate)
            if let decodeBytes { ratios.append(rate / (bandwidthNow / Double(decodeBytes))) }
        }
        let decode = Stat(decodeRates)
        if let decodeBytes {
            let ratio = Stat(ratios)
            f.add("decode_tokens_per_s", decode, "decode 64 tokens: \(decode.text) tokens/s; weights read per token \(formatBytes(decodeBytes)); "
                + "\(String(format2: ratio.median * 100))% of the bandwidth limit (bandwidth ÷ bytes per token)")
            f.json["decode_bytes_per_token"] = .int(decodeBytes)
            f.json["decode_fraction_of_bandwidth_limit"] = ratio.json
        } else {
            f.add("decode_tokens_per_s", decode, "decode 64 tokens: \(decode.text) tokens/s")
        }
        let v = config.vision
        let tile = try PixelTiles(count: 1, height: v.imageHeight, width: v.imageWidth,
                                  values: (0..<(3 * v.imageHeight * v.imageWidth)).map { Float(($0 * 31) % 255) / 127.5 - 1 })
        let vision = Stat(try (0..<repeats).map { _ in try time { _ = try model.encode(tile) } })
        f.add("vision_seconds_per_tile", vision, "vision tower + projector per \(v.imageHeight)-pixel tile: \(vision.text) s")
        return f
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

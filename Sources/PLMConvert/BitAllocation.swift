import PLMCore
import PLMCheckpoint
import PLMQuant

/// `plmq convert --target-bpw X`: spends a bit budget where it buys the most. Every linear weight
/// the recipe would store at int4 is a candidate for int8; each candidate's cost at either type
/// is predicted from the calibration statistics, and the candidates are raised to int8 in order
/// of predicted error removed per extra byte while the whole file's weights stay within X bits
/// per weight.
///
/// The predicted error of a tensor at a type is Σ_rows Σ_j E[x_j²] (w_ij − ŵ_ij)²: the expected
/// squared error of the layer's output per token, with the weights quantized exactly as the
/// conversion will (importance-weighted search) and E[x_j²] the calibration's mean x².
///
/// The choice takes a prefix of the ordered candidates (it stops at the first that does not
/// fit), so a larger target never raises fewer tensors: achieved bits per weight grow and the
/// predicted error falls monotonically with the target.
public struct BitAllocation: Sendable {
    public struct Candidate: Sendable, Equatable {
        public let name: String
        public let low: StorageType
        public let high: StorageType
        public let lowBytes: Int
        public let highBytes: Int
        /// Predicted error at each type (expected squared output error per token).
        public let lowError: Double
        public let highError: Double

        public init(name: String, low: StorageType, high: StorageType, lowBytes: Int, highBytes: Int, lowError: Double, highError: Double) {
            self.name = name
            self.low = low
            self.high = high
            self.lowBytes = lowBytes
            self.highBytes = highBytes
            self.lowError = lowError
            self.highError = highError
        }

        var gain: Double { max(0, lowError - highError) }
        var extraBytes: Int { highBytes - lowBytes }
    }

    /// What the measuring pass found: the candidates and everything that is not one.
    public struct Measurement: Sendable {
        public let candidates: [Candidate]
        /// Stored bytes of every other tensor (exact, fixed by the recipe or --keep, or without statistics).
        public let fixedBytes: Int
        /// Parameters of every stored tensor.
        public let parameters: Int
        /// Linear weights the recipe stores at int4 that calibration never ran (kept at int4).
        public let unmeasured: [String]

        public init(candidates: [Candidate], fixedBytes: Int, parameters: Int, unmeasured: [String]) {
            self.candidates = candidates
            self.fixedBytes = fixedBytes
            self.parameters = parameters
            self.unmeasured = unmeasured
        }
    }

    public let target: Double
    public let measurement: Measurement
    /// Names of the candidates raised to int8, in the order they were chosen.
    public let raised: [String]

    public var storedBytes: Int {
        let set = Set(raised)
        return measurement.fixedBytes + measurement.candidates.reduce(0) { $0 + (set.contains($1.name) ? $1.highBytes : $1.lowBytes) }
    }

    public var bitsPerWeight: Double { Double(8 * storedBytes) / Double(max(measurement.parameters, 1)) }
    /// Predicted error of the plan, and with every candidate at int4.
    public var predictedError: Double {
        let set = Set(raised)
        return measurement.candidates.reduce(0) { $0 + (set.contains($1.name) ? $1.highError : $1.lowError) }
    }
    public var baselineError: Double { measurement.candidates.reduce(0) { $0 + $1.lowError } }

    /// Chooses for `target` bits per weight. A target below the all-int4 plan is an error.
    public static func choose(target: Double, measurement m: Measurement) throws(ConversionError) -> BitAllocation {
        guard target.isFinite, target > 0 else { throw .badOption("--target-bpw \(target): expected a positive number of bits per weight") }
        let budget = (target * Double(m.parameters) / 8).rounded(.down)
        let base = m.fixedBytes + m.candidates.reduce(0) { $0 + $1.lowBytes }
        guard Double(base) <= budget else {
            let floor = Double(8 * base) / Double(max(m.parameters, 1))
            throw .badOption("--target-bpw \(target): the smallest plan (every candidate at int4) takes \(formatted(floor)) bits per weight")
        }
        // Error removed per extra byte, largest first; ties in plan order (stable sort), so the
        // order depends on the measurements only.
        let ordered = m.candidates.enumerated().filter { $0.element.gain > 0 && $0.element.extraBytes > 0 }.sorted { a, b in
            let ra = a.element.gain / Double(a.element.extraBytes), rb = b.element.gain / Double(b.element.extraBytes)
            return ra != rb ? ra > rb : a.offset < b.offset
        }
        var used = Double(base), raised: [String] = []
        for (_, c) in ordered {
            guard used + Double(c.extraBytes) <= budget else { break }
            used += Double(c.extraBytes)
            raised.append(c.name)
        }
        return BitAllocation(target: target, measurement: m, raised: raised)
    }

    /// Measures every candidate of `options` on `folder`: the plan of the int4 recipe, each
    /// linear weight it stores at its default int4 type quantized at that type and at int8 with
    /// the calibration's weights. Needs calibration statistics.
    public static func measure(folder: CheckpointFolder, options: ConversionOptions,
                               progress: (Int, Int) -> Void = { _, _ in }) throws(ConversionError) -> Measurement {
        guard let calibration = options.calibration else {
            throw .badOption("--target-bpw needs --calibrate: the predicted errors are weighted by the calibration's activations")
        }
        var low = options
        low.bits = 4
        let plan = try ConversionPlan(folder: folder, options: low)
        let high = StorageType.int8(.symmetric, groupSize: options.groupSize)
        var candidates: [Candidate] = [], unmeasured: [String] = []
        var fixed = 0
        for (i, t) in plan.tensors.enumerated() {
            defer { progress(i + 1, plan.tensors.count) }
            guard t.type == low.linearType, t.reason.isEmpty else { fixed += t.layout.totalBytes; continue }
            guard let weights = try calibration.checkedWeights(t.name, columns: t.layout.columns),
                  let scale = calibration.activationScale(t.name) else {
                fixed += t.layout.totalBytes
                unmeasured.append(t.name)
                continue
            }
            let view: TensorView
            do { view = try folder.weights.view(t.name) } catch { throw .checkpoint(error) }
            func error(_ type: StorageType) throws(ConversionError) -> Double {
                try Converter.quantize(view, layout: StorageLayout(shape: t.shape, type: type), threads: options.threads,
                                       importance: weights, allowNonfinite: options.allowNonfinite).weightedSSE * scale
            }
            let highLayout = StorageLayout(shape: t.shape, type: high)
            candidates.append(Candidate(name: t.name, low: t.type, high: high, lowBytes: t.layout.totalBytes, highBytes: highLayout.totalBytes,
                                        lowError: try error(t.type), highError: try error(high)))
            view.file.dropPages(view.bytes)
        }
        return Measurement(candidates: candidates, fixedBytes: fixed, parameters: plan.parameters, unmeasured: unmeasured)
    }

    /// The types the plan takes from this allocation (tensors not listed keep the recipe's).
    var overrides: [String: (StorageType, String)] {
        var out: [String: (StorageType, String)] = [:]
        for c in measurement.candidates where raised.contains(c.name) {
            let removed = c.lowError > 0 ? 100 * c.gain / c.lowError : 0
            out[c.name] = (c.high, "--target-bpw \(Self.formatted(target)): int8 removes \(Self.formatted(removed)) % of its predicted error")
        }
        return out
    }

    /// The `target_bpw` record of the file's metadata (Formats/PLM.md).
    var json: JSONValue {
        .object(JSONObject([
            ("target", .number(Self.formatted(target))),
            ("achieved", .number(Self.formatted(bitsPerWeight))),
            ("predicted_error", .number(Converter.format(predictedError))),
            ("all_low_error", .number(Converter.format(baselineError))),
            ("proxy", .string("sum over rows and columns of mean x² (calibration) × (w − ŵ)²")),
            ("candidates", .int(measurement.candidates.count)),
            ("raised", .array(raised.map { .string($0) })),
            ("unmeasured", .array(measurement.unmeasured.map { .string($0) })),
        ]))
    }

    /// Four decimals, for messages and metadata.
    static func formatted(_ x: Double) -> String {
        let scaled = (x * 10_000).rounded()
        guard scaled.isFinite, abs(scaled) < 1e15 else { return "\(x)" }
        let v = Int(scaled), sign = v < 0 ? "-" : "", a = abs(v)
        return "\(sign)\(a / 10_000).\(String(a % 10_000).leftPadded(4))"
    }
}

import PLMCore
import PLMCheckpoint
import PLMQuant

/// A `--keep REGEX=TYPE` override: tensors whose name matches REGEX (searched, not anchored) get
/// TYPE; `exact` keeps the source dtype.
public struct KeepRule: Sendable, CustomStringConvertible {
    public let pattern: String
    public let target: Target
    public enum Target: Sendable, Equatable {
        case exact, type(StorageType)
        var storage: StorageType? { if case .type(let t) = self { return t } else { return nil } }
    }

    public var description: String {
        switch target {
        case .exact: return "\(pattern)=exact"
        case .type(let t): return "\(pattern)=\(t)"
        }
    }

    public init(pattern: String, target: Target) {
        self.pattern = pattern
        self.target = target
    }

    /// Parses `REGEX=TYPE`; the type may omit the group size (the default group then applies).
    public static func parse(_ text: String, defaultGroupSize: Int) throws(ConversionError) -> KeepRule {
        guard let eq = text.lastIndex(of: "=") else { throw .badOption("--keep \(text): expected REGEX=TYPE") }
        let pattern = String(text[..<eq]), typeName = String(text[text.index(after: eq)...])
        do { _ = try Regex(pattern) } catch { throw .badOption("--keep \(text): invalid regular expression: \(error)") }
        if typeName == "exact" { return KeepRule(pattern: pattern, target: .exact) }
        guard let type = StorageType.parse(typeName, defaultGroupSize: defaultGroupSize) else {
            throw .badOption("--keep \(text): unknown type '\(typeName)' (f32, f16, bf16, exact, int8[-sym|-asym][-gN], int4[-sym|-asym][-k6|-f16][-gN])")
        }
        return KeepRule(pattern: pattern, target: .type(type))
    }

    /// `parse` has checked that the pattern compiles; a rule built directly with a pattern that
    /// does not compile matches nothing (documented and tested in PLMFormatTests).
    func matches(_ name: String) -> Bool {
        do { return name.contains(try Regex(pattern)) } catch { return false }
    }
}

/// Named recipes: the default types of the tensor classes.
public enum Recipe: String, Sendable, CaseIterable {
    /// Every linear weight at --bits; the token embedding and an lm_head at int8 when --bits is 4.
    case standard
    /// Like standard, but the vision tower and projector at int8 (the tower is ~19 % of PLM-1B).
    case vision8

    public var summary: String {
        switch self {
        case .standard: return "linear weights at --bits; token embedding and lm_head at int8 with --bits 4; norms, biases, scales, position embeddings exact"
        case .vision8: return "as standard, with the vision tower and projector at int8"
        }
    }
}

public enum ConversionError: Error, CustomStringConvertible {
    case badOption(String)
    /// Calibration statistics that do not fit the checkpoint (another model's).
    case calibration(String)
    case checkpoint(CheckpointError)
    case output(FileAccessError)
    case unsupportedTensor(name: String, detail: String)
    /// A NaN or ±Inf weight (refused unless `allowNonfinite`): the weight file, the tensor, the
    /// row-major index of the first such element and its value.
    case nonFinite(file: String, tensor: String, index: [Int], value: Float)

    public var description: String {
        switch self {
        case .badOption(let d): return d
        case .calibration(let d): return "calibration: \(d)"
        case .checkpoint(let e): return e.description
        case .output(let e): return e.description
        case .unsupportedTensor(let n, let d): return "tensor '\(n)': \(d)"
        case .nonFinite(let f, let t, let i, let v):
            return "\(f): tensor '\(t)' holds \(v) at index \(formatShape(i)) (a damaged or diverged checkpoint?); "
                + "pass --allow-nonfinite to convert it anyway (outputs that read it become NaN)"
        }
    }
}

/// What `plmq convert` was asked for.
public struct ConversionOptions: Sendable {
    public var bits: Int = 4
    public var groupSize: Int = 32
    public var scheme: QuantScheme?
    public var recipe: Recipe = .standard
    public var keep: [KeepRule] = []
    public var compress = false
    public var threads = 1
    /// Convert tensors holding NaN or ±Inf instead of refusing them: exact tensors keep the
    /// values, quantized groups holding one are stored as NaN (see `RowQuantizer.nonFiniteMarker`).
    public var allowNonfinite = false
    /// Calibration statistics (`--calibrate`): the scale searches weigh each column's error by them.
    public var calibration: ColumnImportance?

    public init() {}

    /// The type of ordinary linear weights.
    public var linearType: StorageType {
        bits == 8 ? .int8(scheme ?? .symmetric, groupSize: groupSize)
                  : .int4(scheme ?? .asymmetric, groupSize: groupSize, scales: (scheme ?? .asymmetric) == .asymmetric ? .k6 : .f16)
    }

    /// The type of the token embedding and lm_head: int8 keeps the head's logits close at a small
    /// cost (measured in CHANGELOG / Formats/PLM.md).
    public var embeddingType: StorageType { .int8(.symmetric, groupSize: groupSize) }

    /// The options recorded in the file's metadata (those that change the output).
    var json: JSONValue {
        .object(JSONObject([
            ("bits", .int(bits)), ("group_size", .int(groupSize)), ("scheme", scheme.map { .string($0.rawValue) } ?? .null),
            ("recipe", .string(recipe.rawValue)), ("keep", .array(keep.map { .string($0.description) })),
            ("compress", .bool(compress)),
        ] + (allowNonfinite ? [("allow_nonfinite", .bool(true))] : [])))
    }
}

/// Decides the storage of each tensor, with the reason for every exception.
struct Policy {
    let options: ConversionOptions
    /// Types chosen by a `--target-bpw` allocation, with their reasons (after --keep rules).
    let overrides: [String: (StorageType, String)]
    /// Indices of the --keep rules that applied to at least one tensor.
    private(set) var used: Set<Int> = []

    init(options: ConversionOptions, overrides: [String: (StorageType, String)] = [:]) {
        self.options = options
        self.overrides = overrides
    }

    /// A rule that applied to nothing is almost always a typo: say so instead of ignoring it.
    func checkAllRulesUsed() throws(ConversionError) {
        for (i, rule) in options.keep.enumerated() where !used.contains(i) {
            throw .badOption("--keep \(rule) matches no tensor it can apply to (quantized types apply to matrices only)")
        }
    }

    mutating func decide(name: String, shape: [Int], source: TensorDType) throws(ConversionError) -> (StorageType, String) {
        let exact: StorageType
        switch source {
        case .f32: exact = .f32
        case .f16: exact = .f16
        case .bf16: exact = .bf16
        default: throw .unsupportedTensor(name: name, detail: "dtype \(source.rawValue) is not a float type plmq can store")
        }
        // A rule with a quantized type applies to matrices only: `vision_tower=int8` leaves the
        // tower's norms and biases exact instead of failing on them.
        if let index = options.keep.firstIndex(where: { rule in
            rule.matches(name) && (shape.count >= 2 || !(rule.target.storage?.isQuantized ?? false))
        }) {
            used.insert(index)
            let rule = options.keep[index]
            switch rule.target {
            case .exact: return (exact, "--keep \(rule)")
            case .type(let t): return (t, "--keep \(rule)")
            }
        }
        if let chosen = overrides[name] { return chosen }
        if shape.count < 2 { return (exact, "1-D (norm, bias or layer scale): kept exact") }
        if name.hasSuffix("pos_embed") { return (exact, "position embedding: kept exact") }
        if name.hasSuffix("cls_token") { return (exact, "class token: kept exact") }
        let isEmbedding = name == Component.languagePrefix + "embed_tokens.weight" || name == Component.lmHead
        if isEmbedding && options.bits == 4 { return (options.embeddingType, "token embedding / lm_head: int8 at --bits 4") }
        let component = Component.of(name)
        if options.recipe == .vision8 && options.bits == 4 && (component == .visionTower || component == .projector) {
            return (.int8(.symmetric, groupSize: options.groupSize), "recipe vision8: vision tower and projector at int8")
        }
        return (options.linearType, "")
    }
}

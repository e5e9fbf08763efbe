/// Symmetric: w = s·q. Asymmetric: w = s·q + m.
public enum QuantScheme: String, Sendable, Hashable, CaseIterable {
    case symmetric
    case asymmetric
}

/// How group scales are stored: one f16 per group, or `k6` two-level (6-bit indices under an
/// f16 super-scale per 8 groups; see Formats/PLM.md).
public enum ScaleFormat: String, Sendable, Hashable, CaseIterable {
    case f16
    case k6
}

/// How one tensor is stored in a `.plm` file.
public enum StorageType: Sendable, Hashable, CustomStringConvertible {
    case f32
    case f16
    case bf16
    case int8(QuantScheme, groupSize: Int)
    case int4(QuantScheme, groupSize: Int, scales: ScaleFormat)

    public static let groupSizes = [32, 64, 128]

    public var isQuantized: Bool {
        switch self {
        case .f32, .f16, .bf16: return false
        case .int8, .int4: return true
        }
    }

    public var groupSize: Int? {
        switch self {
        case .int8(_, let g), .int4(_, let g, _): return g
        default: return nil
        }
    }

    public var scheme: QuantScheme? {
        switch self {
        case .int8(let s, _), .int4(let s, _, _): return s
        default: return nil
        }
    }

    public var scaleFormat: ScaleFormat? {
        switch self {
        case .int8: return .f16
        case .int4(_, _, let f): return f
        default: return nil
        }
    }

    /// The name used on the command line and in listings: `bf16`, `int8-sym-g32`,
    /// `int4-asym-k6-g32` (two-level scales), `int4-asym-f16-g64` (one f16 scale and min per group).
    public var description: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case .int8(let s, let g): return "int8-\(s.shortName)-g\(g)"
        case .int4(.symmetric, let g, _): return "int4-sym-g\(g)"
        case .int4(.asymmetric, let g, let f): return "int4-asym-\(f.rawValue)-g\(g)"
        }
    }

    /// The storage field of a `.plm` tensor entry.
    public var storageName: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case .int8: return "int8"
        case .int4: return "int4"
        }
    }

    /// Parses a type name. Parts may be omitted and come from `defaults`: `int4` takes the default
    /// scheme and group; `int8-asym`, `int4-g64`, `int4-sym-g128`, `int4-asym-f16-g32` are explicit.
    public static func parse(_ text: String, defaultGroupSize: Int = 32) -> StorageType? {
        let parts = text.lowercased().split(separator: "-").map(String.init)
        guard let head = parts.first else { return nil }
        switch head {
        case "f32": return parts.count == 1 ? .f32 : nil
        case "f16": return parts.count == 1 ? .f16 : nil
        case "bf16": return parts.count == 1 ? .bf16 : nil
        case "int8", "int4": break
        default: return nil
        }
        var scheme: QuantScheme?
        var scales: ScaleFormat?
        var group = defaultGroupSize
        for p in parts.dropFirst() {
            switch p {
            case "sym", "symmetric": scheme = .symmetric
            case "asym", "asymmetric": scheme = .asymmetric
            case "k6": scales = .k6
            case "f16": scales = .f16
            case _ where p.hasPrefix("g"):
                guard let g = Int(p.dropFirst()), groupSizes.contains(g) else { return nil }
                group = g
            default: return nil
            }
        }
        if head == "int8" {
            guard scales != .k6 else { return nil }
            return .int8(scheme ?? .symmetric, groupSize: group)
        }
        let s = scheme ?? .asymmetric
        let f = scales ?? (s == .asymmetric ? .k6 : .f16)
        guard !(s == .symmetric && f == .k6) else { return nil }  // k6 stores a min; symmetric has none
        return .int4(s, groupSize: group, scales: f)
    }
}

extension QuantScheme {
    var shortName: String { self == .symmetric ? "sym" : "asym" }
}

/// Byte sizes of the parts of a tensor in a given storage type.
public struct StorageLayout: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public let type: StorageType

    public init(shape: [Int], type: StorageType) {
        self.type = type
        if type.isQuantized {
            // A weight [out, in...] multiplies inputs flattened over all but the first dimension
            // (the patch-embedding conv [D, 3, 14, 14] is a [D, 588] matrix).
            precondition(shape.count >= 2, "quantized tensors are 2-D or more (rows × K)")
            rows = shape[0]
            // Unchecked products are safe here: every reader checks a shape before it builds a
            // layout (PLMSpec.maxElements; safetensors byte ranges), and PLMQuant has no inputs.
            columns = shape.dropFirst().reduce(1, *)
        } else {
            rows = 1
            columns = shape.reduce(1, *)
        }
    }

    public var elementCount: Int { rows * columns }
    public var groupsPerRow: Int { type.groupSize.map { (columns + $0 - 1) / $0 } ?? 0 }
    public var superBlocksPerRow: Int { (groupsPerRow + 7) / 8 }

    /// Length of group `i` of a row (the last one may be short).
    public func groupLength(_ i: Int) -> Int {
        let g = type.groupSize!
        return min(g, columns - i * g)
    }

    public var dataBytesPerRow: Int {
        switch type {
        case .f32: return 4 * columns
        case .f16, .bf16: return 2 * columns
        case .int8: return columns
        case .int4:
            // Each group packs ceil(n/2) bytes.
            let g = type.groupSize!
            let full = columns / g, tail = columns % g
            return full * (g / 2) + (tail + 1) / 2
        }
    }

    public var scaleBytesPerRow: Int {
        switch type {
        case .int8: return 2 * groupsPerRow
        case .int4(_, _, .f16): return 2 * groupsPerRow
        case .int4(_, _, .k6): return 16 * superBlocksPerRow
        default: return 0
        }
    }

    public var minBytesPerRow: Int {
        switch type {
        case .int8(.asymmetric, _), .int4(.asymmetric, _, .f16): return 2 * groupsPerRow
        default: return 0
        }
    }

    public var dataBytes: Int { rows * dataBytesPerRow }
    public var scaleBytes: Int { rows * scaleBytesPerRow }
    public var minBytes: Int { rows * minBytesPerRow }
    public var totalBytes: Int { dataBytes + scaleBytes + minBytes }
    public var bitsPerWeight: Double { elementCount == 0 ? 0 : Double(8 * totalBytes) / Double(elementCount) }

    /// Part names in file order, with their lengths.
    public var parts: [(name: String, bytes: Int)] {
        var out = [("data", dataBytes)]
        if scaleBytes > 0 { out.append(("scales", scaleBytes)) }
        if minBytes > 0 { out.append(("mins", minBytes)) }
        return out
    }
}

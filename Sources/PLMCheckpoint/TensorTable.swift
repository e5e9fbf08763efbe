import PLMCore
/// Counts and a compact grouped listing of a set of stored tensors, for `plmq inspect`.
public struct TensorTable: Sendable {
    /// Tensors that differ only in their layer/block index, folded into one row.
    public struct Group: Sendable, Equatable {
        /// The name with each folded index written as `{0..15}` (or `{0,2,7}` when not a run).
        public let pattern: String
        public let shape: [Int]
        public let storage: String
        public let count: Int
        public let parameters: Int
        public let bytes: Int
        public let component: Component
    }

    public struct Totals: Sendable, Equatable {
        public var tensors = 0
        public var parameters = 0
        public var bytes = 0

        mutating func add(parameters: Int, bytes: Int) {
            tensors += 1
            self.parameters += parameters
            self.bytes += bytes
        }
    }

    public let groups: [Group]
    public let byComponent: [Component: Totals]
    public let byStorage: [String: Totals]
    public let total: Totals

    /// - Parameter entries: (name, shape, storage type name, stored bytes), in file order.
    public init(entries: [(name: String, shape: [Int], storage: String, bytes: Int)]) {
        struct Key: Hashable { let pattern: String; let shape: [Int]; let storage: String }
        var order: [Key] = []
        var indices: [Key: [[Int]]] = [:]
        var sums: [Key: (params: Int, bytes: Int, component: Component)] = [:]
        var byComponent: [Component: Totals] = [:]
        var byStorage: [String: Totals] = [:]
        var total = Totals()
        for e in entries {
            let (pattern, numbers) = Self.fold(e.name)
            let key = Key(pattern: pattern, shape: e.shape, storage: e.storage)
            if indices[key] == nil { order.append(key); indices[key] = [] }
            indices[key]!.append(numbers)
            let params = Checked.product(of: e.shape) ?? 0  // readers checked the shapes
            let component = Component.of(e.name)
            let s = sums[key] ?? (0, 0, component)
            sums[key] = (s.params + params, s.bytes + e.bytes, component)
            total.add(parameters: params, bytes: e.bytes)
            byComponent[component, default: Totals()].add(parameters: params, bytes: e.bytes)
            byStorage[e.storage, default: Totals()].add(parameters: params, bytes: e.bytes)
        }
        groups = order.map { key in
            let s = sums[key]!
            let list = indices[key]!
            return Group(pattern: Self.render(pattern: key.pattern, indices: list), shape: key.shape, storage: key.storage,
                         count: list.count, parameters: s.params, bytes: s.bytes, component: s.component)
        }
        self.byComponent = byComponent
        self.byStorage = byStorage
        self.total = total
    }

    /// The group pattern a tensor name falls in.
    public static func groupPattern(_ name: String, in table: TensorTable) -> String {
        let (pattern, numbers) = fold(name)
        return table.groups.first { g in
            render(pattern: pattern, indices: [numbers]) == g.pattern || matches(g.pattern, pattern: pattern, numbers: numbers)
        }?.pattern ?? name
    }

    private static func matches(_ rendered: String, pattern: String, numbers: [Int]) -> Bool {
        // Compare segment by segment: a folded segment "{a..b}" or "{a,b}" accepts its numbers.
        let r = rendered.split(separator: ".", omittingEmptySubsequences: false)
        let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
        guard r.count == p.count else { return false }
        var k = 0
        for (rs, ps) in zip(r, p) {
            if ps == "\u{0}" {
                let n = numbers[k]; k += 1
                if rs == Substring(String(n)) { continue }
                guard rs.hasPrefix("{") else { return false }
                let body = rs.dropFirst().dropLast()
                if let range = body.firstRange(of: "..") {
                    guard let lo = Int(body[..<range.lowerBound]), let hi = Int(body[range.upperBound...]), (lo...hi).contains(n) else { return false }
                } else if !body.split(separator: ",").contains(Substring(String(n))) {
                    return false
                }
            } else if rs != ps {
                return false
            }
        }
        return true
    }

    /// Replaces each all-digit dotted segment by a placeholder and returns the numbers found.
    static func fold(_ name: String) -> (String, [Int]) {
        var numbers: [Int] = []
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map { part -> String in
            if !part.isEmpty, part.allSatisfy(\.isASCII), let n = Int(part), String(n) == part {
                numbers.append(n)
                return "\u{0}"
            }
            return String(part)
        }
        return (parts.joined(separator: "."), numbers)
    }

    static func render(pattern: String, indices: [[Int]]) -> String {
        var result = ""
        var slot = 0
        for ch in pattern {
            guard ch == "\u{0}" else { result.append(ch); continue }
            let values = Array(Set(indices.map { $0[slot] })).sorted()
            slot += 1
            if values.count == 1 {
                result += String(values[0])
            } else if values.count >= 3, values.last! - values.first! + 1 == values.count {
                result += "{\(values.first!)..\(values.last!)}"
            } else {
                result += "{" + values.map(String.init).joined(separator: ",") + "}"
            }
        }
        return result
    }
}


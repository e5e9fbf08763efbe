// `json.dumps` as transformers' `tojson` filter calls it (ensure_ascii=False by default, Python's
// separators `', '` and `': '`, or `','` and `': '` with an indent), so tool schemas and
// arguments render byte for byte as in Python.

struct JSONDumpError: Error {
    var message: String
    var isLimit = false
}

struct JSONDump {
    struct Options {
        var indent: String? = nil
        var itemSeparator = ", "
        var keySeparator = ": "
        var sortKeys = false
        var ensureASCII = false
    }

    let options: Options
    let limit: Int
    private(set) var out = ""
    /// Deeper than this is refused (a namespace can contain itself; Python reports a circular reference).
    static let maxDepth = 128

    init(options: Options, limit: Int) {
        self.options = options
        self.limit = limit
    }

    private func newline(_ depth: Int) -> String {
        guard let indent = options.indent else { return "" }
        return "\n" + String(repeating: indent, count: depth)
    }

    mutating func write(_ v: Value, depth: Int) throws(JSONDumpError) {
        guard depth < JSONDump.maxDepth else { throw JSONDumpError(message: "Circular reference detected (or nesting deeper than \(JSONDump.maxDepth))") }
        if out.utf8.count > limit { throw JSONDumpError(message: "tojson output exceeds \(limit) bytes", isLimit: true) }
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .float(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else { out += PythonText.floatRepr(d) }
        case .string(let s): writeString(s)
        case .list(let items), .tuple(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (k, item) in items.enumerated() {
                if k > 0 { out += options.itemSeparator }
                out += newline(depth + 1)
                try write(item, depth: depth + 1)
            }
            out += newline(depth) + "]"
        case .dict(let d):
            try writeObject(d, depth: depth)
        default:
            throw JSONDumpError(message: "Object of type \(v.typeName) is not JSON serializable")
        }
    }

    private mutating func writeObject(_ d: PyDict, depth: Int) throws(JSONDumpError) {
        if d.count == 0 { out += "{}"; return }
        var entries: [(key: String, value: Value)] = []
        for (k, v) in d.items {
            // Python converts these key types to strings; anything else is a TypeError.
            switch k {
            case .string(let s): entries.append((s, v))
            case .int(let i): entries.append((String(i), v))
            case .bool(let b): entries.append((b ? "true" : "false", v))
            case .none: entries.append(("null", v))
            case .float(let x): entries.append((x.isNaN ? "NaN" : x.isInfinite ? (x < 0 ? "-Infinity" : "Infinity") : PythonText.floatRepr(x), v))
            default: throw JSONDumpError(message: "keys must be str, int, float, bool or None, not \(k.typeName)")
            }
        }
        if options.sortKeys {
            // Python sorts the original keys; with mixed key types that is a TypeError.
            let kinds = Set(d.keys.map { $0.typeName == "bool" ? "int" : $0.typeName })
            guard kinds.count <= 1 || kinds == ["int", "float"] else { throw JSONDumpError(message: "'<' not supported between the dict's key types") }
            if kinds == ["str"] {
                entries = stableSorted(entries) { PythonString.less($0.key, $1.key) }
            } else {
                let numeric = d.keys.map { $0.number?.double ?? 0 }
                let order = stableSorted(Array(entries.indices)) { numeric[$0] < numeric[$1] }
                entries = order.map { entries[$0] }
            }
        }
        out += "{"
        for (k, entry) in entries.enumerated() {
            if k > 0 { out += options.itemSeparator }
            out += newline(depth + 1)
            writeString(entry.key)
            out += options.keySeparator
            try write(entry.value, depth: depth + 1)
        }
        out += newline(depth) + "}"
    }

    private func stableSorted<T>(_ items: [T], _ less: (T, T) -> Bool) -> [T] {
        items.enumerated().sorted { a, b in less(a.element, b.element) || (!less(b.element, a.element) && a.offset < b.offset) }.map { $0.element }
    }

    private mutating func writeString(_ s: String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (options.ensureASCII && u.value >= 0x7F) {
                    if u.value > 0xFFFF {
                        // A UTF-16 surrogate pair, as Python writes it.
                        let v = u.value - 0x10000
                        out += "\\u" + PythonText.hex(0xD800 + (v >> 10), digits: 4) + "\\u" + PythonText.hex(0xDC00 + (v & 0x3FF), digits: 4)
                    } else {
                        out += "\\u" + PythonText.hex(u.value, digits: 4)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

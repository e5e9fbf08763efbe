// A small strict JSON reader and writer.
//
// Why not Foundation's JSONSerialization: safetensors headers and config files must be read
// strictly (duplicate keys are an error, not "last one wins"), numbers must keep their exact
// literal (offsets are u64, eps values must round like Python's float), and object key order
// matters for readable output. This parser does all three in ~250 lines.

/// A parsed JSON value. Objects keep their key order; numbers keep their literal text.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// The number as a Double (Python's `float()` of the literal), if this is a number.
    public var doubleValue: Double? {
        guard case .number(let literal) = self else { return nil }
        return Double(literal)
    }

    /// The number as an exact integer: the literal has no fraction or exponent (or an
    /// exponent/fraction that still yields an integral value that fits), else nil.
    public var int64Value: Int64? {
        guard case .number(let literal) = self else { return nil }
        if let exact = Int64(literal) { return exact }
        // Accept integral literals written as floats, e.g. "32.0" or "1e3", like Python's int(float).
        guard let d = Double(literal), d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int64(d)
    }

    public var intValue: Int? { int64Value.flatMap { Int(exactly: $0) } }

    /// A short name of the JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// A JSON object with its keys in file order and unique.
public struct JSONObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var values: [String: JSONValue] = [:]

    public init() {}

    public init(_ pairs: [(String, JSONValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JSONValue? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
    public var entries: [(key: String, value: JSONValue)] { keys.map { ($0, values[$0]!) } }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.keys == b.keys && a.values == b.values
    }
}

/// Where and why a JSON text could not be parsed.
public struct JSONParseError: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "\(reason) at byte \(offset)" }
}

public enum JSONParser {
    /// Parses a complete JSON text. Leading and trailing white space is allowed; anything else
    /// after the value is an error. Duplicate object keys are an error.
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 128) throws(JSONParseError) -> JSONValue {
        var p = Parser(bytes: bytes, maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        if p.pos != bytes.count { throw p.error("unexpected data after the JSON value") }
        return v
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        do {
            return try bytes.withUnsafeBytes { raw in try parse(raw) }
        } catch let e as JSONParseError {
            throw e
        } catch {
            throw JSONParseError(offset: 0, reason: "\(error)")
        }
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }
}

private struct Parser {
    let bytes: UnsafeRawBufferPointer
    let maxDepth: Int
    var pos = 0

    init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func error(_ reason: String) -> JSONParseError { JSONParseError(offset: pos, reason: reason) }

    var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    mutating func skipWhitespace() {
        while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 }
    }

    mutating func expect(_ literal: StaticString) throws(JSONParseError) {
        let n = literal.utf8CodeUnitCount
        guard pos + n <= bytes.count else { throw error("truncated literal") }
        for i in 0..<n where bytes[pos + i] != literal.utf8Start[i] {
            throw error("invalid literal")
        }
        pos += n
    }

    mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth)") }
        guard let c = peek else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return .object(try object(depth: depth))
        case UInt8(ascii: "["): return .array(try array(depth: depth))
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw error("unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
    }

    mutating func object(depth: Int) throws(JSONParseError) -> JSONObject {
        pos += 1  // {
        var obj = JSONObject()
        skipWhitespace()
        if peek == UInt8(ascii: "}") { pos += 1; return obj }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyStart = pos
            let key = try string()
            if obj[key] != nil {
                throw JSONParseError(offset: keyStart, reason: "duplicate key \"\(key)\"")
            }
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
            pos += 1
            skipWhitespace()
            obj[key] = try value(depth: depth + 1)
            skipWhitespace()
            guard let c = peek else { throw error("unterminated object") }
            pos += 1
            if c == UInt8(ascii: "}") { return obj }
            guard c == UInt8(ascii: ",") else { pos -= 1; throw error("expected ',' or '}'") }
        }
    }

    mutating func array(depth: Int) throws(JSONParseError) -> [JSONValue] {
        pos += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { pos += 1; return items }
        while true {
            skipWhitespace()
            items.append(try value(depth: depth + 1))
            skipWhitespace()
            guard let c = peek else { throw error("unterminated array") }
            pos += 1
            if c == UInt8(ascii: "]") { return items }
            guard c == UInt8(ascii: ",") else { pos -= 1; throw error("expected ',' or ']'") }
        }
    }

    mutating func number() throws(JSONParseError) -> String {
        let start = pos
        if peek == UInt8(ascii: "-") { pos += 1 }
        guard let first = peek, isDigit(first) else { throw error("invalid number") }
        if first == UInt8(ascii: "0") {
            pos += 1
            if let c = peek, isDigit(c) { throw error("leading zero in number") }
        } else {
            while let c = peek, isDigit(c) { pos += 1 }
        }
        if peek == UInt8(ascii: ".") {
            pos += 1
            guard let c = peek, isDigit(c) else { throw error("invalid fraction") }
            while let c = peek, isDigit(c) { pos += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            pos += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
            guard let c = peek, isDigit(c) else { throw error("invalid exponent") }
            while let c = peek, isDigit(c) { pos += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    }

    func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }


    mutating func string() throws(JSONParseError) -> String {
        pos += 1  // opening quote
        var out: [UInt8] = []
        do { try JSONStringLiteral.decode(bytes, at: &pos, into: &out) } catch { throw self.error(error.reason) }
        // Validate UTF-8 strictly: a header with invalid UTF-8 inside a string is malformed.
        guard let s = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in string") }
        return s
    }
}

/// The body of one JSON string literal, escapes decoded: the rule written once for the parser and
/// for the tokenizer's fast vocabulary reader (which decodes 9 MB of strings without a tree).
public enum JSONStringLiteral {
    /// What is wrong with a literal; the caller adds where.
    public struct Problem: Error, Equatable {
        public let reason: String
        @usableFromInline init(_ reason: String) { self.reason = reason }
    }

    /// Decodes from `pos` (the byte after the opening quote) up to and including the closing
    /// quote, appending the UTF-8 bytes to `out`. On an error `pos` is where it was found.
    @inlinable
    public static func decode(_ bytes: UnsafeRawBufferPointer, at pos: inout Int, into out: inout [UInt8]) throws(Problem) {
        var runStart = pos
        while true {
            guard pos < bytes.count else { throw Problem("unterminated string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<pos]))
                pos += 1
                return
            }
            if c < 0x20 { throw Problem("control character in string") }
            if c != UInt8(ascii: "\\") { pos += 1; continue }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<pos]))
            pos += 1
            guard pos < bytes.count else { throw Problem("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(bytes, at: &pos)
                if (0xD800...0xDBFF).contains(scalar) {
                    guard pos + 2 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw Problem("unpaired surrogate in \\u escape")
                    }
                    pos += 2
                    let low = try hex4(bytes, at: &pos)
                    guard (0xDC00...0xDFFF).contains(low) else { throw Problem("invalid low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw Problem("unpaired surrogate in \\u escape")
                }
                guard let u = Unicode.Scalar(scalar), let encoded = UTF8.encode(u) else { throw Problem("invalid code point") }
                out.append(contentsOf: encoded)
            default:
                throw Problem("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
            }
            runStart = pos
        }
    }

    @inlinable
    static func hex4(_ bytes: UnsafeRawBufferPointer, at pos: inout Int) throws(Problem) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw Problem("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw Problem("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }
}

// MARK: - Writing

extension JSONValue {
    /// Serialises the value. `pretty` indents with two spaces; keys keep their order.
    public func serialized(pretty: Bool = false) -> String {
        var out = ""
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(into out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                item.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let obj):
            if obj.count == 0 { out += "{}"; return }
            out += "{"
            for (i, (k, v)) in obj.entries.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.writeString(k, into: &out)
                out += pretty ? ": " : ":"
                v.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    /// `s` as a JSON string literal (quotes included, control characters escaped): for messages
    /// that quote a value exactly.
    public static func quoted(_ s: String) -> String {
        var out = ""
        writeString(s, into: &out)
        return out
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// Convenience constructors for writing.
    public static func int(_ v: Int) -> JSONValue { .number(String(v)) }
    public static func double(_ v: Double) -> JSONValue {
        v.isFinite ? .number(v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)") : .null
    }
}

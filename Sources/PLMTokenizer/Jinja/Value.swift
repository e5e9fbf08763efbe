// The values a chat template computes with, modelled on the Python objects Jinja sees when
// transformers renders a template: the messages are plain dicts, lists and strings, numbers are
// Python ints and floats, and printing a value is Python's `str()`. Matching those semantics is
// what makes the rendered prompt byte-identical (`{{ none }}` prints "None", a list prints its
// repr with single-quoted strings, `'é' == 'e\u0301'` is false, `len` counts code points).

/// A Jinja namespace (`namespace(value=0)`): the one mutable object a template can build.
/// Reference semantics on purpose, as in Python: `{% set ns.x = 1 %}` inside a loop is seen
/// after the loop.
final class NamespaceObject {
    var attributes: PyDict
    init(_ attributes: PyDict) { self.attributes = attributes }
}

/// What Jinja's `select`, `selectattr`, `map`, `unique`, `items` and `reverse` return: a Python
/// iterator. It is always true, has no length, and is used up by iterating it (a second loop
/// over it sees nothing), exactly as in Jinja, where `{% if xs|selectattr(…) %}` is always true.
final class GeneratorObject {
    var remaining: ArraySlice<Value>
    init(_ items: [Value]) { remaining = items[...] }

    func drain() -> [Value] {
        defer { remaining = [] }
        return Array(remaining)
    }

    func next() -> Value? { remaining.popFirst() }
}

/// The `loop` variable of a `for` block.
struct LoopState {
    var items: [Value]
    var index0: Int
    var depth0: Int
    var length: Int { items.count }
}

/// Something a template can call.
enum Callable {
    /// A global function (`raise_exception`, `strftime_now`, `namespace`, `dict`, `range`).
    case global(String)
    /// A method of a value (`'a b'.split`, `message.items`).
    case method(receiver: Value, name: String)
    /// `loop.cycle`.
    case loopCycle(LoopState)
    /// A `{% macro %}` of the template.
    case macro(MacroDefinition)
}

indirect enum Value {
    /// A name or attribute that does not exist. Printing it gives "", testing it gives false;
    /// using it (attribute, arithmetic, call) is an error naming `hint`.
    case undefined(hint: String)
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case list([Value])
    case tuple([Value])
    case dict(PyDict)
    case namespace(NamespaceObject)
    case loop(LoopState)
    case function(Callable)
    case generator(GeneratorObject)
    /// `dict.items()`, `.keys()`, `.values()`: iterable with a length, printed as
    /// `dict_items([…])`, not indexable.
    case view(kind: String, [Value])

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python's type name, for error messages that read like Python's.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .loop: return "LoopContext"
        case .function: return "function"
        case .generator: return "generator"
        case .view(let kind, _): return kind
        }
    }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .float(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let a), .tuple(let a), .view(_, let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .loop, .function, .generator: return true
        }
    }

    /// The value as a number for arithmetic (bool is an int in Python).
    var number: PyNumber? {
        switch self {
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let i): return .int(i)
        case .float(let d): return .float(d)
        default: return nil
        }
    }

    /// The value as an exact integer (int or bool), for indexes and counts.
    var integer: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }
}

enum PyNumber {
    case int(Int)
    case float(Double)
    var double: Double {
        switch self {
        case .int(let i): return Double(i)
        case .float(let d): return d
        }
    }
}

// MARK: - Dict

/// What Python hashes a dict key by. `True` and `1` (and `1.0`) are the same key, as in Python;
/// strings compare by code points (not by Swift's canonical equivalence).
enum HashKey: Hashable {
    case none
    case int(Int)
    case float(UInt64)
    case string([UInt8])
    case tuple([HashKey])

    init?(_ v: Value) {
        switch v {
        case .none: self = .none
        case .bool(let b): self = .int(b ? 1 : 0)
        case .int(let i): self = .int(i)
        case .float(let d):
            if d.rounded() == d, let i = Int(exactly: d) { self = .int(i) } else { self = .float(d.bitPattern) }
        case .string(let s): self = .string(Array(s.utf8))
        case .tuple(let items):
            var keys: [HashKey] = []
            for item in items {
                guard let k = HashKey(item) else { return nil }
                keys.append(k)
            }
            self = .tuple(keys)
        default: return nil
        }
    }
}

/// An insertion-ordered dict, like Python's.
struct PyDict {
    private(set) var keys: [Value] = []
    private(set) var values: [Value] = []
    private var index: [HashKey: Int] = [:]

    init() {}

    var count: Int { keys.count }

    subscript(key: HashKey) -> Value? {
        guard let i = index[key] else { return nil }
        return values[i]
    }

    subscript(name: String) -> Value? { self[.string(Array(name.utf8))] }

    /// Inserts or replaces; false if the key is not hashable.
    @discardableResult
    mutating func set(_ key: Value, _ value: Value) -> Bool {
        guard let h = HashKey(key) else { return false }
        if let i = index[h] {
            values[i] = value
        } else {
            index[h] = keys.count
            keys.append(key)
            values.append(value)
        }
        return true
    }

    mutating func set(_ name: String, _ value: Value) { set(.string(name), value) }

    var items: [(key: Value, value: Value)] { Array(zip(keys, values)).map { (key: $0.0, value: $0.1) } }
}

// MARK: - Python str() and repr()

enum PythonText {
    /// `str(v)` as Jinja prints it (`{{ v }}`, `~`, `|string`): undefined prints as "".
    static func str(_ v: Value) -> String {
        switch v {
        case .undefined: return ""
        case .string(let s): return s
        default:
            var out = ""
            repr(v, into: &out)
            return out
        }
    }

    static func repr(_ v: Value) -> String {
        var out = ""
        repr(v, into: &out)
        return out
    }

    static func repr(_ v: Value, into out: inout String) {
        switch v {
        case .undefined: out += "Undefined"
        case .none: out += "None"
        case .bool(let b): out += b ? "True" : "False"
        case .int(let i): out += String(i)
        case .float(let d): out += floatRepr(d)
        case .string(let s): stringRepr(s, into: &out)
        case .list(let items):
            out += "["
            for (k, item) in items.enumerated() {
                if k > 0 { out += ", " }
                repr(item, into: &out)
            }
            out += "]"
        case .tuple(let items):
            out += "("
            for (k, item) in items.enumerated() {
                if k > 0 { out += ", " }
                repr(item, into: &out)
            }
            out += items.count == 1 ? ",)" : ")"
        case .dict(let d):
            dictRepr(d, into: &out)
        case .namespace(let ns):
            out += "<Namespace "
            dictRepr(ns.attributes, into: &out)
            out += ">"
        case .loop(let l): out += "<LoopContext \(l.index0 + 1)/\(l.length)>"
        case .function: out += "<function>"
        case .generator: out += "<generator object>"
        case .view(let kind, let items):
            out += kind + "("
            repr(.list(items), into: &out)
            out += ")"
        }
    }

    private static func dictRepr(_ d: PyDict, into out: inout String) {
        out += "{"
        for (k, pair) in d.items.enumerated() {
            if k > 0 { out += ", " }
            repr(pair.key, into: &out)
            out += ": "
            repr(pair.value, into: &out)
        }
        out += "}"
    }

    /// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote;
    /// characters Python does not consider printable are escaped.
    static func stringRepr(_ s: String, into out: inout String) {
        var hasSingle = false, hasDouble = false
        for u in s.unicodeScalars {
            if u == "'" { hasSingle = true } else if u == "\"" { hasDouble = true }
        }
        let quote: Unicode.Scalar = hasSingle && !hasDouble ? "\"" : "'"
        out.unicodeScalars.append(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case quote: out += "\\"; out.unicodeScalars.append(u)
            default:
                if isPrintable(u) {
                    out.unicodeScalars.append(u)
                } else if u.value < 0x100 {
                    out += "\\x" + hex(u.value, digits: 2)
                } else if u.value < 0x10000 {
                    out += "\\u" + hex(u.value, digits: 4)
                } else {
                    out += "\\U" + hex(u.value, digits: 8)
                }
            }
        }
        out.unicodeScalars.append(quote)
    }

    /// Python's `str.isprintable` for one character: everything except the "Other" and
    /// "Separator" categories, with the ASCII space allowed.
    static func isPrintable(_ u: Unicode.Scalar) -> Bool {
        if u == " " { return true }
        switch u.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
            return false
        default:
            return true
        }
    }

    static func hex(_ v: UInt32, digits: Int) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: max(0, digits - h.count)) + h
    }

    /// Python's `repr(float)`: the shortest digits that round-trip (Swift finds the same ones),
    /// in fixed notation when the decimal exponent is in [-4, 16), else `d.ddde±XX`.
    static func floatRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description has the shortest round-trip digits; read them back as digits and
        // a decimal exponent, then lay them out as Python does.
        var text = "\(d.magnitude)"
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = String(text[..<e])
        }
        var digits = "", pointAt = 0, seenPoint = false
        for c in text {
            if c == "." { seenPoint = true; continue }
            digits.append(c)
            if !seenPoint { pointAt += 1 }
        }
        // Normalise: strip leading zeros (moving the point) and trailing zeros.
        while digits.count > 1, digits.first == "0" { digits.removeFirst(); pointAt -= 1 }
        while digits.count > 1, digits.last == "0" { digits.removeLast() }
        let decimalExponent = pointAt + exponent - 1  // value = 0.d1d2… × 10^(pointAt+exponent)
        let sign = d < 0 ? "-" : ""
        if decimalExponent >= -4 && decimalExponent < 16 {
            let point = decimalExponent + 1
            if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + digits }
            if point >= digits.count { return sign + digits + String(repeating: "0", count: point - digits.count) + ".0" }
            let i = digits.index(digits.startIndex, offsetBy: point)
            return sign + digits[..<i] + "." + digits[i...]
        }
        let mantissa = digits.count == 1 ? digits : String(digits.prefix(1)) + "." + digits.dropFirst()
        let expSign = decimalExponent < 0 ? "-" : "+"
        let expDigits = String(abs(decimalExponent))
        return sign + mantissa + "e" + expSign + (expDigits.count < 2 ? "0" + expDigits : expDigits)
    }
}

// MARK: - Python text helpers (code points, not Swift characters)

enum PythonString {
    /// `str.isspace` for one character (Python 3.11's table).
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    static func strip(_ s: String, chars: String?, left: Bool, right: Bool) -> String {
        let scalars = Array(s.unicodeScalars)
        let set = chars.map { Set($0.unicodeScalars) }
        func stripped(_ u: Unicode.Scalar) -> Bool { set.map { $0.contains(u) } ?? isSpace(u) }
        var lo = 0, hi = scalars.count
        if left { while lo < hi && stripped(scalars[lo]) { lo += 1 } }
        if right { while hi > lo && stripped(scalars[hi - 1]) { hi -= 1 } }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[lo..<hi])
        return String(out)
    }

    /// Byte offsets of `needle` in `haystack` (UTF-8 search finds exactly the code-point matches).
    static func find(_ haystack: [UInt8], _ needle: [UInt8], from start: Int = 0) -> Int? {
        if needle.isEmpty { return start <= haystack.count ? start : nil }
        guard haystack.count >= needle.count else { return nil }
        var i = start
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == needle[0] {
                var k = 1
                while k < needle.count && haystack[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    static func contains(_ haystack: String, _ needle: String) -> Bool {
        find(Array(haystack.utf8), Array(needle.utf8)) != nil
    }

    static func hasPrefix(_ s: String, _ p: String) -> Bool { s.utf8.starts(with: p.utf8) }
    static func hasSuffix(_ s: String, _ p: String) -> Bool { s.utf8.reversed().starts(with: p.utf8.reversed()) }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        let h = Array(s.utf8), o = Array(old.utf8), n = Array(new.utf8)
        var out: [UInt8] = []
        var pos = 0, done = 0
        if o.isEmpty {
            // Python inserts `new` between every character and at both ends.
            let scalars = Array(s.unicodeScalars)
            var result = ""
            for (k, u) in scalars.enumerated() {
                if count < 0 || k < count { result += new }
                result.unicodeScalars.append(u)
            }
            if count < 0 || scalars.count < count { result += new }
            return result
        }
        while count < 0 || done < count, let at = find(h, o, from: pos) {
            out.append(contentsOf: h[pos..<at])
            out.append(contentsOf: n)
            pos = at + o.count
            done += 1
        }
        out.append(contentsOf: h[pos...])
        return String(decoding: out, as: UTF8.self)
    }

    /// `str.split(sep, maxsplit)`; `sep == nil` splits on runs of white space.
    static func split(_ s: String, sep: String?, maxSplit: Int) -> [String] {
        guard let sep else {
            var parts: [String] = []
            var current = String.UnicodeScalarView()
            var inWord = false
            let scalars = Array(s.unicodeScalars)
            var i = 0
            while i < scalars.count {
                let u = scalars[i]
                if isSpace(u) {
                    if inWord {
                        parts.append(String(current))
                        current = String.UnicodeScalarView()
                        inWord = false
                        if maxSplit >= 0 && parts.count == maxSplit {
                            // The rest (leading white space removed) is the last part.
                            var j = i
                            while j < scalars.count && isSpace(scalars[j]) { j += 1 }
                            if j < scalars.count {
                                var rest = String.UnicodeScalarView()
                                rest.append(contentsOf: scalars[j...])
                                parts.append(String(rest))
                            }
                            return parts
                        }
                    }
                } else {
                    current.append(u)
                    inWord = true
                }
                i += 1
            }
            if inWord { parts.append(String(current)) }
            return parts
        }
        let h = Array(s.utf8), n = Array(sep.utf8)
        var parts: [String] = []
        var pos = 0
        while maxSplit < 0 || parts.count < maxSplit, let at = find(h, n, from: pos) {
            parts.append(String(decoding: h[pos..<at], as: UTF8.self))
            pos = at + n.count
        }
        parts.append(String(decoding: h[pos...], as: UTF8.self))
        return parts
    }

    /// Python's code-point order (Swift's `<` on String uses Unicode collation-like order).
    static func less(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value }
    }

    static func equal(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    static func characters(_ s: String) -> [Value] { s.unicodeScalars.map { .string(String($0)) } }

    static func length(_ s: String) -> Int { s.unicodeScalars.count }
}

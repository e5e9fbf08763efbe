import CZstd
import PLMCore
@testable import PLMTokenizer

/// Locates the committed fixtures (Tests/Fixtures) from this file's path.
enum Fixtures {
    static let root: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(2)  // PLMTokenizerTests/Fixtures.swift
        return parts.joined(separator: "/") + "/Fixtures"
    }()

    static func bytes(_ relative: String) throws -> [UInt8] {
        let file = try MappedFile(path: root + "/" + relative)
        let raw = Array(file.bytes)
        guard relative.hasSuffix(".zst") else { return raw }
        return try decompress(raw)
    }

    /// One zstd frame whose header states its size (the `zstd` tool writes it).
    static func decompress(_ input: [UInt8]) throws -> [UInt8] {
        let size = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard size < 64 << 20 else { throw FixtureError(message: "zstd frame without a usable content size") }
        var out = [UInt8](repeating: 0, count: Int(size))
        let n = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in ZSTD_decompress(dst.baseAddress, Int(size), src.baseAddress, src.count) }
        }
        guard ZSTD_isError(n) == 0, n == Int(size) else { throw FixtureError(message: "zstd decompression failed") }
        return out
    }

    static func json(_ relative: String) throws -> JSONValue { try JSONParser.parse(try bytes(relative)) }

    static func tokenizer(_ relative: String) throws -> Tokenizer {
        try Tokenizer(json: try bytes(relative), source: relative)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

extension JSONValue {
    var intArray: [Int] { (arrayValue ?? []).compactMap { $0.intValue } }
    subscript(_ key: String) -> JSONValue? { objectValue?[key] }
}

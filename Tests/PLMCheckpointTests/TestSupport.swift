import Foundation
import PLMCore
@testable import PLMCheckpoint

/// Paths to the committed transformers fixtures.
enum Fixtures {
    static let root: String = {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path
    }()
    static func model(_ variant: String) -> String { root + "/models/" + variant }
    static func cases(_ variant: String) -> String { root + "/cases/" + variant }
}

/// A scratch folder removed when the value goes away.
final class TemporaryFolder {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "plmq-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = path + "/" + name
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    @discardableResult
    func write(_ name: String, text: String) -> String { write(name, Array(text.utf8)) }

    func copy(from source: String, _ name: String) {
        try! FileManager.default.copyItem(atPath: source + "/" + name, toPath: path + "/" + name)
    }
}

/// Builds safetensors bytes from a literal header and a data section.
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = declaredLength ?? UInt64(h.count)
    return withUnsafeBytes(of: n.littleEndian, Array.init) + h + data
}

/// The problem a safetensors file is rejected with, or nil if it is accepted.
func safetensorsProblem(_ bytes: [UInt8]) -> SafetensorsProblem? {
    let folder = TemporaryFolder()
    let path = folder.write("t.safetensors", bytes)
    do {
        _ = try SafetensorsFile(path: path)
        return nil
    } catch {
        if case .safetensors(let e) = error {
            precondition(e.file == path)
            return e.problem
        }
        return nil
    }
}

func floatBytes(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
func u16Bytes(_ values: [UInt16]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }

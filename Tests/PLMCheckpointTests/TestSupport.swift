import Foundation
import PLMTestSupport
import PLMCore
@testable import PLMCheckpoint

/// Builds safetensors bytes from a literal header and a data section.
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = declaredLength ?? UInt64(h.count)
    return withUnsafeBytes(of: n.littleEndian, Array.init) + h + data
}

/// The problem a safetensors file is rejected with, or nil if it is accepted.
func safetensorsProblem(_ bytes: [UInt8]) throws -> SafetensorsProblem? {
    let folder = try TemporaryFolder()
    let path = folder.write("t.safetensors", bytes)
    do {
        _ = try SafetensorsFile(path: path)
        return nil
    } catch {
        if case .safetensors(let e) = error {
            return e.file == path ? e.problem : nil
        }
        return nil
    }
}

func floatBytes(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
func u16Bytes(_ values: [UInt16]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }

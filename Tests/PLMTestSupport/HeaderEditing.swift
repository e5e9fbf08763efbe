import Foundation
import PLMCore
import PLMFormat

public struct HeaderEditingError: Error, CustomStringConvertible {
    public let description: String
}

/// The bytes of the `.plm` file at `path` with its JSON header edited and a matching preamble and
/// header checksum, so a reader gets past the checksum to the value under test.
public func plmBytes(rewritingHeaderOf path: String, _ edit: (inout JSONObject) throws -> Void) throws -> [UInt8] {
    let file = try PLMFile(path: path)
    var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    guard var header = try JSONParser.parse(Array(bytes[file.headerOffset...])).objectValue else {
        throw HeaderEditingError(description: "\(path): the header is not a JSON object")
    }
    try edit(&header)
    let headerBytes = Array(JSONValue.object(header).serialized().utf8)
    bytes.removeSubrange(file.headerOffset...)
    bytes.append(contentsOf: headerBytes)
    bytes.replaceSubrange(0..<64, with: PLMWriter.preamble(headerOffset: file.headerOffset, header: headerBytes))
    return bytes
}

import PLMCore

extension PLMFile {
    /// Rewrites the file at `path` with one more metadata entry (`key` → `value`), everything
    /// else byte for byte: the payloads stay where they are, the header is written again after
    /// them with its new checksum, then the preamble. Atomic like every plmq output (a crash
    /// leaves the old file); used for the quality certificate that `convert --eval-dataset` adds
    /// once the converted file could be evaluated.
    public static func addingMetadata(_ key: String, _ value: JSONValue, to path: String) throws(PLMError) {
        let file = try PLMFile(path: path)
        let headerRange = file.headerOffset..<(file.headerOffset + file.headerLength)
        var header: JSONObject
        do {
            guard let object = try JSONParser.parse(file.file.slice(headerRange)).objectValue else {
                throw PLMError.headerInvalid(file: path, detail: "not a JSON object")
            }
            header = object
        } catch let e as PLMError { throw e } catch {
            throw .headerInvalid(file: path, detail: "\(error)")
        }
        var metadata = file.metadata
        metadata[key] = value
        header["metadata"] = .object(metadata)
        let newHeader = Array(JSONValue.object(header).serialized().utf8)
        do {
            let out = try AtomicFileWriter(path: path)
            try out.write(file.file.slice(0..<file.headerOffset))
            try out.write(newHeader)
            try out.write(PLMWriter.preamble(headerOffset: file.headerOffset, header: newHeader), at: 0)
            try out.commit()
        } catch { throw .fileAccess(error) }
        // The new file must read back with the same tensors and files.
        let check = try PLMFile(path: path)
        guard check.tensors.count == file.tensors.count, check.files.count == file.files.count else {
            throw .headerInvalid(file: path, detail: "the rewritten header lost entries")
        }
    }
}

import CCrypto

/// SHA-256 through OpenSSL's libcrypto (SHA-NI where the CPU has it). Used for the provenance
/// record of a `.plm` file (PLMConvert) and for dataset and reference-cache keys (PLMEval), so it
/// lives here rather than in either of them.
public final class SHA256Hasher {
    private let context: OpaquePointer?

    public init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public func update(_ text: String) { update(Array(text.utf8)) }

    /// The 32-byte digest. The hasher is finished afterwards; make a new one for the next digest.
    public func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        return digest
    }

    /// Lower-case hex, the form every record and file name uses.
    public func finalizeHex() -> String { SHA256.hexString(finalize()) }
}

public enum SHA256 {
    /// SHA-256 of a whole mapped file in 64 MiB steps, dropping each step's pages once hashed so
    /// hashing a multi-GB checkpoint does not grow the process's resident memory.
    public static func hex(of file: MappedFile) -> String {
        let hasher = SHA256Hasher()
        let bytes = file.bytes
        let chunk = 64 << 20
        var offset = 0
        while offset < bytes.count {
            let n = min(chunk, bytes.count - offset)
            let part = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
            hasher.update(part)
            file.dropPages(part)
            offset += n
        }
        return hasher.finalizeHex()
    }

    public static func hex(of bytes: [UInt8]) -> String {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }

    public static func hexString(_ digest: [UInt8]) -> String {
        let digits: [Character] = Array("0123456789abcdef")
        var out = ""
        out.reserveCapacity(digest.count * 2)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return out
    }
}

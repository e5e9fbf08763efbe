import PLMCore
import CCrypto
import PLMCheckpoint

/// SHA-256 of a mapped file through OpenSSL's libcrypto (SHA-NI where the CPU has it), for the
/// provenance record of a `.plm` file.
enum SHA256 {
    static func hex(of file: MappedFile) -> String {
        let ctx = EVP_MD_CTX_new()
        defer { EVP_MD_CTX_free(ctx) }
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
        let bytes = file.bytes
        let chunk = 64 << 20
        var offset = 0
        while offset < bytes.count {
            let n = min(chunk, bytes.count - offset)
            EVP_DigestUpdate(ctx, bytes.baseAddress! + offset, n)
            file.dropPages(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
            offset += n
        }
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &digest, &length)
        return digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

import COniguruma

/// One compiled Oniguruma pattern, searched over UTF-8 bytes.
///
/// `tokenizers` compiles its pre-tokenizer patterns with Oniguruma (UTF-8 encoding, default
/// syntax, no options), so using the same engine gives the same matches for `\p{L}`, `\s`,
/// case-insensitive groups and lookahead, with no translation of the pattern.
/// A compiled `regex_t` is only read while searching (each search has its own region), so one
/// instance may be shared between threads.
final class OnigRegex: @unchecked Sendable {
    private let regex: OnigRegex_t
    let pattern: String

    private typealias OnigRegex_t = COniguruma.OnigRegex

    /// Oniguruma wants one process-wide initialisation before the first `onig_new`; a global
    /// `let` is initialised exactly once, thread-safely.
    private static let initialised: Bool = {
        var encodings: [OnigEncoding?] = [plm_onig_utf8()]
        return encodings.withUnsafeMutableBufferPointer { onig_initialize($0.baseAddress, 1) } == ONIG_NORMAL
    }()

    /// Compiles `pattern`; the error text is Oniguruma's.
    init(pattern: String) throws(OnigCompileError) {
        guard OnigRegex.initialised else { throw OnigCompileError(message: "onig_initialize failed") }
        self.pattern = pattern
        var compiled: OnigRegex_t? = nil
        var info = OnigErrorInfo()
        // A trailing NUL keeps the buffer non-empty (so it has a base address) for an empty pattern.
        let bytes = Array(pattern.utf8) + [0]
        let rc = bytes.withUnsafeBufferPointer { p -> Int32 in
            guard let start = p.baseAddress else { return ONIGERR_MEMORY }
            return onig_new(&compiled, start, start + (p.count - 1), ONIG_OPTION_NONE, plm_onig_utf8(), plm_onig_syntax_default(), &info)
        }
        guard rc == ONIG_NORMAL, let compiled else {
            var buffer = [UInt8](repeating: 0, count: Int(ONIG_MAX_ERROR_MESSAGE_LEN))
            let n = withUnsafeMutablePointer(to: &info) { infoPointer in
                buffer.withUnsafeMutableBufferPointer { b in
                    plm_onig_error_code_to_str(b.baseAddress, rc, infoPointer)
                }
            }
            throw OnigCompileError(message: String(decoding: buffer.prefix(max(0, Int(n))), as: UTF8.self))
        }
        regex = compiled
    }

    deinit { onig_free(regex) }

    /// Calls `body(start, end)` for every match in `text`, left to right, like the `onig`
    /// crate's `find_iter`: the next search starts at the end of the previous match, or one
    /// character further after an empty match. Offsets are byte offsets into `text`.
    func forEachMatch(in text: UnsafeBufferPointer<UInt8>, _ body: (Int, Int) -> Void) {
        guard let base = text.baseAddress, text.count > 0 else { return }
        guard let region = onig_region_new() else { return }
        defer { onig_region_free(region, 1) }
        let end = base + text.count
        var position = 0
        while position <= text.count {
            let r = onig_search(regex, base, end, base + position, end, region, ONIG_OPTION_NONE)
            guard r >= 0, let begins = region.pointee.beg, let ends = region.pointee.end else { return }
            let s = Int(begins[0]), e = Int(ends[0])
            body(s, e)
            if e > s {
                position = e
            } else {
                // Empty match: step over one whole UTF-8 character.
                guard e < text.count else { return }
                position = e + utf8Length(leadByte: text[e])
            }
        }
    }
}

struct OnigCompileError: Error {
    let message: String
}

/// Byte length of the UTF-8 sequence that starts with `leadByte` (1 for stray continuation bytes).
@inline(__always)
func utf8Length(leadByte b: UInt8) -> Int {
    if b < 0xC0 { return 1 }
    if b < 0xE0 { return 2 }
    if b < 0xF0 { return 3 }
    return 4
}

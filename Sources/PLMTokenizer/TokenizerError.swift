import PLMCore
/// Why a tokenizer.json could not be used. Every case names the file (`source`) and the JSON
/// path of the field at fault, so a message reads like
/// `tokenizer.json: model.merges[12]: "a b c" is not two tokens separated by one space`.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file is not valid JSON (offset in bytes).
    case malformedJSON(source: String, offset: Int, reason: String)
    /// A required field is absent.
    case missingField(source: String, field: String)
    /// A field holds the wrong JSON type or an impossible value.
    case invalidField(source: String, field: String, reason: String)
    /// A component (`type`) or option the file uses that this implementation does not have.
    /// Nothing is approximated: such a file is refused.
    case unsupported(source: String, field: String, what: String)
    /// A merge names a token, or produces a token, that is not in the vocabulary.
    case mergeTokenNotInVocabulary(source: String, index: Int, token: String)
    /// A pre-tokenizer regex that Oniguruma rejects.
    case invalidRegex(source: String, field: String, pattern: String, reason: String)
    /// An id outside the vocabulary was given to `decode`.
    case unknownId(Int)

    public var description: String {
        switch self {
        case .malformedJSON(let s, let o, let r): return "\(s): not valid JSON: \(r) at byte \(o)"
        case .missingField(let s, let f): return "\(s): \(f): missing"
        case .invalidField(let s, let f, let r): return "\(s): \(f): \(r)"
        case .unsupported(let s, let f, let w): return "\(s): \(f): \(w) is not supported"
        case .mergeTokenNotInVocabulary(let s, let i, let t):
            return "\(s): model.merges[\(i)]: token \(quoted(t)) is not in model.vocab"
        case .invalidRegex(let s, let f, let p, let r): return "\(s): \(f): regex \(quoted(p)) does not compile: \(r)"
        case .unknownId(let id): return "token id \(id) is not in the vocabulary"
        }
    }
}

/// A string as it would be written in JSON, for messages (control characters escaped).
func quoted(_ s: String) -> String { JSONValue.quoted(s) }

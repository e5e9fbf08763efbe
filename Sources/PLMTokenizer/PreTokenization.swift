/// Pieces of text being split by the pre-tokenizers: ranges into one byte arena.
///
/// Splitting only narrows ranges (no copies); prepending a space appends a new copy. After a
/// `ByteLevel` step the pieces are in the byte-level alphabet (`mapped`); later steps then see
/// the mapped text, exactly as in `tokenizers`, and the BPE step maps them back to bytes.
struct PieceList {
    var arena: [UInt8]
    var pieces: [Range<Int>]
    var mapped = false
    /// Set by `ByteLevel`; the rewrite happens only if a later step looks at the text.
    var pendingMap = false

    init(_ bytes: [UInt8]) {
        arena = bytes
        pieces = bytes.isEmpty ? [] : [0..<bytes.count]
    }

    /// Replaces every piece by the sub-ranges `split` returns for it (offsets relative to the
    /// piece); empty results are dropped, as `tokenizers` drops empty splits.
    mutating func split(_ body: (UnsafeBufferPointer<UInt8>) -> [Range<Int>]) {
        var out: [Range<Int>] = []
        out.reserveCapacity(pieces.count * 2)
        arena.withUnsafeBufferPointer { a in
            for piece in pieces {
                let base = piece.lowerBound
                for r in body(UnsafeBufferPointer(rebasing: a[piece])) where !r.isEmpty {
                    out.append((base + r.lowerBound)..<(base + r.upperBound))
                }
            }
        }
        pieces = out
    }

    /// Rewrites every piece in the byte-level alphabet (each byte becomes the UTF-8 of its
    /// stand-in character).
    mutating func mapToByteLevel() {
        guard !mapped else { return }
        var newArena: [UInt8] = []
        newArena.reserveCapacity(arena.count * 2)
        var newPieces: [Range<Int>] = []
        let table = ByteLevel.mappedUTF8
        for piece in pieces {
            let start = newArena.count
            for b in arena[piece] { newArena.append(contentsOf: table.bytes[table.offsets[Int(b)]..<table.offsets[Int(b) + 1]]) }
            newPieces.append(start..<newArena.count)
        }
        arena = newArena
        pieces = newPieces
        mapped = true
    }
}

/// Turns a pattern's matches into split ranges by `tokenizers`' rules for each behavior.
/// `matches` cover the whole text in order: (range, isMatch).
func applyBehavior(_ matches: [(Range<Int>, Bool)], _ behavior: SplitBehavior) -> [Range<Int>] {
    var out: [Range<Int>] = []
    switch behavior {
    case .isolated:
        return matches.map { $0.0 }
    case .removed:
        return matches.filter { !$0.1 }.map { $0.0 }
    case .contiguous:
        var previous = false
        for (r, isMatch) in matches {
            if isMatch == previous, let last = out.last {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
            previous = isMatch
        }
    case .mergedWithPrevious:
        var previous = false
        for (r, isMatch) in matches {
            if isMatch && !previous, let last = out.last {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
            previous = isMatch
        }
    case .mergedWithNext:
        var previous = false
        for (r, isMatch) in matches.reversed() {
            if isMatch && !previous, let last = out.last {
                out[out.count - 1] = r.lowerBound..<last.upperBound
            } else {
                out.append(r)
            }
            previous = isMatch
        }
        out.reverse()
    }
    return out
}

/// Matches of a pattern over `text`, with the unmatched gaps, covering all of it.
func patternMatches(_ pattern: PatternSpec, in text: UnsafeBufferPointer<UInt8>, invert: Bool = false) -> [(Range<Int>, Bool)] {
    if text.isEmpty { return [(0..<0, false)] }
    var out: [(Range<Int>, Bool)] = []
    var previous = 0
    let record = { (s: Int, e: Int) in
        if previous != s { out.append((previous..<s, invert)) }
        out.append((s..<e, !invert))
        previous = e
    }
    switch pattern {
    case .regex(let regex):
        regex.forEachMatch(in: text, record)
    case .literal(let needle):
        if needle.isEmpty { return [(0..<text.count, invert)] }
        var i = 0
        while i + needle.count <= text.count {
            var same = true
            for k in 0..<needle.count where text[i + k] != needle[k] { same = false; break }
            if same {
                record(i, i + needle.count)
                i += needle.count
            } else {
                i += 1
            }
        }
    }
    if previous != text.count { out.append((previous..<text.count, invert)) }
    return out
}

/// Matches of a per-character predicate: every matching character is its own match.
func characterMatches(in text: UnsafeBufferPointer<UInt8>, _ predicate: (Unicode.Scalar) -> Bool) -> [(Range<Int>, Bool)] {
    if text.isEmpty { return [(0..<0, false)] }
    var out: [(Range<Int>, Bool)] = []
    var last = 0
    var i = 0
    while i < text.count {
        guard let (scalar, n) = UnicodeText.scalar(text, startingAt: i) else { i += 1; continue }
        if predicate(scalar) {
            if last < i { out.append((last..<i, false)) }
            out.append((i..<(i + n), true))
            last = i + n
        }
        i += n
    }
    if last < text.count { out.append((last..<text.count, false)) }
    return out
}

/// GPT-2's split pattern, which `ByteLevel` uses when `use_regex` is true.
let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

import PLMCore

/// The `model` part of a byte-level BPE tokenizer.json: vocabulary, ranked merges and the
/// merge loop, working on the raw bytes of one pre-token.
struct BPEModel: Sendable {
    /// Vocabulary strings as written in the file (in the byte-level alphabet), table entry i.
    let strings: ByteStringTable
    /// Id of table entry i.
    let entryIds: [UInt32]
    /// Table entry of each id, -1 where the id is unused (ids need not be contiguous).
    let entryForId: [Int32]
    let merges: MergeTable
    /// Id of the one-character token standing for each byte, or -1 when the vocabulary lacks it.
    let byteTokens: [Int32]
    /// When true, a pre-token that is itself in the vocabulary is taken whole, without merging
    /// (Llama 3 style files set this; the result can differ from merging).
    let ignoreMerges: Bool
    /// The unknown token (for bytes whose one-character token is missing); without one such bytes
    /// are dropped, as in `tokenizers`.
    let unknownId: UInt32?
    let fuseUnknown: Bool

    /// Above this many symbols the merge loop uses a heap instead of rescanning (long runs of
    /// spaces or one long word would otherwise cost n² pair scans).
    static let heapThreshold = 48

    init(file: TokenizerFile, source: String) throws(TokenizerError) {
        let r = ComponentReader(source: source)
        let m = file.modelFields
        guard let typeValue = m["type"] else { throw .missingField(source: source, field: "model.type") }
        guard typeValue.stringValue == "BPE" else {
            throw .unsupported(source: source, field: "model.type", what: "model \(typeValue.stringValue.map(quoted) ?? typeValue.typeName)")
        }
        if let d = m["dropout"], !d.isNull, d.doubleValue != 0 {
            throw .unsupported(source: source, field: "model.dropout", what: "BPE dropout (random merges)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = m[key], !v.isNull, v.stringValue != "" {
                throw .unsupported(source: source, field: "model.\(key)", what: "a non-empty \(key)")
            }
        }
        if try r.bool(m, "byte_fallback", "model", default: false) {
            throw .unsupported(source: source, field: "model.byte_fallback", what: "byte fallback (<0xNN> tokens)")
        }
        ignoreMerges = try r.bool(m, "ignore_merges", "model", default: false)
        fuseUnknown = try r.bool(m, "fuse_unk", "model", default: false)

        guard let vocab = file.vocab else { throw .missingField(source: source, field: "model.vocab") }
        guard let mergeEntries = file.merges else { throw .missingField(source: source, field: "model.merges") }
        strings = vocab.strings
        entryIds = vocab.ids

        var maxId = -1
        for id in vocab.ids { maxId = max(maxId, Int(id)) }
        var entryForId = [Int32](repeating: -1, count: maxId + 1)
        for (entry, id) in vocab.ids.enumerated() {
            guard entryForId[Int(id)] < 0 else {
                throw .invalidField(source: source, field: "model.vocab[\(quoted(vocab.strings.entryString(entry)))]",
                                    reason: "id \(id) is also the id of \(quoted(vocab.strings.entryString(Int(entryForId[Int(id)]))))")
            }
            entryForId[Int(id)] = Int32(entry)
        }
        self.entryForId = entryForId

        if let u = m["unk_token"], !u.isNull {
            guard let name = u.stringValue else { throw .invalidField(source: source, field: "model.unk_token", reason: "must be a string or null") }
            guard let entry = vocab.strings.find(Array(name.utf8)) else {
                throw .invalidField(source: source, field: "model.unk_token", reason: "\(quoted(name)) is not in model.vocab")
            }
            unknownId = vocab.ids[entry]
        } else {
            unknownId = nil
        }

        var byteTokens = [Int32](repeating: -1, count: 256)
        let mapped = ByteLevel.mappedUTF8
        for b in 0..<256 {
            let key = Array(mapped.bytes[mapped.offsets[b]..<mapped.offsets[b + 1]])
            if let entry = vocab.strings.find(key) { byteTokens[b] = Int32(vocab.ids[entry]) }
        }
        self.byteTokens = byteTokens

        // Resolve merges to ids: both sides and their concatenation must be tokens.
        var table = MergeTable(expectedCount: mergeEntries.count)
        var joined: [UInt8] = []
        try mergeEntries.arena.withUnsafeBufferPointer { (arena) throws(TokenizerError) in
            for i in 0..<mergeEntries.count {
                let a = mergeEntries.sides[2 * i], b = mergeEntries.sides[2 * i + 1]
                let aBytes = UnsafeBufferPointer(rebasing: arena[Int(a.lowerBound)..<Int(a.upperBound)])
                let bBytes = UnsafeBufferPointer(rebasing: arena[Int(b.lowerBound)..<Int(b.upperBound)])
                let fileIndex = Int(mergeEntries.fileIndex[i])
                guard let aEntry = vocab.strings.find(aBytes) else {
                    throw .mergeTokenNotInVocabulary(source: source, index: fileIndex, token: String(decoding: aBytes, as: UTF8.self))
                }
                guard let bEntry = vocab.strings.find(bBytes) else {
                    throw .mergeTokenNotInVocabulary(source: source, index: fileIndex, token: String(decoding: bBytes, as: UTF8.self))
                }
                joined.removeAll(keepingCapacity: true)
                joined.append(contentsOf: aBytes)
                joined.append(contentsOf: bBytes)
                guard let mergedEntry = vocab.strings.find(joined) else {
                    throw .mergeTokenNotInVocabulary(source: source, index: fileIndex, token: String(decoding: joined, as: UTF8.self))
                }
                // The rank is the position among kept merges, as `tokenizers` enumerates them.
                table.set(left: vocab.ids[aEntry], right: vocab.ids[bEntry], rank: UInt32(i), merged: vocab.ids[mergedEntry])
            }
        }
        merges = table
    }

    /// Id of a vocabulary string (as written in the file), or nil.
    func id(forToken utf8: [UInt8]) -> UInt32? { strings.find(utf8).map { entryIds[$0] } }

    /// The file's string for `id`, or nil.
    func tokenString(_ id: Int) -> String? {
        guard id >= 0, id < entryForId.count, entryForId[id] >= 0 else { return nil }
        return strings.entryString(Int(entryForId[id]))
    }

    /// Appends the ids of one pre-token given as raw bytes.
    func tokenize(_ word: UnsafeBufferPointer<UInt8>, into out: inout [UInt32], scratch: inout BPEScratch) {
        if word.isEmpty { return }
        if ignoreMerges {
            scratch.mapped.removeAll(keepingCapacity: true)
            let mapped = ByteLevel.mappedUTF8
            for b in word { scratch.mapped.append(contentsOf: mapped.bytes[mapped.offsets[Int(b)]..<mapped.offsets[Int(b) + 1]]) }
            if let entry = scratch.mapped.withUnsafeBufferPointer({ strings.find($0) }) {
                out.append(entryIds[entry])
                return
            }
        }
        scratch.symbols.removeAll(keepingCapacity: true)
        var previousUnknown = false
        for b in word {
            let t = byteTokens[Int(b)]
            if t >= 0 {
                scratch.symbols.append(UInt32(t))
                previousUnknown = false
            } else if let unknownId {
                if !(fuseUnknown && previousUnknown) { scratch.symbols.append(unknownId) }
                previousUnknown = true
            }
        }
        if scratch.symbols.count > BPEModel.heapThreshold {
            mergeWithHeap(&scratch)
        } else {
            mergeByScanning(&scratch.symbols, ranks: &scratch.ranks)
        }
        out.append(contentsOf: scratch.symbols)
    }

    /// Repeatedly merges the adjacent pair of lowest rank (the leftmost one on ties), keeping the
    /// rank of every adjacent pair so that each step is one scan and two table look-ups.
    func mergeByScanning(_ symbols: inout [UInt32], ranks: inout [UInt64]) {
        let n = symbols.count
        if n < 2 { return }
        ranks.removeAll(keepingCapacity: true)
        for i in 0..<(n - 1) { ranks.append(merges.lookup(symbols[i], symbols[i + 1]) ?? UInt64.max) }
        while !ranks.isEmpty {
            var best = UInt64.max, bestAt = -1
            for i in ranks.indices where ranks[i] >> 32 < best >> 32 {
                best = ranks[i]
                bestAt = i
            }
            if bestAt < 0 { break }
            symbols[bestAt] = UInt32(truncatingIfNeeded: best)
            symbols.remove(at: bestAt + 1)
            ranks.remove(at: bestAt)
            if bestAt < ranks.count { ranks[bestAt] = merges.lookup(symbols[bestAt], symbols[bestAt + 1]) ?? UInt64.max }
            if bestAt > 0 { ranks[bestAt - 1] = merges.lookup(symbols[bestAt - 1], symbols[bestAt]) ?? UInt64.max }
        }
    }

    /// The same merge order as `mergeByScanning`, in O(n log n): a min-heap of (rank, position)
    /// candidates over a linked list of symbols; stale candidates are dropped when popped.
    func mergeWithHeap(_ scratch: inout BPEScratch) {
        let n = scratch.symbols.count
        if n < 2 { return }
        var ids = scratch.symbols
        var next = Array(1...n)          // n means "none"
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let v = merges.lookup(ids[i], ids[i + 1]) { heap.push(rank: UInt32(v >> 32), position: i, merged: UInt32(truncatingIfNeeded: v)) }
        }
        while let top = heap.pop() {
            let p = top.position
            guard alive[p], next[p] < n else { continue }
            let q = next[p]
            guard let v = merges.lookup(ids[p], ids[q]), UInt32(truncatingIfNeeded: v) == top.merged else { continue }
            ids[p] = top.merged
            alive[q] = false
            next[p] = next[q]
            if next[q] < n { prev[next[q]] = p }
            if prev[p] >= 0, let v = merges.lookup(ids[prev[p]], ids[p]) {
                heap.push(rank: UInt32(v >> 32), position: prev[p], merged: UInt32(truncatingIfNeeded: v))
            }
            if next[p] < n, let v = merges.lookup(ids[p], ids[next[p]]) {
                heap.push(rank: UInt32(v >> 32), position: p, merged: UInt32(truncatingIfNeeded: v))
            }
        }
        scratch.symbols.removeAll(keepingCapacity: true)
        for i in 0..<n where alive[i] { scratch.symbols.append(ids[i]) }
    }
}

/// Buffers reused across the pre-tokens of one `encode` call.
struct BPEScratch {
    var symbols: [UInt32] = []
    var ranks: [UInt64] = []
    var mapped: [UInt8] = []
}

/// A binary min-heap of merge candidates ordered by (rank, position), as `tokenizers` orders them.
struct MinHeap {
    private var items: [(key: UInt64, merged: UInt32)] = []

    mutating func push(rank: UInt32, position: Int, merged: UInt32) {
        items.append((UInt64(rank) << 32 | UInt64(position), merged))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].key < items[parent].key else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (position: Int, merged: UInt32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].key < items[m].key { m = l }
                if r < items.count && items[r].key < items[m].key { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return (Int(first.key & 0xFFFF_FFFF), first.merged)
    }
}

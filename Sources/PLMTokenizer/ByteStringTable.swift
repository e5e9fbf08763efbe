/// Token strings stored once in a byte arena, found by their UTF-8 bytes with an
/// open-addressing hash table. Used for `model.vocab` (128 000 entries in Llama 3): one arena
/// and two integer arrays instead of 128 000 `String`s and a `Dictionary`, which is what makes
/// loading a 9 MB tokenizer.json take tens of milliseconds.
struct ByteStringTable: Sendable {
    /// The bytes of every entry, back to back.
    private(set) var arena: [UInt8] = []
    /// Entry `i` is `arena[starts[i] ..< starts[i + 1]]`.
    private(set) var starts: [Int32] = [0]
    /// Slots hold an entry index, or -1 when empty. The count is a power of two.
    private var slots: [Int32]
    private var mask: Int

    init(expectedCount: Int) {
        var capacity = 16
        while capacity < expectedCount * 2 { capacity <<= 1 }
        slots = [Int32](repeating: -1, count: capacity)
        mask = capacity - 1
        arena.reserveCapacity(expectedCount * 8)
        starts.reserveCapacity(expectedCount + 1)
    }

    var count: Int { starts.count - 1 }

    /// The bytes of entry `i`.
    func withEntry<R>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        let s = Int(starts[i]), e = Int(starts[i + 1])
        return arena.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[s..<e])) }
    }

    func entryString(_ i: Int) -> String { withEntry(i) { String(decoding: $0, as: UTF8.self) } }

    /// Index of the entry equal to `key`, or nil.
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        let h = ByteStringTable.hash(key)
        return arena.withUnsafeBufferPointer { a in
            slots.withUnsafeBufferPointer { sl in
                var slot = h & mask
                while true {
                    let entry = Int(sl[slot])
                    if entry < 0 { return nil }
                    if ByteStringTable.equal(a, entry, starts, key) { return entry }
                    slot = (slot + 1) & mask
                }
            }
        }
    }

    func find(_ key: [UInt8]) -> Int? { key.withUnsafeBufferPointer { find($0) } }

    /// Appends `key` as a new entry; returns its index, or the existing index if already present
    /// (then nothing is appended).
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>) -> (index: Int, inserted: Bool) {
        if count * 2 >= slots.count { grow() }
        let h = ByteStringTable.hash(key)
        var slot = h & mask
        while true {
            let entry = Int(slots[slot])
            if entry < 0 { break }
            let same = arena.withUnsafeBufferPointer { ByteStringTable.equal($0, entry, starts, key) }
            if same { return (entry, false) }
            slot = (slot + 1) & mask
        }
        let index = count
        arena.append(contentsOf: key)
        starts.append(Int32(truncatingIfNeeded: arena.count))
        slots[slot] = Int32(truncatingIfNeeded: index)
        return (index, true)
    }

    private mutating func grow() {
        let capacity = slots.count * 2
        slots = [Int32](repeating: -1, count: capacity)
        mask = capacity - 1
        for i in 0..<count {
            let h = withEntry(i) { ByteStringTable.hash($0) }
            var slot = h & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(truncatingIfNeeded: i)
        }
    }

    @inline(__always)
    private static func equal(_ arena: UnsafeBufferPointer<UInt8>, _ entry: Int, _ starts: [Int32], _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let s = Int(starts[entry]), e = Int(starts[entry + 1])
        guard e - s == key.count else { return false }
        guard let kb = key.baseAddress, let ab = arena.baseAddress else { return key.count == 0 }
        return memcmpEqual(ab + s, kb, key.count)
    }

    /// FNV-1a over the bytes, then a final mix so that the low bits (the slot) depend on all bytes.
    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= h >> 29
        h = h &* 0xbf58_476d_1ce4_e5b9
        h ^= h >> 32
        return Int(truncatingIfNeeded: h)
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

/// Merge pairs `(left id, right id)` → `(rank, merged id)`, open addressing on one 64-bit key.
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private var mask: Int
    private(set) var count = 0
    private static let empty = UInt64.max

    init(expectedCount: Int) {
        var capacity = 16
        while capacity < expectedCount * 2 { capacity <<= 1 }
        keys = [UInt64](repeating: MergeTable.empty, count: capacity)
        values = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Sets the merge of `(left, right)`; a later duplicate replaces the earlier one, as in
    /// `tokenizers` (whose merge map is built by inserting in file order).
    mutating func set(left: UInt32, right: UInt32, rank: UInt32, merged: UInt32) {
        if (count + 1) * 2 > keys.count { grow() }
        let key = UInt64(left) << 32 | UInt64(right)
        var s = MergeTable.slot(key, mask)
        while keys[s] != MergeTable.empty && keys[s] != key { s = (s + 1) & mask }
        if keys[s] == MergeTable.empty { count += 1 }
        keys[s] = key
        values[s] = UInt64(rank) << 32 | UInt64(merged)
    }

    /// `(rank << 32 | merged id)` of the pair, or nil.
    @inline(__always)
    func lookup(_ left: UInt32, _ right: UInt32) -> UInt64? {
        let key = UInt64(left) << 32 | UInt64(right)
        return keys.withUnsafeBufferPointer { k in
            var s = MergeTable.slot(key, mask)
            while true {
                let stored = k[s]
                if stored == key { return values[s] }
                if stored == MergeTable.empty { return nil }
                s = (s + 1) & mask
            }
        }
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        let capacity = keys.count * 2
        keys = [UInt64](repeating: MergeTable.empty, count: capacity)
        values = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
        for (i, key) in oldKeys.enumerated() where key != MergeTable.empty {
            var s = MergeTable.slot(key, mask)
            while keys[s] != MergeTable.empty { s = (s + 1) & mask }
            keys[s] = key
            values[s] = oldValues[i]
        }
    }
}

import PLMCore

// The reference cache (`--reference-cache DIR`, Formats/REFCACHE.md): what the fp32 model
// contributes to an evaluation, per sample, so that comparing several quantizations of one model
// runs the fp32 model once. One file per (reference, dataset, settings), named by the SHA-256 of
// that key, written atomically and checked in full (layout, bounds, SHA-256) when opened.

public enum ReferenceCacheError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(path: String)
    case keyMismatch(path: String, field: String, expected: String, found: String)
    case damaged(path: String, reason: String)
    case io(FileAccessError)
    case duplicateSample(String)
    case invalidRecord(sample: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let p): return "\(p): no cached reference"
        case .keyMismatch(let p, let f, let e, let found): return "\(p): made for another \(f) (expected \(e), the file has \(found))"
        case .damaged(let p, let r): return "\(p): damaged reference cache: \(r)"
        case .io(let e): return e.description
        case .duplicateSample(let id): return "reference cache: sample \"\(id)\" written twice"
        case .invalidRecord(let id, let r): return "reference cache: sample \"\(id)\": \(r)"
        }
    }
}

/// What the cached numbers depend on. Any change gives another file.
public struct ReferenceCacheKey: Sendable, Equatable {
    public let referenceSHA256: String
    public let datasetHash: String
    /// Settings that change the reference's outputs (`max_tiles`, `max_new_tokens`, `text_ctx`,
    /// the chat template's hash …), compared as strings.
    public let settings: [String: String]

    public init(referenceSHA256: String, datasetHash: String, settings: [String: String] = [:]) {
        self.referenceSHA256 = referenceSHA256
        self.datasetHash = datasetHash
        self.settings = settings
    }

    /// The key as JSON with sorted settings: what is stored in the file and hashed for its name.
    public var json: JSONValue {
        let sorted = settings.keys.sorted().map { ($0, JSONValue.string(settings[$0] ?? "")) }
        return .object(JSONObject([
            ("reference_sha256", .string(referenceSHA256)), ("dataset_hash", .string(datasetHash)),
            ("settings", .object(JSONObject(sorted))),
        ]))
    }

    public var hex: String { SHA256.hex(of: Array(json.serialized().utf8)) }

    /// `DIR/<first 32 hex digits of the key's SHA-256>.plmref`.
    public func path(in folder: String) -> String {
        (folder.hasSuffix("/") ? folder : folder + "/") + String(hex.prefix(32)) + ".plmref"
    }
}

/// Image features of a sample, [tiles, tokens, hidden] row-major.
public struct FeatureBlock: Sendable, Equatable {
    public let tiles: Int, tokens: Int, hidden: Int
    public let values: [Float]

    public init(tiles: Int, tokens: Int, hidden: Int, values: [Float]) {
        self.tiles = tiles
        self.tokens = tokens
        self.hidden = hidden
        self.values = values
    }
}

/// Everything cached for one sample.
public struct ReferenceRecord: Sendable, Equatable {
    public let sampleID: String
    public let positions: [ReferencePosition]
    /// The reference's greedy generation (tokens and text), for greedy agreement and accuracy.
    public let greedyTokens: [Int32]
    public let greedyText: String?
    /// Projector features, stored as f16 (their rounding, a relative 2⁻¹¹, is far below the
    /// errors measured against them; arrays beyond f16's range are stored as f32).
    public let features: FeatureBlock?

    public init(sampleID: String, positions: [ReferencePosition], greedyTokens: [Int32] = [], greedyText: String? = nil, features: FeatureBlock? = nil) {
        self.sampleID = sampleID
        self.positions = positions
        self.greedyTokens = greedyTokens
        self.greedyText = greedyText
        self.features = features
    }
}

enum CacheLayout {
    static let magic: [UInt8] = [0x89, 0x50, 0x4C, 0x4D, 0x52, 0x45, 0x46, 0x0A]  // "\x89PLMREF\n"
    static let version: UInt32 = 1
    static let preambleBytes = 64
    static let maxIndexBytes = 64 << 20
    static let maxVocabulary = 1 << 24
    /// Position flags.
    static let dense: UInt32 = 1
    /// Feature encodings.
    static let f32: UInt32 = 0
    static let f16: UInt32 = 1
}

/// Writes one cache file: records in sample order, then the JSON index, then the preamble is
/// filled in; `commit()` renames it into place, so a reader never sees half a file.
public final class ReferenceCacheWriter {
    public let path: String
    public let key: ReferenceCacheKey
    public let vocabulary: Int
    private let file: AtomicFileWriter
    private let hasher = SHA256Hasher()
    private var entries: [JSONValue] = []
    private var ids: Set<String> = []

    public init(folder: String, key: ReferenceCacheKey, vocabulary: Int) throws(ReferenceCacheError) {
        guard vocabulary > 0 && vocabulary <= CacheLayout.maxVocabulary else {
            throw .invalidRecord(sample: "", reason: "vocabulary \(vocabulary) outside 1…\(CacheLayout.maxVocabulary)")
        }
        path = key.path(in: folder)
        self.key = key
        self.vocabulary = vocabulary
        do {
            file = try AtomicFileWriter(path: path)
            try file.write([UInt8](repeating: 0, count: CacheLayout.preambleBytes))
        } catch { throw .io(error) }
    }

    public func append(_ record: ReferenceRecord) throws(ReferenceCacheError) {
        guard ids.insert(record.sampleID).inserted else { throw .duplicateSample(record.sampleID) }
        var out = ByteWriter()
        for p in record.positions {
            guard p.vocabulary == vocabulary else {
                throw .invalidRecord(sample: record.sampleID, reason: "a position has vocabulary \(p.vocabulary), the cache \(vocabulary)")
            }
            out.u32(UInt32(bitPattern: p.target))
            out.u32(UInt32(bitPattern: p.topToken))
            out.f32(p.targetLogProb)
            out.u32(UInt32(p.logProbs.count))
            out.u32(p.supportTokens == nil ? CacheLayout.dense : 0)
            if let tokens = p.supportTokens {
                for t in tokens { out.u32(UInt32(bitPattern: t)) }
            }
            for v in p.logProbs { out.f32(v) }
        }
        let positionsLength = out.bytes.count
        var featureEntry: JSONValue = .null
        if let f = record.features {
            guard f.values.count == f.tiles * f.tokens * f.hidden else {
                throw .invalidRecord(sample: record.sampleID, reason: "features hold \(f.values.count) values, not \(f.tiles)×\(f.tokens)×\(f.hidden)")
            }
            let fitsHalf = f.values.allSatisfy { $0.isFinite && abs($0) <= Float(Float16.greatestFiniteMagnitude) }
            for v in f.values { if fitsHalf { out.u16(Float16(v).bitPattern) } else { out.f32(v) } }
            featureEntry = .object(JSONObject([
                ("tiles", .int(f.tiles)), ("tokens", .int(f.tokens)), ("hidden", .int(f.hidden)),
                ("encoding", .string(fitsHalf ? "f16" : "f32")),
            ]))
        }
        let offset = file.position
        do { try file.write(out.bytes) } catch { throw .io(error) }
        hasher.update(out.bytes)
        entries.append(.object(JSONObject([
            ("id", .string(record.sampleID)), ("offset", .int(offset)), ("positions", .int(record.positions.count)),
            ("positions_length", .int(positionsLength)), ("length", .int(out.bytes.count)),
            ("greedy_tokens", .array(record.greedyTokens.map { .int(Int($0)) })),
            ("greedy_text", record.greedyText.map(JSONValue.string) ?? .null),
            ("features", featureEntry),
        ])))
    }

    /// Drops the unfinished file (an interrupted run leaves no cache behind).
    public func abandon() { file.abandon() }

    /// Writes the index and renames the file into place. Returns the file's size.
    @discardableResult
    public func commit() throws(ReferenceCacheError) -> Int {
        let index = JSONValue.object(JSONObject([
            ("format", .string("plmref")), ("version", .int(Int(CacheLayout.version))),
            ("key", key.json), ("vocabulary", .int(vocabulary)),
            ("payload_sha256", .string(hasher.finalizeHex())),
            ("samples", .array(entries)),
        ]))
        let indexBytes = Array(index.serialized().utf8)
        let indexOffset = file.position
        var preamble = ByteWriter()
        preamble.bytes += CacheLayout.magic
        preamble.u32(CacheLayout.version)
        preamble.u32(0)
        preamble.u64(UInt64(indexOffset))
        preamble.u64(UInt64(indexBytes.count))
        preamble.bytes += [UInt8](repeating: 0, count: CacheLayout.preambleBytes - preamble.bytes.count)
        do {
            try file.write(indexBytes)
            try file.write(preamble.bytes, at: 0)
            try file.commit()
        } catch { throw .io(error) }
        return indexOffset + indexBytes.count
    }
}

/// An opened, fully validated cache file. Records are decoded on demand from the mapping.
public struct ReferenceCache: Sendable {
    public let path: String
    public let key: ReferenceCacheKey
    public let vocabulary: Int
    public let sampleIDs: [String]
    private let file: MappedFile
    private let entries: [String: Entry]

    struct Entry: Sendable {
        let offset: Int, length: Int, positions: Int, positionsLength: Int
        let greedyTokens: [Int32], greedyText: String?
        let features: (tiles: Int, tokens: Int, hidden: Int, half: Bool)?
    }

    /// Opens the cache of `key` in `folder`: `.notFound` when there is none (compute it),
    /// `.keyMismatch` when the file there was made for another key.
    public init(folder: String, key: ReferenceCacheKey) throws(ReferenceCacheError) {
        try self.init(path: key.path(in: folder), expecting: key)
    }

    public init(path: String, expecting key: ReferenceCacheKey) throws(ReferenceCacheError) {
        guard case .regular = SampleFiles.kind(of: path) else { throw .notFound(path: path) }
        do { file = try MappedFile(path: path) } catch { throw .io(error) }
        self.path = path
        func damaged(_ reason: String) -> ReferenceCacheError { .damaged(path: path, reason: reason) }
        var reader = ByteReader(file.bytes, failure: damaged("truncated preamble"))
        guard file.size >= CacheLayout.preambleBytes, try reader.bytes(8) == CacheLayout.magic else { throw damaged("not a plmref file") }
        guard try reader.u32() == CacheLayout.version else { throw damaged("unsupported version") }
        _ = try reader.u32()
        let indexOffset = try reader.u64(), indexLength = try reader.u64()
        guard indexLength <= UInt64(CacheLayout.maxIndexBytes), indexOffset >= UInt64(CacheLayout.preambleBytes),
              indexOffset + indexLength == UInt64(file.size) else { throw damaged("index outside the file") }
        let payload = CacheLayout.preambleBytes..<Int(indexOffset)
        let index: JSONObject
        do {
            guard let object = try JSONParser.parse(file.slice(Int(indexOffset)..<file.size)).objectValue else { throw damaged("index is not an object") }
            index = object
        } catch let e as ReferenceCacheError { throw e } catch { throw damaged("index: \(error)") }
        guard index["format"]?.stringValue == "plmref", let v = index["vocabulary"]?.intValue, v > 0, v <= CacheLayout.maxVocabulary else {
            throw damaged("index: bad format or vocabulary")
        }
        vocabulary = v
        guard let keyObject = index["key"]?.objectValue else { throw damaged("index: no key") }
        let foundKey = try Self.parseKey(keyObject, damaged: damaged)
        if foundKey.referenceSHA256 != key.referenceSHA256 {
            throw .keyMismatch(path: path, field: "reference (SHA-256)", expected: key.referenceSHA256, found: foundKey.referenceSHA256)
        }
        if foundKey.datasetHash != key.datasetHash {
            throw .keyMismatch(path: path, field: "dataset (hash)", expected: key.datasetHash, found: foundKey.datasetHash)
        }
        if foundKey.settings != key.settings {
            throw .keyMismatch(path: path, field: "settings", expected: key.json.serialized(), found: foundKey.json.serialized())
        }
        self.key = key
        let hasher = SHA256Hasher()
        hasher.update(file.slice(payload))
        guard index["payload_sha256"]?.stringValue == hasher.finalizeHex() else { throw damaged("payload SHA-256 differs from the index") }

        guard let list = index["samples"]?.arrayValue else { throw damaged("index: no samples") }
        var entries: [String: Entry] = [:]
        var ids: [String] = []
        var expectedOffset = payload.lowerBound
        for item in list {
            guard let o = item.objectValue, let id = o["id"]?.stringValue, let offset = o["offset"]?.intValue,
                  let length = o["length"]?.intValue, let positions = o["positions"]?.intValue,
                  let positionsLength = o["positions_length"]?.intValue, let greedy = o["greedy_tokens"]?.arrayValue else {
                throw damaged("index: malformed sample entry")
            }
            guard offset == expectedOffset, length >= 0, offset + length <= payload.upperBound, positions >= 0,
                  positionsLength >= 0, positionsLength <= length else { throw damaged("sample \"\(id)\": record outside the payload") }
            expectedOffset = offset + length
            var tokens: [Int32] = []
            for t in greedy {
                guard let value = t.int64Value, let token = Int32(exactly: value), token >= 0, Int(token) < v else {
                    throw damaged("sample \"\(id)\": greedy token outside the vocabulary")
                }
                tokens.append(token)
            }
            var features: (Int, Int, Int, Bool)?
            if let f = o["features"]?.objectValue {
                guard let tiles = f["tiles"]?.intValue, let tok = f["tokens"]?.intValue, let hidden = f["hidden"]?.intValue,
                      let encoding = f["encoding"]?.stringValue, encoding == "f16" || encoding == "f32",
                      tiles >= 0, tok > 0, hidden > 0 else { throw damaged("sample \"\(id)\": malformed features entry") }
                guard let bytes = Checked.product(of: [tiles, tok, hidden, encoding == "f16" ? 2 : 4]), bytes == length - positionsLength else {
                    throw damaged("sample \"\(id)\": features do not fill the record")
                }
                features = (tiles, tok, hidden, encoding == "f16")
            } else if positionsLength != length {
                throw damaged("sample \"\(id)\": record longer than its positions")
            }
            guard entries[id] == nil else { throw damaged("sample \"\(id)\" listed twice") }
            entries[id] = Entry(offset: offset, length: length, positions: positions, positionsLength: positionsLength,
                                greedyTokens: tokens, greedyText: o["greedy_text"]?.stringValue, features: features)
            ids.append(id)
        }
        guard expectedOffset == payload.upperBound else { throw damaged("payload has bytes no sample owns") }
        self.entries = entries
        sampleIDs = ids
    }

    static func parseKey(_ o: JSONObject, damaged: (String) -> ReferenceCacheError) throws(ReferenceCacheError) -> ReferenceCacheKey {
        guard let reference = o["reference_sha256"]?.stringValue, let dataset = o["dataset_hash"]?.stringValue,
              let settingsObject = o["settings"]?.objectValue else { throw damaged("index: malformed key") }
        var settings: [String: String] = [:]
        for (name, value) in settingsObject.entries {
            guard let s = value.stringValue else { throw damaged("index: setting \(name) is not a string") }
            settings[name] = s
        }
        return ReferenceCacheKey(referenceSHA256: reference, datasetHash: dataset, settings: settings)
    }

    /// The record of one sample, nil when the cache has none for it.
    public func record(for id: String) throws(ReferenceCacheError) -> ReferenceRecord? {
        guard let e = entries[id] else { return nil }
        func damaged(_ reason: String) -> ReferenceCacheError { .damaged(path: path, reason: "sample \"\(id)\": \(reason)") }
        var reader = ByteReader(file.slice(e.offset..<(e.offset + e.length)), failure: damaged("record truncated"))
        var positions: [ReferencePosition] = []
        positions.reserveCapacity(min(e.positions, e.positionsLength / 20))
        do {
            for _ in 0..<e.positions {
                let target = Int32(bitPattern: try reader.u32())
                let top = Int32(bitPattern: try reader.u32())
                let targetLogProb = try reader.f32()
                let count = Int(try reader.u32())
                let flags = try reader.u32()
                guard target >= 0, Int(target) < vocabulary, top >= 0, Int(top) < vocabulary else {
                    throw damaged("token outside the vocabulary")
                }
                guard targetLogProb.isFinite, targetLogProb <= 0 else { throw damaged("target log-probability \(targetLogProb)") }
                guard flags == 0 || flags == CacheLayout.dense, count <= vocabulary else { throw damaged("bad position header") }
                let dense = flags == CacheLayout.dense
                guard !dense || count == vocabulary else { throw damaged("dense position of \(count) values") }
                var tokens: [Int32]?
                if !dense {
                    var list: [Int32] = []
                    list.reserveCapacity(count)
                    var previous: Int32 = -1
                    for _ in 0..<count {
                        let t = Int32(bitPattern: try reader.u32())
                        guard t > previous, Int(t) < vocabulary else { throw damaged("support tokens not ascending inside the vocabulary") }
                        list.append(t)
                        previous = t
                    }
                    tokens = list
                }
                var values: [Float] = []
                values.reserveCapacity(count)
                for _ in 0..<count {
                    let lp = try reader.f32()
                    guard lp.isFinite, lp <= 0 else { throw damaged("log-probability \(lp)") }
                    guard dense || lp > ReferencePosition.logProbCutoff else { throw damaged("sparse log-probability below the cut-off") }
                    values.append(lp)
                }
                positions.append(ReferencePosition(target: target, topToken: top, targetLogProb: targetLogProb,
                                                   supportTokens: tokens, logProbs: values, vocabulary: vocabulary))
            }
            guard reader.offset == e.positionsLength else { throw damaged("positions do not fill their part of the record") }
            var features: FeatureBlock?
            if let f = e.features {
                let total = f.tiles * f.tokens * f.hidden
                var values: [Float] = []
                values.reserveCapacity(total)
                for _ in 0..<total { values.append(f.half ? Float(Float16(bitPattern: try reader.u16())) : try reader.f32()) }
                features = FeatureBlock(tiles: f.tiles, tokens: f.tokens, hidden: f.hidden, values: values)
            }
            return ReferenceRecord(sampleID: id, positions: positions, greedyTokens: e.greedyTokens, greedyText: e.greedyText, features: features)
        }
    }
}

// MARK: - Bytes

struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
}

/// Bounds-checked little-endian reads; reading past the end throws `failure`.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    let failure: ReferenceCacheError
    private(set) var offset = 0

    init(_ buffer: UnsafeRawBufferPointer, failure: ReferenceCacheError) {
        self.buffer = buffer
        self.failure = failure
    }

    mutating func bytes(_ n: Int) throws(ReferenceCacheError) -> [UInt8] {
        guard n <= buffer.count - offset else { throw failure }
        defer { offset += n }
        return Array(buffer[offset..<(offset + n)])
    }

    mutating func u16() throws(ReferenceCacheError) -> UInt16 {
        guard 2 <= buffer.count - offset else { throw failure }
        defer { offset += 2 }
        return UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    mutating func u32() throws(ReferenceCacheError) -> UInt32 {
        guard 4 <= buffer.count - offset else { throw failure }
        defer { offset += 4 }
        return UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    mutating func u64() throws(ReferenceCacheError) -> UInt64 {
        guard 8 <= buffer.count - offset else { throw failure }
        defer { offset += 8 }
        return UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    mutating func f32() throws(ReferenceCacheError) -> Float { Float(bitPattern: try u32()) }
}

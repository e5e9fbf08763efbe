import PLMCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that can go wrong reading a checkpoint folder. Every case names the file.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case fileAccess(FileAccessError)
    case safetensors(SafetensorsError)
    case noWeights(folder: String)
    case invalidJSON(file: String, JSONParseError)
    case indexInvalid(file: String, detail: String)
    case shardMissing(index: String, shard: String)
    case tensorMissingFromShard(index: String, tensor: String, shard: String)
    case tensorInTwoShards(tensor: String, first: String, second: String)
    case tensorNotInIndex(index: String, tensor: String, shard: String)
    case config(ConfigError)
    case tensorNotFound(folder: String, tensor: String)

    public var description: String {
        switch self {
        case .fileAccess(let e): return e.description
        case .safetensors(let e): return e.description
        case .noWeights(let folder): return "\(folder): no model.safetensors or model.safetensors.index.json"
        case .invalidJSON(let file, let e): return "\(file): invalid JSON: \(e)"
        case .indexInvalid(let file, let d): return "\(file): \(d)"
        case .shardMissing(let index, let shard): return "\(index): shard '\(shard)' does not exist"
        case .tensorMissingFromShard(let index, let t, let shard): return "\(index): tensor '\(t)' is listed in shard '\(shard)' but that shard does not contain it"
        case .tensorInTwoShards(let t, let a, let b): return "tensor '\(t)' is stored in two shards: \(a) and \(b)"
        case .tensorNotInIndex(let index, let t, let shard): return "\(index): shard '\(shard)' holds tensor '\(t)', which the index does not list"
        case .config(let e): return e.description
        case .tensorNotFound(let folder, let t): return "\(folder): no tensor named '\(t)'"
        }
    }
}

extension FileSystem {
    /// The largest JSON side file read (256 MiB; a real tokenizer.json is ~9 MB, an index < 1 MB):
    /// a JSON tree takes many times its text in memory.
    public static let maxJSONFileBytes = 256 << 20

    /// A JSON file parsed strictly; errors name the file.
    public static func readJSON(_ path: String) throws(CheckpointError) -> JSONValue {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .fileAccess(error) }
        guard mapped.size <= maxJSONFileBytes else {
            throw .fileAccess(FileAccessError(path: path, reason: "\(formatBytes(mapped.size)) is more than the \(formatBytes(maxJSONFileBytes)) limit for a JSON file"))
        }
        do { return try JSONParser.parse(mapped.bytes) } catch { throw .invalidJSON(file: path, error) }
    }
}

/// Where one tensor of a checkpoint lives.
public struct TensorLocation: Sendable {
    public let info: TensorInfo
    public let shard: Int
}

/// The safetensors weights of a checkpoint folder: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json`. Headers are parsed and validated on open; tensor data is only
/// read when a view is used.
public struct CheckpointWeights: Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public let folder: String
    public let shards: [SafetensorsFile]
    /// Every tensor in a stable order: shard order, then file order within the shard.
    public let tensors: [TensorLocation]
    /// Set when the weights come from an index file.
    public let indexPath: String?
    private let byName: [String: Int]

    public init(folder: String) throws(CheckpointError) {
        self.folder = folder
        let single = FileSystem.join(folder, Self.singleFileName)
        let index = FileSystem.join(folder, Self.indexFileName)
        // Like transformers, a single file wins over an index when both are present.
        if FileSystem.exists(single) {
            let file = try SafetensorsFile(path: single)
            shards = [file]
            indexPath = nil
            tensors = file.tensors.map { TensorLocation(info: $0, shard: 0) }
        } else if FileSystem.exists(index) {
            (shards, tensors) = try Self.openSharded(folder: folder, indexPath: index)
            indexPath = index
        } else {
            throw .noWeights(folder: folder)
        }
        var byName: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { byName[t.info.name] = i }
        self.byName = byName
    }

    private static func openSharded(folder: String, indexPath: String) throws(CheckpointError) -> ([SafetensorsFile], [TensorLocation]) {
        let root = try FileSystem.readJSON(indexPath)
        guard let object = root.objectValue else { throw .indexInvalid(file: indexPath, detail: "not a JSON object") }
        guard let weightMap = object["weight_map"]?.objectValue else {
            throw .indexInvalid(file: indexPath, detail: "missing 'weight_map' object")
        }
        if let meta = object["metadata"], meta.objectValue == nil, !meta.isNull {
            throw .indexInvalid(file: indexPath, detail: "'metadata' must be an object")
        }
        // Shard names in first-appearance order, so the tensor order is reproducible.
        var shardNames: [String] = []
        var listed: [String: String] = [:]
        for (tensor, value) in weightMap.entries {
            guard let shard = value.stringValue else {
                throw .indexInvalid(file: indexPath, detail: "weight_map['\(tensor)'] is not a string")
            }
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw .indexInvalid(file: indexPath, detail: "shard name '\(shard)' must be a plain file name in the same folder")
            }
            if !shardNames.contains(shard) { shardNames.append(shard) }
            listed[tensor] = shard
        }
        var shards: [SafetensorsFile] = []
        var locations: [TensorLocation] = []
        var seenIn: [String: String] = [:]
        for (i, shardName) in shardNames.enumerated() {
            let path = FileSystem.join(folder, shardName)
            guard FileSystem.exists(path) else { throw .shardMissing(index: indexPath, shard: shardName) }
            let file = try SafetensorsFile(path: path)
            for info in file.tensors {
                if let first = seenIn[info.name] {
                    throw .tensorInTwoShards(tensor: info.name, first: first, second: shardName)
                }
                seenIn[info.name] = shardName
                guard let expected = listed[info.name] else {
                    throw .tensorNotInIndex(index: indexPath, tensor: info.name, shard: shardName)
                }
                if expected != shardName {
                    // The index puts it elsewhere: it is stored twice or listed in the wrong shard.
                    throw .tensorInTwoShards(tensor: info.name, first: expected, second: shardName)
                }
                locations.append(TensorLocation(info: info, shard: i))
            }
            shards.append(file)
        }
        for (tensor, shard) in weightMap.entries.map({ ($0.key, $0.value.stringValue ?? "") }) where seenIn[tensor] == nil {
            throw .tensorMissingFromShard(index: indexPath, tensor: tensor, shard: shard)
        }
        return (shards, locations)
    }

    public func location(_ name: String) -> TensorLocation? { byName[name].map { tensors[$0] } }
    public func info(_ name: String) -> TensorInfo? { location(name)?.info }
    public func contains(_ name: String) -> Bool { byName[name] != nil }

    public func view(_ name: String) throws(CheckpointError) -> TensorView {
        guard let loc = location(name) else { throw .tensorNotFound(folder: folder, tensor: name) }
        return shards[loc.shard].view(loc.info)
    }

    /// Total bytes of tensor data across shards.
    public var totalTensorBytes: Int { tensors.reduce(0) { $0 + $1.info.byteCount } }
    /// Total bytes of the weight files on disk.
    public var totalFileBytes: Int { shards.reduce(0) { $0 + $1.file.size } }
}

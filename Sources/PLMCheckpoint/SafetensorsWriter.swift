import PLMCore

/// A tensor to write to a safetensors file.
public struct TensorRecord {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    public let bytes: [UInt8]

    public init(name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public init(name: String, shape: [Int], floats: [Float]) {
        self.init(name: name, dtype: .f32, shape: shape, bytes: floats.withUnsafeBytes { Array($0) })
    }

    public init(name: String, shape: [Int], int64s: [Int]) {
        self.init(name: name, dtype: .i64, shape: shape, bytes: int64s.map { Int64($0) }.withUnsafeBytes { Array($0) })
    }
}

public enum SafetensorsWriter {
    /// Writes tensors (in the given order) atomically. The header is padded with spaces to a
    /// multiple of 8 bytes, as the reference writer does, so f32/i64 data stays aligned.
    public static func write(_ tensors: [TensorRecord], metadata: [String: String] = [:], to path: String,
                             protecting inputs: [String] = []) throws(FileAccessError) {
        var header = JSONObject()
        if !metadata.isEmpty {
            header["__metadata__"] = .object(JSONObject(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
        }
        var offset = 0
        for t in tensors {
            header[t.name] = .object(JSONObject([
                ("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.map { .int($0) })),
                ("data_offsets", .array([.int(offset), .int(offset + t.bytes.count)])),
            ]))
            offset += t.bytes.count
        }
        var headerBytes = Array(JSONValue.object(header).serialized().utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        let writer = try AtomicFileWriter(path: path, protecting: inputs)
        try writer.write(withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian, Array.init))
        try writer.write(headerBytes)
        for t in tensors { try writer.write(t.bytes) }
        try writer.commit()
    }
}

import PLMCore
import PLMCheckpoint
import PLMFormat
import PLMQuant

/// Weights from a mapped `.plm` file. Exact tensors are widened; quantized linear weights become
/// `QuantizedLinear` maps that compute straight from the mapped bytes (no dequantized copy).
public struct PLMWeightSource: WeightSource {
    public let file: PLMFile
    public let options: EngineOptions
    public var sourceName: String { file.path }
    public var isReference: Bool { false }

    public init(file: PLMFile, options: EngineOptions) {
        self.file = file
        self.options = options
    }

    public func shape(of tensor: String) -> [Int]? { file.tensor(tensor)?.shape }

    func checked(_ name: String, shape: [Int]) throws(EngineError) -> PLMTensor {
        guard let t = file.tensor(name) else { throw .missingTensor(source: sourceName, tensor: name) }
        guard t.shape == shape else { throw .tensorShape(source: sourceName, tensor: name, expected: shape, actual: t.shape) }
        return t
    }

    public func floats(_ name: String, shape: [Int]) throws(EngineError) -> [Float] {
        let t = try checked(name, shape: shape)
        var out = [Float](repeating: 0, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { buf throws(EngineError) in try dequantize(t, into: buf) }
        return out
    }

    public func buffer(_ name: String, shape: [Int]) throws(EngineError) -> FloatBuffer {
        let t = try checked(name, shape: shape)
        let out = FloatBuffer(count: t.elementCount)
        try dequantize(t, into: out.buffer)
        return out
    }

    /// Widens or dequantizes a whole tensor (the reference path; also used for small tensors).
    func dequantize(_ t: PLMTensor, into out: UnsafeMutableBufferPointer<Float>) throws(EngineError) {
        var parts: [String: PartBytes] = [:]
        for p in t.parts {
            do { parts[p.name] = try file.bytes(t, part: p.name) } catch { throw .plm(error) }
        }
        let data = parts["data"]!
        switch t.type {
        case .f32:
            data.withBytes { raw in for i in 0..<t.elementCount { out[i] = raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) } }
        case .f16:
            data.withBytes { raw in for i in 0..<t.elementCount { out[i] = FloatWidening.f16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) } }
        case .bf16:
            data.withBytes { raw in for i in 0..<t.elementCount { out[i] = FloatWidening.bf16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) } }
        case .int8, .int4:
            let q = RowQuantizer(layout: t.layout)
            data.withBytes { d in
                (parts["scales"]).map { $0 }.withOptionalBytes { s in
                    (parts["mins"]).withOptionalBytes { m in
                        q.dequantize(.init(data: UnsafeMutableRawPointer(mutating: d.baseAddress!), scales: s.map { UnsafeMutableRawPointer(mutating: $0) },
                                           mins: m.map { UnsafeMutableRawPointer(mutating: $0) }), rows: t.layout.rows, into: out.baseAddress!)
                    }
                }
            }
        }
    }

    public func embedding(_ name: String, vocab: Int, hidden: Int) throws(EngineError) -> (table: any TokenEmbedding, head: any LinearMap) {
        let t = try checked(name, shape: [vocab, hidden])
        if t.type.isQuantized {
            let q: QuantizedLinear
            do { q = try QuantizedLinear(file: file, tensor: t, bias: nil, options: options) } catch { throw .plm(error) }
            return (QuantizedEmbedding(table: q), q)
        }
        if let head = try inPlace(t, bias: nil, outFeatures: vocab, inFeatures: hidden) { return (BF16Embedding(head: head), head) }
        let table = try buffer(name, shape: [vocab, hidden])
        return (DenseEmbedding(table: table, hidden: hidden),
                try DenseLinear(weight: table, bias: nil, outFeatures: vocab, inFeatures: hidden, threads: options.threads))
    }

    public func linear(weight: String, bias: String?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> any LinearMap {
        guard let t = file.tensor(weight) else { throw .missingTensor(source: sourceName, tensor: weight) }
        try checkLinearShape(weight, t.shape, outFeatures: outFeatures, inFeatures: inFeatures)
        let b = try bias.map { name throws(EngineError) in try floats(name, shape: [outFeatures]) }
        if t.type.isQuantized {
            do { return try QuantizedLinear(file: file, tensor: t, bias: b, options: options) } catch { throw .plm(error) }
        }
        if let linear = try inPlace(t, bias: b, outFeatures: outFeatures, inFeatures: inFeatures) { return linear }
        let w = FloatBuffer(count: t.elementCount)
        try dequantize(t, into: w.buffer)
        return try DenseLinear(weight: w, bias: b, outFeatures: outFeatures, inFeatures: inFeatures, threads: options.threads)
    }
}

extension PLMWeightSource {
    /// An exact bf16 matrix used from its part in place (mapped, or the decompressed copy).
    func inPlace(_ t: PLMTensor, bias: [Float]?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> BF16Linear? {
        guard t.type == .bf16 else { return nil }
        let data: PartBytes
        do { data = try file.bytes(t, part: "data") } catch { throw .plm(error) }
        guard let base = data.withBytes({ $0.baseAddress }) else { return nil }
        return try BF16Linear(weights: base, owner: data, bias: bias, outFeatures: outFeatures, inFeatures: inFeatures, options: options)
    }
}

extension Optional where Wrapped == PartBytes {
    func withOptionalBytes<R>(_ body: (UnsafeRawPointer?) -> R) -> R {
        guard let self else { return body(nil) }
        return self.withBytes { body($0.baseAddress) }
    }
}

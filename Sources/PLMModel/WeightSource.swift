import PLMCore
import PLMCheckpoint

/// Where the engine's weights come from. A checkpoint folder widens everything to fp32; a `.plm`
/// file (later) hands out quantized linear maps. The model graph is the same for both.
public protocol WeightSource: Sendable {
    /// A name for error messages (the folder or file path).
    var sourceName: String { get }
    /// How the layers this source hands out compute (threads, kernels, activations).
    var options: EngineOptions { get }
    /// The source is the fp32 reference (a checkpoint folder): `auto` choices keep it exact.
    var isReference: Bool { get }
    func shape(of tensor: String) -> [Int]?
    /// The tensor widened to fp32, checked against the expected shape.
    func floats(_ tensor: String, shape: [Int]) throws(EngineError) -> [Float]
    /// A large fp32 tensor in a huge-page buffer.
    func buffer(_ tensor: String, shape: [Int]) throws(EngineError) -> FloatBuffer
    /// A token embedding table [vocab, hidden]: row lookups, and the same table as a linear map
    /// for a tied lm_head.
    func embedding(_ tensor: String, vocab: Int, hidden: Int) throws(EngineError) -> (table: any TokenEmbedding, head: any LinearMap)
    /// A linear map for weight [out, in] and optional bias [out]. A weight of higher rank reads
    /// as [out, in] with in = the product of its other dimensions (the patch-embedding conv is
    /// [D, 3, 14, 14]); both sources accept exactly that.
    func linear(weight: String, bias: String?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> any LinearMap
}

/// Looks up embedding rows.
public protocol TokenEmbedding: Sendable {
    func row(_ id: Int, into out: UnsafeMutablePointer<Float>)
}

/// An fp32 table.
struct DenseEmbedding: TokenEmbedding {
    let table: FloatBuffer
    let hidden: Int
    func row(_ id: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(from: table.pointer + id * hidden, count: hidden)
    }
}

/// A quantized table, used in place; rows are dequantized on lookup.
struct QuantizedEmbedding: TokenEmbedding {
    let table: QuantizedLinear
    func row(_ id: Int, into out: UnsafeMutablePointer<Float>) { table.dequantizeRow(id, into: out) }
}

extension WeightSource {
    /// The one shape rule for linear weights: [out, d1, d2, …] with d1·d2·… = in.
    func checkLinearShape(_ tensor: String, _ shape: [Int], outFeatures: Int, inFeatures: Int) throws(EngineError) {
        guard shape.count >= 2, shape[0] == outFeatures, Checked.product(of: shape.dropFirst()) == inFeatures else {
            throw .tensorShape(source: sourceName, tensor: tensor, expected: [outFeatures, inFeatures], actual: shape)
        }
    }

    public func linear(_ prefix: String, outFeatures: Int, inFeatures: Int, bias: Bool) throws(EngineError) -> any LinearMap {
        try linear(weight: prefix + ".weight", bias: bias ? prefix + ".bias" : nil, outFeatures: outFeatures, inFeatures: inFeatures)
    }
}

/// The fp32 model from a Hugging Face checkpoint folder. bf16 linear weights and embeddings are
/// used in place from the mapping (`BF16Linear`: widened exactly inside the kernels), so a bf16
/// checkpoint's model takes about the file's size in memory. f32/f16 weights and the small
/// vectors are widened into fp32 buffers when loaded and their mapped pages dropped.
public struct CheckpointWeightSource: WeightSource {
    public let weights: CheckpointWeights
    public let options: EngineOptions
    public var sourceName: String { weights.folder }
    public var isReference: Bool { true }

    public init(weights: CheckpointWeights, options: EngineOptions) {
        self.weights = weights
        self.options = options
    }

    public func shape(of tensor: String) -> [Int]? { weights.info(tensor)?.shape }

    private func checkedView(_ tensor: String, shape: [Int]) throws(EngineError) -> TensorView {
        guard weights.contains(tensor) else { throw .missingTensor(source: sourceName, tensor: tensor) }
        let view: TensorView
        do { view = try weights.view(tensor) } catch { throw .checkpoint(error) }
        guard view.shape == shape else { throw .tensorShape(source: sourceName, tensor: tensor, expected: shape, actual: view.shape) }
        guard view.dtype.isFloatConvertible else {
            throw .checkpoint(.safetensors(SafetensorsError(file: view.file.path, problem: .notFloatConvertible(tensor: tensor, dtype: view.dtype))))
        }
        return view
    }

    /// A bf16 weight computed from the mapping in place (the big matrices of a bf16 checkpoint);
    /// nil for f32/f16 weights, which are widened into a buffer as before.
    private func inPlace(_ view: TensorView, bias: [Float]?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> BF16Linear? {
        guard view.dtype == .bf16, let base = view.bytes.baseAddress else { return nil }
        return try BF16Linear(weights: base, owner: view.file, bias: bias, outFeatures: outFeatures, inFeatures: inFeatures, options: options)
    }

    public func floats(_ tensor: String, shape: [Int]) throws(EngineError) -> [Float] {
        let view = try checkedView(tensor, shape: shape)
        let out: [Float]
        do { out = try view.floats() } catch { throw .checkpoint(.safetensors(error)) }
        view.file.dropPages(view.bytes)
        return out
    }

    public func buffer(_ tensor: String, shape: [Int]) throws(EngineError) -> FloatBuffer {
        let view = try checkedView(tensor, shape: shape)
        let out = FloatBuffer(count: view.elementCount)
        do { try view.copyFloats(into: out.buffer) } catch { throw .checkpoint(.safetensors(error)) }
        view.file.dropPages(view.bytes)
        return out
    }

    public func embedding(_ tensor: String, vocab: Int, hidden: Int) throws(EngineError) -> (table: any TokenEmbedding, head: any LinearMap) {
        let view = try checkedView(tensor, shape: [vocab, hidden])
        if let head = try inPlace(view, bias: nil, outFeatures: vocab, inFeatures: hidden) {
            return (BF16Embedding(head: head), head)
        }
        let table = try buffer(tensor, shape: [vocab, hidden])
        return (DenseEmbedding(table: table, hidden: hidden),
                try DenseLinear(weight: table, bias: nil, outFeatures: vocab, inFeatures: hidden, threads: options.threads))
    }

    public func linear(weight: String, bias: String?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> any LinearMap {
        guard let stored = shape(of: weight) else { throw .missingTensor(source: sourceName, tensor: weight) }
        try checkLinearShape(weight, stored, outFeatures: outFeatures, inFeatures: inFeatures)
        let b = try bias.map { name throws(EngineError) in try floats(name, shape: [outFeatures]) }
        if let linear = try inPlace(try checkedView(weight, shape: stored), bias: b, outFeatures: outFeatures, inFeatures: inFeatures) {
            return linear
        }
        let w = try buffer(weight, shape: stored)
        return try DenseLinear(weight: w, bias: b, outFeatures: outFeatures, inFeatures: inFeatures, threads: options.threads)
    }
}

import PLMCheckpoint

/// Where the engine's weights come from. A checkpoint folder widens everything to fp32; a `.plm`
/// file (later) hands out quantized linear maps. The model graph is the same for both.
public protocol WeightSource {
    /// A name for error messages (the folder or file path).
    var sourceName: String { get }
    func shape(of tensor: String) -> [Int]?
    /// The tensor widened to fp32, checked against the expected shape.
    func floats(_ tensor: String, shape: [Int]) throws(EngineError) -> [Float]
    /// A linear map for weight [out, in] and optional bias [out].
    func linear(weight: String, bias: String?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> any LinearMap
}

extension WeightSource {
    public func linear(_ prefix: String, outFeatures: Int, inFeatures: Int, bias: Bool) throws(EngineError) -> any LinearMap {
        try linear(weight: prefix + ".weight", bias: bias ? prefix + ".bias" : nil, outFeatures: outFeatures, inFeatures: inFeatures)
    }
}

/// fp32 weights from a Hugging Face checkpoint folder. bf16/f16 tensors are widened (exactly) when
/// loaded; the mapped source pages are then dropped, so peak memory is the fp32 model, not fp32
/// plus the file.
public struct CheckpointWeightSource: WeightSource {
    public let weights: CheckpointWeights
    public var sourceName: String { weights.folder }

    public init(weights: CheckpointWeights) { self.weights = weights }

    public func shape(of tensor: String) -> [Int]? { weights.info(tensor)?.shape }

    public func floats(_ tensor: String, shape: [Int]) throws(EngineError) -> [Float] {
        guard weights.contains(tensor) else { throw .missingTensor(source: sourceName, tensor: tensor) }
        let view: TensorView
        do { view = try weights.view(tensor) } catch { throw .checkpoint(error) }
        guard view.shape == shape else { throw .tensorShape(source: sourceName, tensor: tensor, expected: shape, actual: view.shape) }
        let out: [Float]
        do { out = try view.floats() } catch { throw .checkpoint(.safetensors(error)) }
        view.file.dropPages(view.bytes)
        return out
    }

    public func linear(weight: String, bias: String?, outFeatures: Int, inFeatures: Int) throws(EngineError) -> any LinearMap {
        let w = try floats(weight, shape: [outFeatures, inFeatures])
        let b = try bias.map { name throws(EngineError) in try floats(name, shape: [outFeatures]) }
        return DenseLinear(weight: w, bias: b, outFeatures: outFeatures, inFeatures: inFeatures)
    }
}

/// plmq as a library: open a PerceptionLM checkpoint folder or `.plm` file, convert, and run it.
///
/// Depend on the `PLMQ` product and `import PLMQ`; it re-exports the modules a user needs:
/// - `PLMCore`: JSON, mapped and atomically written files, `PixelTiles`;
/// - `PLMCheckpoint`: safetensors and config readers (`CheckpointFolder`, `PerceptionLMConfig`);
/// - `PLMQuant`: storage types and quantizers;
/// - `PLMFormat`: the `.plm` container (`PLMFile`, `PLMWriter`);
/// - `PLMConvert`: checkpoint → `.plm` conversion (`ConversionPlan`, `Converter`);
/// - `PLMModel`: the engine (`ModelBundle`, `EngineOptions`, `PerceptionLM`, `InferenceContext`);
/// - `PLMTokenizer`: tokenizer.json, chat templates, placeholder expansion;
/// - `PLMImage`: PNG/JPEG decoding and the image and video processors;
/// - `PLMRunner`: sampling, generation, chat sessions;
/// - `PLMEval`: samples folders, llama-perplexity's metrics, the evaluator and its reports.
@_exported import PLMCore
@_exported import PLMCheckpoint
@_exported import PLMQuant
@_exported import PLMFormat
@_exported import PLMConvert
@_exported import PLMModel
@_exported import PLMTokenizer
@_exported import PLMImage
@_exported import PLMRunner
@_exported import PLMEval

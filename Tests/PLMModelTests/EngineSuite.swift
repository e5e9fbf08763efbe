import Testing

/// The suites that run whole models. They share loaded models and the process-wide kernel
/// settings (thread count, implementation), so they run one at a time.
@Suite(.serialized) struct EngineSuite {}

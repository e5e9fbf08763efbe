import PLMCore
/// The three parts of a PerceptionLM checkpoint.
public enum Component: String, CaseIterable, Sendable {
    case visionTower = "vision tower"
    case projector = "projector"
    case languageModel = "language model"
    case other = "other"

    public static let visionPrefix = "model.vision_tower.timm_model."
    public static let projectorPrefix = "model.multi_modal_projector."
    public static let languagePrefix = "model.language_model."
    public static let lmHead = "lm_head.weight"

    public static func of(_ name: String) -> Component {
        if name.hasPrefix(visionPrefix) { return .visionTower }
        if name.hasPrefix(projectorPrefix) { return .projector }
        if name.hasPrefix(languagePrefix) || name == lmHead { return .languageModel }
        return .other
    }
}

/// One tensor the config says the checkpoint must hold.
public struct ExpectedTensor: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
}

/// A disagreement between config.json and the stored tensors.
public enum LayoutIssue: Sendable, Equatable, CustomStringConvertible {
    case missing(name: String, shape: [Int])
    case unexpected(name: String, shape: [Int])
    case shapeMismatch(name: String, expected: [Int], actual: [Int])
    /// Present but never read by the forward pass (timm's attention-pool head, a tied lm_head).
    case unused(name: String, reason: String)

    public var isError: Bool {
        if case .unused = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case .missing(let n, let s): return "missing tensor \(n) \(formatShape(s)) required by config.json"
        case .unexpected(let n, let s): return "unexpected tensor \(n) \(formatShape(s)) not described by config.json"
        case .shapeMismatch(let n, let e, let a): return "tensor \(n) has shape \(formatShape(a)) but config.json implies \(formatShape(e))"
        case .unused(let n, let r): return "tensor \(n) is not used: \(r)"
        }
    }
}

public func formatShape(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

extension PerceptionLMConfig {
    /// Every tensor the forward pass reads, with its shape, in module order. The tied lm_head is
    /// not listed (it is `embed_tokens`).
    public func expectedTensors() -> [ExpectedTensor] {
        var out: [ExpectedTensor] = []
        func add(_ name: String, _ shape: [Int]) { out.append(ExpectedTensor(name: name, shape: shape)) }

        let v = vision, d = v.embedDim
        let vp = Component.visionPrefix
        if v.classToken { add(vp + "cls_token", [1, 1, d]) }
        if v.useAbsPosEmb { add(vp + "pos_embed", [1, v.tokenCount, d]) }
        add(vp + "patch_embed.proj.weight", [d, 3, v.patchSize, v.patchSize])
        if !v.usePreTransformerNorm { add(vp + "patch_embed.proj.bias", [d]) }
        if v.usePreTransformerNorm {
            add(vp + "norm_pre.weight", [d])
            add(vp + "norm_pre.bias", [d])
        }
        for i in 0..<v.depth {
            let b = vp + "blocks.\(i)."
            add(b + "norm1.weight", [d]); add(b + "norm1.bias", [d])
            add(b + "attn.qkv.weight", [3 * d, d])
            if v.qkvBias { add(b + "attn.qkv.bias", [3 * d]) }
            add(b + "attn.proj.weight", [d, d]); add(b + "attn.proj.bias", [d])
            if v.layerScale { add(b + "gamma_1", [d]) }
            add(b + "norm2.weight", [d]); add(b + "norm2.bias", [d])
            add(b + "mlp.fc1.weight", [v.mlpHidden, d]); add(b + "mlp.fc1.bias", [v.mlpHidden])
            add(b + "mlp.fc2.weight", [d, v.mlpHidden]); add(b + "mlp.fc2.bias", [d])
            if v.layerScale { add(b + "gamma_2", [d]) }
        }
        if v.usePostTransformerNorm {
            add(vp + "norm.weight", [d])
            add(vp + "norm.bias", [d])
        }

        let t = text, h = t.hiddenSize
        let pp = Component.projectorPrefix
        add(pp + "linear_1.weight", [h, d]); add(pp + "linear_1.bias", [h])
        add(pp + "linear_2.weight", [h, h]); add(pp + "linear_2.bias", [h])

        let lp = Component.languagePrefix
        let qDim = t.numAttentionHeads * t.headDim, kvDim = t.numKeyValueHeads * t.headDim
        add(lp + "embed_tokens.weight", [t.vocabSize, h])
        for i in 0..<t.numHiddenLayers {
            let l = lp + "layers.\(i)."
            add(l + "input_layernorm.weight", [h])
            add(l + "self_attn.q_proj.weight", [qDim, h])
            add(l + "self_attn.k_proj.weight", [kvDim, h])
            add(l + "self_attn.v_proj.weight", [kvDim, h])
            add(l + "self_attn.o_proj.weight", [h, qDim])
            if t.attentionBias {
                add(l + "self_attn.q_proj.bias", [qDim]); add(l + "self_attn.k_proj.bias", [kvDim])
                add(l + "self_attn.v_proj.bias", [kvDim]); add(l + "self_attn.o_proj.bias", [h])
            }
            add(l + "post_attention_layernorm.weight", [h])
            add(l + "mlp.gate_proj.weight", [t.intermediateSize, h])
            add(l + "mlp.up_proj.weight", [t.intermediateSize, h])
            add(l + "mlp.down_proj.weight", [h, t.intermediateSize])
            if t.mlpBias {
                add(l + "mlp.gate_proj.bias", [t.intermediateSize]); add(l + "mlp.up_proj.bias", [t.intermediateSize])
                add(l + "mlp.down_proj.bias", [h])
            }
        }
        add(lp + "norm.weight", [h])
        if !tieWordEmbeddings { add(Component.lmHead, [t.vocabSize, h]) }
        return out
    }

    /// Compares the stored tensors with what the config implies. Errors: missing tensors,
    /// tensors nothing describes, wrong shapes. Notes: tensors timm or transformers create but the
    /// PerceptionLM forward pass never reads.
    public func checkLayout(stored: [TensorInfo]) -> [LayoutIssue] {
        var issues: [LayoutIssue] = []
        let expected = expectedTensors()
        var storedByName: [String: TensorInfo] = [:]
        for s in stored { storedByName[s.name] = s }
        let expectedNames = Set(expected.map(\.name))
        for e in expected {
            guard let s = storedByName[e.name] else { issues.append(.missing(name: e.name, shape: e.shape)); continue }
            if s.shape != e.shape { issues.append(.shapeMismatch(name: e.name, expected: e.shape, actual: s.shape)) }
        }
        for s in stored where !expectedNames.contains(s.name) {
            if let reason = unusedReason(s.name) {
                issues.append(.unused(name: s.name, reason: reason))
            } else {
                issues.append(.unexpected(name: s.name, shape: s.shape))
            }
        }
        return issues
    }

    private func unusedReason(_ name: String) -> String? {
        let vp = Component.visionPrefix
        if name == Component.lmHead && tieWordEmbeddings {
            return "tie_word_embeddings is true, so the head is embed_tokens (as transformers does)"
        }
        if vision.globalPool == "map" && name.hasPrefix(vp + "attn_pool.") {
            return "timm's attention-pool head (global_pool \"map\"); PerceptionLM reads the token features before it"
        }
        if name.hasPrefix(vp + "fc_norm.") || name.hasPrefix(vp + "head.") {
            return "timm's classifier head; PerceptionLM reads the token features before it"
        }
        return nil
    }
}

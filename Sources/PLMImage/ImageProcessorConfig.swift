import PLMCore

/// A processor_config.json problem: the field (dotted path) and what is wrong with it.
public struct ProcessorConfigError: Error, Equatable, CustomStringConvertible {
    public let field: String
    public let problem: String
    public var description: String { "processor_config.json: \(field): \(problem)" }
}

/// How an image becomes tiles (`vision_input_type`).
public enum VisionInputType: Sendable, Equatable {
    /// A thumbnail of the whole image plus up to `max_num_tiles` tiles of it ("thumb+tile").
    case thumbAndTiles
    /// The thumbnail alone (any other value in the config).
    case singleTile
}

/// Rescale and normalise settings (`do_rescale`, `rescale_factor`, `do_normalize`,
/// `image_mean`, `image_std`), shared by the image and video processors.
public struct PixelNormalization: Sendable, Equatable {
    public var doRescale: Bool
    public var rescaleFactor: Double
    public var doNormalize: Bool
    public var mean: [Double]
    public var std: [Double]

    public static let perceptionLM = PixelNormalization(doRescale: true, rescaleFactor: 1.0 / 255.0, doNormalize: true, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])

    public init(doRescale: Bool, rescaleFactor: Double, doNormalize: Bool, mean: [Double], std: [Double]) {
        self.doRescale = doRescale
        self.rescaleFactor = rescaleFactor
        self.doNormalize = doNormalize
        self.mean = mean
        self.std = std
    }

    /// The float each uint8 value of each channel becomes, computed with transformers' fp32
    /// operations: with both steps on, the rescale is folded into mean and std
    /// (mean·(1/factor) in fp32) and the value is (u − mean′) / std′; otherwise u·factor or
    /// (u − mean) / std alone.
    func lookupTables() -> [[Float]] {
        (0..<3).map { c in
            let inverse = Float(1.0 / rescaleFactor)
            let m = Float(mean[c]), s = Float(std[c])
            return (0..<256).map { (u: Int) -> Float in
                let x = Float(u)
                switch (doRescale, doNormalize) {
                case (true, true): return (x - m * inverse) / (s * inverse)
                case (false, true): return (x - m) / s
                case (true, false): return x * Float(rescaleFactor)
                case (false, false): return x
                }
            }
        }
    }

    static func read(_ o: JSONObject, path: String) throws(ProcessorConfigError) -> PixelNormalization {
        var n = PixelNormalization.perceptionLM
        let r = Fields(object: o, path: path)
        n.doRescale = try r.bool("do_rescale") ?? n.doRescale
        n.rescaleFactor = try r.double("rescale_factor") ?? n.rescaleFactor
        n.doNormalize = try r.bool("do_normalize") ?? n.doNormalize
        n.mean = try r.triple("image_mean") ?? n.mean
        n.std = try r.triple("image_std") ?? n.std
        guard n.rescaleFactor > 0 else { throw r.error("rescale_factor", "must be positive, found \(n.rescaleFactor)") }
        if let bad = n.std.first(where: { $0 == 0 }) { throw r.error("image_std", "must not contain \(bad)") }
        return n
    }
}

/// The `image_processor` part of a processor_config.json (PerceptionLMImageProcessor).
public struct ImageProcessorConfig: Sendable, Equatable {
    public var tileSize: Int
    public var maxNumTiles: Int
    public var visionInputType: VisionInputType
    public var doResize: Bool
    public var normalization: PixelNormalization

    /// The defaults of transformers' PerceptionLMImageProcessor (448 tiles, up to 36).
    public static let perceptionLM = ImageProcessorConfig(tileSize: 448, maxNumTiles: 36, visionInputType: .thumbAndTiles, doResize: true, normalization: .perceptionLM)

    public init(tileSize: Int, maxNumTiles: Int, visionInputType: VisionInputType, doResize: Bool, normalization: PixelNormalization) {
        self.tileSize = tileSize
        self.maxNumTiles = maxNumTiles
        self.visionInputType = visionInputType
        self.doResize = doResize
        self.normalization = normalization
    }

    /// Reads the `image_processor` object; absent fields take the processor's defaults.
    public init(json o: JSONObject, path: String = "image_processor") throws(ProcessorConfigError) {
        let r = Fields(object: o, path: path)
        var c = ImageProcessorConfig.perceptionLM
        c.tileSize = try r.positiveInt("tile_size") ?? c.tileSize
        c.maxNumTiles = try r.positiveInt("max_num_tiles") ?? c.maxNumTiles
        if let t = try r.string("vision_input_type") { c.visionInputType = t == "thumb+tile" ? .thumbAndTiles : .singleTile }
        c.doResize = try r.bool("do_resize") ?? c.doResize
        try r.requireBicubic()
        c.normalization = try PixelNormalization.read(o, path: path)
        guard c.tileSize <= 4096 else { throw r.error("tile_size", "\(c.tileSize) is beyond 4096") }
        guard c.maxNumTiles <= 1024 else { throw r.error("max_num_tiles", "\(c.maxNumTiles) is beyond 1024") }
        self = c
    }

    /// Reads the `image_processor` object of a whole processor_config.json text.
    public static func fromProcessorConfig(_ bytes: [UInt8]) throws(ProcessorConfigError) -> ImageProcessorConfig {
        let root = try Fields.root(bytes)
        guard let o = root["image_processor"]?.objectValue else {
            throw ProcessorConfigError(field: "image_processor", problem: "missing or not an object")
        }
        return try ImageProcessorConfig(json: o)
    }
}

/// Typed access to one JSON object, with errors naming the dotted field path.
struct Fields {
    let object: JSONObject
    let path: String

    static func root(_ bytes: [UInt8]) throws(ProcessorConfigError) -> JSONObject {
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch { throw ProcessorConfigError(field: "", problem: "not valid JSON: \(error)") }
        guard let o = value.objectValue else { throw ProcessorConfigError(field: "", problem: "top level is not an object") }
        return o
    }

    func error(_ key: String, _ problem: String) -> ProcessorConfigError {
        ProcessorConfigError(field: path.isEmpty ? key : "\(path).\(key)", problem: problem)
    }

    func value(_ key: String) -> JSONValue? {
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    func bool(_ key: String) throws(ProcessorConfigError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw error(key, "expected true or false, found \(v.typeName)") }
        return b
    }

    func double(_ key: String) throws(ProcessorConfigError) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw error(key, "expected a number, found \(v.typeName)") }
        return d
    }

    func positiveInt(_ key: String) throws(ProcessorConfigError) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue else { throw error(key, "expected an integer, found \(v.typeName)") }
        guard i > 0 else { throw error(key, "must be positive, found \(i)") }
        return i
    }

    func string(_ key: String) throws(ProcessorConfigError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw error(key, "expected a string, found \(v.typeName)") }
        return s
    }

    /// A per-channel list of 3 numbers (a single number is repeated, as transformers allows).
    func triple(_ key: String) throws(ProcessorConfigError) -> [Double]? {
        guard let v = value(key) else { return nil }
        if let d = v.doubleValue { return [d, d, d] }
        guard let a = v.arrayValue, a.count == 3 else { throw error(key, "expected 3 numbers") }
        var out: [Double] = []
        for x in a {
            guard let d = x.doubleValue, d.isFinite else { throw error(key, "expected 3 numbers, found \(x.typeName)") }
            out.append(d)
        }
        return out
    }

    /// Only BICUBIC (PIL resample 3) is implemented; anything else must not pass silently.
    func requireBicubic() throws(ProcessorConfigError) {
        guard let v = value("resample") else { return }
        guard v.intValue == 3 else { throw error("resample", "only 3 (bicubic) is supported, found \(v)") }
    }

    /// `size` as {height, width}.
    func size(_ key: String) throws(ProcessorConfigError) -> (height: Int, width: Int)? {
        guard let v = value(key) else { return nil }
        guard let o = v.objectValue else { throw error(key, "expected {\"height\", \"width\"}") }
        let inner = Fields(object: o, path: path.isEmpty ? key : "\(path).\(key)")
        guard let h = try inner.positiveInt("height"), let w = try inner.positiveInt("width") else {
            throw error(key, "needs both height and width")
        }
        guard h <= 4096, w <= 4096 else { throw error(key, "\(w)×\(h) is beyond 4096") }
        return (h, w)
    }
}

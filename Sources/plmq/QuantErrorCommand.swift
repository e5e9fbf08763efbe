import PLMCore
import ArgumentParser
import PLMModel
import PLMCheckpoint
import PLMConvert
import PLMQuant
#if canImport(Glibc)
import Glibc
#endif

struct QuantErrorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quant-error",
        abstract: "Measure the weight error of storage types on the matrices of a safetensors file.",
        discussion: """
            For every tensor with two or more dimensions (or those matching --match), quantizes it \
            with each type and prints the relative RMSE ‖W − Ŵ‖ / ‖W‖, then the mean per type. \
            Nothing is written. Use it to choose types for --keep on a new model.
            """
    )

    @Argument(help: "A .safetensors file, or a checkpoint folder.")
    var path: String

    @Option(help: "Comma-separated storage types.")
    var types = "int8-sym-g32,int4-sym-g32,int4-asym-f16-g32,int4-asym-f16-g64,int4-asym-k6-g32"

    @Option(help: "Only tensors whose name matches this regular expression.")
    var match: String?

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, !(1...EngineOptions.maxThreads).contains(threads) {
            throw ValidationError("--threads must be between 1 and \(EngineOptions.maxThreads)")
        }
        if let match {
            do { _ = try Regex(match) } catch { throw ValidationError("--match: invalid regular expression: \(error)") }
        }
    }

    func run() throws {
        try reportingErrors {
            let parsed = types.split(separator: ",").map { String($0) }
            let storage = try parsed.map { name -> StorageType in
                guard let t = StorageType.parse(name), t.isQuantized else { throw UserFacingError("unknown quantized type '\(name)'") }
                return t
            }
            let views: [TensorView]
            if FileSystem.isDirectory(path) {
                let w = try CheckpointWeights(folder: path)
                views = try w.tensors.map { try w.view($0.info.name) }
            } else {
                let f = try SafetensorsFile(path: path)
                views = f.tensors.map { f.view($0) }
            }
            let regex = try match.map { try Regex($0) }
            let selected = views.filter { v in v.shape.count >= 2 && v.dtype.isFloatConvertible && (regex.map { v.name.contains($0) } ?? true) }
            guard !selected.isEmpty else { throw UserFacingError("\(path): no matching float tensor with two or more dimensions") }
            let workers = threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
            var rows: [[String]] = [["tensor", "shape"] + storage.map(\.description)]
            var sums = [Double](repeating: 0, count: storage.count)
            for v in selected {
                var row = [v.name, formatShape(v.shape)]
                for (i, t) in storage.enumerated() {
                    let e = try Converter.quantize(v, layout: StorageLayout(shape: v.shape, type: t), threads: workers).relativeRMSE
                    sums[i] += e
                    row.append(String(fixed: e, decimals: 6))
                }
                rows.append(row)
            }
            rows.append(["mean of \(selected.count)", ""] + sums.map { String(fixed: $0 / Double(selected.count), decimals: 6) })
            rows.append(["bits per weight", ""] + storage.map { t in
                let bytes = selected.reduce(0) { $0 + StorageLayout(shape: $1.shape, type: t).totalBytes }
                let weights = selected.reduce(0) { $0 + $1.elementCount }
                return String(fixed: Double(8 * bytes) / Double(weights), decimals: 4)
            })
            print(alignColumns(rows, rightAligned: Set(2..<(2 + storage.count))).joined(separator: "\n"))
        }
    }
}

// plmq-image-bench FILE... [--threads N] [--repeats N]: decode + PerceptionLM preprocessing
// timings (448 tiles, up to 36). A stand-in until `plmq bench` calls ImageBenchmark itself.
import PLMImage

var threads = 1, repeats = 5, files: [String] = []
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--threads": threads = Int(args.popFirst() ?? "") ?? 1
    case "--repeats": repeats = Int(args.popFirst() ?? "") ?? 5
    default: files.append(a)
    }
}
for f in files {
    do { print(try ImageBenchmark.run(file: f, threads: threads, repeats: repeats)) } catch { print("\(f): \(error)") }
}

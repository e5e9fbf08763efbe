// plmq-tokenizer-bench TOKENIZER.json TEXT: load and encode timings of PLMTokenizer (see
// TokenizerBenchmark). A stand-in until `plmq bench` / `plmq tokenize --bench` call the same function.
#if canImport(Glibc)
import Glibc
#endif
import PLMCore
import PLMTokenizer

let args = CommandLine.arguments
guard args.count == 3 else {
    print("usage: plmq-tokenizer-bench TOKENIZER.json TEXT-FILE")
    exit(2)
}
do {
    // The mapped files must outlive the copies taken from them.
    let jsonFile = try MappedFile(path: args[1]), textFile = try MappedFile(path: args[2])
    let json = withExtendedLifetime(jsonFile) { Array(jsonFile.bytes) }
    let text = withExtendedLifetime(textFile) { String(decoding: textFile.bytes, as: UTF8.self) }
    let report = try TokenizerBenchmark.run(json: json, text: text)
    print("PLMTokenizer: " + report.summary)
} catch {
    print("error: \(error)")
    exit(1)
}

import Foundation
import PLMQ

// One binary holds every fuzz target; PLMQ_FUZZ_TARGET picks the one libFuzzer drives, so a
// single sanitized link serves them all and each target's coverage is still its own.
//
// Built two ways:
// - `make fuzz` builds it with `-sanitize=fuzzer,address -DPLMQ_FUZZ`: libFuzzer owns `main` and
//   calls `LLVMFuzzerTestOneInput` below;
// - a plain `swift build` builds it without sanitizers, with the `main` at the end that runs
//   inputs through a target once (`plmq-fuzz TARGET FILE-OR-FOLDER...`), so the targets keep
//   compiling with the library and a crash artifact can be replayed without libFuzzer.

/// The target selected by PLMQ_FUZZ_TARGET (resolved once; Swift globals are lazy and thread-safe).
let selectedTarget: FuzzTarget? = {
    guard let name = getenv("PLMQ_FUZZ_TARGET").map({ String(cString: $0) }) else { return nil }
    return FuzzTargets.named(name)
}()

/// A message on standard error.
func complain(_ message: String) { FileHandle.standardError.write(Data(("plmq-fuzz: " + message + "\n").utf8)) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let target = selectedTarget else {
        let names = FuzzTargets.all.map(\.name).joined(separator: ", ")
        complain("set PLMQ_FUZZ_TARGET to one of: \(names)")
        exit(2)
    }
    target.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

/// libFuzzer calls this once before fuzzing: PLMQ_FUZZ_SEEDS=DIR writes the generated seed
/// corpora (small files built with the library's own writers) into DIR/<target>/ and exits.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    if let dir = getenv("PLMQ_FUZZ_SEEDS").map({ String(cString: $0) }) {
        exit(Seeds.write(into: dir) ? 0 : 1)
    }
    return 0
}

#if !PLMQ_FUZZ
@main struct FuzzMain {
    /// `plmq-fuzz TARGET PATH...` runs each file (or each file of each folder) through TARGET once;
    /// `plmq-fuzz --seeds DIR` writes the generated seeds; `plmq-fuzz --list` names the targets.
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "--list" {
            for t in FuzzTargets.all { print(t.name) }
            return
        }
        if args.count == 2, args[0] == "--seeds" { exit(Seeds.write(into: args[1]) ? 0 : 1) }
        guard let name = args.first, let target = FuzzTargets.named(name), args.count >= 2 else {
            complain("usage: plmq-fuzz TARGET FILE-OR-FOLDER... | --seeds DIR | --list")
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            let files = FileSystem.isDirectory(path)
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { FileSystem.join(path, $0) } : [path]
            for file in files where !FileSystem.isDirectory(file) {
                guard let bytes = try? FileSystem.readBytes(file) else {
                    complain("cannot read \(file)")
                    exit(2)
                }
                bytes.withUnsafeBytes { target.run($0) }
                count += 1
            }
        }
        print("plmq-fuzz: \(name): ran \(count) inputs")
    }
}
#endif

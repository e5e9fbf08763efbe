import Foundation
import PLMQ

// One binary holds every fuzz target; PLMQ_FUZZ_TARGET picks the one libFuzzer drives, so a
// single sanitized link serves them all and each target's coverage is still its own.
//
// Built two ways:
// - `make fuzz` builds it with the address sanitizer, libFuzzer's coverage instrumentation and
//   -DPLMQ_FUZZ, linked with libFuzzer's no-main library: `main` below hands the command line
//   to libFuzzer (LLVMFuzzerRunDriver), which calls `LLVMFuzzerTestOneInput`. (SwiftPM gives an
//   executable its own entry point, so libFuzzer's `main` cannot be used.)
// - a plain `swift build` builds it without sanitizers: `main` runs inputs through a target
//   once (`plmq-fuzz TARGET FILE-OR-FOLDER...`), so the targets keep compiling with the
//   library and a crash artifact can be replayed without libFuzzer.
// Both builds: `plmq-fuzz --seeds DIR` writes the generated seeds, `--list` names the targets.

/// The target selected by PLMQ_FUZZ_TARGET (resolved once; Swift globals are lazy and thread-safe).
let selectedTarget: FuzzTarget? = {
    guard let name = ProcessInfo.processInfo.environment["PLMQ_FUZZ_TARGET"] else { return nil }
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

#if PLMQ_FUZZ
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32
#endif

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
        #if PLMQ_FUZZ
        guard selectedTarget != nil else {
            complain("set PLMQ_FUZZ_TARGET to one of: " + FuzzTargets.all.map(\.name).joined(separator: ", "))
            exit(2)
        }
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
        #else
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
        #endif
    }
}

import PLMCore
import Foundation
import Testing
import PLMTestSupport
import PLMFormat
import PLMCheckpoint
#if canImport(Glibc)
import Glibc
#endif

/// Damaged files, killed conversions and full disks through the `plmq` binary: exit codes,
/// messages, and what is left on disk.
@Suite(.serialized) struct HardeningCLITests {
    static let model = Fixtures.model("tiny-g-nocls")

    /// A fresh int4 conversion of the fixture into `folder`.
    func converted(_ folder: String) throws -> String {
        let out = folder + "/m.plm"
        let r = try plmq("convert", "--bits", "4", Self.model, out)
        #expect(r.status == 0, "\(r.stderr)")
        return out
    }

    func leftovers(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(AtomicFileWriter.temporarySuffix) }
    }

    func bytes(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    @Test func damagedFilesGiveTheDocumentedExitCodes() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = try converted(folder)
        let file = try DamageableFile(path: path, bytes: try #require(bytes(path)))
        let intact = try PLMFile(path: path)
        let ids = folder + "/ids.safetensors"
        try SafetensorsWriter.write([TensorRecord(name: "input_ids", shape: [1, 3], int64s: [1, 5, 7])], to: ids)
        let out = folder + "/o.safetensors"

        // Truncated: bad input (2) for verify and inspect, naming the file.
        file.forEachLength([file.original.count - 1, intact.headerOffset + 10, 100, 30]) { length in
            for command in ["verify", "inspect"] {
                let r = try? plmq(command, path)
                #expect(r?.status == 2 && r?.stderr.contains(path) == true, "\(command) cut at \(length): \(String(describing: r))")
            }
        }
        // A flipped payload bit: verify fails the check (1) naming the tensor; loading it is an
        // error (2) naming file and tensor; --no-verify loads it.
        let t = try #require(intact.tensor("model.language_model.layers.1.mlp.up_proj.weight"))
        try file.withFlip(t.part("data")!.offset + 7, bit: 2) {
            var r = try plmq("verify", path)
            #expect(r.status == 1 && r.stderr.contains("checksum mismatch in '\(t.name)' part 'data'"), "\(r.stderr)")
            r = try plmq("forward", path, "--inputs", ids, "--output", out)
            #expect(r.status == 2 && r.stderr.contains(path) && r.stderr.contains("'\(t.name)'"), "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
            r = try plmq("generate", path, "--inputs", ids, "--max-new-tokens", "2")
            #expect(r.status == 2 && r.stderr.contains("checksum mismatch"), "\(r.stderr)")
            r = try plmq("forward", path, "--inputs", ids, "--output", out, "--no-verify")
            #expect(r.status == 0, "\(r.stderr)")
        }
        // Non-zero padding and reserved preamble bytes: verify fails the check (1).
        let padding = PLMSpec.aligned(t.part("data")!.offset + t.part("data")!.length)
        if padding > t.part("data")!.offset + t.part("data")!.length {
            try file.withFlip(padding - 1, bit: 0) {
                let r = try plmq("verify", path)
                #expect(r.status == 1 && r.stderr.contains("is not zero"), "\(r.stderr)")
            }
        }
        try file.withFlip(50, bit: 7) {
            let r = try plmq("verify", path)
            #expect(r.status == 1 && r.stderr.contains("byte 50 is not zero"), "\(r.stderr)")
        }
        let r = try plmq("verify", path)
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// `plmq convert` killed with SIGKILL at seeded moments: the target is always the complete
    /// old file (or, when the kill came after the rename, the complete new one); the next run
    /// removes every temporary file a killed run left.
    @Test func aKilledConvertNeverLeavesAPartialOutput() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let reference = folder + "/reference.plm"
        let started = Date()
        #expect(try plmq("convert", "--bits", "4", Self.model, reference).status == 0)
        let duration = Date().timeIntervalSince(started)
        let complete = try #require(bytes(reference))
        let target = folder + "/m.plm"
        let old = Array("the previous model, which must survive".utf8)
        var random = SeededBits(seed: 5)
        var killedWhileWriting = 0
        for round in 0..<6 {
            _ = FileManager.default.createFile(atPath: target, contents: Data(old))
            let process = Process()
            process.executableURL = plmqBinary()
            process.arguments = ["convert", "--bits", "4", Self.model, target]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if round % 2 == 0 {
                // Anywhere in the run.
                usleep(useconds_t(duration * 1e6 * Double(random.below(1000)) / 1000))
            } else {
                // While the output is being written: once its temporary file exists.
                let deadline = Date().addingTimeInterval(10)
                while try leftovers(folder).isEmpty && process.isRunning && Date() < deadline { usleep(200) }
                usleep(useconds_t(random.below(Int(duration * 1e6 / 4) + 1)))
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let now = try #require(bytes(target))
            #expect(now == old || now == complete, "round \(round): the target is a partial file (\(now.count) bytes)")
            if try !leftovers(folder).isEmpty { killedWhileWriting += 1 }
        }
        #expect(killedWhileWriting > 0, "no kill landed while the output was being written")
        let r = try plmq("convert", "--bits", "4", Self.model, target)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(bytes(target) == complete)
        let left = try leftovers(folder)
        #expect(left.isEmpty, "\(left)")
    }

    /// Writes that fail (the file-size limit, as on a full disk) end with a clear error, exit 2,
    /// the old output intact and no temporary file.
    @Test(arguments: ["convert", "forward"])
    func aFullDiskIsACleanError(_ command: String) throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let target = folder + "/out"
        let old = Array("previous output".utf8)
        _ = FileManager.default.createFile(atPath: target, contents: Data(old))
        var arguments = ["convert", "--bits", "4", Self.model, target]
        if command == "forward" {
            let ids = folder + "/ids.safetensors"
            try SafetensorsWriter.write([TensorRecord(name: "input_ids", shape: [1, 3], int64s: [1, 5, 7])], to: ids)
            arguments = ["forward", Self.model, "--inputs", ids, "--output", target]
        }
        // ulimit -f counts 512-byte blocks in dash (1024 in bash): 8 blocks is far below either output.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -f 8; exec \"$0\" \"$@\"", plmqBinary().path] + arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 2, "\(process.terminationReason) \(process.terminationStatus): \(stderr)")
        #expect(stderr.contains("write failed") && stderr.contains("File too large"), "\(stderr)")
        #expect(bytes(target) == old)
        let left = try leftovers(folder)
        #expect(left.isEmpty, "\(left)")
    }
}

/// Load and encode timings of a tokenizer.json on a text, for `plmq bench` / `plmq tokenize --bench`.
/// Not a test: the numbers depend on the machine. `Tests/Fixtures/bench_tokenizer.py` measures
/// the Python `tokenizers` library the same way and prints the same id checksum.
public struct TokenizerBenchmarkReport: Sendable {
    public var loadSeconds: Double
    /// Best of the encode runs.
    public var encodeSeconds: Double
    public var textBytes: Int
    public var idCount: Int
    /// FNV-1a 64 over the ids as little-endian u32 values: equal checksums mean equal ids.
    public var idChecksum: UInt64

    public var megabytesPerSecond: Double { Double(textBytes) / 1e6 / encodeSeconds }

    public var summary: String {
        func f(_ x: Double, _ digits: Int) -> String {
            var s = String(Int((x * pow10(digits)).rounded()))
            while s.count <= digits { s = "0" + s }
            return digits == 0 ? s : s.dropLast(digits) + "." + s.suffix(digits)
        }
        return "load \(f(loadSeconds, 3)) s, encode \(textBytes) bytes in \(f(encodeSeconds, 3)) s = \(f(megabytesPerSecond, 2)) MB/s, "
            + "\(idCount) ids, checksum \(String(idChecksum, radix: 16))"
    }
}

private func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { a, _ in a * 10 } }

public enum TokenizerBenchmark {
    /// Loads `json` `loads` times and encodes `text` (without special tokens) `runs` times,
    /// keeping the fastest of each.
    public static func run(json: [UInt8], text: String, loads: Int = 3, runs: Int = 3) throws(TokenizerError) -> TokenizerBenchmarkReport {
        let clock = ContinuousClock()
        var bestLoad = Double.infinity
        var tokenizer: Tokenizer? = nil
        for _ in 0..<max(1, loads) {
            let start = clock.now
            let t = try Tokenizer(json: json, source: "benchmark")
            bestLoad = min(bestLoad, seconds(clock.now - start))
            tokenizer = t
        }
        guard let tokenizer else { throw .missingField(source: "benchmark", field: "tokenizer") }
        var bestEncode = Double.infinity
        var ids: [Int] = []
        for _ in 0..<max(1, runs) {
            let start = clock.now
            ids = tokenizer.encode(text, addSpecialTokens: false)
            bestEncode = min(bestEncode, seconds(clock.now - start))
        }
        return TokenizerBenchmarkReport(loadSeconds: bestLoad, encodeSeconds: bestEncode, textBytes: text.utf8.count,
                                        idCount: ids.count, idChecksum: checksum(ids))
    }

    public static func checksum(_ ids: [Int]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for id in ids {
            let v = UInt32(truncatingIfNeeded: id)
            for k in 0..<4 { h = (h ^ UInt64((v >> (8 * UInt32(k))) & 0xFF)) &* 0x100_0000_01b3 }
        }
        return h
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a message to standard error.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { buf in
        var offset = 0
        while offset < buf.count {
            let n = write(2, buf.baseAddress! + offset, buf.count - offset)
            if n <= 0 { break }
            offset += n
        }
    }
}

/// Peak resident set size of this process in bytes (Linux: ru_maxrss is in KiB).
func peakResidentBytes() -> Int {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return Int(usage.ru_maxrss) * 1024
}

/// Monotonic seconds, for wall-time reports.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// True when standard error is a terminal (progress bars) rather than a file or pipe.
func standardErrorIsTerminal() -> Bool { isatty(2) != 0 }

/// A write past the file-size limit (`ulimit -f`, RLIMIT_FSIZE) kills the process with SIGXFSZ
/// by default, leaving its temporary output behind. Ignored, the write fails with EFBIG instead,
/// and plmq reports it like a full disk: a clear error, the temporary file removed.
func ignoreFileSizeSignal() {
    signal(SIGXFSZ, SIG_IGN)
}

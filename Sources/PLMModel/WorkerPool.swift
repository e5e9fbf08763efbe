import CPLMKernels

/// plmq's persistent worker pool (see `plm_pool_run`): no thread creation and no allocation
/// per call, unlike `DispatchQueue.concurrentPerform`, which allocated on every one of a decode
/// step's ~100 parallel sections. A job is a plain struct and a `@convention(c)` worker, so
/// nothing is captured or boxed.
enum WorkerPool {
    typealias Worker = @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void

    static func run<Job>(_ workers: Int, _ job: inout Job, _ worker: Worker) {
        withUnsafeMutablePointer(to: &job) { pointer in
            if workers > 1 {
                plm_pool_run(Int32(workers), worker, pointer)
            } else {
                worker(pointer, 0)
            }
        }
    }
}

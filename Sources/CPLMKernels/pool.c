// The persistent worker pool behind plm_pool_run. Workers wait for a new generation of work:
// they spin for a short while (a decode step issues ~100 small parallel sections back to back,
// and a condition-variable wake-up costs tens of microseconds), then sleep on a condition.
#include "CPLMKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>

#define MAX_WORKERS 64
#define SPIN_ROUNDS 200000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t caller = PTHREAD_MUTEX_INITIALIZER;  // one parallel section at a time
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
// A generation number (high bits) and the number of workers taking part in it (low 8 bits) in
// one word, so a worker reads both with one load. With the count in a separate variable, a worker
// left out of generation N that was slow to read it could read generation N+1's count, run N+1's
// task, then see N+1 as new and run it a second time: `remaining` then reached 0 while another
// worker was still on the task, and the caller returned from under it (found by the thread
// sanitizer, `make tsan`).
#define COUNT_BITS 8
static atomic_long generation;
static atomic_int remaining;
static int started;                 // pool threads running
static plm_task current_task;
static void *current_context;

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    long seen = 0;
    for (;;) {
        long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen && spins < SPIN_ROUNDS) spins++;
        if (g == seen) {
            pthread_mutex_lock(&lock);
            while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) pthread_cond_wait(&wake, &lock);
            pthread_mutex_unlock(&lock);
        }
        seen = g;
        if (index < (int)(g & ((1 << COUNT_BITS) - 1))) {
            current_task(current_context, index);
            if (atomic_fetch_sub_explicit(&remaining, 1, memory_order_acq_rel) == 1) {
                pthread_mutex_lock(&lock);
                pthread_cond_signal(&finished);
                pthread_mutex_unlock(&lock);
            }
        }
    }
    return 0;
}

void plm_pool_run(int workers, plm_task task, void *context) {
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    if (workers <= 1) { task(context, 0); return; }
    // Callers from different threads (two models, or tests in parallel) take turns.
    pthread_mutex_lock(&caller);
    pthread_mutex_lock(&lock);
    while (started < workers - 1) {
        pthread_t thread;
        if (pthread_create(&thread, 0, worker_main, (void *)(intptr_t)(started + 1)) != 0) break;
        pthread_detach(thread);
        started++;
    }
    if (started < workers - 1) workers = started + 1;  // could not start more threads: use what exists
    current_task = task;
    current_context = context;
    atomic_store_explicit(&remaining, workers - 1, memory_order_release);
    const long next = ((atomic_load_explicit(&generation, memory_order_relaxed) >> COUNT_BITS) + 1) << COUNT_BITS | workers;
    atomic_store_explicit(&generation, next, memory_order_release);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    task(context, 0);

    int spins = 0;
    while (atomic_load_explicit(&remaining, memory_order_acquire) > 0 && spins < SPIN_ROUNDS) spins++;
    if (atomic_load_explicit(&remaining, memory_order_acquire) > 0) {
        pthread_mutex_lock(&lock);
        while (atomic_load_explicit(&remaining, memory_order_acquire) > 0) pthread_cond_wait(&finished, &lock);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_unlock(&caller);
}

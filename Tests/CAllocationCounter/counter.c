#define _GNU_SOURCE
#include "CAllocationCounter.h"
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <unistd.h>

// Under a sanitizer (`make tsan`) the sanitizer owns malloc: replacing it here made every
// pointer the sanitizer later freed unknown to it, and the test binary crashed at start.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define PLM_SANITIZED 1
#endif
#endif

#if defined(__GLIBC__) && !defined(PLM_SANITIZED)
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

// Per thread, so tests running in parallel do not count each other's allocations.
static __thread int enabled;
static __thread long count;

#include <execinfo.h>
#include <stdlib.h>
static __thread int tracing;

static inline void note(void) {
    if (!enabled) return;
    count++;
    // PLM_ALLOCATION_TRACE=1 prints where each counted allocation comes from (for debugging).
    if (!tracing && getenv("PLM_ALLOCATION_TRACE")) {
        tracing = 1;
        void *frames[28];
        int n = backtrace(frames, 28);
        backtrace_symbols_fd(frames, n, 2);
        write(2, "--\n", 3);
        tracing = 0;
    }
}

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void *aligned_alloc(size_t a, size_t n) { note(); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    note();
    void *p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void plm_count_allocations(int on) { enabled = on; }
long plm_allocations(void) { return count; }
#else
void plm_count_allocations(int on) { (void)on; }
long plm_allocations(void) { return -1; }
#endif

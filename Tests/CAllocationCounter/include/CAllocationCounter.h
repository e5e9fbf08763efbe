// Test support: counts the calling thread's heap allocations while enabled, by interposing
// malloc, calloc, realloc, aligned_alloc and posix_memalign (forwarded to glibc).
#ifndef CALLOCATIONCOUNTER_H
#define CALLOCATIONCOUNTER_H
void plm_count_allocations(int enabled);
long plm_allocations(void);
#endif

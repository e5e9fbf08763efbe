// C kernels for plmq: checksums now, quantized matmuls later. Every function here has a plain
// Swift or scalar-C reference twin that the tests compare it with.
#ifndef CPLMKERNELS_H
#define CPLMKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Streaming XXH64 (seed configurable), as specified by the xxHash project.
typedef struct {
    uint64_t total_length;
    uint64_t v[4];
    uint8_t buffer[32];
    uint32_t buffered;
    uint64_t seed;
} plm_xxh64_state;

void plm_xxh64_reset(plm_xxh64_state *state, uint64_t seed);
void plm_xxh64_update(plm_xxh64_state *state, const void *data, size_t length);
uint64_t plm_xxh64_digest(const plm_xxh64_state *state);
uint64_t plm_xxh64(const void *data, size_t length, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif

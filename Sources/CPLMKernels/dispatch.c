// Run-time dispatch: the CPU's features, and for each public kernel the implementation to run.
// An implementation is used only when both the caller asks for it (impl) and the CPU has it;
// the Swift layer refuses an explicit request the CPU cannot meet before it gets here.
#include "qcommon.h"
#include <time.h>
#include <stdlib.h>

#if defined(__x86_64__)
int plm_cpu_has_avx2(void) {
    static int cached = -1;
    if (cached < 0) { __builtin_cpu_init(); cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"); }
    return cached;
}

int plm_cpu_has_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = plm_cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
              && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
              && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
    }
    return cached;
}

int plm_cpu_has_avx512_bf16(void) {
    static int cached = -1;
    if (cached < 0) { __builtin_cpu_init(); cached = plm_cpu_has_avx512() && __builtin_cpu_supports("avx512bf16"); }
    return cached;
}
#else
int plm_cpu_has_avx2(void) { return 0; }
int plm_cpu_has_avx512(void) { return 0; }
int plm_cpu_has_avx512_bf16(void) { return 0; }
#endif

int plm_best_impl(void) {
    if (plm_cpu_has_avx512()) return PLM_IMPL_AVX512;
    if (plm_cpu_has_avx2()) return PLM_IMPL_AVX2;
    return PLM_IMPL_PORTABLE;
}

static int use_avx512(int impl) { return impl >= PLM_IMPL_AVX512 && plm_cpu_has_avx512(); }
static int use_avx2(int impl) { return impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2(); }

void plm_qgemv(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_qgemv_avx512(w, a, y, r0, r1); return; }
    if (use_avx2(impl)) { plm_qgemv_avx2(w, a, y, r0, r1); return; }
#endif
    plm_qgemv_ref(w, a, y, r0, r1);
}

void plm_qgemv_f32(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    // No AVX-512 twin: AVX-512 machines run the AVX2 kernel (this one is bandwidth-bound).
    if (use_avx2(impl)) { plm_qgemv_f32_avx2(w, x, y, r0, r1); return; }
#endif
    plm_qgemv_f32_ref(w, x, y, r0, r1);
}

void plm_qgemv16(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_qgemv16_avx512(w, a, y, r0, r1); return; }
    if (use_avx2(impl)) { plm_qgemv16_avx2(w, a, y, r0, r1); return; }
#endif
    plm_qgemv16_ref(w, a, y, r0, r1);
}

void plm_qgemm(const plm_qmatrix *w, const int8_t *q, const float *d, const float *sum, const float *x,
               int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl) && rows >= 4) {
        plm_tile_act a = { q, NULL, NULL, NULL, d, sum };
        plm_qgemm_avx512(w, &a, rows, y, ldy, r0, r1);
        return;
    }
#endif
    int64_t blocks = plm_blocks(w->cols);
    for (int64_t m = 0; m < rows; m++) {
        plm_qact a = { q + m * blocks * 32, d + m * blocks, sum + m * blocks, x + m * w->cols, w->cols };
        plm_qgemv(w, &a, y + m * ldy, r0, r1, impl);
    }
}

#if defined(__x86_64__)
/// int16 activation rows split into bytes for the AVX-512 tile GEMMs, in one heap block per call
/// (rows·K bytes twice and a sum per block, beside the tile buffers the GEMMs allocate anyway).
/// Returns the block for free(), or NULL when out of memory.
static void *split16(const int16_t *q, const float *d, const float *sum, int64_t rows, int64_t blocks, plm_tile_act *a) {
    const size_t n = (size_t)(rows * blocks * 32);
    uint8_t *memory = malloc(2 * n + (size_t)(rows * blocks) * sizeof(int32_t));
    if (!memory) return NULL;
    int32_t *lo_sum = (int32_t *)(void *)(memory + 2 * n);  // 2n is a multiple of 64
    plm_split_rows16_avx512(q, rows, blocks, (int8_t *)memory, memory + n, lo_sum);
    *a = (plm_tile_act){ NULL, (const int8_t *)memory, memory + n, lo_sum, d, sum };
    return memory;
}
#endif

void plm_qgemm16(const plm_qmatrix *w, const int16_t *q, const float *d, const float *sum, const float *x,
                 int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1, int impl) {
    const int64_t blocks = plm_blocks(w->cols);
#if defined(__x86_64__)
    plm_tile_act a;
    void *split = use_avx512(impl) && rows >= 4 ? split16(q, d, sum, rows, blocks, &a) : NULL;
    if (split) {
        plm_qgemm_avx512(w, &a, rows, y, ldy, r0, r1);
        free(split);
        return;
    }
#endif
    for (int64_t m = 0; m < rows; m++) {
        plm_qact16 a = { q + m * blocks * 32, d + m * blocks, sum + m * blocks, x + m * w->cols, w->cols };
        plm_qgemv16(w, &a, y + m * ldy, r0, r1, impl);
    }
}

// The repacked layout: AVX-512 VNNI, AVX2, or the plain C reference over the same bytes.
void plm_qgemv_repacked(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_qgemv_repacked_avx512(w, a, y, tile0, tile1); return; }
    if (use_avx2(impl)) { plm_qgemv_repacked_avx2(w, a, y, tile0, tile1); return; }
#endif
    plm_qgemv_repacked_ref(w, a, y, tile0, tile1);
}

void plm_qgemv16_repacked(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_qgemv16_repacked_avx512(w, a, y, tile0, tile1); return; }
    if (use_avx2(impl)) { plm_qgemv16_repacked_avx2(w, a, y, tile0, tile1); return; }
#endif
    plm_qgemv16_repacked_ref(w, a, y, tile0, tile1);
}

/// Without the AVX-512 tile GEMM: one repacked GEMV per activation row and tile, written at
/// row stride ldy (the tile's 16 outputs go through a buffer, as the last tile may be short).
static void repacked_rows(const plm_q4k6_repacked *w, const int8_t *q, const int16_t *q16, const float *d, const float *sum,
                          int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1, int impl) {
    const int64_t blocks = plm_blocks(w->cols);
    for (int64_t t = tile0; t < tile1; t++) {
        const int64_t n = w->rows - t * PLM_TILE_ROWS < PLM_TILE_ROWS ? w->rows - t * PLM_TILE_ROWS : PLM_TILE_ROWS;
        for (int64_t m = 0; m < rows; m++) {
            float out[PLM_TILE_ROWS];
            if (q) {
                plm_qact a = { q + m * blocks * 32, d + m * blocks, sum + m * blocks, NULL, w->cols };
                plm_qgemv_repacked(w, &a, out, t, t + 1, impl);
            } else {
                plm_qact16 a = { q16 + m * blocks * 32, d + m * blocks, sum + m * blocks, NULL, w->cols };
                plm_qgemv16_repacked(w, &a, out, t, t + 1, impl);
            }
            memcpy(y + m * ldy + (t - tile0) * PLM_TILE_ROWS, out, (size_t)n * sizeof(float));
        }
    }
}

void plm_qgemm_repacked(const plm_q4k6_repacked *w, const int8_t *q, const float *d, const float *sum,
                        int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) {
        plm_tile_act a = { q, NULL, NULL, NULL, d, sum };
        plm_qgemm_repacked_avx512(w, &a, rows, y, ldy, tile0, tile1);
        return;
    }
    if (use_avx2(impl)) { plm_qgemm_repacked_avx2(w, q, d, sum, rows, y, ldy, tile0, tile1); return; }
#endif
    repacked_rows(w, q, NULL, d, sum, rows, y, ldy, tile0, tile1, impl);
}

int plm_qgemm16_repacked(const plm_q4k6_repacked *w, const int16_t *q, const float *d, const float *sum,
                         int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) {
        plm_tile_act a;
        void *split = split16(q, d, sum, rows, plm_blocks(w->cols), &a);
        if (!split) return 0;
        plm_qgemm_repacked_avx512(w, &a, rows, y, ldy, tile0, tile1);
        free(split);
        return 1;
    }
#endif
    repacked_rows(w, NULL, q, d, sum, rows, y, ldy, tile0, tile1, impl);
    return 1;
}

void plm_qgemv16_q8tiles(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a, float *y, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (use_avx2(impl)) { plm_qgemv16_q8tiles_avx2(w, tiles, a, y, r0, r1); return; }
#endif
    plm_qgemv16_q8tiles_ref(w, tiles, a, y, r0, r1);
}

float plm_exp_shift_sum(float *x, int64_t n, float shift, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) return plm_exp_shift_sum_avx512(x, n, shift);
    if (use_avx2(impl)) return plm_exp_shift_sum_avx2(x, n, shift);
#endif
    return plm_exp_shift_sum_ref(x, n, shift);
}

void plm_silu_mul(float *gate, const float *up, int64_t n, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_silu_mul_avx512(gate, up, n); return; }
    if (use_avx2(impl)) { plm_silu_mul_avx2(gate, up, n); return; }
#endif
    plm_silu_mul_ref(gate, up, n);
}

void plm_gelu_erf(float *x, int64_t n, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_gelu_erf_avx512(x, n); return; }
    if (use_avx2(impl)) { plm_gelu_erf_avx2(x, n); return; }
#endif
    plm_gelu_erf_ref(x, n);
}

// The activation quantizers and the maximum have no `impl` argument (every caller wants the
// fastest; the tests call the _ref twins directly).
void plm_quantize_activations(const float *x, int64_t cols, int8_t *q, float *d, float *sum, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_quantize_activations_avx512(x, cols, q, d, sum); return; }
    if (use_avx2(impl)) { plm_quantize_activations_avx2(x, cols, q, d, sum); return; }
#endif
    (void)impl;
    plm_quantize_activations_ref(x, cols, q, d, sum);
}

void plm_quantize_activations16(const float *x, int64_t cols, int16_t *q, float *d, float *sum, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) { plm_quantize_activations16_avx512(x, cols, q, d, sum); return; }
    if (use_avx2(impl)) { plm_quantize_activations16_avx2(x, cols, q, d, sum); return; }
#endif
    (void)impl;
    plm_quantize_activations16_ref(x, cols, q, d, sum);
}

float plm_max(const float *x, int64_t n, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) return plm_max_avx512(x, n);
    if (use_avx2(impl)) return plm_max_avx2(x, n);
#endif
    (void)impl;
    return plm_max_ref(x, n);
}

double plm_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double plm_int8_dot_peak(int64_t iterations, int impl) {
#if defined(__x86_64__)
    if (use_avx512(impl)) return plm_int8_dot_peak_avx512(iterations);
    if (use_avx2(impl)) return plm_int8_dot_peak_avx2(iterations);
#endif
    (void)iterations; (void)impl;
    return 0;
}

uint64_t plm_read_bytes(const void *data, size_t bytes) {
#if defined(__x86_64__)
    if (plm_cpu_has_avx2()) return plm_read_bytes_avx2(data, bytes);
#endif
    const uint64_t *p = (const uint64_t *)data;
    uint64_t x = 0;
    for (size_t i = 0; i < bytes / 8; i++) x ^= p[i];
    return x;
}

// Decode GEMV throughput by activation type, side by side in one run: int8, int16 and fp32
// activations against the same quantized matrix (random levels, 2048 × 8192, one thread, the
// kernels plmq dispatches to). Prints level bytes per second, best of 3 rounds of 20 calls, beside
// a plain read of the same number of bytes (the bandwidth limit) and, on AVX2 and AVX-512 machines, the
// int4 kernels over the repacked layout that decode uses there.
// Built and run by `make bench-gemv` (no Swift needed). Usage: gemv_activations [impl]
// (0 portable, 1 AVX2, 2 AVX-512; default: the best this CPU has).
#include "CPLMKernels.h"
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *filled(size_t bytes, unsigned mask) {
    unsigned char *p = malloc(bytes);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)(rand() & mask);
    return p;
}


/// Multiply-adds per second of vpdpbusd on zmm registers only (12 independent chains, no
/// memory): the int8 dot-product peak of one core, the ceiling of the int8 and int16 GEMMs.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double vnni_peak(void) {
    __m512i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    const long n = 20000000;
    double t0 = now();
    for (long it = 0; it < n; it++) {
        for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]));
    }
    double t = now() - t0;
    int sink = 0;
    for (int i = 0; i < 12; i++) sink ^= _mm512_reduce_add_epi32(acc[i]);
    return (sink == 1 ? 1.0 : 0.0) + (double)n * 12 * 64 / t;
}

/// Prefill GEMM, M activation rows over an N × K int4 k6 g32 matrix, tile kernels (AVX-512),
/// one thread: GFLOP/s as 2·M·N·K / time, best of 3, beside the VNNI peak.
static void gemm_section(void) {
    const int64_t n = 2048, k = 2048, m = 64, groups = k / 32, blocks = k / 32;
    const int64_t dataRow = k / 2, scaleRow = groups / PLM_K6_GROUPS * PLM_K6_BLOCK_BYTES;
    plm_qmatrix w = { PLM_Q4_ASYM_K6, 32, n, k, filled(n * dataRow, 0xFF), filled(n * scaleRow, 0x3F), NULL, dataRow, scaleRow, 0 };
    float *x = malloc(m * k * sizeof(float)), *y = malloc(m * n * sizeof(float));
    for (int64_t i = 0; i < m * k; i++) x[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    int8_t *q8 = malloc(m * k);
    int16_t *q16 = malloc(m * k * sizeof(int16_t));
    float *d8 = malloc(m * blocks * 4), *s8 = malloc(m * blocks * 4), *d16 = malloc(m * blocks * 4), *s16 = malloc(m * blocks * 4);
    for (int64_t r = 0; r < m; r++) {
        plm_quantize_activations(x + r * k, k, q8 + r * k, d8 + r * blocks, s8 + r * blocks, PLM_IMPL_AVX512);
        plm_quantize_activations16(x + r * k, k, q16 + r * k, d16 + r * blocks, s16 + r * blocks, PLM_IMPL_AVX512);
    }
    plm_q4k6_repacked rp = { n, k, n / PLM_TILE_ROWS, plm_repacked_tile_bytes(k), malloc((size_t)(n / PLM_TILE_ROWS * plm_repacked_tile_bytes(k))) };
    plm_repack_q4k6(&w, &rp, 0, rp.tiles);
    double best[4] = { 1e9, 1e9, 1e9, 1e9 };
    for (int round = 0; round < 3; round++) {
        double t[5];
        t[0] = now();
        plm_qgemm(&w, q8, d8, s8, x, m, y, n, 0, n, PLM_IMPL_AVX512);
        t[1] = now();
        plm_qgemm16(&w, q16, d16, s16, x, m, y, n, 0, n, PLM_IMPL_AVX512);
        t[2] = now();
        plm_qgemm_repacked(&rp, q8, d8, s8, m, y, n, 0, rp.tiles, PLM_IMPL_AVX512);
        t[3] = now();
        plm_qgemm16_repacked(&rp, q16, d16, s16, m, y, n, 0, rp.tiles, PLM_IMPL_AVX512);
        t[4] = now();
        for (int i = 0; i < 4; i++) if (t[i + 1] - t[i] < best[i]) best[i] = t[i + 1] - t[i];
    }
    const double flops = 2.0 * m * n * k, peak = 2.0 * vnni_peak();
    printf("GEMM int4-k6-g32 [%lld, %lld] × %lld rows, GFLOP/s (%% of the int8 VNNI peak %.0f):\n", (long long)n, (long long)k, (long long)m, peak / 1e9);
    const char *labels[] = { "int8 act, file layout", "int16 act, file layout", "int8 act, repacked", "int16 act, repacked" };
    for (int i = 0; i < 4; i++) printf("  %-24s %7.1f  (%.0f %%)\n", labels[i], flops / best[i] / 1e9, flops / best[i] / peak * 100);
}

int main(int argc, char **argv) {
    const int impl = argc > 1 ? atoi(argv[1]) : plm_best_impl();
    const int64_t rows = 2048, cols = 8192, group = 32, groups = cols / group, blocks = cols / 32;
    const int kinds[] = { PLM_Q4_ASYM_K6, PLM_Q8_SYM };
    const char *names[] = { "int4-asym-k6-g32", "int8-sym-g32" };
    float *x = malloc(cols * sizeof(float)), *y = malloc(rows * sizeof(float));
    for (int64_t i = 0; i < cols; i++) x[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    int8_t *q8 = malloc(cols);
    int16_t *q16 = malloc(cols * sizeof(int16_t));
    float *d8 = malloc(blocks * 4), *s8 = malloc(blocks * 4), *d16 = malloc(blocks * 4), *s16 = malloc(blocks * 4);
    plm_quantize_activations(x, cols, q8, d8, s8, impl);
    plm_quantize_activations16(x, cols, q16, d16, s16, impl);
    plm_qact a8 = { q8, d8, s8, x, cols };
    plm_qact16 a16 = { q16, d16, s16, x, cols };
    printf("impl %d, [%lld, %lld], one thread, GB/s of level bytes (best of 3)\n", impl, (long long)rows, (long long)cols);
    for (int t = 0; t < 2; t++) {
        const int kind = kinds[t], int4 = kind >= PLM_Q4_SYM;
        const int64_t dataRow = int4 ? cols / 2 : cols;
        const int64_t scaleRow = kind == PLM_Q4_ASYM_K6 ? groups / PLM_K6_GROUPS * PLM_K6_BLOCK_BYTES : groups * 2;
        // Small f16 scale bits (0…63) keep every product finite.
        plm_qmatrix w = { kind, (int32_t)group, rows, cols, filled(rows * dataRow, 0xFF), filled(rows * scaleRow, 0x3F),
                          filled(rows * groups * 2, 0x3F), dataRow, scaleRow, groups * 2 };
        double best[3] = { 1e9, 1e9, 1e9 };
        for (int round = 0; round < 3; round++) {
            double t0 = now();
            for (int i = 0; i < 20; i++) plm_qgemv(&w, &a8, y, 0, rows, impl);
            double t1 = now();
            for (int i = 0; i < 20; i++) plm_qgemv16(&w, &a16, y, 0, rows, impl);
            double t2 = now();
            for (int i = 0; i < 20; i++) plm_qgemv_f32(&w, x, y, 0, rows, impl);
            double t3 = now();
            if (t1 - t0 < best[0]) best[0] = t1 - t0;
            if (t2 - t1 < best[1]) best[1] = t2 - t1;
            if (t3 - t2 < best[2]) best[2] = t3 - t2;
        }
        const double bytes = 20.0 * (double)(rows * dataRow);
        // The physical limit: the same number of bytes read with plain vector loads.
        double read = 1e9;
        uint64_t sink = 0;
        for (int round = 0; round < 3; round++) {
            double t0 = now();
            for (int i = 0; i < 20; i++) sink ^= plm_read_bytes(w.data, (size_t)(rows * dataRow));
            if (now() - t0 < read) read = now() - t0;
        }
        printf("%-18s int8 %.2f  int16 %.2f  fp32 %.2f  (read %.2f)%s\n", names[t], bytes / best[0] / 1e9, bytes / best[1] / 1e9,
               bytes / best[2] / 1e9, bytes / read / 1e9, sink == 42 ? " " : "");
        plm_q4k6_repacked r = { rows, cols, (rows + PLM_TILE_ROWS - 1) / PLM_TILE_ROWS, plm_repacked_tile_bytes(cols), NULL };
        if (impl >= PLM_IMPL_AVX2 && (r.bytes = malloc((size_t)(r.tiles * r.tile_bytes))) && plm_repack_q4k6(&w, &r, 0, r.tiles)) {
            double rb[2] = { 1e9, 1e9 };
            for (int round = 0; round < 3; round++) {
                double t0 = now();
                for (int i = 0; i < 20; i++) plm_qgemv_repacked(&r, &a8, y, 0, r.tiles, impl);
                double t1 = now();
                for (int i = 0; i < 20; i++) plm_qgemv16_repacked(&r, &a16, y, 0, r.tiles, impl);
                double t2 = now();
                if (t1 - t0 < rb[0]) rb[0] = t1 - t0;
                if (t2 - t1 < rb[1]) rb[1] = t2 - t1;
            }
            printf("%-18s int8 %.2f  int16 %.2f  (repacked)\n", names[t], bytes / rb[0] / 1e9, bytes / rb[1] / 1e9);
        }
        free(r.bytes);
        free((void *)w.data); free((void *)w.scales); free((void *)w.mins);
    }
    if (impl >= PLM_IMPL_AVX512) gemm_section();
    return 0;
}

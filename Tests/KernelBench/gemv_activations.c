// Decode GEMV throughput by activation type, side by side in one run: int8, int16 and fp32
// activations against the same quantized matrix (random levels, 2048 × 8192, one thread, the
// kernels plmq dispatches to). Prints level bytes per second, best of 3 rounds of 20 calls.
// Built and run by `make bench-gemv` (no Swift needed). Usage: gemv_activations [impl]
// (0 portable, 1 AVX2, 2 AVX-512; default: the best this CPU has).
#include "CPLMKernels.h"
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
    plm_quantize_activations(x, cols, q8, d8, s8);
    plm_quantize_activations16(x, cols, q16, d16, s16);
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
        printf("%-18s int8 %.2f  int16 %.2f  fp32 %.2f\n", names[t], bytes / best[0] / 1e9, bytes / best[1] / 1e9, bytes / best[2] / 1e9);
        free((void *)w.data); free((void *)w.scales); free((void *)w.mins);
    }
    return 0;
}

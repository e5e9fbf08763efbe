// Exact bf16 weights used in place (the fp32 reference engine on a bf16 checkpoint): the
// reference loops, their AVX2 twins and the dispatch, in one file because the family is small.
// bf16 → fp32 is a 16-bit shift, so these compute exactly what the fp32 model computes from the
// widened weights, up to the order of the additions.
#include "qcommon.h"

static inline float bf16_at(const uint8_t *p, int64_t i) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);  // the data may sit at any byte offset of a safetensors file
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void plm_bf16_gemv_ref(const void *w, int64_t cols, const float *x, float *y, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + 2 * r * cols;
        float acc = 0;
        for (int64_t j = 0; j < cols; j++) acc += bf16_at(row, j) * x[j];
        y[r - r0] = acc;
    }
}

void plm_bf16_widen_ref(const void *w, int64_t count, float *out) {
    for (int64_t i = 0; i < count; i++) out[i] = bf16_at((const uint8_t *)w, i);
}

#if defined(__x86_64__)
#define AVX2 PLM_TARGET_AVX2

/// Eight bf16 values (16 bytes, any alignment) widened to fp32.
AVX2 static inline __m256 widen8(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/// Four accumulators: one FMA chain would limit a row to one FMA per latency (4 cycles) and
/// this loop is meant to run at memory speed.
AVX2 static void bf16_gemv_avx2(const void *w, int64_t cols, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t body = cols / 32 * 32;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + 2 * r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t j = 0; j < body; j += 32) {
            a0 = _mm256_fmadd_ps(widen8(row + 2 * j), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(widen8(row + 2 * j + 16), _mm256_loadu_ps(x + j + 8), a1);
            a2 = _mm256_fmadd_ps(widen8(row + 2 * j + 32), _mm256_loadu_ps(x + j + 16), a2);
            a3 = _mm256_fmadd_ps(widen8(row + 2 * j + 48), _mm256_loadu_ps(x + j + 24), a3);
        }
        float acc = plm_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (int64_t j = body; j < cols; j++) acc += bf16_at(row, j) * x[j];
        y[r - r0] = acc;
    }
}

AVX2 static void bf16_widen_avx2(const void *w, int64_t count, float *out) {
    const uint8_t *p = (const uint8_t *)w;
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, widen8(p + 2 * i));
    for (; i < count; i++) out[i] = bf16_at(p, i);
}
#endif

void plm_bf16_gemv(const void *w, int64_t cols, const float *x, float *y, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2()) { bf16_gemv_avx2(w, cols, x, y, r0, r1); return; }
#endif
    plm_bf16_gemv_ref(w, cols, x, y, r0, r1);
}

void plm_bf16_widen(const void *w, int64_t count, float *out, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2()) { bf16_widen_avx2(w, count, out); return; }
#endif
    plm_bf16_widen_ref(w, count, out);
}

// Portable kernels: the reference every SIMD path is tested against, and the fallback on CPUs
// without AVX2.
#include "qcommon.h"

void plm_group_scale_min(const plm_qmatrix *w, int64_t r, int64_t g, float *scale, float *min) {
    const uint8_t *s = w->scales + r * w->scale_row_bytes;
    switch (w->kind) {
    case PLM_Q8_SYM: *scale = plm_f16_to_f32(plm_load_u16(s + 2 * g)); *min = -128.0f * *scale; break;
    case PLM_Q4_SYM: *scale = plm_f16_to_f32(plm_load_u16(s + 2 * g)); *min = -8.0f * *scale; break;
    case PLM_Q8_ASYM:
    case PLM_Q4_ASYM_F16:
        *scale = plm_f16_to_f32(plm_load_u16(s + 2 * g));
        *min = plm_f16_to_f32(plm_load_u16(w->mins + r * w->min_row_bytes + 2 * g));
        break;
    case PLM_Q4_ASYM_K6: {
        const uint8_t *b = s + (g / 8) * 16;
        float d = plm_f16_to_f32(plm_load_u16(b)), dmin = plm_f16_to_f32(plm_load_u16(b + 2));
        *scale = d * (float)plm_six_bit(b + 4, (int)(g % 8));
        *min = -dmin * (float)plm_six_bit(b + 10, (int)(g % 8));
        break;
    }
    default: *scale = 0; *min = 0;
    }
}

void plm_quantize_activations(const float *x, int64_t cols, int8_t *q, float *d, float *sum) {
    int64_t blocks = plm_blocks(cols);
    for (int64_t b = 0; b < blocks; b++) {
        int64_t n = cols - b * 32 < 32 ? cols - b * 32 : 32;
        const float *v = x + b * 32;
        float amax = 0;
        for (int64_t j = 0; j < n; j++) { float a = fabsf(v[j]); if (a > amax) amax = a; }
        float scale = amax / 127.0f, inverse = amax > 0 ? 127.0f / amax : 0.0f;
        int total = 0;
        for (int64_t j = 0; j < 32; j++) {
            int level = j < n ? (int)lrintf(v[j] * inverse) : 0;
            if (level > 127) level = 127;
            if (level < -127) level = -127;
            q[b * 32 + j] = (int8_t)level;
            total += level;
        }
        d[b] = scale;
        sum[b] = scale * (float)total;
    }
}

/// Groups from `first_group` to the end of row r, scalar, in W·A8 form. For a short last group
/// the fp32 activations are used (its nibble layout differs from full groups).
float plm_qdot_tail(const plm_qmatrix *w, const plm_qact *a, int64_t r, int64_t first_group) {
    int64_t groups = (w->cols + w->group - 1) / w->group;
    float acc = 0;
    for (int64_t g = first_group; g < groups; g++) {
        float s, m;
        plm_group_scale_min(w, r, g, &s, &m);
        int64_t n = plm_group_length(w, g);
        if (n == w->group) {
            for (int64_t b = 0; b < n / 32; b++) {
                int64_t block = (g * w->group) / 32 + b;
                int32_t dot = 0;
                for (int j = 0; j < 32; j++) dot += plm_level(w, r, g, b * 32 + j) * (int32_t)a->q[block * 32 + j];
                acc += s * a->d[block] * (float)dot + m * a->sum[block];
            }
        } else {
            const float *x = a->x + g * w->group;
            for (int64_t j = 0; j < n; j++) acc += (s * (float)plm_level(w, r, g, j) + m) * x[j];
        }
    }
    return acc;
}

static void qgemv_portable(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) y[r - r0] = plm_qdot_tail(w, a, r, 0);
}

void plm_qgemv_f32(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    int64_t groups = (w->cols + w->group - 1) / w->group;
    for (int64_t r = r0; r < r1; r++) {
        float acc = 0;
        for (int64_t g = 0; g < groups; g++) {
            float s, m;
            plm_group_scale_min(w, r, g, &s, &m);
            int64_t n = plm_group_length(w, g);
            const float *v = x + g * w->group;
            for (int64_t j = 0; j < n; j++) acc += (s * (float)plm_level(w, r, g, j) + m) * v[j];
        }
        y[r - r0] = acc;
    }
}

int plm_best_impl(void) {
    if (plm_cpu_has_avx512()) return PLM_IMPL_AVX512;
    if (plm_cpu_has_avx2()) return PLM_IMPL_AVX2;
    return PLM_IMPL_PORTABLE;
}

void plm_qgemv(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX512 && plm_cpu_has_avx512()) { plm_qgemv_avx512(w, a, y, r0, r1); return; }
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2()) { plm_qgemv_avx2(w, a, y, r0, r1); return; }
#endif
    qgemv_portable(w, a, y, r0, r1);
}

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
              && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
    }
    return cached;
}
#else
int plm_cpu_has_avx2(void) { return 0; }
int plm_cpu_has_avx512(void) { return 0; }
void plm_qgemv_avx2(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) { qgemv_portable(w, a, y, r0, r1); }
void plm_qgemv_avx512(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) { qgemv_portable(w, a, y, r0, r1); }
#endif

void plm_qgemm(const plm_qmatrix *w, const int8_t *q, const float *d, const float *sum, const float *x,
               int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX512 && plm_cpu_has_avx512() && rows >= 4) {
        plm_qgemm_avx512(w, q, d, sum, rows, y, ldy, r0, r1);
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
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t read_avx2(const void *data, size_t bytes) {
    const __m256i *p = (const __m256i *)data;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 4 <= bytes / 32; i += 4) {
        a = _mm256_xor_si256(a, _mm256_load_si256(p + i));
        b = _mm256_xor_si256(b, _mm256_load_si256(p + i + 1));
        c = _mm256_xor_si256(c, _mm256_load_si256(p + i + 2));
        d = _mm256_xor_si256(d, _mm256_load_si256(p + i + 3));
    }
    __m256i x = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}
#endif

uint64_t plm_read_bytes(const void *data, size_t bytes) {
#if defined(__x86_64__)
    if (plm_cpu_has_avx2()) return read_avx2(data, bytes);
#endif
    const uint64_t *p = (const uint64_t *)data;
    uint64_t x = 0;
    for (size_t i = 0; i < bytes / 8; i++) x ^= p[i];
    return x;
}

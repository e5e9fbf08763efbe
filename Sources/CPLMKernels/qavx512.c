// AVX-512 kernels: VNNI vpdpbusd (u8 × s8 → int32, no saturation), and VBMI vpmultishiftqb to
// unpack the 6-bit k6 scales. Runtime-checked like the AVX2 path.
#if defined(__x86_64__)
#include "qcommon.h"
#include <immintrin.h>

#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx512dq")))

AVX512 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX512 static inline __m256 dot(__m256i levels, __m256i act) {
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), levels, act));
}

/// The 8 scales and 8 minimums of a k6 super-block: one byte shuffle puts the two 6-byte
/// fields in separate qwords, one multishift extracts the 6-bit fields.
AVX512 static inline void k6_decode(const uint8_t *block, float *scales, float *mins) {
    __m128i raw = _mm_loadu_si128((const __m128i *)block);
    const __m128i pick = _mm_setr_epi8(4, 5, 6, 7, 8, 9, -1, -1, 10, 11, 12, 13, 14, 15, -1, -1);
    __m128i fields = _mm_shuffle_epi8(raw, pick);
    const __m128i shifts = _mm_setr_epi8(0, 6, 12, 18, 24, 30, 36, 42, 0, 6, 12, 18, 24, 30, 36, 42);
    __m128i six = _mm_and_si128(_mm_multishift_epi64_epi8(shifts, fields), _mm_set1_epi8(0x3F));
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(six));
    float d = plm_f16_to_f32(plm_load_u16(block)), dmin = plm_f16_to_f32(plm_load_u16(block + 2));
    __m512 factor = _mm512_insertf32x8(_mm512_set1_ps(d), _mm256_set1_ps(-dmin), 1);
    float out[16];
    _mm512_storeu_ps(out, _mm512_mul_ps(f, factor));
    memcpy(scales, out, 32);
    memcpy(mins, out + 8, 32);
}

AVX512 void plm_qgemv_avx512(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) {
    const int64_t g = w->group, full = w->cols / g, per = g / 32;
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i flip = _mm256_set1_epi8(w->kind == PLM_Q8_SYM ? (char)0x80 : 0);
    float ks[8], km[8];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + r * w->data_row_bytes;
        const uint8_t *srow = w->scales + r * w->scale_row_bytes;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        float minAcc = 0;
        for (int64_t gi = 0; gi < full; gi++) {
            float s, m;
            if (w->kind == PLM_Q4_ASYM_K6) {
                if (gi % 8 == 0) k6_decode(srow + (gi / 8) * 16, ks, km);
                s = ks[gi % 8];
                m = km[gi % 8];
            } else {
                plm_group_scale_min(w, r, gi, &s, &m);
            }
            const int64_t b0 = gi * per;
            if (plm_is_int4(w)) {
                const uint8_t *p = row + gi * (g / 2);
                if (g == 32) {
                    __m128i v = _mm_loadu_si128((const __m128i *)p);
                    __m256i lv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), mask);
                    acc0 = _mm256_fmadd_ps(dot(lv, _mm256_loadu_si256((const __m256i *)(a->q + b0 * 32))), _mm256_set1_ps(s * a->d[b0]), acc0);
                    minAcc += m * a->sum[b0];
                } else {
                    const int64_t half = per / 2;
                    for (int64_t c = 0; c < half; c++) {
                        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                        __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                        int64_t bl = b0 + c, bh = b0 + c + half;
                        acc0 = _mm256_fmadd_ps(dot(lo, _mm256_loadu_si256((const __m256i *)(a->q + bl * 32))), _mm256_set1_ps(s * a->d[bl]), acc0);
                        acc1 = _mm256_fmadd_ps(dot(hi, _mm256_loadu_si256((const __m256i *)(a->q + bh * 32))), _mm256_set1_ps(s * a->d[bh]), acc1);
                        minAcc += m * (a->sum[bl] + a->sum[bh]);
                    }
                }
            } else {
                // Levels L = q + 128 for symmetric int8 (stored q), L as stored for asymmetric.
                const uint8_t *p = row + gi * g;
                for (int64_t b = 0; b < per; b++) {
                    __m256i lv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 32 * b)), flip);
                    acc0 = _mm256_fmadd_ps(dot(lv, _mm256_loadu_si256((const __m256i *)(a->q + (b0 + b) * 32))), _mm256_set1_ps(s * a->d[b0 + b]), acc0);
                    minAcc += m * a->sum[b0 + b];
                }
            }
        }
        y[r - r0] = hsum8(_mm256_add_ps(acc0, acc1)) + minAcc + (full * g < w->cols ? plm_qdot_tail(w, a, r, full) : 0.0f);
    }
}
#endif

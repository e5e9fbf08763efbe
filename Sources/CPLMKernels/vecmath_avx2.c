// AVX2 twins of the elementwise maths in vecmath_avx512.c: exp for the attention softmax, the
// exact-erf GELU and SiLU × up. A vision tile on a Zen 3 core spent 18 % of its time in the
// scalar expf loop and 8 % in erff without them. Same polynomials as the AVX-512 kernels; the
// references are the libm loops in qref.c.
#include "qcommon.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#define AVX2 PLM_TARGET_AVX2

/// exp(x) as exp512 computes it (Cephes polynomial on x − n·ln2), with 2^n built in the exponent
/// bits: the clamp keeps n in [−126, 127], so every result is a normal float.
AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

AVX2 float plm_exp_shift_sum_avx2(float *x, int64_t n, float shift) {
    __m256 sum = _mm256_setzero_ps(), s = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float total = plm_hsum8(sum);
    // The last n mod 8 values by the reference.
    return i < n ? total + plm_exp_shift_sum_ref(x + i, n - i, shift) : total;
}

/// GELU of 8 values (the erf of plm_gelu_erf_avx512, Abramowitz & Stegun 7.1.26).
AVX2 static inline __m256 gelu8(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
    __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(a, _mm256_set1_ps(0.3275911f), one));
    __m256 poly = _mm256_set1_ps(1.061405429f);
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-1.453152027f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
    poly = _mm256_mul_ps(poly, t);
    __m256 erfAbs = _mm256_fnmadd_ps(poly, exp256(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), a), a)), one);
    // erf is odd: the sign of z on |erf|.
    __m256 erf = _mm256_or_ps(erfAbs, _mm256_and_ps(z, _mm256_set1_ps(-0.0f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(one, erf));
}

AVX2 void plm_gelu_erf_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) plm_gelu_erf_ref(x + i, n - i);
}

AVX2 void plm_silu_mul_avx2(float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        // exp256 clamps its argument, so a very negative x gives x / (1 + 2^127) ≈ −0.
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    if (i < n) plm_silu_mul_ref(gate + i, up + i, n - i);
}
/// One block of n ≤ 32 values quantized as block_levels (qref.c) does, bit for bit: the absmax
/// of the block, NaN or ±Inf poison it, scale = absmax/top, levels rint(v·(top/absmax))
/// clamped to ±top (vcvtps2dq rounds to nearest even, as lrintf does). The levels come back as
/// four vectors of 8 int32, zero past n.
AVX2 static inline void block_levels256(const float *v, int64_t n, int top, __m256i lv[4], float *scale, float *sum) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), big = _mm256_set1_ps(FLT_MAX);
    __m256 x[4], amax = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int c = 0; c < 4; c++) {
        __m256i inside = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - 8 * c)), lane);
        x[c] = n >= 8 * (c + 1) ? _mm256_loadu_ps(v + 8 * c) : _mm256_maskload_ps(v + 8 * c, inside);  // masked lanes read 0
        __m256 a = _mm256_and_ps(x[c], absmask);
        finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ));  // NaN and ±Inf fail
        amax = _mm256_max_ps(amax, a);
    }
    if (_mm256_movemask_ps(finite) != 0xFF) {
        for (int c = 0; c < 4; c++) lv[c] = _mm256_setzero_si256();
        *scale = NAN;
        *sum = NAN;
        return;
    }
    amax = _mm256_max_ps(amax, _mm256_permute2f128_ps(amax, amax, 1));
    amax = _mm256_max_ps(amax, _mm256_shuffle_ps(amax, amax, 0x4E));
    amax = _mm256_max_ps(amax, _mm256_shuffle_ps(amax, amax, 0xB1));
    const float m = _mm256_cvtss_f32(amax);
    // As in block_levels: subnormal blocks are scaled by 2^64 so that top/amax stays finite.
    const float boost = m < 0x1p-60f ? 0x1p64f : 1.0f;
    const float inverse = m > 0 ? (float)top / (m * boost) : 0.0f;
    *scale = m / (float)top;
    const __m256 inv = _mm256_set1_ps(inverse), vboost = _mm256_set1_ps(boost);
    const __m256i vtop = _mm256_set1_epi32(top), vbottom = _mm256_set1_epi32(-top);
    __m256i total = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i l = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(x[c], vboost), inv));
        lv[c] = _mm256_max_epi32(_mm256_min_epi32(l, vtop), vbottom);
        total = _mm256_add_epi32(total, lv[c]);
    }
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    *sum = *scale * (float)_mm_cvtsi128_si32(t);
}

AVX2 void plm_quantize_activations_avx2(const float *x, int64_t cols, int8_t *q, float *d, float *sum) {
    for (int64_t b = 0; b < plm_blocks(cols); b++) {
        __m256i lv[4];
        block_levels256(x + b * 32, cols - b * 32 < 32 ? cols - b * 32 : 32, 127, lv, d + b, sum + b);
        // Levels fit in int8, so the saturating packs are exact; they work per 128-bit lane,
        // and the permute puts the quarters back in order.
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(lv[0], lv[1]), _mm256_packs_epi32(lv[2], lv[3]));
        _mm256_storeu_si256((__m256i *)(q + b * 32), _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
}

AVX2 void plm_quantize_activations16_avx2(const float *x, int64_t cols, int16_t *q, float *d, float *sum) {
    for (int64_t b = 0; b < plm_blocks(cols); b++) {
        __m256i lv[4];
        block_levels256(x + b * 32, cols - b * 32 < 32 ? cols - b * 32 : 32, 32767, lv, d + b, sum + b);
        __m256i w0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lv[0], lv[1]), 0xD8);
        __m256i w1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lv[2], lv[3]), 0xD8);
        _mm256_storeu_si256((__m256i *)(q + b * 32), w0);
        _mm256_storeu_si256((__m256i *)(q + b * 32 + 16), w1);
    }
}

/// The largest of n values, as plm_max_avx512 (the same value as the reference without NaN).
AVX2 float plm_max_avx2(const float *x, int64_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    m0 = _mm256_max_ps(m0, m1);
    m0 = _mm256_max_ps(m0, _mm256_permute2f128_ps(m0, m0, 1));
    m0 = _mm256_max_ps(m0, _mm256_shuffle_ps(m0, m0, 0x4E));
    m0 = _mm256_max_ps(m0, _mm256_shuffle_ps(m0, m0, 0xB1));
    float m = _mm256_cvtss_f32(m0);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
#endif

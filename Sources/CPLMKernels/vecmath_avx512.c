// AVX-512 elementwise maths: exp for the attention softmax, erf for GELU, the maximum of a row,
// and the per-block activation quantizers. Their references are the loops in qref.c.
#include "qcommon.h"
#include <float.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 PLM_TARGET_AVX512

/// exp(x) for x ≤ 0 (and moderate positives): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6
/// polynomial (Cephes expf coefficients), 2^n through the exponent bits. Max relative error
/// ~2e-7 against libm (tested).
AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 e = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(e, n);
}

AVX512 float plm_exp_shift_sum_avx512(float *x, int64_t n, float shift) {
    __m512 sum = _mm512_setzero_ps(), s = _mm512_set1_ps(shift);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), s));
        _mm512_mask_storeu_ps(x + i, k, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
    }
    return _mm512_reduce_add_ps(sum);
}

/// erf(x) = 1 − (a1·t + … + a5·t⁵)·e^(−x²), t = 1/(1 + p·|x|), with the sign restored
/// (Abramowitz & Stegun 7.1.26, |error| ≤ 1.5e-7).
AVX512 void plm_gelu_erf_avx512(float *x, int64_t n) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), rsqrt2 = _mm512_set1_ps(0.70710678118654752f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 z = _mm512_mul_ps(v, rsqrt2);
        __m512 a = _mm512_abs_ps(z);
        __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), one));
        __m512 poly = _mm512_set1_ps(1.061405429f);
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-1.453152027f));
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(1.421413741f));
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-0.284496736f));
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(0.254829592f));
        poly = _mm512_mul_ps(poly, t);
        __m512 erfAbs = _mm512_fnmadd_ps(poly, exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)), one);
        __m512 erf = _mm512_mask_sub_ps(erfAbs, _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps(), erfAbs);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf)));
    }
}


AVX512 void plm_silu_mul_avx512(float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(k, gate + i), u = _mm512_maskz_loadu_ps(k, up + i);
        // exp512 clamps its argument, so a very negative x gives x / (1 + 2^127) ≈ −0, as it should.
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_mask_storeu_ps(gate + i, k, _mm512_mul_ps(s, u));
    }
}

/// Quantizes one block of n ≤ 32 values as block_levels (qref.c) does, bit for bit: absmax over
/// the block, NaN/±Inf poison it, scale = absmax/top, levels rint(v·(top/absmax)) clamped.
/// Returns the levels as 32 int32 (two vectors, zero beyond n).
AVX512 static inline void block_levels512(const float *v, int64_t n, int top, __m512i *lo, __m512i *hi, float *scale, float *sum) {
    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    __m512 a = _mm512_maskz_loadu_ps(m0, v), b = _mm512_maskz_loadu_ps(m1, v + 16);
    __m512 aa = _mm512_abs_ps(a), ab = _mm512_abs_ps(b);
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    // Finite lanes compare ≤ FLT_MAX; NaN and ±Inf do not (masked-off lanes hold 0).
    if ((__mmask16)_mm512_cmp_ps_mask(aa, big, _CMP_LE_OQ) != 0xFFFF || (__mmask16)_mm512_cmp_ps_mask(ab, big, _CMP_LE_OQ) != 0xFFFF) {
        *lo = *hi = _mm512_setzero_si512();
        *scale = NAN;
        *sum = NAN;
        return;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(aa, ab));
    // As in block_levels: subnormal blocks are scaled by 2^64 so that top/amax stays finite.
    const float boost = amax < 0x1p-60f ? 0x1p64f : 1.0f;
    const float inverse = amax > 0 ? (float)top / (amax * boost) : 0.0f;
    *scale = amax / (float)top;
    const __m512 inv = _mm512_set1_ps(inverse), vboost = _mm512_set1_ps(boost);
    a = _mm512_mul_ps(a, vboost);
    b = _mm512_mul_ps(b, vboost);
    const __m512i vtop = _mm512_set1_epi32(top), vbottom = _mm512_set1_epi32(-top);
    // cvtps rounds to nearest even, as lrintf does in the default rounding mode.
    *lo = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(a, inv)), vtop), vbottom);
    *hi = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(b, inv)), vtop), vbottom);
    *sum = *scale * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(*lo, *hi));
}

/// Both activation quantizers: int8 (top 127) into q8, or int16 (top 32767) into q16.
AVX512 static void quantize_blocks(const float *x, int64_t cols, int top, int8_t *q8, int16_t *q16, float *d, float *sum) {
    for (int64_t b = 0; b < plm_blocks(cols); b++) {
        const int64_t n = cols - b * 32 < 32 ? cols - b * 32 : 32;
        __m512i lo, hi;
        block_levels512(x + b * 32, n, top, &lo, &hi, d + b, sum + b);
        if (q8) {
            _mm_storeu_si128((__m128i *)(q8 + b * 32), _mm512_cvtepi32_epi8(lo));
            _mm_storeu_si128((__m128i *)(q8 + b * 32 + 16), _mm512_cvtepi32_epi8(hi));
        } else {
            _mm256_storeu_si256((__m256i *)(q16 + b * 32), _mm512_cvtepi32_epi16(lo));
            _mm256_storeu_si256((__m256i *)(q16 + b * 32 + 16), _mm512_cvtepi32_epi16(hi));
        }
    }
}

AVX512 void plm_quantize_activations_avx512(const float *x, int64_t cols, int8_t *q, float *d, float *sum) {
    quantize_blocks(x, cols, 127, q, NULL, d, sum);
}

AVX512 void plm_quantize_activations16_avx512(const float *x, int64_t cols, int16_t *q, float *d, float *sum) {
    quantize_blocks(x, cols, 32767, NULL, q, d, sum);
}

AVX512 float plm_max_avx512(const float *x, int64_t n) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        m0 = _mm512_mask_max_ps(m0, k, m0, _mm512_maskz_loadu_ps(k, x + i));
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/// 12 independent vpdpbusd chains on zmm registers; the asm barrier keeps the compiler from
/// folding the loop. Returns multiply-adds per second (64 per instruction).
AVX512 double plm_int8_dot_peak_avx512(int64_t iterations) {
    __m512i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    const double t0 = plm_seconds();
    for (int64_t it = 0; it < iterations; it++) {
        for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                              "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    const double seconds = plm_seconds() - t0;
    return seconds > 0 ? (double)iterations * 12 * 64 / seconds : 0;
}
#endif

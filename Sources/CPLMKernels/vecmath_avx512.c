// AVX-512 elementwise maths: exp for the attention softmax, erf for GELU. Their references are
// the libm loops in qref.c.
#include "qcommon.h"

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

#endif

// AVX2 twins of the elementwise maths in vecmath_avx512.c: exp for the attention softmax, the
// exact-erf GELU and SiLU × up. A vision tile on a Zen 3 core spent 18 % of its time in the
// scalar expf loop and 8 % in erff without them. Same polynomials as the AVX-512 kernels; the
// references are the libm loops in qref.c.
#include "qcommon.h"

#if defined(__x86_64__)
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
#endif

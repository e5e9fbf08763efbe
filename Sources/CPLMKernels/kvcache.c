// The KV cache's layout (plm_layout.h, PLM_KV_KEY_BLOCK) and a decoding step's attention over
// it. A decoding query is one row per query head, so the products are matrix × vector and the
// step is bound by reading the cache: keys transposed in blocks of 16 positions let one vector
// load carry a dimension of 16 keys (scores without horizontal sums), values as rows let a
// broadcast probability scale a row. f16 elements halve the bytes; they are widened in
// registers (exact), and every sum is fp32.
//
// plm_kv_attend_ref is the definition (libm expf); the AVX-512 and AVX2 twins sum in another
// order and use the polynomial exp of plm_exp_shift_sum, so they agree to rounding.
#include "qcommon.h"
#include <stdlib.h>

#define KB PLM_KV_KEY_BLOCK
_Static_assert(PLM_KV_KEY_BLOCK == 16, "a key block is the 16 fp32 lanes of one zmm");

int64_t plm_kv_elements(const plm_kv_layout *l, int64_t positions) {
    return (positions + KB - 1) / KB * KB * (int64_t)l->kv_heads * l->head_dim;
}

uint16_t plm_f16_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t mag = bits & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return sign | 0x7E00u | (uint16_t)((mag >> 13) & 0x3FFu);  // NaN, made quiet
    if (mag >= 0x477FF000u) return sign | 0x7C00u;  // ≥ 65520 (65504 + half an ulp, a tie to odd): ±inf
    if (mag < 0x38800000u) {
        // Below 2⁻¹⁴: a subnormal f16, the value in units of 2⁻²⁴ rounded to nearest even (the
        // scaling is exact; 1024 is the smallest normal, also right).
        float f;
        memcpy(&f, &mag, 4);
        return sign | (uint16_t)nearbyintf(f * 0x1p24f);
    }
    uint32_t r = mag - (112u << 23);  // exponent bias 127 → 15
    r += 0xFFFu + ((r >> 13) & 1u);
    return sign | (uint16_t)(r >> 13);
}

float plm_f16_value(uint16_t h) { return plm_f16_to_f32(h); }

static inline int64_t key_index(const plm_kv_layout *l, int64_t p, int64_t h, int64_t d) {
    return ((p / KB * l->kv_heads + h) * l->head_dim + d) * KB + p % KB;
}

static inline int64_t value_index(const plm_kv_layout *l, int64_t p, int64_t h, int64_t d) {
    return (p * l->kv_heads + h) * l->head_dim + d;
}

static inline void put(const plm_kv_layout *l, void *base, int64_t i, float x) {
    if (l->kind == PLM_KV_F16) ((uint16_t *)base)[i] = plm_f16_round(x); else ((float *)base)[i] = x;
}

static inline float get(const plm_kv_layout *l, const void *base, int64_t i) {
    return l->kind == PLM_KV_F16 ? plm_f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

void plm_kv_store_ref(const plm_kv_layout *l, void *keys, void *values, int64_t first, int64_t rows,
                      const float *k, int64_t k_stride, const float *v, int64_t v_stride) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t h = 0; h < l->kv_heads; h++)
            for (int64_t d = 0; d < l->head_dim; d++) {
                const int64_t c = h * l->head_dim + d;
                put(l, keys, key_index(l, first + r, h, d), k[r * k_stride + c]);
                put(l, values, value_index(l, first + r, h, d), v[r * v_stride + c]);
            }
}

void plm_kv_widen_ref(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, float *k, float *v) {
    const int64_t width = (int64_t)l->kv_heads * l->head_dim;
    for (int64_t p = 0; p < count; p++)
        for (int64_t h = 0; h < l->kv_heads; h++)
            for (int64_t d = 0; d < l->head_dim; d++) {
                if (k) k[p * width + h * l->head_dim + d] = get(l, keys, key_index(l, p, h, d));
                if (v) v[p * width + h * l->head_dim + d] = get(l, values, value_index(l, p, h, d));
            }
}

int64_t plm_kv_attend_scratch(int64_t queries, int64_t count) {
    // The SIMD twins score up to four queries at a time over whole key blocks.
    const int64_t rows = queries < 4 ? queries : 4;
    return rows * ((count + KB - 1) / KB * KB);
}

void plm_kv_attend_ref(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, int64_t head,
                       const float *q, int64_t queries, float scale, float *scratch, float *out) {
    const int64_t dim = l->head_dim;
    float *s = scratch;
    for (int64_t i = 0; i < queries; i++) {
        float m = -INFINITY;
        for (int64_t j = 0; j < count; j++) {
            float dot = 0;
            for (int64_t d = 0; d < dim; d++) dot += q[i * dim + d] * get(l, keys, key_index(l, j, head, d));
            s[j] = scale * dot;
            m = s[j] > m ? s[j] : m;
        }
        float sum = 0;
        for (int64_t j = 0; j < count; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
        for (int64_t d = 0; d < dim; d++) {
            float acc = 0;
            for (int64_t j = 0; j < count; j++) acc += s[j] * get(l, values, value_index(l, j, head, d));
            out[i * dim + d] = acc / sum;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 PLM_TARGET_AVX2
#define AVX512 PLM_TARGET_AVX512

// Queries go in groups of four, with a constant count per case so that each group keeps its
// accumulators in registers; one definition serves both instruction sets.
#define PLM_KV_ATTEND(TARGET, NAME, GROUP)                                                                          \
    TARGET static void NAME(const plm_kv_layout *l, const void *keys, const void *values, int64_t count,            \
                            int64_t head, const float *q, int64_t queries, float scale, float *scratch, float *out) { \
        const int f16 = l->kind == PLM_KV_F16;                                                                      \
        const int64_t dim = l->head_dim;                                                                            \
        for (int64_t g = 0; g < queries; g += 4) {                                                                  \
            const float *qg = q + g * dim;                                                                          \
            float *og = out + g * dim;                                                                              \
            switch (queries - g < 4 ? queries - g : 4) {                                                            \
            case 1: GROUP(l, keys, values, count, head, qg, 1, scale, scratch, og, f16); break;                     \
            case 2: GROUP(l, keys, values, count, head, qg, 2, scale, scratch, og, f16); break;                     \
            case 3: GROUP(l, keys, values, count, head, qg, 3, scale, scratch, og, f16); break;                     \
            default: GROUP(l, keys, values, count, head, qg, 4, scale, scratch, og, f16); break;                    \
            }                                                                                                       \
        }                                                                                                           \
    }

// Store and widen: the conversions run 8 at a time with F16C (both instruction sets have it);
// the transposed keys are scattered element by element (prefill-sized work, not per token).

/// n floats at x (n a multiple of 8) to f16 at out.
AVX2 static void to_f16(const float *x, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

AVX2 static void from_f16(const uint16_t *x, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
}

AVX2 static void store_f16c(const plm_kv_layout *l, void *keys, void *values, int64_t first, int64_t rows,
                            const float *k, int64_t k_stride, const float *v, int64_t v_stride) {
    const int64_t dim = l->head_dim, width = (int64_t)l->kv_heads * dim;
    const int f16 = l->kind == PLM_KV_F16;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t p = first + r;
        const float *kr = k + r * k_stride, *vr = v + r * v_stride;
        if (f16) to_f16(vr, width, (uint16_t *)values + value_index(l, p, 0, 0));
        else memcpy((float *)values + value_index(l, p, 0, 0), vr, (size_t)width * 4);
        for (int64_t h = 0; h < l->kv_heads; h++) {
            const int64_t base = key_index(l, p, h, 0);
            for (int64_t d0 = 0; d0 < dim; d0 += 8) {
                if (f16) {
                    uint16_t t[8];
                    to_f16(kr + h * dim + d0, 8, t);
                    for (int i = 0; i < 8; i++) ((uint16_t *)keys)[base + (d0 + i) * KB] = t[i];
                } else {
                    for (int i = 0; i < 8; i++) ((float *)keys)[base + (d0 + i) * KB] = kr[h * dim + d0 + i];
                }
            }
        }
    }
}

AVX2 static void widen_f16c(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, float *k, float *v) {
    const int64_t dim = l->head_dim, width = (int64_t)l->kv_heads * dim;
    const int f16 = l->kind == PLM_KV_F16;
    if (v) {
        if (f16) from_f16(values, count * width, v);
        else memcpy(v, values, (size_t)(count * width) * 4);
    }
    if (!k) return;
    for (int64_t b = 0; b * KB < count; b++) {
        const int64_t live = count - b * KB < KB ? count - b * KB : KB;
        for (int64_t h = 0; h < l->kv_heads; h++)
            for (int64_t d = 0; d < dim; d++) {
                float t[KB];
                const int64_t at = key_index(l, b * KB, h, d);
                if (f16) from_f16((const uint16_t *)keys + at, KB, t);
                else memcpy(t, (const float *)keys + at, sizeof t);
                for (int64_t i = 0; i < live; i++) k[(b * KB + i) * width + h * dim + d] = t[i];
            }
    }
}

// ---- AVX-512 decode attention ----

AVX512 static inline __m512 load16_512(const void *base, int64_t i, int f16) {
    return f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)))
               : _mm512_loadu_ps((const float *)base + i);
}

/// Scores of nq (1…4) queries against every key block into s (row stride ld): per dimension one
/// load of 16 keys and nq FMAs against broadcast query elements; even and odd dimensions in two
/// chains each, so at least two independent chains hide the FMA latency.
AVX512 __attribute__((always_inline)) static inline void scores_512(const plm_kv_layout *l, const void *keys, int64_t count,
                                                                   int64_t head, const float *q, const int nq, float scale,
                                                                   float *s, int64_t ld, int f16) {
    const int64_t dim = l->head_dim, blocks = (count + KB - 1) / KB, stride = (int64_t)l->kv_heads * dim * KB;
    const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t at = b * stride + head * dim * KB;
        __m512 a0[4], a1[4];
        for (int i = 0; i < 4; i++) { a0[i] = _mm512_setzero_ps(); a1[i] = a0[i]; }
        for (int64_t d = 0; d < dim; d += 2) {
            const __m512 k0 = load16_512(keys, at + d * KB, f16), k1 = load16_512(keys, at + (d + 1) * KB, f16);
            for (int i = 0; i < nq; i++) {
                a0[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i * dim + d]), k0, a0[i]);
                a1[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i * dim + d + 1]), k1, a1[i]);
            }
        }
        const int64_t live = count - b * KB;
        const __mmask16 keep = live >= KB ? (__mmask16)0xFFFF : (__mmask16)((1u << live) - 1);
        for (int i = 0; i < nq; i++)
            _mm512_storeu_ps(s + i * ld + b * KB, _mm512_mask_blend_ps(keep, ninf, _mm512_mul_ps(_mm512_add_ps(a0[i], a1[i]), vscale)));
    }
}

/// out_i[dc …] = Σ_j p_i[j] · v_j[dc …] · inv_i for nq queries and cw (1 or 4) vectors of 16
/// dimensions from dc.
AVX512 __attribute__((always_inline)) static inline void pv_512(const plm_kv_layout *l, const void *values, int64_t count, int64_t head,
                                                               const float *s, int64_t ld, const int nq, const int cw, int64_t dc,
                                                               const float *inv, float *out, int f16) {
    const int64_t dim = l->head_dim, row = (int64_t)l->kv_heads * dim;
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < count; j++) {
        const int64_t at = j * row + head * dim + dc;
        __m512 vv[4];
        for (int c = 0; c < cw; c++) vv[c] = load16_512(values, at + 16 * c, f16);
        for (int i = 0; i < nq; i++) {
            const __m512 p = _mm512_set1_ps(s[i * ld + j]);
            for (int c = 0; c < cw; c++) acc[i][c] = _mm512_fmadd_ps(p, vv[c], acc[i][c]);
        }
    }
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < cw; c++) _mm512_storeu_ps(out + i * dim + dc + 16 * c, _mm512_mul_ps(acc[i][c], _mm512_set1_ps(inv[i])));
}

AVX512 __attribute__((always_inline)) static inline void attend_group_512(const plm_kv_layout *l, const void *keys, const void *values,
                                                                         int64_t count, int64_t head, const float *q, const int nq,
                                                                         float scale, float *s, float *out, int f16) {
    const int64_t dim = l->head_dim, ld = (count + KB - 1) / KB * KB;
    scores_512(l, keys, count, head, q, nq, scale, s, ld, f16);
    float inv[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < nq; i++) {
        float *row = s + i * ld;
        inv[i] = 1 / plm_exp_shift_sum_avx512(row, count, plm_max_avx512(row, count));
    }
    int64_t dc = 0;
    for (; dc + 64 <= dim; dc += 64) pv_512(l, values, count, head, s, ld, nq, 4, dc, inv, out, f16);
    for (; dc < dim; dc += 16) pv_512(l, values, count, head, s, ld, nq, 1, dc, inv, out, f16);
}

PLM_KV_ATTEND(AVX512, attend_avx512, attend_group_512)

// ---- AVX2 decode attention: the same steps over two 8-lane halves of each key block ----

AVX2 static inline __m256 load8_256(const void *base, int64_t i, int f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)))
               : _mm256_loadu_ps((const float *)base + i);
}

AVX2 __attribute__((always_inline)) static inline void scores_256(const plm_kv_layout *l, const void *keys, int64_t count,
                                                                 int64_t head, const float *q, const int nq, float scale,
                                                                 float *s, int64_t ld, int f16) {
    const int64_t dim = l->head_dim, blocks = (count + KB - 1) / KB, stride = (int64_t)l->kv_heads * dim * KB;
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t at = b * stride + head * dim * KB;
        __m256 lo[4], hi[4];
        for (int i = 0; i < 4; i++) { lo[i] = _mm256_setzero_ps(); hi[i] = lo[i]; }
        for (int64_t d = 0; d < dim; d++) {
            const __m256 k0 = load8_256(keys, at + d * KB, f16), k1 = load8_256(keys, at + d * KB + 8, f16);
            for (int i = 0; i < nq; i++) {
                const __m256 qd = _mm256_broadcast_ss(q + i * dim + d);
                lo[i] = _mm256_fmadd_ps(qd, k0, lo[i]);
                hi[i] = _mm256_fmadd_ps(qd, k1, hi[i]);
            }
        }
        for (int i = 0; i < nq; i++) {
            _mm256_storeu_ps(s + i * ld + b * KB, _mm256_mul_ps(lo[i], _mm256_set1_ps(scale)));
            _mm256_storeu_ps(s + i * ld + b * KB + 8, _mm256_mul_ps(hi[i], _mm256_set1_ps(scale)));
        }
    }
    // Positions past the last key of a block are no keys.
    for (int i = 0; i < nq; i++)
        for (int64_t j = count; j < blocks * KB; j++) s[i * ld + j] = -INFINITY;
}

/// nq queries × 16 dimensions from dc (two vectors): eight accumulators fit AVX2's registers.
AVX2 __attribute__((always_inline)) static inline void pv_256(const plm_kv_layout *l, const void *values, int64_t count, int64_t head,
                                                             const float *s, int64_t ld, const int nq, int64_t dc,
                                                             const float *inv, float *out, int f16) {
    const int64_t dim = l->head_dim, row = (int64_t)l->kv_heads * dim;
    __m256 a0[4], a1[4];
    for (int i = 0; i < 4; i++) { a0[i] = _mm256_setzero_ps(); a1[i] = a0[i]; }
    for (int64_t j = 0; j < count; j++) {
        const int64_t at = j * row + head * dim + dc;
        const __m256 v0 = load8_256(values, at, f16), v1 = load8_256(values, at + 8, f16);
        for (int i = 0; i < nq; i++) {
            const __m256 p = _mm256_broadcast_ss(s + i * ld + j);
            a0[i] = _mm256_fmadd_ps(p, v0, a0[i]);
            a1[i] = _mm256_fmadd_ps(p, v1, a1[i]);
        }
    }
    for (int i = 0; i < nq; i++) {
        _mm256_storeu_ps(out + i * dim + dc, _mm256_mul_ps(a0[i], _mm256_set1_ps(inv[i])));
        _mm256_storeu_ps(out + i * dim + dc + 8, _mm256_mul_ps(a1[i], _mm256_set1_ps(inv[i])));
    }
}

AVX2 __attribute__((always_inline)) static inline void attend_group_256(const plm_kv_layout *l, const void *keys, const void *values,
                                                                       int64_t count, int64_t head, const float *q, const int nq,
                                                                       float scale, float *s, float *out, int f16) {
    const int64_t ld = (count + KB - 1) / KB * KB;
    scores_256(l, keys, count, head, q, nq, scale, s, ld, f16);
    float inv[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < nq; i++) {
        float *row = s + i * ld;
        inv[i] = 1 / plm_exp_shift_sum_avx2(row, count, plm_max_avx2(row, count));
    }
    for (int64_t dc = 0; dc < l->head_dim; dc += 16) pv_256(l, values, count, head, s, ld, nq, dc, inv, out, f16);
}

PLM_KV_ATTEND(AVX2, attend_avx2, attend_group_256)
#endif

/// The SIMD twins need whole vectors of dimensions (16 for both: AVX2 runs two halves).
static int simd_fits(const plm_kv_layout *l) { return l->head_dim % 16 == 0 && l->head_dim > 0; }

void plm_kv_store(const plm_kv_layout *l, void *keys, void *values, int64_t first, int64_t rows,
                  const float *k, int64_t k_stride, const float *v, int64_t v_stride, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2() && l->head_dim % 8 == 0) {
        store_f16c(l, keys, values, first, rows, k, k_stride, v, v_stride);
        return;
    }
#endif
    (void)impl;
    plm_kv_store_ref(l, keys, values, first, rows, k, k_stride, v, v_stride);
}

void plm_kv_widen(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, float *k, float *v, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2() && l->head_dim % 8 == 0) {
        widen_f16c(l, keys, values, count, k, v);
        return;
    }
#endif
    (void)impl;
    plm_kv_widen_ref(l, keys, values, count, k, v);
}

void plm_kv_attend(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, int64_t head,
                   const float *q, int64_t queries, float scale, float *scratch, float *out, int impl) {
#if defined(__x86_64__)
    if (simd_fits(l)) {
        if (impl >= PLM_IMPL_AVX512 && plm_cpu_has_avx512()) { attend_avx512(l, keys, values, count, head, q, queries, scale, scratch, out); return; }
        if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2()) { attend_avx2(l, keys, values, count, head, q, queries, scale, scratch, out); return; }
    }
#endif
    (void)impl;
    plm_kv_attend_ref(l, keys, values, count, head, q, queries, scale, scratch, out);
}

// The two products of blocked attention (S = Q·Kᵀ and O += P·V) with bf16 inputs and fp32
// sums: vdpbf16ps does two multiply-adds per 32-bit lane, twice fp32's FMA, and the products of
// two bf16 values are exact in fp32, so the only rounding is that of the inputs (8 significant
// bits) and of the fp32 sums. The softmax between the products stays fp32 (plm_exp_shift_sum).
//
// The layouts are declared in plm_layout.h (PLM_BF16_KEY_BLOCK).
// The reference twins compute the same sums in plain C, in vdpbf16ps's order (the odd element
// of a pair first), from the same rounded inputs.
#include "qcommon.h"

_Static_assert(PLM_BF16_KEY_BLOCK == 16, "a key block is the 16 fp32 lanes of one zmm");

/// fp32 → bf16, round to nearest even, denormals flushed to zero (what vcvtne2ps2bf16 does), NaN
/// kept a quiet NaN.
static inline uint16_t bf16_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7F800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static inline float bf16_value(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#define KB PLM_BF16_KEY_BLOCK

int64_t plm_bf16_keys_count(int64_t keys, int64_t dim) { return (keys + KB - 1) / KB * KB * dim; }
int64_t plm_bf16_values_count(int64_t keys, int64_t dim) { return (keys + 1) / 2 * 2 * dim; }

void plm_bf16_pack_keys_ref(const float *k, int64_t stride, int64_t keys, int64_t dim, uint16_t *out) {
    const int64_t padded = (keys + KB - 1) / KB * KB;
    for (int64_t j = 0; j < padded; j++) {
        uint16_t *block = out + (j / KB) * KB * dim + (j % KB) * 2;
        for (int64_t p = 0; p < dim / 2; p++) {
            block[p * 32] = j < keys ? bf16_round(k[j * stride + 2 * p]) : 0;
            block[p * 32 + 1] = j < keys ? bf16_round(k[j * stride + 2 * p + 1]) : 0;
        }
    }
}

void plm_bf16_pack_values_ref(const float *v, int64_t stride, int64_t keys, int64_t dim, uint16_t *out) {
    const int64_t padded = (keys + 1) / 2 * 2;
    for (int64_t j = 0; j < padded; j++) {
        uint16_t *pair = out + (j / 2) * 2 * dim + j % 2;
        for (int64_t c = 0; c < dim; c++) pair[2 * c] = j < keys ? bf16_round(v[j * stride + c]) : 0;
    }
}

void plm_bf16_round_rows_ref(const float *x, int64_t stride, int64_t rows, int64_t cols, uint16_t *out, int64_t out_stride) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < out_stride; c++) out[i * out_stride + c] = c < cols ? bf16_round(x[i * stride + c]) : 0;
}

void plm_bf16_scores_ref(const uint16_t *q, int64_t rows, const uint16_t *keys, int64_t k0, int64_t nk, int64_t dim,
                         float scale, float *s, int64_t lds) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = k0; j < k0 + nk; j++) {
            const uint16_t *block = keys + (j / KB) * KB * dim + (j % KB) * 2;
            float acc = 0;
            for (int64_t p = 0; p < dim / 2; p++) {
                acc += bf16_value(q[i * dim + 2 * p + 1]) * bf16_value(block[p * 32 + 1]);
                acc += bf16_value(q[i * dim + 2 * p]) * bf16_value(block[p * 32]);
            }
            s[i * lds + (j - k0)] = acc * scale;
        }
}

void plm_bf16_pv_ref(const uint16_t *p, int64_t ldp, int64_t rows, const uint16_t *values, int64_t k0, int64_t nk, int64_t dim,
                     float *acc, int64_t ldacc) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < dim; c++) {
            float a = acc[i * ldacc + c];
            for (int64_t t = 0; t < (nk + 1) / 2; t++) {
                const uint16_t *pair = values + (k0 / 2 + t) * 2 * dim + 2 * c;
                a += bf16_value(p[i * ldp + 2 * t + 1]) * bf16_value(pair[1]);
                a += bf16_value(p[i * ldp + 2 * t]) * bf16_value(pair[0]);
            }
            acc[i * ldacc + c] = a;
        }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define BF16 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

/// The pair of bf16 values at p, in every lane.
BF16 static inline __m512bh pair_bcast(const uint16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return (__m512bh)_mm512_set1_epi32(v);
}

BF16 static inline __m512bh load_bh(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512((const void *)p); }

BF16 static void round_rows_avx512(const float *x, int64_t stride, int64_t rows, int64_t cols, uint16_t *out, int64_t out_stride) {
    for (int64_t i = 0; i < rows; i++) {
        const float *row = x + i * stride;
        uint16_t *o = out + i * out_stride;
        int64_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            // vcvtne2ps2bf16 puts its second operand in the low half.
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + c + 16), _mm512_loadu_ps(row + c));
            _mm512_storeu_si512((void *)(o + c), (__m512i)v);
        }
        for (; c < cols; c += 16) {
            const int64_t n = cols - c < 16 ? cols - c : 16;
            __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), row + c));
            _mm256_mask_storeu_epi16((void *)(o + c), (__mmask16)((1u << n) - 1), (__m256i)v);
        }
        for (c = cols; c < out_stride; c++) o[c] = 0;
    }
}

/// Keys in blocks of 16: the block's rows rounded to bf16 rows, then one 32-bit gather per
/// dimension pair (16 keys' pairs into one zmm).
BF16 static void pack_keys_avx512(const float *k, int64_t stride, int64_t keys, int64_t dim, uint16_t *out) {
    uint16_t rows[16 * dim];
    const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32((int)(2 * dim)));
    for (int64_t j0 = 0; j0 < keys; j0 += 16) {
        const int64_t n = keys - j0 < 16 ? keys - j0 : 16;
        round_rows_avx512(k + j0 * stride, stride, n, dim, rows, dim);
        if (n < 16) memset(rows + n * dim, 0, (size_t)((16 - n) * dim * 2));
        uint16_t *block = out + j0 * dim;
        for (int64_t p = 0; p < dim / 2; p++)
            _mm512_storeu_si512((void *)(block + p * 32), _mm512_i32gather_epi32(offsets, (const void *)(rows + 2 * p), 1));
    }
}

/// Values in pairs of keys: both rows rounded 16 dimensions at a time and interleaved as the
/// two halves of 32-bit lanes.
BF16 static void pack_values_avx512(const float *v, int64_t stride, int64_t keys, int64_t dim, uint16_t *out) {
    for (int64_t j = 0; j < keys; j += 2) {
        const float *a = v + j * stride, *b = a + stride;
        const int odd = j + 1 < keys;
        for (int64_t c = 0; c < dim; c += 16) {
            const __mmask16 m = dim - c >= 16 ? 0xFFFF : (__mmask16)((1u << (dim - c)) - 1);
            __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, a + c)));
            __m512i hi = odd ? _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, b + c))) : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32((void *)(out + j * dim + 2 * c), m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/// Scores of `nr` (1…4) query rows against `nb` (1 or 2) blocks of 16 keys: 2·nr accumulators
/// over the dimension pairs, each key block loaded once for all rows.
BF16 __attribute__((always_inline)) static inline void scores_tile(const uint16_t *q, int64_t dim, const uint16_t *kb, const int nr,
                                                             const int nb, float scale, float *s, int64_t lds, __mmask16 m0, __mmask16 m1) {
    __m512 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < dim / 2; p++) {
        const __m512bh k0 = load_bh(kb + p * 32);
        const __m512bh k1 = nb > 1 ? load_bh(kb + 16 * dim + p * 32) : k0;
        for (int r = 0; r < nr; r++) {
            const __m512bh qp = pair_bcast(q + r * dim + 2 * p);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], qp, k0);
            if (nb > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], qp, k1);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < nr; r++) {
        _mm512_mask_storeu_ps(s + r * lds, m0, _mm512_mul_ps(acc[r][0], sc));
        if (nb > 1) _mm512_mask_storeu_ps(s + r * lds + 16, m1, _mm512_mul_ps(acc[r][1], sc));
    }
}

BF16 static void scores_avx512(const uint16_t *q, int64_t rows, const uint16_t *keys, int64_t k0, int64_t nk, int64_t dim,
                               float scale, float *s, int64_t lds) {
    for (int64_t j = 0; j < nk; j += 32) {
        // Key blocks of 16 start at k0 (a multiple of 16): block (k0 + j)/16 at (k0 + j)·dim.
        const uint16_t *kb = keys + (k0 + j) * dim;
        const int64_t left = nk - j;
        const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        const __mmask16 m1 = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
        int64_t i = 0;
        if (left > 16) {
            for (; i + 4 <= rows; i += 4) scores_tile(q + i * dim, dim, kb, 4, 2, scale, s + i * lds + j, lds, m0, m1);
            for (; i < rows; i++) scores_tile(q + i * dim, dim, kb, 1, 2, scale, s + i * lds + j, lds, m0, m1);
        } else {
            for (; i + 4 <= rows; i += 4) scores_tile(q + i * dim, dim, kb, 4, 1, scale, s + i * lds + j, lds, m0, m1);
            for (; i < rows; i++) scores_tile(q + i * dim, dim, kb, 1, 1, scale, s + i * lds + j, lds, m0, m1);
        }
    }
}

/// acc[nr rows][16·nz dims from c0] += P·V over the key pairs: nr·nz accumulators in registers
/// for the whole key range, each value pair row loaded once for all rows.
BF16 __attribute__((always_inline)) static inline void pv_tile(const uint16_t *p, int64_t ldp, const int nr, const uint16_t *values,
                                                         int64_t pairs, int64_t dim, int64_t c0, const int nz, float *acc, int64_t ldacc) {
    __m512 a[4][4];
    for (int r = 0; r < nr; r++)
        for (int z = 0; z < nz; z++) a[r][z] = _mm512_loadu_ps(acc + r * ldacc + c0 + 16 * z);
    for (int64_t t = 0; t < pairs; t++) {
        __m512bh v[4];
        for (int z = 0; z < nz; z++) v[z] = load_bh(values + t * 2 * dim + 2 * (c0 + 16 * z));
        for (int r = 0; r < nr; r++) {
            const __m512bh pp = pair_bcast(p + r * ldp + 2 * t);
            for (int z = 0; z < nz; z++) a[r][z] = _mm512_dpbf16_ps(a[r][z], pp, v[z]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int z = 0; z < nz; z++) _mm512_storeu_ps(acc + r * ldacc + c0 + 16 * z, a[r][z]);
}

#define PV_ROWS(nz) do { \
        int64_t i = 0; \
        for (; i + 4 <= rows; i += 4) pv_tile(p + i * ldp, ldp, 4, vb, pairs, dim, c0, nz, acc + i * ldacc, ldacc); \
        for (; i < rows; i++) pv_tile(p + i * ldp, ldp, 1, vb, pairs, dim, c0, nz, acc + i * ldacc, ldacc); \
    } while (0)

BF16 static void pv_avx512(const uint16_t *p, int64_t ldp, int64_t rows, const uint16_t *values, int64_t k0, int64_t nk, int64_t dim,
                           float *acc, int64_t ldacc) {
    const uint16_t *vb = values + k0 * dim;  // pair k0/2 starts at (k0/2)·2·dim
    const int64_t pairs = (nk + 1) / 2;
    for (int64_t c0 = 0; c0 < dim; c0 += 64) {
        switch ((dim - c0) / 16) {
        case 1: PV_ROWS(1); break;
        case 2: PV_ROWS(2); break;
        case 3: PV_ROWS(3); break;
        default: PV_ROWS(4); break;
        }
    }
}
#undef PV_ROWS
#endif

static int use_bf16(int impl) { return impl >= PLM_IMPL_AVX512 && plm_cpu_has_avx512_bf16(); }

void plm_bf16_pack_keys(const float *k, int64_t stride, int64_t keys, int64_t dim, uint16_t *out, int impl) {
#if defined(__x86_64__)
    if (use_bf16(impl)) { pack_keys_avx512(k, stride, keys, dim, out); return; }
#endif
    plm_bf16_pack_keys_ref(k, stride, keys, dim, out);
}

void plm_bf16_pack_values(const float *v, int64_t stride, int64_t keys, int64_t dim, uint16_t *out, int impl) {
#if defined(__x86_64__)
    if (use_bf16(impl)) { pack_values_avx512(v, stride, keys, dim, out); return; }
#endif
    plm_bf16_pack_values_ref(v, stride, keys, dim, out);
}

void plm_bf16_round_rows(const float *x, int64_t stride, int64_t rows, int64_t cols, uint16_t *out, int64_t out_stride, int impl) {
#if defined(__x86_64__)
    if (use_bf16(impl)) { round_rows_avx512(x, stride, rows, cols, out, out_stride); return; }
#endif
    plm_bf16_round_rows_ref(x, stride, rows, cols, out, out_stride);
}

void plm_bf16_scores(const uint16_t *q, int64_t rows, const uint16_t *keys, int64_t k0, int64_t nk, int64_t dim,
                     float scale, float *s, int64_t lds, int impl) {
#if defined(__x86_64__)
    if (use_bf16(impl)) { scores_avx512(q, rows, keys, k0, nk, dim, scale, s, lds); return; }
#endif
    plm_bf16_scores_ref(q, rows, keys, k0, nk, dim, scale, s, lds);
}

void plm_bf16_pv(const uint16_t *p, int64_t ldp, int64_t rows, const uint16_t *values, int64_t k0, int64_t nk, int64_t dim,
                 float *acc, int64_t ldacc, int impl) {
#if defined(__x86_64__)
    if (use_bf16(impl)) { pv_avx512(p, ldp, rows, values, k0, nk, dim, acc, ldacc); return; }
#endif
    plm_bf16_pv_ref(p, ldp, rows, values, k0, nk, dim, acc, ldacc);
}

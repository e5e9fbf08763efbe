// fp32 attention scores S = scale · Q·Kᵀ over keys packed in blocks of 16 ([dim][16] floats per
// block, PLM_BF16_KEY_BLOCK keys, zero padded), for the products that stay fp32 beside bf16
// probabilities × values (AttentionPrecision.auto). Debian's OpenBLAS ran its 256-bit Haswell
// sgemm on a Zen 5 (perf record); with 512-bit FMAs over the packed keys a zmm holds one dimension of
// 16 keys and no horizontal sums are needed.
//
// Every path sums in the same order, one fused multiply-add per dimension from 0 to dim − 1,
// then multiplies by scale, so the AVX-512 kernel and the plain C twin give the same bits.
#include "qcommon.h"
#include <math.h>

#define KB PLM_BF16_KEY_BLOCK

int64_t plm_f32_keys_count(int64_t keys, int64_t dim) { return (keys + KB - 1) / KB * KB * dim; }

void plm_f32_pack_keys(const float *k, int64_t stride, int64_t keys, int64_t dim, float *out) {
    const int64_t padded = (keys + KB - 1) / KB * KB;
    for (int64_t j0 = 0; j0 < padded; j0 += KB) {
        float *block = out + j0 * dim;
        for (int64_t d = 0; d < dim; d++)
            for (int64_t i = 0; i < KB; i++) block[d * KB + i] = j0 + i < keys ? k[(j0 + i) * stride + d] : 0;
    }
}

void plm_f32_scores_ref(const float *q, int64_t ldq, int64_t rows, const float *keys, int64_t k0, int64_t nk, int64_t dim,
                        float scale, float *s, int64_t lds) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = k0; j < k0 + nk; j++) {
            const float *block = keys + (j / KB) * KB * dim + j % KB;
            float acc = 0;
            for (int64_t d = 0; d < dim; d++) acc = fmaf(q[r * ldq + d], block[d * KB], acc);
            s[r * lds + (j - k0)] = acc * scale;
        }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 PLM_TARGET_AVX512

/// `nr` (1…4) query rows against `nb` (1…4) key blocks: nr·nb accumulators over the dimensions,
/// each key vector loaded once for all rows; `last` masks the final block's keys.
AVX512 __attribute__((always_inline)) static inline void scores_tile(const float *q, int64_t ldq, int64_t dim, const float *kb,
                                                                  const int nr, const int nb, float scale, float *s, int64_t lds,
                                                                  __mmask16 last) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int b = 0; b < 4; b++) acc[r][b] = _mm512_setzero_ps();
    for (int64_t d = 0; d < dim; d++) {
        __m512 kv[4];
        for (int b = 0; b < nb; b++) kv[b] = _mm512_loadu_ps(kb + b * KB * dim + d * KB);
        for (int r = 0; r < nr; r++) {
            const __m512 qd = _mm512_set1_ps(q[r * ldq + d]);
            for (int b = 0; b < nb; b++) acc[r][b] = _mm512_fmadd_ps(qd, kv[b], acc[r][b]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < nr; r++)
        for (int b = 0; b < nb; b++)
            _mm512_mask_storeu_ps(s + r * lds + b * KB, b == nb - 1 ? last : 0xFFFF, _mm512_mul_ps(acc[r][b], sc));
}

#define SCORES_ROWS(nr) do { \
    switch (nb) { \
    case 1: scores_tile(qr, ldq, dim, kb, nr, 1, scale, sr, lds, last); break; \
    case 2: scores_tile(qr, ldq, dim, kb, nr, 2, scale, sr, lds, last); break; \
    case 3: scores_tile(qr, ldq, dim, kb, nr, 3, scale, sr, lds, last); break; \
    default: scores_tile(qr, ldq, dim, kb, nr, 4, scale, sr, lds, last); break; \
    } } while (0)

AVX512 static void scores_avx512(const float *q, int64_t ldq, int64_t rows, const float *keys, int64_t k0, int64_t nk, int64_t dim,
                                 float scale, float *s, int64_t lds) {
    for (int64_t j = 0; j < nk; j += 4 * KB) {
        // Key blocks of 16 start at k0 (a multiple of 16): block (k0 + j)/16 at (k0 + j)·dim.
        const float *kb = keys + (k0 + j) * dim;
        const int64_t left = nk - j;
        const int nb = left >= 4 * KB ? 4 : (int)((left + KB - 1) / KB);
        const int64_t tail = left - (nb - 1) * KB;
        const __mmask16 last = tail >= KB ? 0xFFFF : (__mmask16)((1u << tail) - 1);
        for (int64_t r = 0; r < rows; r += 4) {
            const float *qr = q + r * ldq;
            float *sr = s + r * lds + j;
            switch (rows - r < 4 ? rows - r : 4) {
            case 1: SCORES_ROWS(1); break;
            case 2: SCORES_ROWS(2); break;
            case 3: SCORES_ROWS(3); break;
            default: SCORES_ROWS(4); break;
            }
        }
    }
}
#undef SCORES_ROWS
#endif

void plm_f32_scores(const float *q, int64_t ldq, int64_t rows, const float *keys, int64_t k0, int64_t nk, int64_t dim,
                    float scale, float *s, int64_t lds, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX512) { scores_avx512(q, ldq, rows, keys, k0, nk, dim, scale, s, lds); return; }
#endif
    plm_f32_scores_ref(q, ldq, rows, keys, k0, nk, dim, scale, s, lds);
}

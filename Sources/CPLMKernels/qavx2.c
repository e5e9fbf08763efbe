// AVX2 kernels (vpmaddubsw + vpmaddwd). Compiled for AVX2 with a function attribute and only
// called after a runtime check, so the binary still runs on older x86-64 CPUs.
#if defined(__x86_64__)
#include "qcommon.h"
#include <immintrin.h>

#define AVX2 PLM_TARGET_AVX2


/// Σ L·a over 32 lanes for unsigned levels L ≤ 15 (no int16 saturation: 2·15·127 < 2^15).
AVX2 static inline __m256 dot_u4(__m256i levels, __m256i act) {
    __m256i p = _mm256_maddubs_epi16(levels, act);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/// Σ q·a for signed q: |q| times a with q's sign (keeps vpmaddubsw's pairs below 2^15).
AVX2 static inline __m256 dot_s8(__m256i q, __m256i act) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(act, q));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/// The k6 scales of 8 groups (one block) decoded at once, kept while the row's groups walk
/// through them: decoding d and dmin per group in software cost more than the dot products
/// (a PLM-1B int4 decode step spent most of its time there).
typedef struct {
    int64_t block;
    float s[PLM_K6_GROUPS], m[PLM_K6_GROUPS];
} k6_cache;

/// Scale and minimum of group g of row r: the same values as plm_group_scale_min, with the
/// F16C conversion (exact for every f16) and the k6 block decoded once per 8 groups.
AVX2 __attribute__((always_inline)) static inline void scale_min(const plm_qmatrix *w, int64_t r, int64_t g, float *s, float *m, k6_cache *c) {
    if (w->kind == PLM_Q4_ASYM_K6) {
        const int64_t block = g / PLM_K6_GROUPS;
        if (block != c->block) {
            const uint8_t *b = plm_k6_block(w, r, g);
            const float d = _cvtsh_ss(plm_load_u16(b + PLM_K6_D)), dmin = _cvtsh_ss(plm_load_u16(b + PLM_K6_DMIN));
            uint64_t sb = 0, mb = 0;
            memcpy(&sb, b + PLM_K6_SCALE_INDICES, 6);
            memcpy(&mb, b + PLM_K6_MIN_INDICES, 6);
            for (int i = 0; i < PLM_K6_GROUPS; i++) {
                c->s[i] = d * (float)((sb >> (6 * i)) & 0x3F);
                c->m[i] = -dmin * (float)((mb >> (6 * i)) & 0x3F);
            }
            c->block = block;
        }
        *s = c->s[g % PLM_K6_GROUPS];
        *m = c->m[g % PLM_K6_GROUPS];
        return;
    }
    const float scale = _cvtsh_ss(plm_load_u16(w->scales + r * w->scale_row_bytes + 2 * g));
    *s = scale;
    switch (w->kind) {
    case PLM_Q8_SYM: *m = -128.0f * scale; break;
    case PLM_Q4_SYM: *m = -8.0f * scale; break;
    default: *m = _cvtsh_ss(plm_load_u16(w->mins + r * w->min_row_bytes + 2 * g));
    }
}

AVX2 void plm_qgemv_avx2(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) {
    const int64_t g = w->group, full = w->cols / g, per = g / 32;
    const __m256i mask = _mm256_set1_epi8(0x0F);
    // Local copies: stores through y could alias the activation struct, and the compiler would
    // reload its pointers every group.
    const int8_t *restrict aq = a->q;
    const float *restrict ad = a->d, *restrict asum = a->sum;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + r * w->data_row_bytes;
        // Two accumulators, alternating by group: one FMA chain stalled the loop on its latency.
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        float minAcc = 0;
        k6_cache cache = { -1, {0}, {0} };
        for (int64_t gi = 0; gi < full; gi++) {
            float s, m;
            scale_min(w, r, gi, &s, &m, &cache);
            const int64_t b0 = gi * per;
            __m256 part = _mm256_setzero_ps();
            if (plm_is_int4(w)) {
                const uint8_t *p = row + gi * (g / 2);
                if (g == 32) {
                    __m128i v = _mm_loadu_si128((const __m128i *)p);
                    __m256i lv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), mask);
                    __m256i av = _mm256_loadu_si256((const __m256i *)(aq + b0 * 32));
                    part = _mm256_mul_ps(dot_u4(lv, av), _mm256_set1_ps(s * ad[b0]));
                    minAcc += m * asum[b0];
                } else {
                    // Byte j holds values j (low) and j + g/2 (high): one load feeds two blocks.
                    const int64_t half = per / 2;
                    for (int64_t c = 0; c < half; c++) {
                        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                        __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                        int64_t bl = b0 + c, bh = b0 + c + half;
                        part = _mm256_fmadd_ps(dot_u4(lo, _mm256_loadu_si256((const __m256i *)(aq + bl * 32))), _mm256_set1_ps(s * ad[bl]), part);
                        part = _mm256_fmadd_ps(dot_u4(hi, _mm256_loadu_si256((const __m256i *)(aq + bh * 32))), _mm256_set1_ps(s * ad[bh]), part);
                        minAcc += m * (asum[bl] + asum[bh]);
                    }
                }
            } else {
                // int8: symmetric stores q; asymmetric stores L = q + 128, read as q = L ^ 0x80.
                const uint8_t *p = row + gi * g;
                const __m256i flip = _mm256_set1_epi8(w->kind == PLM_Q8_ASYM ? (char)0x80 : 0);
                const float shift = w->kind == PLM_Q8_ASYM ? m + 128.0f * s : 0.0f;
                for (int64_t b = 0; b < per; b++) {
                    __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 32 * b)), flip);
                    __m256i av = _mm256_loadu_si256((const __m256i *)(aq + (b0 + b) * 32));
                    part = _mm256_fmadd_ps(dot_s8(q, av), _mm256_set1_ps(s * ad[b0 + b]), part);
                    minAcc += shift * asum[b0 + b];
                }
            }
            if (gi & 1) acc1 = _mm256_add_ps(acc1, part); else acc0 = _mm256_add_ps(acc0, part);
        }
        y[r - r0] = plm_hsum8(_mm256_add_ps(acc0, acc1)) + minAcc + (full * g < w->cols ? plm_qdot_tail(w, a, r, full) : 0.0f);
    }
}

/// 8 levels (bytes 0…7 of v, signed or unsigned) dequantized in registers, s·L + m, times x[0…7].
AVX2 static inline __m256 fma_levels8(__m128i v, int is_signed, __m256 vs, __m256 vm, const float *x, __m256 acc) {
    __m256i l = is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
    __m256 wv = _mm256_fmadd_ps(_mm256_cvtepi32_ps(l), vs, vm);
    return _mm256_fmadd_ps(wv, _mm256_loadu_ps(x), acc);
}

/// 32 levels (the bytes of l) against x[0…31], into four accumulators (one FMA chain per 8
/// weights would stall on the FMA latency).
AVX2 static inline void fma_levels32(__m256i l, int is_signed, __m256 vs, __m256 vm, const float *x, __m256 acc[4]) {
    __m128i lo = _mm256_castsi256_si128(l), hi = _mm256_extracti128_si256(l, 1);
    acc[0] = fma_levels8(lo, is_signed, vs, vm, x, acc[0]);
    acc[1] = fma_levels8(_mm_srli_si128(lo, 8), is_signed, vs, vm, x + 8, acc[1]);
    acc[2] = fma_levels8(hi, is_signed, vs, vm, x + 16, acc[2]);
    acc[3] = fma_levels8(_mm_srli_si128(hi, 8), is_signed, vs, vm, x + 24, acc[3]);
}

/// fp32 activations: each weight dequantized in registers (s·L + m) and multiplied with x, no
/// rounding of the activations. Same values as plm_qgemv_f32_ref up to summation order.
AVX2 void plm_qgemv_f32_avx2(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t g = w->group, full = w->cols / g, per = g / 32;
    const __m128i mask16 = _mm_set1_epi8(0x0F);
    const __m256i mask = _mm256_set1_epi8(0x0F);
    // int8 symmetric stores q (value s·q): read signed with no offset; the other types are
    // unsigned levels L with value s·L + m.
    const int is_signed = w->kind == PLM_Q8_SYM;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + r * w->data_row_bytes;
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        k6_cache cache = { -1, {0}, {0} };
        for (int64_t gi = 0; gi < full; gi++) {
            float s, m;
            scale_min(w, r, gi, &s, &m, &cache);
            const __m256 vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(is_signed ? 0.0f : m);
            const float *xg = x + gi * g;
            if (plm_is_int4(w)) {
                const uint8_t *p = row + gi * (g / 2);
                if (g == 32) {
                    __m128i v = _mm_loadu_si128((const __m128i *)p);
                    __m256i l = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), mask16), _mm_and_si128(v, mask16));
                    fma_levels32(l, 0, vs, vm, xg, acc);
                } else {
                    // Byte j holds values j (low nibble) and j + g/2 (high nibble).
                    const int64_t half = per / 2;
                    for (int64_t c = 0; c < half; c++) {
                        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                        fma_levels32(_mm256_and_si256(v, mask), 0, vs, vm, xg + 32 * c, acc);
                        fma_levels32(_mm256_and_si256(_mm256_srli_epi16(v, 4), mask), 0, vs, vm, xg + g / 2 + 32 * c, acc);
                    }
                }
            } else {
                const uint8_t *p = row + gi * g;
                for (int64_t b = 0; b < per; b++)
                    fma_levels32(_mm256_loadu_si256((const __m256i *)(p + 32 * b)), is_signed, vs, vm, xg + 32 * b, acc);
            }
        }
        __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        y[r - r0] = plm_hsum8(sum) + (full * g < w->cols ? plm_qdot_f32_tail(w, x, r, full) : 0.0f);
    }
}

/// Σ L·a over one block of 32 int4 levels: v0 holds values 0…15 and v1 values 16…31 as bytes,
/// a the block's 32 int16 activations. Widened to int16 and summed in pairs by vpmaddwd into 8
/// int32 lanes.
AVX2 static inline __m256i dot16_block(__m128i v0, __m128i v1, const int16_t *a) {
    __m256i w0 = _mm256_cvtepu8_epi16(v0), w1 = _mm256_cvtepu8_epi16(v1);
    __m256i p0 = _mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)a));
    __m256i p1 = _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(a + 16)));
    return _mm256_add_epi32(p0, p1);
}

/// The 32 int8 levels at p as int16: w0 the even columns, w1 the odd ones (each 16-bit word of
/// the bytes holds columns 2i and 2i+1; two in-lane shifts sign-extend the low byte, one the
/// high). vpmovsxbw widens in order but crosses lanes, and on Zen 3 it took twice the shuffle-
/// port cycles (llvm-mca: 16 vs 11 cycles per 4 rows × 32 columns). The activations come
/// de-interleaved to match (even_odd16).
AVX2 static inline void levels16(const uint8_t *p, const int flip, __m256i *w0, __m256i *w1) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    if (flip) v = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
    *w0 = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8);
    *w1 = _mm256_srai_epi16(v, 8);
}

/// Rows r … r+R−1 of an int8 matrix (R ≤ 4, constant where inlined) against int16 activations
/// (per block: the 16 even columns, then the 16 odd ones): each block's activations are loaded
/// once for the R rows. With groups of 32, eight groups' scales are converted at once (F16C)
/// and multiplied with the activation scales in one vector; each block then takes its lane with
/// one permute. The row-at-a-time loop below spent more on that per-group scalar work than on
/// the products and read the int8 head at 3 GB/s, a third of one core's bandwidth.
/// `flip`: int8 asymmetric (L stored, read as L − 128 with shift m + 128s).
/// `tiles`: the levels come from the row-interleaved copy (plm_layout.h, PLM_Q8_TILE_ROWS rows
/// per tile, R = 4) instead of the file's rows; scales are read from the file either way.
AVX2 __attribute__((always_inline)) static inline void int8_rows16(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a,
                                                                  float *y, int64_t r, const int R, const int flip) {
    const int64_t g = w->group, full = w->cols / g, per = g / 32;
    const int16_t *restrict aq = a->q;
    const float *restrict ad = a->d, *restrict asum = a->sum;
    const uint8_t *rows[4], *scales[4], *mins[4];
    // Block b of row r + k is at rows[k] + stride·b.
    const int64_t stride = tiles ? 32 * PLM_Q8_TILE_ROWS : 32;
    __m256 acc[4], shiftAcc[4];
    for (int k = 0; k < R; k++) {
        rows[k] = tiles ? plm_q8_tile_row(tiles, w->cols, r + k) : w->data + (r + k) * w->data_row_bytes;
        // A short last tile's padding rows read the last row's scales (their outputs are dropped).
        const int64_t sr = r + k < w->rows ? r + k : w->rows - 1;
        scales[k] = w->scales + sr * w->scale_row_bytes;
        mins[k] = flip ? w->mins + sr * w->min_row_bytes : NULL;
        acc[k] = shiftAcc[k] = _mm256_setzero_ps();
    }
    int64_t gi = 0;
    if (g == 32) {
        for (; gi + 8 <= full; gi += 8) {
            const __m256 adv = _mm256_loadu_ps(ad + gi);
            __m256 sd[4];
            for (int k = 0; k < R; k++) {
                const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales[k] + 2 * gi)));
                sd[k] = _mm256_mul_ps(sv, adv);
                if (flip) {
                    const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(mins[k] + 2 * gi)));
                    shiftAcc[k] = _mm256_fmadd_ps(_mm256_fmadd_ps(sv, _mm256_set1_ps(128.0f), mv), _mm256_loadu_ps(asum + gi), shiftAcc[k]);
                }
            }
            for (int j = 0; j < 8; j++) {
                const int64_t b = gi + j;
                const __m256i a0 = _mm256_loadu_si256((const __m256i *)(aq + 32 * b)), a1 = _mm256_loadu_si256((const __m256i *)(aq + 32 * b + 16));
                const __m256i lane = _mm256_set1_epi32(j);
                for (int k = 0; k < R; k++) {
                    const uint8_t *p = rows[k] + stride * b;
                    __m256i w0, w1;
                    levels16(p, flip, &w0, &w1);
                    // The tiles are one stream: PLM_PREFETCH ahead, one line per two rows. In the
                    // file's rows, the same columns 2R rows on (PLM_PREFETCH bytes ahead in a row
                    // of a few KiB would land in rows already being read). Measured on a 131 MB
                    // matrix against one plain stream: no prefetch 0.55–0.64, R rows on
                    // 0.70–0.74, 2R 0.72–0.75, 3R 0.65–0.74.
                    if (tiles ? !(k & 1) : (j & 1)) __builtin_prefetch(tiles ? p + PLM_PREFETCH : p + 2 * R * w->data_row_bytes, 0, 3);
                    __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(w0, a0), _mm256_madd_epi16(w1, a1));
                    acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_permutevar8x32_ps(sd[k], lane), acc[k]);
                }
            }
        }
    }
    // Other group sizes, and the last groups of 32 that do not fill a set of eight.
    float shiftTail[4] = { 0, 0, 0, 0 };
    for (; gi < full; gi++) {
        float s[4], shift[4];
        for (int k = 0; k < R; k++) {
            s[k] = _cvtsh_ss(plm_load_u16(scales[k] + 2 * gi));
            if (flip) shift[k] = _cvtsh_ss(plm_load_u16(mins[k] + 2 * gi)) + 128.0f * s[k];
        }
        float groupSum = 0;
        for (int64_t b = gi * per; b < (gi + 1) * per; b++) {
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(aq + 32 * b)), a1 = _mm256_loadu_si256((const __m256i *)(aq + 32 * b + 16));
            for (int k = 0; k < R; k++) {
                const uint8_t *p = rows[k] + stride * b;
                __m256i w0, w1;
                levels16(p, flip, &w0, &w1);
                __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(w0, a0), _mm256_madd_epi16(w1, a1));
                if (tiles ? !(k & 1) : (b & 1)) __builtin_prefetch(tiles ? p + PLM_PREFETCH : p + 2 * R * w->data_row_bytes, 0, 3);
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(s[k] * ad[b]), acc[k]);
            }
            if (flip) groupSum += asum[b];
        }
        if (flip) for (int k = 0; k < R; k++) shiftTail[k] += shift[k] * groupSum;
    }
    for (int k = 0; k < R; k++)
        y[k] = plm_hsum8(acc[k]) + plm_hsum8(shiftAcc[k]) + shiftTail[k]
             + (full * g < w->cols ? plm_qdot_f32_tail(w, a->x, r + k, full) : 0.0f);
}

/// Each block's 32 activations reordered to its even columns, then its odd ones (levels16).
static void even_odd16(const int16_t *q, int64_t blocks, int16_t *out) {
    for (int64_t b = 0; b < blocks; b++)
        for (int i = 0; i < 16; i++) { out[32 * b + i] = q[32 * b + 2 * i]; out[32 * b + 16 + i] = q[32 * b + 2 * i + 1]; }
}

AVX2 static void int8_gemv16(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a16, float *y, int64_t r0, int64_t r1) {
    // Once per call, shared by every row (cols ≤ a few ten thousand: stack).
    const int64_t blocks = plm_blocks(w->cols);
    int16_t reordered[blocks * 32];
    even_odd16(a16->q, blocks, reordered);
    const plm_qact16 act = { reordered, a16->d, a16->sum, a16->x, a16->cols }, *a = &act;
    int64_t r = r0;
    if (tiles) {
        // Whole tiles (r0 a multiple of 4); a short last tile's padding rows go to a buffer.
        for (; r < r1; r += 4) {
            float out[4];
            if (w->kind == PLM_Q8_ASYM) int8_rows16(w, tiles, a, out, r, 4, 1); else int8_rows16(w, tiles, a, out, r, 4, 0);
            memcpy(y + (r - r0), out, (size_t)(r1 - r < 4 ? r1 - r : 4) * sizeof(float));
        }
    } else if (w->kind == PLM_Q8_ASYM) {
        for (; r + 4 <= r1; r += 4) int8_rows16(w, NULL, a, y + (r - r0), r, 4, 1);
        for (; r < r1; r++) int8_rows16(w, NULL, a, y + (r - r0), r, 1, 1);
    } else {
        for (; r + 4 <= r1; r += 4) int8_rows16(w, NULL, a, y + (r - r0), r, 4, 0);
        for (; r < r1; r++) int8_rows16(w, NULL, a, y + (r - r0), r, 1, 0);
    }
}

AVX2 void plm_qgemv16_q8tiles_avx2(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a, float *y, int64_t r0, int64_t r1) {
    int8_gemv16(w, tiles, a, y, r0, r1);
}

/// int16 activations (plm_qgemv16_ref's definition, up to summation order). Per block the
/// integer sum is exact; the signed int8 levels keep it free of a large offset. The int8 kinds
/// run four rows at a time (int8_gemv16); this row-at-a-time loop serves the int4 kinds that
/// are not repacked (symmetric, f16 scales, groups other than 32).
AVX2 void plm_qgemv16_avx2(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1) {
    const int64_t g = w->group, full = w->cols / g, per = g / 32;
    const __m128i mask16 = _mm_set1_epi8(0x0F);
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const int16_t *restrict aq = a->q;
    const float *restrict ad = a->d, *restrict asum = a->sum;
    if (!plm_is_int4(w)) { int8_gemv16(w, NULL, a, y, r0, r1); return; }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + r * w->data_row_bytes;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        float shiftAcc = 0;
        k6_cache cache = { -1, {0}, {0} };
        for (int64_t gi = 0; gi < full; gi++) {
            float s, m;
            scale_min(w, r, gi, &s, &m, &cache);
            const float shift = plm_level_shift(w, s, m);
            const int64_t b0 = gi * per;
            __m256 part = _mm256_setzero_ps();
            if (g == 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)(row + gi * 16));
                __m256i dot = dot16_block(_mm_and_si128(v, mask16), _mm_and_si128(_mm_srli_epi16(v, 4), mask16), aq + b0 * 32);
                part = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(s * ad[b0]));
                shiftAcc += shift * asum[b0];
            } else {
                // Byte j holds values j (low nibble) and j + g/2 (high nibble): one load, two blocks.
                const uint8_t *p = row + gi * (g / 2);
                const int64_t half = per / 2;
                for (int64_t c = 0; c < half; c++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                    __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                    const int64_t bl = b0 + c, bh = b0 + c + half;
                    __m256i dl = dot16_block(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1), aq + bl * 32);
                    __m256i dh = dot16_block(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1), aq + bh * 32);
                    part = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dl), _mm256_set1_ps(s * ad[bl]), part);
                    part = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dh), _mm256_set1_ps(s * ad[bh]), part);
                    shiftAcc += shift * (asum[bl] + asum[bh]);
                }
            }
            if (gi & 1) acc1 = _mm256_add_ps(acc1, part); else acc0 = _mm256_add_ps(acc0, part);
        }
        y[r - r0] = plm_hsum8(_mm256_add_ps(acc0, acc1)) + shiftAcc + (full * g < w->cols ? plm_qdot_f32_tail(w, a->x, r, full) : 0.0f);
    }
}

/// XORs every 32-byte vector of data (the bandwidth probe of `plmq bench`).
AVX2 uint64_t plm_read_bytes_avx2(const void *data, size_t bytes) {
    const __m256i *p = (const __m256i *)data;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 4 <= bytes / 32; i += 4) {
        // Prefetched as far ahead as the GEMV kernels do, so the limit they are compared with
        // is the best a plain stream reaches, not the hardware prefetcher's alone.
        __builtin_prefetch((const char *)(p + i) + PLM_PREFETCH, 0, 3);
        __builtin_prefetch((const char *)(p + i) + PLM_PREFETCH + 64, 0, 3);
        a = _mm256_xor_si256(a, _mm256_load_si256(p + i));
        b = _mm256_xor_si256(b, _mm256_load_si256(p + i + 1));
        c = _mm256_xor_si256(c, _mm256_load_si256(p + i + 2));
        d = _mm256_xor_si256(d, _mm256_load_si256(p + i + 3));
    }
    __m256i x = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}

/// The AVX2 twin: vpmaddubsw (u8 × s8 pairs) + vpmaddwd (pairs to int32) + vpaddd, the sequence
/// of the AVX2 int8 kernels, 32 multiply-adds per round of each of 12 chains.
AVX2 double plm_int8_dot_peak_avx2(int64_t iterations) {
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i);
    const __m256i b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    const double t0 = plm_seconds();
    for (int64_t it = 0; it < iterations; it++) {
        // Each chain feeds its own bytes back in, so nothing is loop-invariant.
        for (int i = 0; i < 12; i++) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[i], b), ones));
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                              "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    const double seconds = plm_seconds() - t0;
    return seconds > 0 ? (double)iterations * 12 * 32 / seconds : 0;
}
#endif

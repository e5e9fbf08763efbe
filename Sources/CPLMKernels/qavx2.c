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

/// Σ v·a over one block of 32 values: v0 holds values 0…15 and v1 values 16…31 as bytes
/// (signed for the int8 kinds, unsigned int4 levels otherwise), a the block's 32 int16
/// activations. Widened to int16 and summed in pairs by vpmaddwd into 8 int32 lanes.
AVX2 static inline __m256i dot16_block(__m128i v0, __m128i v1, int is_signed, const int16_t *a) {
    __m256i w0 = is_signed ? _mm256_cvtepi8_epi16(v0) : _mm256_cvtepu8_epi16(v0);
    __m256i w1 = is_signed ? _mm256_cvtepi8_epi16(v1) : _mm256_cvtepu8_epi16(v1);
    __m256i p0 = _mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)a));
    __m256i p1 = _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(a + 16)));
    return _mm256_add_epi32(p0, p1);
}

/// int16 activations (plm_qgemv16_ref's definition, up to summation order). Per block the
/// integer sum is exact; the signed int8 levels keep it free of a large offset.
AVX2 void plm_qgemv16_avx2(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1) {
    const int64_t g = w->group, full = w->cols / g, per = g / 32;
    const __m128i mask16 = _mm_set1_epi8(0x0F);
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const int16_t *restrict aq = a->q;
    const float *restrict ad = a->d, *restrict asum = a->sum;
    const int int4 = plm_is_int4(w);
    // int8 asymmetric stores L = q + 128: flipping the top bit reads q = L − 128 as int8.
    const __m256i flip = _mm256_set1_epi8(w->kind == PLM_Q8_ASYM ? (char)0x80 : 0);
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
            if (int4 && g == 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)(row + gi * 16));
                __m256i dot = dot16_block(_mm_and_si128(v, mask16), _mm_and_si128(_mm_srli_epi16(v, 4), mask16), 0, aq + b0 * 32);
                part = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(s * ad[b0]));
                shiftAcc += shift * asum[b0];
            } else if (int4) {
                // Byte j holds values j (low nibble) and j + g/2 (high nibble): one load, two blocks.
                const uint8_t *p = row + gi * (g / 2);
                const int64_t half = per / 2;
                for (int64_t c = 0; c < half; c++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                    __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                    const int64_t bl = b0 + c, bh = b0 + c + half;
                    __m256i dl = dot16_block(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1), 0, aq + bl * 32);
                    __m256i dh = dot16_block(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1), 0, aq + bh * 32);
                    part = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dl), _mm256_set1_ps(s * ad[bl]), part);
                    part = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dh), _mm256_set1_ps(s * ad[bh]), part);
                    shiftAcc += shift * (asum[bl] + asum[bh]);
                }
            } else {
                const uint8_t *p = row + gi * g;
                for (int64_t b = 0; b < per; b++) {
                    __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 32 * b)), flip);
                    __m256i dot = dot16_block(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1), 1, aq + (b0 + b) * 32);
                    part = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(s * ad[b0 + b]), part);
                    shiftAcc += shift * asum[b0 + b];
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

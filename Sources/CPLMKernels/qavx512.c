// AVX-512 kernels: VNNI vpdpbusd (u8 × s8 → int32, no saturation), and VBMI vpmultishiftqb to
// unpack the 6-bit k6 scales. Runtime-checked like the AVX2 path.
#if defined(__x86_64__)
#include "qcommon.h"
#include <immintrin.h>

#define AVX512 PLM_TARGET_AVX512


AVX512 static inline __m256 dot(__m256i levels, __m256i act) {
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), levels, act));
}

/// The 8 scales and 8 minimums of a k6 block (plm_layout.h): one byte shuffle puts the two
/// 6-byte index fields (bytes 4…9 and 10…15) in separate qwords, one multishift extracts the
/// 6-bit fields.
AVX512 static inline void k6_decode(const uint8_t *block, float *scales, float *mins) {
    __m128i raw = _mm_loadu_si128((const __m128i *)block);
    const __m128i pick = _mm_setr_epi8(4, 5, 6, 7, 8, 9, -1, -1, 10, 11, 12, 13, 14, 15, -1, -1);
    __m128i fields = _mm_shuffle_epi8(raw, pick);
    const __m128i shifts = _mm_setr_epi8(0, 6, 12, 18, 24, 30, 36, 42, 0, 6, 12, 18, 24, 30, 36, 42);
    __m128i six = _mm_and_si128(_mm_multishift_epi64_epi8(shifts, fields), _mm_set1_epi8(0x3F));
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(six));
    _Static_assert(PLM_K6_SCALE_INDICES == 4 && PLM_K6_MIN_INDICES == 10, "the shuffle above picks these bytes");
    float d = plm_f16_to_f32(plm_load_u16(block + PLM_K6_D)), dmin = plm_f16_to_f32(plm_load_u16(block + PLM_K6_DMIN));
    __m512 factor = _mm512_insertf32x8(_mm512_set1_ps(d), _mm256_set1_ps(-dmin), 1);
    __m512 v = _mm512_mul_ps(f, factor);
    _mm256_storeu_ps(scales, _mm512_castps512_ps256(v));
    _mm256_storeu_ps(mins, _mm512_extractf32x8_ps(v, 1));
}

/// Decodes every group's scale and minimum of row r into floats (vectorised per kind).
AVX512 void plm_row_scales_avx512(const plm_qmatrix *w, int64_t r, int64_t groups, float *scales, float *mins) {
    const uint8_t *s = w->scales + r * w->scale_row_bytes;
    int64_t gi = 0;
    if (w->kind == PLM_Q4_ASYM_K6) {
        for (; gi + PLM_K6_GROUPS <= groups; gi += PLM_K6_GROUPS) k6_decode(plm_k6_block(w, r, gi), scales + gi, mins + gi);
    } else {
        const uint8_t *m = w->mins ? w->mins + r * w->min_row_bytes : NULL;
        const float shift = w->kind == PLM_Q8_SYM ? -128.0f : (w->kind == PLM_Q4_SYM ? -8.0f : 0.0f);
        for (; gi + 8 <= groups; gi += 8) {
            __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * gi)));
            _mm256_storeu_ps(scales + gi, sc);
            __m256 mn = (w->kind == PLM_Q8_ASYM || w->kind == PLM_Q4_ASYM_F16)
                ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(m + 2 * gi)))
                : _mm256_mul_ps(sc, _mm256_set1_ps(shift));
            _mm256_storeu_ps(mins + gi, mn);
        }
    }
    for (; gi < groups; gi++) plm_group_scale_min(w, r, gi, scales + gi, mins + gi);
}

/// The levels of blocks 2i and 2i+1 of an 8-block unit starting at column `first` of `row`.
AVX512 __attribute__((always_inline)) static inline __m512i unit_levels(const int int4, const int64_t g, const uint8_t *row, int64_t first, int i, __m512i pair, __m256i mask, __m512i flip) {
    if (!int4) return _mm512_xor_si512(_mm512_loadu_si512((const void *)(row + first + 64 * i)), flip);
    const uint8_t *p = row + first / 2;
    if (g == 32) {
        // Two 16-byte groups: [low nibbles g0 | high g0 | low g1 | high g1] = values in order.
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * i));
        __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
        return _mm512_permutex2var_epi64(_mm512_castsi256_si512(lo), pair, _mm512_castsi256_si512(hi));
    }
    if (g == 64) {
        // One 32-byte group: low nibbles are its first block, high nibbles its second.
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * i));
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, mask)), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask), 1);
    }
    // g = 128: a 64-byte group; low nibbles are blocks 0–1, high nibbles blocks 2–3.
    __m512i v = _mm512_loadu_si512((const void *)(p + 64 * (i / 2)));
    __m512i m512 = _mm512_set1_epi8(0x0F);
    return (i % 2 == 0) ? _mm512_and_si512(v, m512) : _mm512_and_si512(_mm512_srli_epi16(v, 4), m512);
}

/// The GEMV body, inlined per (int4, group size) so the level unpacking has no branches.
AVX512 __attribute__((always_inline)) static inline void gemv_body(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1,
                                                               const int int4, const int64_t g) {
    const int64_t full = w->cols / g, groups = (w->cols + g - 1) / g;
    const int64_t units = (full * g) / 256;   // whole 8-block units inside the full groups
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m512i flip = _mm512_set1_epi8(w->kind == PLM_Q8_SYM ? (char)0x80 : 0);
    const __m512i pair = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i pick[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
        _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7),
    };
    // Block b of a unit uses group (b·32)/g of the unit: the expansion of group scales to blocks.
    const __m256i expand = g == 32 ? _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
                         : g == 64 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3) : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    // On the stack: decode must not allocate per token (groups ≤ K/32, a few KiB at most).
    float scales[groups + 8], mins[groups + 8];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + r * w->data_row_bytes;
        plm_row_scales_avx512(w, r, groups, scales, mins);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        __m256 minAcc = _mm256_setzero_ps();
        for (int64_t u = 0; u < units; u++) {
            const int64_t first = u * 256, g0 = first / g;
            __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(scales + g0), expand);
            __m256 mv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(mins + g0), expand);
            __m256 dx = _mm256_loadu_ps(a->d + u * 8);
            minAcc = _mm256_fmadd_ps(mv, _mm256_loadu_ps(a->sum + u * 8), minAcc);
            __m512 c = _mm512_castps256_ps512(_mm256_mul_ps(sv, dx));
            const int8_t *act = a->q + first;
            plm_prefetch_ahead(row + (int4 ? first / 2 : first), int4 ? 128 : 256);
            __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unit_levels(int4, g, row, first, 0, pair, mask, flip), _mm512_loadu_si512((const void *)act));
            __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unit_levels(int4, g, row, first, 1, pair, mask, flip), _mm512_loadu_si512((const void *)(act + 64)));
            __m512i d2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unit_levels(int4, g, row, first, 2, pair, mask, flip), _mm512_loadu_si512((const void *)(act + 128)));
            __m512i d3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unit_levels(int4, g, row, first, 3, pair, mask, flip), _mm512_loadu_si512((const void *)(act + 192)));
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_permutexvar_ps(pick[0], c), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_permutexvar_ps(pick[1], c), acc1);
            acc2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d2), _mm512_permutexvar_ps(pick[2], c), acc2);
            acc3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d3), _mm512_permutexvar_ps(pick[3], c), acc3);
        }
        float total = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3))) + plm_hsum8(minAcc);
        // Full groups after the last whole unit, one block at a time.
        for (int64_t b = units * 8; b < full * g / 32; b++) {
            int64_t gi = (b * 32) / g;
            int32_t dot = 0;
            for (int j = 0; j < 32; j++) dot += plm_level(w, r, gi, b * 32 + j - gi * g) * (int32_t)a->q[b * 32 + j];
            total += scales[gi] * a->d[b] * (float)dot + mins[gi] * a->sum[b];
        }
        y[r - r0] = total + (full < groups ? plm_qdot_tail(w, a, r, full) : 0.0f);
    }
}
AVX512 void plm_qgemv_avx512(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) {
    const int int4 = plm_is_int4(w);
    switch (w->group) {
    case 32: if (int4) gemv_body(w, a, y, r0, r1, 1, 32); else gemv_body(w, a, y, r0, r1, 0, 32); break;
    case 64: if (int4) gemv_body(w, a, y, r0, r1, 1, 64); else gemv_body(w, a, y, r0, r1, 0, 64); break;
    default: if (int4) gemv_body(w, a, y, r0, r1, 1, 128); else gemv_body(w, a, y, r0, r1, 0, 128); break;
    }
}
#endif

// AVX-512 kernels for int16 activations (plm_qact16), the twins of plm_qgemv16_ref.
//
// Two ways to multiply int16 activations with int8/int4 levels exactly:
// - vpdpwssd: levels widened to int16, 32 products per instruction. Used over the file's
//   row-major layout, where every 32 levels are contiguous.
// - split activations: q = 256·hi + lo with hi = q >> 8 (signed byte) and lo = q & 255
//   (unsigned byte), so Σ L·q = 256·Σ L·hi + Σ L·lo. Both halves are vpdpbusd (u8 × s8): L·hi
//   with L unsigned, lo·L with the int4 level (0…15) as the signed operand. That is two
//   vpdpbusd where int8 activations take one, without widening the weights: used over the
//   row-interleaved repacked layout, where the int8 kernels broadcast 4 activation bytes
//   (the kernels are in qrepack.c and qgemm_avx512.c; the split is here).
// Integer sums stay exact in int32 (|256·Σ L·hi| ≤ 256·32·15·128 < 2^24 per block).
#if defined(__x86_64__)
#include "qcommon.h"
#include <immintrin.h>

#define AVX512 PLM_TARGET_AVX512
#define TILE PLM_TILE_ROWS

/// The 32 levels of block `b` (counted in the row, inside its full groups) as signed int16 v of
/// plm_signed_level: int8 kinds v = L − 128, int4 v = L.
AVX512 __attribute__((always_inline)) static inline __m512i block_levels16(const uint8_t *row, int64_t b, const int int4, const int64_t g, const int flip) {
    if (!int4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(row + 32 * b));
        if (flip) v = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
        return _mm512_cvtepi8_epi16(v);
    }
    const __m128i mask = _mm_set1_epi8(0x0F);
    if (g == 32) {
        // One 16-byte group: low nibbles are values 0…15, high nibbles 16…31.
        __m128i v = _mm_loadu_si128((const __m128i *)(row + 16 * b));
        __m256i l = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), mask), _mm_and_si128(v, mask));
        return _mm512_cvtepu8_epi16(l);
    }
    // Larger groups: byte j holds value j (low nibble) and j + g/2 (high nibble), so block i of
    // the group is the low nibbles of bytes 32i… for i < per/2, else the high nibbles.
    const int64_t per = g / 32, gi = b / per, i = b % per, half = per / 2;
    const uint8_t *p = row + gi * (g / 2) + 32 * (i < half ? i : i - half);
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    if (i >= half) v = _mm256_srli_epi16(v, 4);
    return _mm512_cvtepu8_epi16(_mm256_and_si256(v, _mm256_set1_epi8(0x0F)));
}

/// Σ v·q per 4 values (16 int32 lanes) of 64 int8 levels `raw` against split activations:
/// v is the signed level (SYM stores v; ASYM stores L = v + 128, read as v = L ^ 0x80) and
/// u = v + 128 its unsigned twin, so Σ v·q = 256·Σ u·hi + Σ lo·v − 32768·Σ hi. The last term is
/// per block and added in floating point by the caller (corr). |256·Σ u·hi| < 2^25 per lane.
AVX512 __attribute__((always_inline)) static inline __m512i split_unit(__m512i raw, const int8_t *hi, const uint8_t *lo, const int asym) {
    const __m512i top = _mm512_set1_epi8((char)0x80);
    __m512i v = asym ? _mm512_xor_si512(raw, top) : raw, u = asym ? raw : _mm512_xor_si512(raw, top);
    __m512i suh = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_loadu_si512((const void *)hi));
    __m512i svl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)lo), v);
    return _mm512_add_epi32(_mm512_slli_epi32(suh, 8), svl);
}

AVX512 __attribute__((always_inline)) static inline void gemv16_body(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1,
                                                                 const int int4, const int64_t g) {
    const int64_t full = w->cols / g, groups = (w->cols + g - 1) / g, per = g / 32;
    const int64_t fullBlocks = full * per, units = fullBlocks / 8;
    const int flip = w->kind == PLM_Q8_ASYM;
    const int16_t *restrict aq = a->q;
    const float *restrict ad = a->d, *restrict asum = a->sum;
    // Block b of a unit of 8 uses group (b·32)/g of the unit.
    const __m256i expand = g == 32 ? _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
                         : g == 64 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3) : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    // On the stack: decode must not allocate per token (groups ≤ K/32, a few KiB at most).
    float scales[groups + 8], mins[groups + 8];
    // int8 weights over whole units take the split activations (see split_unit): bytes and, per
    // block, the float correction −32768·d·Σ hi, once per call.
    const int64_t splitColumns = int4 ? 32 : units * 256;
    int8_t hi[splitColumns];
    uint8_t lo[splitColumns];
    float corr[int4 ? 8 : units * 8 + 8];
    if (!int4 && units > 0) {
        plm_split_activations16_avx512(aq, splitColumns, hi, lo);
        for (int64_t b = 0; b < units * 8; b++) {
            int32_t total = 0;
            for (int j = 0; j < 32; j++) total += hi[b * 32 + j];
            corr[b] = -32768.0f * ad[b] * (float)total;
        }
    }
    const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + r * w->data_row_bytes;
        plm_row_scales_avx512(w, r, groups, scales, mins);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
        __m256 shiftAcc = _mm256_setzero_ps();
        float coef[8];
        for (int64_t u = 0; u < units; u++) {
            const int64_t g0 = u * 8 * 32 / g;
            __m256 sv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(scales + g0), expand);
            __m256 mv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(mins + g0), expand);
            // plm_level_shift: int8 kinds read v = L − 128, so their shift is m + 128·s.
            __m256 shift = int4 ? mv : _mm256_fmadd_ps(sv, _mm256_set1_ps(128.0f), mv);
            shiftAcc = _mm256_fmadd_ps(shift, _mm256_loadu_ps(asum + u * 8), shiftAcc);
            // A unit is 256 columns: 256 level bytes for int8, 128 for int4.
            plm_prefetch_ahead(row + (int4 ? u * 128 : u * 256), int4 ? 128 : 256);
            if (!int4) {
                // int8 levels, 64 per vpdpbusd pair (see split_unit); lanes 0–7 hold block 2i,
                // lanes 8–15 block 2i + 1.
                shiftAcc = _mm256_fmadd_ps(sv, _mm256_loadu_ps(corr + u * 8), shiftAcc);
                __m512 c = _mm512_castps256_ps512(_mm256_mul_ps(sv, _mm256_loadu_ps(ad + u * 8)));
                for (int i = 0; i < 4; i++) {
                    const int64_t o = u * 256 + 64 * i;
                    __m512i dot = split_unit(_mm512_loadu_si512((const void *)(row + o)), hi + o, lo + o, flip);
                    __m512 scale = _mm512_permutexvar_ps(_mm512_add_epi32(pair, _mm512_set1_epi32(2 * i)), c);
                    if (i & 1) acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc1);
                    else acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc0);
                }
                continue;
            }
            _mm256_storeu_ps(coef, _mm256_mul_ps(sv, _mm256_loadu_ps(ad + u * 8)));
            for (int i = 0; i < 8; i += 2) {
                const int64_t b = u * 8 + i;
                __m512i d0 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), block_levels16(row, b, int4, g, flip), _mm512_loadu_si512((const void *)(aq + b * 32)));
                __m512i d1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), block_levels16(row, b + 1, int4, g, flip), _mm512_loadu_si512((const void *)(aq + b * 32 + 32)));
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_set1_ps(coef[i]), acc0);
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_set1_ps(coef[i + 1]), acc1);
            }
        }
        float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + plm_hsum8(shiftAcc);
        // Full-group blocks after the last whole unit.
        for (int64_t b = units * 8; b < fullBlocks; b++) {
            const int64_t gi = b / per;
            const float s = scales[gi], m = mins[gi];
            __m512i dot = _mm512_dpwssd_epi32(_mm512_setzero_si512(), block_levels16(row, b, int4, g, flip), _mm512_loadu_si512((const void *)(aq + b * 32)));
            total += s * ad[b] * (float)_mm512_reduce_add_epi32(dot) + plm_level_shift(w, s, m) * asum[b];
        }
        y[r - r0] = total + (full < groups ? plm_qdot_f32_tail(w, a->x, r, full) : 0.0f);
    }
}

AVX512 void plm_qgemv16_avx512(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1) {
    const int int4 = plm_is_int4(w);
    switch (w->group) {
    case 32: if (int4) gemv16_body(w, a, y, r0, r1, 1, 32); else gemv16_body(w, a, y, r0, r1, 0, 32); break;
    case 64: if (int4) gemv16_body(w, a, y, r0, r1, 1, 64); else gemv16_body(w, a, y, r0, r1, 0, 64); break;
    case 128: if (int4) gemv16_body(w, a, y, r0, r1, 1, 128); else gemv16_body(w, a, y, r0, r1, 0, 128); break;
    // Group sizes outside the file format's (8…256 in the converter's search): the reference.
    default: plm_qgemv16_ref(w, a, y, r0, r1);
    }
}

/// n int16 activations split into hi = q >> 8 (signed) and lo = q & 255 (unsigned); n is a
/// multiple of 32.
AVX512 void plm_split_activations16_avx512(const int16_t *q, int64_t n, int8_t *hi, uint8_t *lo) {
    for (int64_t j = 0; j < n; j += 32) {
        __m512i v = _mm512_loadu_si512((const void *)(q + j));
        _mm256_storeu_si256((__m256i *)(hi + j), _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 8)));
        _mm256_storeu_si256((__m256i *)(lo + j), _mm512_cvtepi16_epi8(_mm512_and_si512(v, _mm512_set1_epi16(0xFF))));
    }
}

AVX512 void plm_split_rows16_avx512(const int16_t *q, int64_t rows, int64_t blocks, int8_t *hi, uint8_t *lo, int32_t *lo_sum) {
    plm_split_activations16_avx512(q, rows * blocks * 32, hi, lo);
    for (int64_t b = 0; b < rows * blocks; b++) {
        // Σ of 32 bytes: vpsadbw against zero gives four partial sums.
        __m256i s = _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(lo + 32 * b)), _mm256_setzero_si256());
        lo_sum[b] = (int32_t)(_mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1) + _mm256_extract_epi64(s, 2) + _mm256_extract_epi64(s, 3));
    }
}

#endif

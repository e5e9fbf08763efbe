// AVX-512 VNNI tile GEMM for prefill and vision tiles. A tile of 16 weight rows is unpacked once
// into unsigned levels interleaved by 4 columns ([K/4][16 rows][4 bytes]: one zmm per 4 columns
// of 16 rows), with per-row float scales and minimums per 32-column block. Every activation row
// then runs over the tile: broadcast 4 activation bytes, vpdpbusd into 16 row lanes. Scales
// apply per weight row in vector lanes, so no horizontal reduction is needed.
//
// int16 activations run over the same tiles, split into bytes (q = 256·hi + lo, see
// qint16_avx512.c): Σ L·q = 256·Σ L·hi + Σ lo·L, two vpdpbusd where int8 takes one. An int8
// level L (0…255) is no signed byte, so for the int8 kinds the second half reads L − 128 and
// adds back 128·Σ lo (per activation block, computed once at the split).
//
// Note: a short last weight group (K not a multiple of the group, e.g. 588) is handled here with
// int8 activations like every other block; the GEMV path uses fp32 activations for it.
#if defined(__x86_64__)
#include "qcommon.h"
#include <immintrin.h>
#include <stdlib.h>

#define AVX512 PLM_TARGET_AVX512
#define TILE PLM_TILE_ROWS

/// Levels of row r, in column order, into out[0 ..< blocks·32] (zero padded).
AVX512 static void unpack_row(const plm_qmatrix *w, int64_t r, uint8_t *out, int64_t padded) {
    const int64_t g = w->group, full = w->cols / g;
    const uint8_t *row = w->data + r * w->data_row_bytes;
    if (plm_is_int4(w)) {
        const __m256i mask = _mm256_set1_epi8(0x0F);
        for (int64_t gi = 0; gi < full; gi++) {
            const uint8_t *p = row + gi * (g / 2);
            uint8_t *o = out + gi * g;
            if (g == 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)p);
                _mm_storeu_si128((__m128i *)o, _mm_and_si128(v, _mm256_castsi256_si128(mask)));
                _mm_storeu_si128((__m128i *)(o + 16), _mm_and_si128(_mm_srli_epi16(v, 4), _mm256_castsi256_si128(mask)));
            } else {
                for (int64_t c = 0; c < g / 64; c++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                    _mm256_storeu_si256((__m256i *)(o + 32 * c), _mm256_and_si256(v, mask));
                    _mm256_storeu_si256((__m256i *)(o + g / 2 + 32 * c), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask));
                }
            }
        }
    } else {
        const __m256i flip = _mm256_set1_epi8(w->kind == PLM_Q8_SYM ? (char)0x80 : 0);
        // From the interleaved copy when there is one; it exists only when cols is a multiple of
        // 32 and of the group, so every block is whole.
        const uint8_t *tile = w->q8_tiles ? plm_q8_tile_row(w->q8_tiles, w->cols, r) : NULL;
        for (int64_t c = 0; c + 32 <= full * g; c += 32) {
            const uint8_t *src = tile ? tile + PLM_Q8_TILE_ROWS * c : row + c;
            _mm256_storeu_si256((__m256i *)(out + c), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)src), flip));
        }
    }
    for (int64_t j = full * g; j < padded; j++) {
        out[j] = j < w->cols ? (uint8_t)plm_level(w, r, full, j - full * g) : 0;
    }
}

/// Every activation row over one prepared tile: `tile` holds [blocks·8][16 rows][4] levels,
/// `scales`/`mins` [blocks][16]; writes y[m·ldy + i] for i < n.
AVX512 static void tile_compute8(const uint8_t *tile, const float *scales, const float *mins, const plm_tile_act *a,
                                 int64_t rows, int64_t blocks, int64_t padded, float *y, int64_t ldy, int64_t n) {
        const int8_t *q = a->q;
        const float *d = a->d, *sum = a->sum;
        int64_t m = 0;
        // Eight rows, one chain each: eight independent vpdpbusd chains hide its latency without
        // the two-chain merge, and each weight load serves eight rows.
        for (; m + 8 <= rows; m += 8) {
            const int8_t *a0 = q + m * padded;
            __m512 acc[8];
            for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
            for (int64_t b = 0; b < blocks; b++) {
                __m512i s[8];
                for (int i = 0; i < 8; i++) s[i] = _mm512_setzero_si512();
                const uint8_t *tb = tile + b * 8 * 64;
                for (int c = 0; c < 8; c++) {
                    const __m512i wv = _mm512_load_si512((const __m512i *)(tb + c * 64));
                    const int8_t *ac = a0 + b * 32 + c * 4;
                    for (int i = 0; i < 8; i++) s[i] = _mm512_dpbusd_epi32(s[i], wv, BCAST4(ac + i * padded));
                }
                const __m512 sc = _mm512_load_ps(scales + b * TILE), mn = _mm512_load_ps(mins + b * TILE);
                const float *dm = d + m * blocks + b, *sm = sum + m * blocks + b;
                for (int i = 0; i < 8; i++) {
                    acc[i] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sm[i * blocks]),
                                             _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(sc, _mm512_set1_ps(dm[i * blocks])), acc[i]));
                }
            }
            const __mmask16 keep = (__mmask16)((1u << n) - 1);
            for (int i = 0; i < 8; i++) _mm512_mask_storeu_ps(y + (m + i) * ldy, keep, acc[i]);
        }
        for (; m + 4 <= rows; m += 4) {
            const int8_t *a0 = q + m * padded, *a1 = a0 + padded, *a2 = a1 + padded, *a3 = a2 + padded;
            __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
            for (int64_t b = 0; b < blocks; b++) {
                // Two independent chains per activation row (even and odd column quads) hide the
                // vpdpbusd latency.
                __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
                const uint8_t *tb = tile + b * 8 * 64;
                for (int c = 0; c < 8; c += 2) {
                    __m512i wv = _mm512_load_si512((const __m512i *)(tb + c * 64));
                    __m512i wu = _mm512_load_si512((const __m512i *)(tb + c * 64 + 64));
                    const int64_t o = b * 32 + c * 4;
                    s0 = _mm512_dpbusd_epi32(s0, wv, BCAST4(a0 + o)); t0 = _mm512_dpbusd_epi32(t0, wu, BCAST4(a0 + o + 4));
                    s1 = _mm512_dpbusd_epi32(s1, wv, BCAST4(a1 + o)); t1 = _mm512_dpbusd_epi32(t1, wu, BCAST4(a1 + o + 4));
                    s2 = _mm512_dpbusd_epi32(s2, wv, BCAST4(a2 + o)); t2 = _mm512_dpbusd_epi32(t2, wu, BCAST4(a2 + o + 4));
                    s3 = _mm512_dpbusd_epi32(s3, wv, BCAST4(a3 + o)); t3 = _mm512_dpbusd_epi32(t3, wu, BCAST4(a3 + o + 4));
                }
                s0 = _mm512_add_epi32(s0, t0); s1 = _mm512_add_epi32(s1, t1);
                s2 = _mm512_add_epi32(s2, t2); s3 = _mm512_add_epi32(s3, t3);
                __m512 sc = _mm512_load_ps(scales + b * TILE), mn = _mm512_load_ps(mins + b * TILE);
                const float *dm = d + m * blocks + b, *sm = sum + m * blocks + b;
                acc0 = _mm512_fmadd_ps(mn, _mm512_set1_ps(sm[0]), _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(sc, _mm512_set1_ps(dm[0])), acc0));
                acc1 = _mm512_fmadd_ps(mn, _mm512_set1_ps(sm[blocks]), _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(sc, _mm512_set1_ps(dm[blocks])), acc1));
                acc2 = _mm512_fmadd_ps(mn, _mm512_set1_ps(sm[2 * blocks]), _mm512_fmadd_ps(_mm512_cvtepi32_ps(s2), _mm512_mul_ps(sc, _mm512_set1_ps(dm[2 * blocks])), acc2));
                acc3 = _mm512_fmadd_ps(mn, _mm512_set1_ps(sm[3 * blocks]), _mm512_fmadd_ps(_mm512_cvtepi32_ps(s3), _mm512_mul_ps(sc, _mm512_set1_ps(dm[3 * blocks])), acc3));
            }
            __mmask16 keep = (__mmask16)((1u << n) - 1);
            _mm512_mask_storeu_ps(y + m * ldy, keep, acc0);
            _mm512_mask_storeu_ps(y + (m + 1) * ldy, keep, acc1);
            _mm512_mask_storeu_ps(y + (m + 2) * ldy, keep, acc2);
            _mm512_mask_storeu_ps(y + (m + 3) * ldy, keep, acc3);
        }
        for (; m < rows; m++) {
            const int8_t *a0 = q + m * padded;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t b = 0; b < blocks; b++) {
                __m512i s0 = _mm512_setzero_si512();
                for (int c = 0; c < 8; c++) {
                    int32_t v;
                    memcpy(&v, a0 + b * 32 + c * 4, 4);
                    s0 = _mm512_dpbusd_epi32(s0, _mm512_load_si512((const __m512i *)(tile + (b * 8 + c) * 64)), _mm512_set1_epi32(v));
                }
                acc = _mm512_fmadd_ps(_mm512_load_ps(mins + b * TILE), _mm512_set1_ps(sum[m * blocks + b]),
                                      _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(_mm512_load_ps(scales + b * TILE), _mm512_set1_ps(d[m * blocks + b])), acc));
            }
            _mm512_mask_storeu_ps(y + m * ldy, (__mmask16)((1u << n) - 1), acc);
        }
    }


/// Four rows' two byte halves against one column quad of the tile (see the file comment).
#define SPLIT4(i, hp, lp) do { sh[i] = _mm512_dpbusd_epi32(sh[i], wv, BCAST4((hp) + o)); \
                              sl[i] = _mm512_dpbusd_epi32(sl[i], BCAST4((lp) + o), ws); } while (0)

/// tile_compute8 for int16 activations split into bytes; `int8w` for the int8 weight kinds.
AVX512 __attribute__((always_inline)) static inline void tile_compute16(const uint8_t *tile, const float *scales, const float *mins, const plm_tile_act *a, const int int8w,
                                  int64_t rows, int64_t blocks, int64_t padded, float *y, int64_t ldy, int64_t n) {
    const __m512i flip = _mm512_set1_epi8(int8w ? (char)0x80 : 0);
    const __mmask16 keep = (__mmask16)((1u << n) - 1);
    int64_t m = 0;
    for (; m < rows; m += 4) {
        // Four rows at a time; a last group of fewer rows repeats its last row (not stored).
        const int64_t live = rows - m < 4 ? rows - m : 4;
        int64_t idx[4];
        for (int i = 0; i < 4; i++) idx[i] = m + (i < live ? i : live - 1);
        const int8_t *h[4];
        const uint8_t *l[4];
        for (int i = 0; i < 4; i++) { h[i] = a->hi + idx[i] * padded; l[i] = a->lo + idx[i] * padded; }
        __m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
        for (int64_t b = 0; b < blocks; b++) {
            __m512i sh[4] = { _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512() };
            __m512i sl[4] = { sh[0], sh[0], sh[0], sh[0] };
            const uint8_t *tb = tile + b * 8 * 64;
            for (int c = 0; c < 8; c++) {
                __m512i wv = _mm512_load_si512((const __m512i *)(tb + c * 64)), ws = _mm512_xor_si512(wv, flip);
                const int64_t o = b * 32 + c * 4;
                SPLIT4(0, h[0], l[0]); SPLIT4(1, h[1], l[1]); SPLIT4(2, h[2], l[2]); SPLIT4(3, h[3], l[3]);
            }
            __m512 sc = _mm512_load_ps(scales + b * TILE), mn = _mm512_load_ps(mins + b * TILE);
            for (int i = 0; i < 4; i++) {
                __m512i dot = _mm512_add_epi32(_mm512_slli_epi32(sh[i], 8), sl[i]);
                if (int8w) dot = _mm512_add_epi32(dot, _mm512_set1_epi32(128 * a->lo_sum[idx[i] * blocks + b]));
                const float dm = a->d[idx[i] * blocks + b], sm = a->sum[idx[i] * blocks + b];
                acc[i] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sm), _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sc, _mm512_set1_ps(dm)), acc[i]));
            }
        }
        for (int i = 0; i < live; i++) _mm512_mask_storeu_ps(y + (m + i) * ldy, keep, acc[i]);
    }
}
#undef SPLIT4

/// Every activation row over one prepared tile, int8 or split int16 activations.
AVX512 static void tile_compute(const uint8_t *tile, const float *scales, const float *mins, const plm_tile_act *a, const int int8w,
                                int64_t rows, int64_t blocks, int64_t padded, float *y, int64_t ldy, int64_t n) {
    if (a->q) tile_compute8(tile, scales, mins, a, rows, blocks, padded, y, ldy, n);
    else if (int8w) tile_compute16(tile, scales, mins, a, 1, rows, blocks, padded, y, ldy, n);
    else tile_compute16(tile, scales, mins, a, 0, rows, blocks, padded, y, ldy, n);
}


/// Activation rows per pass over the weight tiles: as many as fit about 512 KiB of int8 values
/// (16-bit activations count their two byte planes), so that they stay in the core's L2 while
/// every tile of the range runs over them. With all rows in one pass (4 MiB for a 512-token
/// prefill of the 8192-wide down projection) each tile streamed them from the shared L3, and
/// two threads ran the prefill matrix products only 1.33× faster than one.
static int64_t chunk_rows(const plm_tile_act *a, int64_t rows, int64_t padded) {
    const int64_t bytes = a->q ? padded : 2 * padded;
    int64_t chunk = (512 << 10) / (bytes > 0 ? bytes : 1);
    chunk = chunk < 32 ? 32 : chunk - chunk % 4;
    // A last pass of a few rows would repeat the tiles' preparation for little work.
    return rows <= chunk + chunk / 2 ? rows : chunk;
}

/// Rows [m0, …) of a.
static plm_tile_act act_rows(const plm_tile_act *a, int64_t m0, int64_t blocks) {
    const int64_t padded = blocks * 32;
    plm_tile_act r = *a;
    if (r.q) r.q += m0 * padded;
    if (r.hi) r.hi += m0 * padded;
    if (r.lo) r.lo += m0 * padded;
    if (r.lo_sum) r.lo_sum += m0 * blocks;
    r.d += m0 * blocks;
    r.sum += m0 * blocks;
    return r;
}

AVX512 void plm_qgemm_avx512(const plm_qmatrix *w, const plm_tile_act *a, int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t blocks = plm_blocks(w->cols), padded = blocks * 32, groups = (w->cols + w->group - 1) / w->group;
    const int64_t per = w->group / 32;
    uint8_t *levels = aligned_alloc(64, (size_t)(TILE * padded));
    uint8_t *tile = aligned_alloc(64, (size_t)(TILE * padded));
    float *scales = aligned_alloc(64, (size_t)(blocks * TILE * 4));
    float *mins = aligned_alloc(64, (size_t)(blocks * TILE * 4));
    float *rowScales = aligned_alloc(64, (size_t)((groups + 8) * 4)), *rowMins = aligned_alloc(64, (size_t)((groups + 8) * 4));
    const int64_t chunk = chunk_rows(a, rows, padded);
    for (int64_t m0 = 0; m0 < rows; m0 += chunk) {
        const int64_t mrows = rows - m0 < chunk ? rows - m0 : chunk;
        const plm_tile_act part = act_rows(a, m0, blocks);
        for (int64_t t0 = r0; t0 < r1; t0 += TILE) {
            const int64_t n = r1 - t0 < TILE ? r1 - t0 : TILE;
            // Unpack the tile's rows, then interleave by 4 columns with one gather per column quad.
            for (int64_t i = 0; i < TILE; i++) {
                if (i < n) unpack_row(w, t0 + i, levels + i * padded, padded);
                else memset(levels + i * padded, 0, (size_t)padded);
                if (i < n) plm_row_scales_avx512(w, t0 + i, groups, rowScales, rowMins);
                for (int64_t gi = 0; gi < groups; gi++) {
                    float s = i < n ? rowScales[gi] : 0, m = i < n ? rowMins[gi] : 0;
                    for (int64_t b = gi * per; b < (gi + 1) * per && b < blocks; b++) { scales[b * TILE + i] = s; mins[b * TILE + i] = m; }
                }
            }
            const __m512i rowOffsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)padded));
            for (int64_t c = 0; c < padded / 4; c++) {
                _mm512_store_si512((__m512i *)(tile + c * 64), _mm512_i32gather_epi32(rowOffsets, (const void *)(levels + c * 4), 1));
            }
            tile_compute(tile, scales, mins, &part, !plm_is_int4(w), mrows, blocks, padded, y + m0 * ldy + (t0 - r0), ldy, n);
        }
    }
    free(levels); free(tile); free(scales); free(mins); free(rowScales); free(rowMins);
}
#endif

#if defined(__x86_64__)
AVX512 void plm_qgemm_repacked_avx512(const plm_q4k6_repacked *w, const plm_tile_act *a, int64_t rows, float *y, int64_t ldy,
                                      int64_t tile0, int64_t tile1) {
    const int64_t blocks = w->cols / 32, padded = w->cols, superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    uint8_t *tile = aligned_alloc(64, (size_t)(TILE * padded));
    float *scales = aligned_alloc(64, (size_t)(blocks * TILE * 4)), *mins = aligned_alloc(64, (size_t)(blocks * TILE * 4));
    const __m512i mask = _mm512_set1_epi8(0x0F);
    const int64_t chunk = chunk_rows(a, rows, padded);
    for (int64_t m0 = 0; m0 < rows; m0 += chunk) {
        const int64_t mrows = rows - m0 < chunk ? rows - m0 : chunk;
        const plm_tile_act part = act_rows(a, m0, blocks);
        for (int64_t t = tile0; t < tile1; t++) {
            const uint8_t *p = w->bytes + t * w->tile_bytes;
            for (int64_t sb = 0; sb < superblocks; sb++) {
                __m512 dv = _mm512_loadu_ps((const float *)p), dneg = _mm512_loadu_ps((const float *)(p + TILE * 4));
                p += PLM_RP_HEADER_BYTES;
                for (int j = 0; j < 8; j++) {
                    const int64_t b = sb * 8 + j;
                    _mm512_store_ps(scales + b * TILE, plm_rp_indices(p, PLM_RP_BLOCK_SCALE_INDICES, dv));
                    _mm512_store_ps(mins + b * TILE, plm_rp_indices(p, PLM_RP_BLOCK_MIN_INDICES, dneg));
                    for (int c = 0; c < 4; c++) {
                        __m512i z = _mm512_loadu_si512((const void *)(p + PLM_RP_BLOCK_NIBBLES + c * PLM_RP_NIBBLES_PER_8_COLUMNS));
                        _mm512_store_si512((__m512i *)(tile + (b * 8 + 2 * c) * 64), _mm512_and_si512(z, mask));
                        _mm512_store_si512((__m512i *)(tile + (b * 8 + 2 * c + 1) * 64), _mm512_and_si512(_mm512_srli_epi16(z, 4), mask));
                    }
                    p += PLM_RP_BLOCK_BYTES;
                }
            }
            int64_t n = w->rows - t * TILE < TILE ? w->rows - t * TILE : TILE;
            tile_compute(tile, scales, mins, &part, 0, mrows, blocks, padded, y + m0 * ldy + (t - tile0) * TILE, ldy, n);
        }
    }
    free(tile); free(scales); free(mins);
}
#endif

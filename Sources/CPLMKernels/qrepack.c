// Decode kernel over a row-interleaved repack of int4 k6 matrices (see CPLMKernels.h). With 16
// rows in the lanes of one register, a 32-column block costs 4 loads, 8 vpdpbusd with broadcast
// activations and a handful of scale operations for 512 weights, about 2.5× fewer instructions
// than the kernel over the file's row-major layout, which is compute-bound below the memory
// bandwidth on one core.
#include "qcommon.h"
#include <stdlib.h>

#define TILE PLM_TILE_ROWS

int64_t plm_repacked_tile_bytes(int64_t cols) {
    return cols / PLM_RP_SUPERBLOCK_COLUMNS * PLM_RP_SUPERBLOCK_BYTES;
}

int plm_repack_q4k6(const plm_qmatrix *w, plm_q4k6_repacked *out, int64_t tile0, int64_t tile1) {
    if (w->kind != PLM_Q4_ASYM_K6 || w->group != 32 || w->cols % PLM_RP_SUPERBLOCK_COLUMNS != 0) return 0;
    const int64_t superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    for (int64_t t = tile0; t < tile1; t++) {
        uint8_t *p = out->bytes + t * out->tile_bytes;
        for (int64_t sb = 0; sb < superblocks; sb++) {
            float *d = (float *)p, *dneg = (float *)(p + TILE * 4);
            uint8_t *blocks = p + PLM_RP_HEADER_BYTES;
            memset(blocks, 0, 8 * PLM_RP_BLOCK_BYTES);
            for (int i = 0; i < TILE; i++) {
                int64_t r = t * TILE + i;
                if (r >= w->rows) { d[i] = 0; dneg[i] = 0; continue; }
                // One k6 block covers the 8 groups of 32 in this super-block of 256 columns.
                const uint8_t *sc = plm_k6_block(w, r, sb * PLM_K6_GROUPS);
                d[i] = plm_f16_to_f32(plm_load_u16(sc + PLM_K6_D));
                dneg[i] = -plm_f16_to_f32(plm_load_u16(sc + PLM_K6_DMIN));
                for (int j = 0; j < 8; j++) {
                    uint8_t *blk = blocks + j * PLM_RP_BLOCK_BYTES;
                    blk[PLM_RP_BLOCK_SCALE_INDICES + i] = (uint8_t)plm_six_bit(sc + PLM_K6_SCALE_INDICES, j);
                    blk[PLM_RP_BLOCK_MIN_INDICES + i] = (uint8_t)plm_six_bit(sc + PLM_K6_MIN_INDICES, j);
                    const uint8_t *src = w->data + r * w->data_row_bytes + (sb * 8 + j) * 16;
                    uint8_t v[32];
                    for (int k = 0; k < 16; k++) { v[k] = src[k] & 0x0F; v[k + 16] = src[k] >> 4; }
                    uint8_t *nib = blk + PLM_RP_BLOCK_NIBBLES;
                    for (int c = 0; c < 4; c++)
                        for (int q = 0; q < 4; q++)
                            nib[c * PLM_RP_NIBBLES_PER_8_COLUMNS + i * 4 + q] = (uint8_t)(v[8 * c + q] | (v[8 * c + 4 + q] << 4));
                }
            }
            p += PLM_RP_SUPERBLOCK_BYTES;
        }
    }
    return 1;
}

/// Row r of the repacked matrix dequantized into out[0 ..< cols]: the same values, bit for bit,
/// as plm_dequantize_row on the original (s·L + m with s = d·index, m = −dmin·index), so the
/// fp32 prefill path can run from the repacked copy after the mapped levels were released.
void plm_repacked_dequantize_row(const plm_q4k6_repacked *w, int64_t r, float *out) {
    const int64_t superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    const int i = (int)(r % TILE);
    const uint8_t *p = w->bytes + (r / TILE) * w->tile_bytes;
    for (int64_t sb = 0; sb < superblocks; sb++) {
        const float d = ((const float *)p)[i], dneg = ((const float *)(p + TILE * 4))[i];
        p += PLM_RP_HEADER_BYTES;
        for (int j = 0; j < 8; j++, p += PLM_RP_BLOCK_BYTES) {
            const float s = d * (float)p[PLM_RP_BLOCK_SCALE_INDICES + i], m = dneg * (float)p[PLM_RP_BLOCK_MIN_INDICES + i];
            float *o = out + (sb * 8 + j) * 32;
            for (int c = 0; c < 4; c++) {
                const uint8_t *bytes = p + PLM_RP_BLOCK_NIBBLES + c * PLM_RP_NIBBLES_PER_8_COLUMNS + i * 4;
                for (int k = 0; k < 4; k++) {
                    o[8 * c + k] = s * (float)(bytes[k] & 0x0F) + m;
                    o[8 * c + 4 + k] = s * (float)(bytes[k] >> 4) + m;
                }
            }
        }
    }
}

static int q8_tiles_fit(const plm_qmatrix *w) {
    return (w->kind == PLM_Q8_SYM || w->kind == PLM_Q8_ASYM) && w->cols % 32 == 0 && w->group > 0 && w->cols % w->group == 0;
}

int64_t plm_q8_tiles_bytes(const plm_qmatrix *w) {
    return (w->rows + PLM_Q8_TILE_ROWS - 1) / PLM_Q8_TILE_ROWS * PLM_Q8_TILE_ROWS * w->cols;
}

int plm_interleave_q8(const plm_qmatrix *w, uint8_t *tiles, int64_t tile0, int64_t tile1) {
    if (!q8_tiles_fit(w)) return 0;
    const int64_t blocks = w->cols / 32;
    for (int64_t t = tile0; t < tile1; t++) {
        uint8_t *out = tiles + t * PLM_Q8_TILE_ROWS * w->cols;
        for (int64_t b = 0; b < blocks; b++)
            for (int k = 0; k < PLM_Q8_TILE_ROWS; k++, out += 32) {
                const int64_t r = t * PLM_Q8_TILE_ROWS + k;
                if (r < w->rows) memcpy(out, w->data + r * w->data_row_bytes + 32 * b, 32); else memset(out, 0, 32);
            }
    }
    return 1;
}

/// Row r of the interleaved copy as a one-row matrix over `levels` (cols bytes), so the file
/// layout's reference definitions apply unchanged.
static plm_qmatrix q8_tiles_row(const plm_qmatrix *w, const uint8_t *tiles, int64_t r, uint8_t *levels) {
    const uint8_t *tile = plm_q8_tile_row(tiles, w->cols, r);
    for (int64_t b = 0; b < w->cols / 32; b++) memcpy(levels + 32 * b, tile + 32 * PLM_Q8_TILE_ROWS * b, 32);
    plm_qmatrix row = *w;
    row.rows = 1;
    row.data = levels;
    row.q8_tiles = NULL;
    row.data_row_bytes = w->cols;
    row.scales = w->scales + r * w->scale_row_bytes;
    row.mins = w->mins ? w->mins + r * w->min_row_bytes : NULL;
    return row;
}

void plm_q8tiles_dequantize_row(const plm_qmatrix *w, const uint8_t *tiles, int64_t r, float *out) {
    uint8_t levels[w->cols];
    const plm_qmatrix row = q8_tiles_row(w, tiles, r, levels);
    plm_dequantize_row(&row, 0, out);
}

/// The reference over the interleaved copy: each row gathered, then plm_qgemv16_ref.
void plm_qgemv16_q8tiles_ref(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a, float *y, int64_t r0, int64_t r1) {
    uint8_t levels[w->cols];
    for (int64_t r = r0; r < r1; r++) {
        const plm_qmatrix row = q8_tiles_row(w, tiles, r, levels);
        plm_qgemv16_ref(&row, a, y + (r - r0), 0, 1);
    }
}

/// Level of column c (0…31) of block `blk` for row i of the tile (the layout in plm_layout.h).
static int repacked_level(const uint8_t *blk, int i, int c) {
    const uint8_t byte = blk[PLM_RP_BLOCK_NIBBLES + (c / 8) * PLM_RP_NIBBLES_PER_8_COLUMNS + i * 4 + c % 4];
    return c % 8 < 4 ? byte & 0x0F : byte >> 4;
}

/// The reference GEMV over the repacked layout (plain C, one activation type at a time): per
/// 32-column block, d·index·d_a·Σ L·q + (−dmin)·index·d_a·Σq, the definition of plm_qgemv_ref
/// and plm_qgemv16_ref on the original matrix, which the SIMD twins are tested against.
static void repacked_gemv_ref(const plm_q4k6_repacked *w, const int8_t *q8, const int16_t *q16, const float *ad,
                              const float *asum, float *y, int64_t tile0, int64_t tile1) {
    const int64_t superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    for (int64_t t = tile0; t < tile1; t++) {
        for (int i = 0; i < TILE && t * TILE + i < w->rows; i++) {
            const uint8_t *p = w->bytes + t * w->tile_bytes;
            float acc = 0;
            for (int64_t sb = 0; sb < superblocks; sb++) {
                const float d = ((const float *)p)[i], dneg = ((const float *)(p + TILE * 4))[i];
                p += PLM_RP_HEADER_BYTES;
                for (int j = 0; j < 8; j++, p += PLM_RP_BLOCK_BYTES) {
                    const int64_t b = sb * 8 + j;
                    int32_t dot = 0;
                    for (int c = 0; c < 32; c++) dot += repacked_level(p, i, c) * (q8 ? (int32_t)q8[b * 32 + c] : (int32_t)q16[b * 32 + c]);
                    acc += d * (float)p[PLM_RP_BLOCK_SCALE_INDICES + i] * ad[b] * (float)dot
                         + dneg * (float)p[PLM_RP_BLOCK_MIN_INDICES + i] * asum[b];
                }
            }
            y[(t - tile0) * TILE + i] = acc;
        }
    }
}

void plm_qgemv_repacked_ref(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1) {
    repacked_gemv_ref(w, a->q, NULL, a->d, a->sum, y, tile0, tile1);
}

void plm_qgemv16_repacked_ref(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1) {
    repacked_gemv_ref(w, NULL, a->q, a->d, a->sum, y, tile0, tile1);
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 PLM_TARGET_AVX512


/// The decode GEMV over the repacked layout, for int8 activations (q8) or int16 ones split into
/// bytes (hi, lo; see qint16_avx512.c): per 8 columns one vpdpbusd with int8, two with int16.
/// Inlined per activation type, so the choice costs nothing in the loop.
AVX512 __attribute__((always_inline)) static inline void repacked_gemv(const plm_q4k6_repacked *w, const int8_t *q8, const int8_t *hi,
                                                                   const uint8_t *lo, const float *ad, const float *asum,
                                                                   float *y, int64_t tile0, int64_t tile1) {
    const int64_t superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    const __m512i mask = _mm512_set1_epi8(0x0F);
    for (int64_t t = tile0; t < tile1; t++) {
        const uint8_t *p = w->bytes + t * w->tile_bytes;
        __m512 acc = _mm512_setzero_ps(), macc = _mm512_setzero_ps();
        for (int64_t sb = 0; sb < superblocks; sb++) {
            __m512 d = _mm512_loadu_ps((const float *)p), dneg = _mm512_loadu_ps((const float *)(p + TILE * 4));
            p += PLM_RP_HEADER_BYTES;
            for (int j = 0; j < 8; j++) {
                const int64_t b = sb * 8 + j;
                __m512 sv = plm_rp_indices(p, PLM_RP_BLOCK_SCALE_INDICES, d), mv = plm_rp_indices(p, PLM_RP_BLOCK_MIN_INDICES, dneg);
                const uint8_t *nib = p + PLM_RP_BLOCK_NIBBLES;
                const int64_t o = b * 32;
                __m512i s0 = _mm512_setzero_si512(), s1 = s0, l0 = s0, l1 = s0;
                for (int c = 0; c < 4; c++) {
                    __m512i z = _mm512_loadu_si512((const void *)(nib + c * PLM_RP_NIBBLES_PER_8_COLUMNS));
                    __m512i v0 = _mm512_and_si512(z, mask), v1 = _mm512_and_si512(_mm512_srli_epi16(z, 4), mask);
                    if (q8) {
                        s0 = _mm512_dpbusd_epi32(s0, v0, BCAST4(q8 + o + 8 * c));
                        s1 = _mm512_dpbusd_epi32(s1, v1, BCAST4(q8 + o + 8 * c + 4));
                    } else {
                        // Σ L·q = 256·Σ L·hi + Σ lo·L (the level is the signed operand of the second).
                        s0 = _mm512_dpbusd_epi32(s0, v0, BCAST4(hi + o + 8 * c));
                        s1 = _mm512_dpbusd_epi32(s1, v1, BCAST4(hi + o + 8 * c + 4));
                        l0 = _mm512_dpbusd_epi32(l0, BCAST4(lo + o + 8 * c), v0);
                        l1 = _mm512_dpbusd_epi32(l1, BCAST4(lo + o + 8 * c + 4), v1);
                    }
                }
                __m512i dot = _mm512_add_epi32(s0, s1);
                if (!q8) dot = _mm512_add_epi32(_mm512_slli_epi32(dot, 8), _mm512_add_epi32(l0, l1));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sv, _mm512_set1_ps(ad[b])), acc);
                macc = _mm512_fmadd_ps(mv, _mm512_set1_ps(asum[b]), macc);
                plm_prefetch_block(p);
                p += PLM_RP_BLOCK_BYTES;
            }
        }
        int64_t n = w->rows - t * TILE < TILE ? w->rows - t * TILE : TILE;
        _mm512_mask_storeu_ps(y + (t - tile0) * TILE, (__mmask16)((1u << n) - 1), _mm512_add_ps(acc, macc));
    }
}

AVX512 void plm_qgemv_repacked_avx512(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1) {
    repacked_gemv(w, a->q, NULL, NULL, a->d, a->sum, y, tile0, tile1);
}

AVX512 void plm_qgemv16_repacked_avx512(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1) {
    // Split once per call, shared by every tile (cols ≤ a few ten thousand: stack).
    int8_t hi[w->cols];
    uint8_t lo[w->cols];
    plm_split_activations16_avx512(a->q, w->cols, hi, lo);
    repacked_gemv(w, NULL, hi, lo, a->d, a->sum, y, tile0, tile1);
}
#endif

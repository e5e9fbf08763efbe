// The AVX2 decode GEMVs over the repacked int4 k6 layout (plm_layout.h), the twins of the
// AVX-512 ones in qrepack.c. A 16-row tile is two registers of 8 rows: row i's 32-bit lane
// holds 8 nibbles of 8 consecutive columns, so one broadcast of 4 activation bytes feeds
// vpmaddubsw for 8 rows at once. Over the file's row-major layout the AVX2 kernel spent most of
// its time on per-group scalar work and horizontal sums and read 1.3–1.6 GB/s on one core.
//
// Integer sums: vpmaddubsw gives pairs L·a + L'·a' (u8 × s8) in int16, exact while every pair
// stays below 2^15. int8 activations: |pair| ≤ 2·15·128 = 3,840, so the 8 pairs of a 32-column
// block add in int16 (≤ 30,720) before one vpmaddwd widens them. int16 activations split as
// q = 256·hi + lo (hi signed, lo unsigned byte): L·hi as above; lo·L with the level as the
// signed operand gives pairs ≤ 2·255·15 = 7,650, so groups of 4 add in int16 (≤ 30,600).
#if defined(__x86_64__)
#include "qcommon.h"
#include <immintrin.h>

#define AVX2 PLM_TARGET_AVX2
#define TILE PLM_TILE_ROWS
#define HALF (PLM_TILE_ROWS / 2)

typedef int32_t __attribute__((may_alias, aligned(1))) i32u;
#define BCAST4_256(p) _mm256_set1_epi32(*(const i32u *)(p))

/// 8 index bytes (u8) at p as floats times `factor`: the scales or minimums of 8 rows.
AVX2 static inline __m256 indices8(const uint8_t *p, __m256 factor) {
    __m128i v = _mm_loadl_epi64((const __m128i *)p);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), factor);
}

/// Σ L·a over one 32-column block for the 8 rows of half `h` of a tile (int32 per row).
/// q8: int8 activations; else the split int16 ones (hi, lo) and the result is Σ L·q exactly.
AVX2 __attribute__((always_inline)) static inline __m256i block_dot8(const uint8_t *nib, int h, const int8_t *q8,
                                                                  const int8_t *hi, const uint8_t *lo) {
    const __m256i mask = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256i s = _mm256_setzero_si256(), l01 = s, l23 = s;
    for (int c = 0; c < 4; c++) {
        __m256i z = _mm256_loadu_si256((const __m256i *)(nib + c * PLM_RP_NIBBLES_PER_8_COLUMNS + h * 32));
        __m256i v0 = _mm256_and_si256(z, mask), v1 = _mm256_and_si256(_mm256_srli_epi16(z, 4), mask);
        const int8_t *a = q8 ? q8 : hi;
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(v0, BCAST4_256(a + 8 * c)));
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(v1, BCAST4_256(a + 8 * c + 4)));
        if (!q8) {
            __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(BCAST4_256(lo + 8 * c), v0),
                                         _mm256_maddubs_epi16(BCAST4_256(lo + 8 * c + 4), v1));
            if (c < 2) l01 = _mm256_add_epi16(l01, p); else l23 = _mm256_add_epi16(l23, p);
        }
    }
    __m256i dot = _mm256_madd_epi16(s, ones);
    if (q8) return dot;
    __m256i low = _mm256_add_epi32(_mm256_madd_epi16(l01, ones), _mm256_madd_epi16(l23, ones));
    return _mm256_add_epi32(_mm256_slli_epi32(dot, 8), low);
}

/// The GEMV body, inlined per activation type (as in qrepack.c): per block and half tile, the
/// integer dot times scale·d_a, plus minimum·d_a·Σq.
AVX2 __attribute__((always_inline)) static inline void repacked_gemv(const plm_q4k6_repacked *w, const int8_t *q8, const int8_t *hi,
                                                                   const uint8_t *lo, const float *ad, const float *asum,
                                                                   float *y, int64_t tile0, int64_t tile1) {
    const int64_t superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    for (int64_t t = tile0; t < tile1; t++) {
        const uint8_t *p = w->bytes + t * w->tile_bytes;
        __m256 acc[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() }, macc[2] = { acc[0], acc[0] };
        for (int64_t sb = 0; sb < superblocks; sb++) {
            const __m256 d[2] = { _mm256_loadu_ps((const float *)p), _mm256_loadu_ps((const float *)p + HALF) };
            const __m256 dneg[2] = { _mm256_loadu_ps((const float *)(p + TILE * 4)), _mm256_loadu_ps((const float *)(p + TILE * 4) + HALF) };
            p += PLM_RP_HEADER_BYTES;
            for (int j = 0; j < 8; j++) {
                const int64_t b = sb * 8 + j, o = b * 32;
                const __m256 da = _mm256_set1_ps(ad[b]), sum = _mm256_set1_ps(asum[b]);
                plm_prefetch_block(p);
                for (int h = 0; h < 2; h++) {
                    __m256i dot = block_dot8(p + PLM_RP_BLOCK_NIBBLES, h, q8 ? q8 + o : NULL, hi ? hi + o : NULL, lo ? lo + o : NULL);
                    __m256 sv = indices8(p + PLM_RP_BLOCK_SCALE_INDICES + h * HALF, _mm256_mul_ps(d[h], da));
                    acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sv, acc[h]);
                    macc[h] = _mm256_fmadd_ps(indices8(p + PLM_RP_BLOCK_MIN_INDICES + h * HALF, dneg[h]), sum, macc[h]);
                }
                p += PLM_RP_BLOCK_BYTES;
            }
        }
        float out[TILE];
        _mm256_storeu_ps(out, _mm256_add_ps(acc[0], macc[0]));
        _mm256_storeu_ps(out + HALF, _mm256_add_ps(acc[1], macc[1]));
        const int64_t n = w->rows - t * TILE < TILE ? w->rows - t * TILE : TILE;
        memcpy(y + (t - tile0) * TILE, out, (size_t)n * sizeof(float));
    }
}

AVX2 void plm_qgemv_repacked_avx2(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1) {
    repacked_gemv(w, a->q, NULL, NULL, a->d, a->sum, y, tile0, tile1);
}

/// The prefill GEMM over the repacked layout with int8 activations: per tile (both halves of 8
/// rows) and 4 activation rows at a time, each 8-column group of levels is unpacked once and
/// multiplied with the 4 rows' broadcast bytes (the same int16 bound as block_dot8). Both halves
/// share each broadcast: on Zen 3 a broadcast from memory takes a vector pipe, and with one half
/// per pass they were a quarter of the kernel's vector operations (2–15 % faster, interleaved in
/// one process). The tile's bytes stay in L1 while every activation row passes over them. Rows [16·tile0, 16·tile1) into y[m·ldy + r − 16·tile0].
AVX2 void plm_qgemm_repacked_avx2(const plm_q4k6_repacked *w, const int8_t *q, const float *ad, const float *asum,
                                  int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1) {
    const int64_t blocks = w->cols / 32, superblocks = w->cols / PLM_RP_SUPERBLOCK_COLUMNS;
    const __m256i mask = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int64_t t = tile0; t < tile1; t++) {
        const int64_t n = w->rows - t * TILE < TILE ? w->rows - t * TILE : TILE;
        for (int64_t m0 = 0; m0 < rows; m0 += 4) {
            const int mr = rows - m0 < 4 ? (int)(rows - m0) : 4;
            const int8_t *qm[4];
            const float *dm[4], *sm[4];
            for (int m = 0; m < 4; m++) {
                const int64_t row = m0 + (m < mr ? m : 0);   // missing rows repeat row m0, unstored
                qm[m] = q + row * blocks * 32; dm[m] = ad + row * blocks; sm[m] = asum + row * blocks;
            }
            __m256 acc[4][2];
            for (int m = 0; m < 4; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
            const uint8_t *p = w->bytes + t * w->tile_bytes;
            for (int64_t sb = 0; sb < superblocks; sb++) {
                const __m256 d[2] = { _mm256_loadu_ps((const float *)p), _mm256_loadu_ps((const float *)p + HALF) };
                const __m256 dneg[2] = { _mm256_loadu_ps((const float *)(p + TILE * 4)), _mm256_loadu_ps((const float *)(p + TILE * 4) + HALF) };
                p += PLM_RP_HEADER_BYTES;
                for (int j = 0; j < 8; j++, p += PLM_RP_BLOCK_BYTES) {
                    const int64_t b = sb * 8 + j, o = b * 32;
                    __m256i s[4][2];
                    for (int m = 0; m < 4; m++) s[m][0] = s[m][1] = _mm256_setzero_si256();
                    for (int c = 0; c < 4; c++) {
                        const uint8_t *z = p + PLM_RP_BLOCK_NIBBLES + c * PLM_RP_NIBBLES_PER_8_COLUMNS;
                        __m256i z0 = _mm256_loadu_si256((const __m256i *)z), z1 = _mm256_loadu_si256((const __m256i *)(z + 32));
                        __m256i v00 = _mm256_and_si256(z0, mask), v01 = _mm256_and_si256(_mm256_srli_epi16(z0, 4), mask);
                        __m256i v10 = _mm256_and_si256(z1, mask), v11 = _mm256_and_si256(_mm256_srli_epi16(z1, 4), mask);
                        for (int m = 0; m < 4; m++) {
                            __m256i a0 = BCAST4_256(qm[m] + o + 8 * c), a1 = BCAST4_256(qm[m] + o + 8 * c + 4);
                            s[m][0] = _mm256_add_epi16(s[m][0], _mm256_add_epi16(_mm256_maddubs_epi16(v00, a0), _mm256_maddubs_epi16(v01, a1)));
                            s[m][1] = _mm256_add_epi16(s[m][1], _mm256_add_epi16(_mm256_maddubs_epi16(v10, a0), _mm256_maddubs_epi16(v11, a1)));
                        }
                    }
                    for (int h = 0; h < 2; h++) {
                        const __m256 sv = indices8(p + PLM_RP_BLOCK_SCALE_INDICES + h * HALF, d[h]);
                        const __m256 mv = indices8(p + PLM_RP_BLOCK_MIN_INDICES + h * HALF, dneg[h]);
                        for (int m = 0; m < 4; m++) {
                            __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(s[m][h], ones));
                            acc[m][h] = _mm256_fmadd_ps(dot, _mm256_mul_ps(sv, _mm256_set1_ps(dm[m][b])), acc[m][h]);
                            acc[m][h] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sm[m][b]), acc[m][h]);
                        }
                    }
                }
            }
            for (int h = 0; h < 2; h++) {
                const int64_t first = h * HALF, count = n - first < HALF ? n - first : HALF;
                for (int m = 0; m < mr && count > 0; m++) {
                    float out[HALF];
                    _mm256_storeu_ps(out, acc[m][h]);
                    memcpy(y + (m0 + m) * ldy + (t - tile0) * TILE + first, out, (size_t)count * sizeof(float));
                }
            }
        }
    }
}

/// hi = q >> 8 and lo = q & 255 of n int16 values (n a multiple of 32), 32 at a time.
AVX2 static void split16(const int16_t *q, int64_t n, int8_t *hi, uint8_t *lo) {
    const __m256i low = _mm256_set1_epi16(0xFF);
    for (int64_t i = 0; i < n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(q + i)), b = _mm256_loadu_si256((const __m256i *)(q + i + 16));
        // packs work per 128-bit lane: the permute puts the 4 quarters back in order.
        __m256i h = _mm256_packs_epi16(_mm256_srai_epi16(a, 8), _mm256_srai_epi16(b, 8));
        __m256i l = _mm256_packus_epi16(_mm256_and_si256(a, low), _mm256_and_si256(b, low));
        _mm256_storeu_si256((__m256i *)(hi + i), _mm256_permute4x64_epi64(h, 0xD8));
        _mm256_storeu_si256((__m256i *)(lo + i), _mm256_permute4x64_epi64(l, 0xD8));
    }
}

AVX2 void plm_qgemv16_repacked_avx2(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1) {
    // Split once per call, shared by every tile (cols ≤ a few ten thousand: stack).
    int8_t hi[w->cols];
    uint8_t lo[w->cols];
    split16(a->q, w->cols, hi, lo);
    repacked_gemv(w, NULL, hi, lo, a->d, a->sum, y, tile0, tile1);
}
#endif

// Shared inline helpers and internal declarations of the kernels (not part of the public
// header). Layering: qref.c (the reference) at the bottom calls nothing faster; each
// instruction set's kernels (qavx2.c, qrepack_avx2.c, vecmath_avx2.c, qavx512.c, qgemm_avx512.c, qint16_avx512.c, qrepack.c,
// vecmath_avx512.c)
// sit above it and may call it for tails; dispatch.c at the top picks one at run time.
#ifndef PLM_QCOMMON_H
#define PLM_QCOMMON_H
#include "CPLMKernels.h"
#include <string.h>
#include <math.h>

static inline float plm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent == 0) {
        float m = (float)mantissa * 0x1p-24f;
        return sign ? -m : m;
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t plm_load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/// Compiler targets, defined once. "AVX-512" means AVX-512 F/BW/VL/DQ with VNNI and VBMI
/// throughout (Zen 4/5, Ice Lake and later), so one CPU check covers every AVX-512 kernel.
#define PLM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PLM_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx512dq")))

/// 6-bit field i (0…7) of the 6 bytes at p.
static inline int plm_six_bit(const uint8_t *p, int i) {
    uint64_t bits = 0;
    memcpy(&bits, p, 6);
    return (int)((bits >> (6 * i)) & 0x3F);
}

static inline int64_t plm_blocks(int64_t cols) { return (cols + 31) / 32; }

/// Length of group g in a row of `cols` values.
static inline int64_t plm_group_length(const plm_qmatrix *w, int64_t g) {
    int64_t rest = w->cols - g * w->group;
    return rest < w->group ? rest : w->group;
}

/// Byte offset of group g's levels inside a row.
static inline int64_t plm_group_offset(const plm_qmatrix *w, int64_t g) {
    return (w->kind == PLM_Q8_SYM || w->kind == PLM_Q8_ASYM) ? g * w->group : g * w->group / 2;
}

static inline int plm_is_int4(const plm_qmatrix *w) { return w->kind >= PLM_Q4_SYM; }

/// Row r's first 32 levels in the row-interleaved int8 copy (plm_layout.h); its block b lies
/// 32·PLM_Q8_TILE_ROWS·b bytes further.
static inline const uint8_t *plm_q8_tile_row(const uint8_t *tiles, int64_t cols, int64_t r) {
    return tiles + (r / PLM_Q8_TILE_ROWS) * PLM_Q8_TILE_ROWS * cols + 32 * (r % PLM_Q8_TILE_ROWS);
}

/// The k6 scale block (see plm_layout.h) that holds group g of row r.
static inline const uint8_t *plm_k6_block(const plm_qmatrix *w, int64_t r, int64_t g) {
    return w->scales + r * w->scale_row_bytes + (g / PLM_K6_GROUPS) * PLM_K6_BLOCK_BYTES;
}

/// Unsigned level j of group g (0 ≤ j < group length) of row r.
static inline int plm_level(const plm_qmatrix *w, int64_t r, int64_t g, int64_t j) {
    const uint8_t *p = w->data + r * w->data_row_bytes + plm_group_offset(w, g);
    if (!plm_is_int4(w)) {
        return w->kind == PLM_Q8_SYM ? (int)(int8_t)p[j] + 128 : (int)p[j];
    }
    int64_t n = plm_group_length(w, g), h = (n + 1) / 2;
    return j < h ? (p[j] & 0x0F) : (p[j - h] >> 4);
}

/// Level j of group g of row r as a signed value v, with w = s·v + shift: the int8 kinds read
/// v = L − 128 (shift = m + 128s, zero for symmetric), so the int16 kernels' integer sums stay
/// small and no large offset cancels in floating point; int4 reads v = L (shift = m).
static inline int plm_signed_level(const plm_qmatrix *w, int64_t r, int64_t g, int64_t j) {
    return plm_is_int4(w) ? plm_level(w, r, g, j) : plm_level(w, r, g, j) - 128;
}
static inline float plm_level_shift(const plm_qmatrix *w, float s, float m) {
    return plm_is_int4(w) ? m : m + 128.0f * s;
}

#if defined(__x86_64__)
#include <immintrin.h>
/// Sum of the 8 lanes (shared by the AVX2 and AVX-512 kernels).
PLM_TARGET_AVX2 static inline float plm_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// 4 activation bytes at p broadcast to all 16 lanes straight from memory (one load uop), for
/// the vpdpbusd kernels over row-interleaved tiles.
typedef int32_t __attribute__((may_alias, aligned(1))) plm_i32u;
#define BCAST4(p) _mm512_set1_epi32(*(const plm_i32u *)(p))

/// The 16 rows' scales (index · d) and minimums (index · −dmin) of one repacked block
/// (plm_layout.h), from its super-block's d and −dmin.
PLM_TARGET_AVX512 static inline __m512 plm_rp_indices(const uint8_t *block, int field, __m512 factor) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(block + field)))), factor);
}
#endif

/// Bytes ahead of the current repacked block that the decode kernels prefetch (PLM_PREFETCH at
/// build time to experiment).
#ifndef PLM_PREFETCH
#define PLM_PREFETCH 2048
#endif
/// Asks for the cache lines of one repacked block PLM_PREFETCH bytes ahead of `p`: the weights
/// stream from memory once per token, and the hardware prefetcher alone left a single core's
/// decode GEMV at about 60 % of its read bandwidth.
static inline void plm_prefetch_block(const uint8_t *p) {
    for (int o = 0; o < PLM_RP_BLOCK_BYTES; o += 64) __builtin_prefetch(p + PLM_PREFETCH + o, 0, 3);
}

/// The same for `bytes` (a multiple of 64) of a row-major level stream at p.
static inline void plm_prefetch_ahead(const uint8_t *p, int bytes) {
    for (int o = 0; o < bytes; o += 64) __builtin_prefetch(p + PLM_PREFETCH + o, 0, 3);
}

int plm_cpu_has_avx2(void);
int plm_cpu_has_avx512(void);

// The references of the repacked GEMVs (qrepack.c).
void plm_qgemv_repacked_ref(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1);
void plm_qgemv16_repacked_ref(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1);
void plm_qgemv16_q8tiles_ref(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a, float *y, int64_t r0, int64_t r1);

// The reference (qref.c).
void plm_qgemv_ref(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1);
float plm_qdot_tail(const plm_qmatrix *w, const plm_qact *a, int64_t r, int64_t first_group);
/// Groups from `first_group` to the end of row r with fp32 activations, scalar.
float plm_qdot_f32_tail(const plm_qmatrix *w, const float *x, int64_t r, int64_t first_group);
float plm_exp_shift_sum_ref(float *x, int64_t n, float shift);
void plm_gelu_erf_ref(float *x, int64_t n);
void plm_silu_mul_ref(float *gate, const float *up, int64_t n);

// AVX2 (qavx2.c).
void plm_qgemv_avx2(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1);
void plm_qgemv_f32_avx2(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1);
void plm_qgemv16_avx2(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1);
uint64_t plm_read_bytes_avx2(const void *data, size_t bytes);
double plm_int8_dot_peak_avx2(int64_t iterations);
void plm_qgemv_repacked_avx2(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1);
void plm_qgemv16_repacked_avx2(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1);
float plm_exp_shift_sum_avx2(float *x, int64_t n, float shift);
void plm_gelu_erf_avx2(float *x, int64_t n);
void plm_silu_mul_avx2(float *gate, const float *up, int64_t n);
void plm_quantize_activations_avx2(const float *x, int64_t cols, int8_t *q, float *d, float *sum);
void plm_quantize_activations16_avx2(const float *x, int64_t cols, int16_t *q, float *d, float *sum);
float plm_max_avx2(const float *x, int64_t n);
void plm_qgemm_repacked_avx2(const plm_q4k6_repacked *w, const int8_t *q, const float *ad, const float *asum,
                             int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1);
void plm_qgemv16_q8tiles_avx2(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a, float *y, int64_t r0, int64_t r1);

// AVX-512 (qavx512.c, qgemm_avx512.c, qrepack.c, vecmath_avx512.c).
void plm_qgemv_avx512(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1);
/// Activation rows of the AVX-512 tile GEMMs (row m of each array at m·blocks·32 or m·blocks):
/// int8 values q, or (q = NULL) int16 values split into bytes, hi = q16 >> 8 and lo = q16 & 255,
/// with lo_sum = Σ lo per block for the int8 weight kinds' correction.
typedef struct {
    const int8_t *q;
    const int8_t *hi;
    const uint8_t *lo;
    const int32_t *lo_sum;
    const float *d;
    const float *sum;
} plm_tile_act;
void plm_qgemm_avx512(const plm_qmatrix *w, const plm_tile_act *a, int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1);
void plm_row_scales_avx512(const plm_qmatrix *w, int64_t r, int64_t groups, float *scales, float *mins);
void plm_qgemv_repacked_avx512(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1);
void plm_qgemm_repacked_avx512(const plm_q4k6_repacked *w, const plm_tile_act *a, int64_t rows, float *y, int64_t ldy,
                               int64_t tile0, int64_t tile1);
float plm_exp_shift_sum_avx512(float *x, int64_t n, float shift);
// AVX-512 with int16 activations (qint16_avx512.c).
void plm_qgemv16_avx512(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1);
void plm_qgemv16_repacked_avx512(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1);
void plm_split_activations16_avx512(const int16_t *q, int64_t n, int8_t *hi, uint8_t *lo);
/// Splits `rows` rows of int16 activations (blocks·32 values each) for the tile GEMMs into
/// `hi`, `lo` and `lo_sum` (Σ lo per block).
void plm_split_rows16_avx512(const int16_t *q, int64_t rows, int64_t blocks, int8_t *hi, uint8_t *lo, int32_t *lo_sum);
void plm_gelu_erf_avx512(float *x, int64_t n);
void plm_silu_mul_avx512(float *gate, const float *up, int64_t n);
void plm_quantize_activations_avx512(const float *x, int64_t cols, int8_t *q, float *d, float *sum);
void plm_quantize_activations16_avx512(const float *x, int64_t cols, int16_t *q, float *d, float *sum);
float plm_max_avx512(const float *x, int64_t n);
double plm_int8_dot_peak_avx512(int64_t iterations);
double plm_seconds(void);
#endif

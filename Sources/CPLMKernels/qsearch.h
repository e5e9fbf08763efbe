// Shared scalar pieces of the quantizers' scale searches (qsearch.c, qsearch_avx2.c): the group
// as 8-lane chunks, f16 rounding, the least-squares solutions and the stores. Each mirrors a
// piece of the Swift reference (Sources/PLMQuant) operation for operation, in the same order
// and without fused multiply-adds, so the C paths write the same bytes.
#ifndef PLM_QSEARCH_H
#define PLM_QSEARCH_H
#include "qcommon.h"
#include <math.h>

#define QS_MAX_GROUP 256
#define QS_STEPS 20
#define QS_STEP_SIZE 0.1f
#define QS_SHRINK 0.001f
/// Float16.nan: the marker of a group that holds a NaN or ±Inf (RowQuantizer.nonFiniteMarker).
#define QS_NONFINITE ((uint16_t)0x7E00)
#define QS_MAGIC 12582912.0f

/// One group (GroupLanes): values in 8-lane chunks, zero past the end; mask 1 for the group's
/// values and 0 past it; weights ω (the mask itself when uniform).
typedef struct {
    float v[QS_MAX_GROUP] __attribute__((aligned(32)));
    float m[QS_MAX_GROUP] __attribute__((aligned(32)));
    float w[QS_MAX_GROUP] __attribute__((aligned(32)));
    int n, chunks;
    int uniform;  // every weight is 1 (products with ω or the mask of a full chunk are exact no-ops)
    int finite;
} qs_group;

typedef struct { float sse, scale, min; } qs_asym_best;
typedef struct { int64_t data, scales, mins; } qs_row_bytes;

static inline void qs_load(qs_group *g, const float *x, const float *w, int n) {
    int chunks = (n + 7) / 8, end = chunks * 8;
    g->n = n;
    g->chunks = chunks;
    g->uniform = w == NULL;
    // Plain loops without a branch per element: a conditional per lane compiled to masked
    // stores, which were a third of the converter's time.
    memcpy(g->v, x, (size_t)n * sizeof(float));
    int finite = 1;
    for (int j = 0; j < n; j++) {
        uint32_t bits;
        memcpy(&bits, &x[j], 4);
        finite &= (bits & 0x7F800000u) != 0x7F800000u;  // an all-ones exponent: NaN or ±Inf
    }
    for (int j = 0; j < n; j++) g->m[j] = 1;
    if (w) memcpy(g->w, w, (size_t)n * sizeof(float));
    else for (int j = 0; j < n; j++) g->w[j] = 1;
    for (int j = n; j < end; j++) { g->v[j] = 0; g->m[j] = 0; g->w[j] = 0; }
    g->finite = finite;
}

static inline int qs_group_length(int64_t cols, int group, int64_t i) {
    int64_t rest = cols - i * group;
    return (int)(rest < group ? rest : group);
}

static inline qs_row_bytes qs_layout(int kind, int group, int64_t cols) {
    int64_t groups = (cols + group - 1) / group;
    qs_row_bytes b = { 0, 0, 0 };
    if (kind == PLM_Q8_SYM || kind == PLM_Q8_ASYM) {
        b.data = cols;
        b.scales = 2 * groups;
        b.mins = kind == PLM_Q8_ASYM ? 2 * groups : 0;
    } else {
        b.data = (cols / group) * (group / 2) + ((cols % group) + 1) / 2;
        b.scales = kind == PLM_Q4_ASYM_K6 ? 16 * ((groups + 7) / 8) : 2 * groups;
        b.mins = kind == PLM_Q4_ASYM_F16 ? 2 * groups : 0;
    }
    return b;
}

/// Sequential sum of 8 lanes from −0, as Swift's SIMD8.sum() (−0 + a = a for every a).
static inline float qs_sum8(const float *a) {
    float s = a[0];
    for (int l = 1; l < 8; l++) s = s + a[l];
    return s;
}

/// Float(x) → Float16(x): round to nearest even, overflow to ±Inf, NaN kept quiet with its
/// payload's top bits (as compiler-rt's __truncsfhf2 and F16C do).
static inline uint16_t qs_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((ax & 0x003FFFFFu) >> 13));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  // ≥ 65520 (and ∞) → ∞
    if (ax >= 0x38800000u) {                                   // a normal f16
        uint32_t r = ax - 0x38000000u, h = r >> 13, rest = r & 0x1FFF;
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t e = ax >> 23;
    if (e < 102) return sign;                                  // below 2^-25: zero
    uint32_t m = (ax & 0x7FFFFFu) | 0x800000u, shift = 126 - e;
    uint32_t h = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline int qs_f16_isnan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }

/// Float16.nextUp.
static inline uint16_t qs_f16_next_up(uint16_t h) {
    if (qs_f16_isnan(h) || h == 0x7C00) return h;
    if ((h & 0x7FFF) == 0) return 1;
    return (h & 0x8000) ? (uint16_t)(h - 1) : (uint16_t)(h + 1);
}

/// Float16.nextDown = −(−x).nextUp.
static inline uint16_t qs_f16_next_down(uint16_t h) { return (uint16_t)(qs_f16_next_up((uint16_t)(h ^ 0x8000)) ^ 0x8000); }

/// GroupSearch.f16Neighbours: the f16 values just below and above x (x itself when exact).
static inline int qs_f16_neighbours(float x, uint16_t *out) {
    uint16_t h = qs_f16(x);
    float fh = plm_f16_to_f32(h);
    if (fh == x) { out[0] = h; return 1; }
    if (fh < x) { out[0] = h; out[1] = qs_f16_next_up(h); }
    else { out[0] = qs_f16_next_down(h); out[1] = h; }
    return 2;
}

/// GroupSearch.pickBest: the first of the lowest errors (a NaN never wins, nor beats a first NaN).
static inline int qs_pick(const float *err, int n) {
    int best = 0;
    float be = err[0];
    for (int k = 1; k < n; k++) if (err[k] < be) { be = err[k]; best = k; }
    return best;
}

/// The candidate a scan "if err[k] < best { best = err[k] }" from best = +Inf keeps: the first
/// of the lowest errors, −1 when none is below +Inf (a NaN never wins; a rejected candidate
/// carries +Inf).
static inline int qs_first_min(const float *err, int count) {
    int best = -1;
    float be = INFINITY;
    for (int k = 0; k < count; k++) {
        if (err[k] < be) { be = err[k]; best = k; }
    }
    return best;
}

/// GroupSearch.level: clamp then round half to even; NaN gives lo.
static inline float qs_level(float x, float lo, float hi) {
    float c = x >= lo ? (x <= hi ? x : hi) : lo;
    return (c + QS_MAGIC) - QS_MAGIC;
}

/// GroupSearch.levels on one lane: NaN stays NaN.
static inline float qs_levels1(float x, float lo, float hi) {
    float c = x < lo ? lo : x;
    c = x > hi ? hi : c;
    return (c + QS_MAGIC) - QS_MAGIC;
}

/// GroupSearch.clamp.
static inline int qs_clamp_index(float x, int lo, int hi) {
    if (!isfinite(x)) return x > 0 ? hi : lo;
    float flo = (float)lo, fhi = (float)hi;
    float a = flo >= x ? flo : x;
    float b = fhi < a ? fhi : a;
    return (int)b;
}

static inline void qs_sym_update(float sqq, float sqw, float sumWW, float *best_sse, float *best_scale) {
    if (!(sqq > 0)) return;
    float s = sqw / sqq;
    float sse = sumWW - s * sqw;
    if (sse < *best_sse) { *best_sse = sse; *best_scale = s; }
}

/// The least-squares (scale, min) of one asymmetric candidate and its error Σω(s·q + m − w)²;
/// 0 when the candidate is rejected.
static inline int qs_asym_solve1(float sq, float sqq, float sqw, float fn, float sumW, float sumWW, int non_positive_min,
                                 float *scale, float *min, float *sse) {
    float det = fn * sqq - sq * sq;
    if (!(det > 0)) return 0;
    float s = (fn * sqw - sq * sumW) / det;
    float m = (sqq * sumW - sq * sqw) / det;
    if (non_positive_min && m > 0) { m = 0; s = sqw / sqq; }
    if (!(s > 0)) return 0;
    *sse = (((((s * s) * sqq + ((2 * s) * m) * sq) - (2 * s) * sqw) + (fn * m) * m) - (2 * m) * sumW) + sumWW;
    *scale = s;
    *min = m;
    return 1;
}

static inline void qs_asym_update(float sq, float sqq, float sqw, float fn, float sumW, float sumWW, int non_positive_min,
                                  qs_asym_best *best) {
    float s, m, sse;
    if (!qs_asym_solve1(sq, sqq, sqw, fn, sumW, sumWW, non_positive_min, &s, &m, &sse)) return;
    if (sse < best->sse) { best->sse = sse; best->scale = s; best->min = m; }
}

/// The minimum and maximum of the group in element order, as Swift.min/max fold them
/// (min keeps the first of equal values, max the last: only the sign of a zero can tell).
static inline void qs_minmax_seq(const qs_group *g, float *lo, float *hi) {
    float a = INFINITY, b = -INFINITY;
    for (int j = 0; j < g->n; j++) {
        float x = g->v[j];
        a = x < a ? x : a;
        b = x >= b ? x : b;
    }
    *lo = a;
    *hi = b;
}

/// The largest |x| of the group (its value only; used where only a positive maximum matters).
static inline float qs_abs_max_scalar(const qs_group *g) {
    float a = 0;
    for (int j = 0; j < g->chunks * 8; j++) { float v = fabsf(g->v[j]); a = v >= a ? v : a; }
    return a;
}

static inline void qs_store_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/// Nibbles.pack: byte j holds level j (low nibble) and level j + ceil(n/2) (high nibble).
static inline void qs_pack_nibbles(const uint8_t *levels, int n, uint8_t *out) {
    int h = (n + 1) / 2;
    for (int j = 0; j < h; j++) {
        uint8_t high = j + h < n ? levels[j + h] : 0;
        out[j] = (uint8_t)((levels[j] & 0x0F) | (high << 4));
    }
}

/// SixBit.pack: eight 6-bit fields in 6 bytes.
static inline void qs_pack_six_bits(const int *v, uint8_t *out) {
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits |= (uint64_t)(v[i] & 0x3F) << (6 * i);
    for (int k = 0; k < 6; k++) out[k] = (uint8_t)(bits >> (8 * k));
}

static inline int qs_all_finite(const float *x, int n) {
    for (int j = 0; j < n; j++) if (!isfinite(x[j])) return 0;
    return 1;
}

static inline void qs_assign_asymmetric(const float *x, int n, float scale, float min, int top, uint8_t *levels) {
    float inverse = scale > 0 ? 1 / scale : 0;
    for (int j = 0; j < n; j++) levels[j] = (uint8_t)qs_level((x[j] - min) * inverse, 0, (float)top);
}

/// Int8Codec.asymmetric (range-based, no search).
static inline void qs_int8_asymmetric(const float *w, int n, uint8_t *q, uint16_t *scale, uint16_t *min) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) { lo = w[i] < lo ? w[i] : lo; hi = w[i] >= hi ? w[i] : hi; }
    uint16_t m = qs_f16(lo);
    if (plm_f16_to_f32(m) > lo) m = qs_f16_next_down(m);
    float fm = plm_f16_to_f32(m);
    uint16_t s = qs_f16((hi - fm) / 255);
    if (plm_f16_to_f32(s) * 255 + fm < hi) s = qs_f16_next_up(s);
    float fs = plm_f16_to_f32(s);
    float inverse = fs > 0 ? 1 / fs : 0;
    for (int i = 0; i < n; i++) q[i] = (uint8_t)qs_level((w[i] - fm) * inverse, 0, 255);
    *scale = s;
    *min = m;
}

static inline void qs_store_nonfinite_super_block(int64_t cols, int group, int64_t groups, int64_t b, uint8_t *data, uint8_t *scales) {
    int64_t first = b * 8;
    int count = (int)(groups - first < 8 ? groups - first : 8);
    uint8_t zeros[QS_MAX_GROUP] = { 0 };
    for (int j = 0; j < count; j++) qs_pack_nibbles(zeros, qs_group_length(cols, group, first + j), data + (first + j) * group / 2);
    uint8_t *s = scales + b * 16;
    qs_store_u16(s, QS_NONFINITE);
    qs_store_u16(s + 2, QS_NONFINITE);
    memset(s + 4, 0, 12);
}

/// Adds one group's terms to the converter's error sums (plm_quantization_error): b holds the
/// group's reconstruction, as RowQuantizer.dequantize computes it.
static inline void qs_error_terms(const float *x, const float *w, int n, const float *b, double *sums) {
    double sse = sums[0], norm = sums[1], weighted = sums[2];
    for (int j = 0; j < n; j++) {
        if (!isfinite(x[j]) || !isfinite(b[j])) continue;
        double e = (double)(x[j] - b[j]);
        sse += e * e;
        weighted += w ? ((double)w[j] * e) * e : e * e;
        norm += (double)x[j] * (double)x[j];
    }
    sums[0] = sse;
    sums[1] = norm;
    sums[2] = weighted;
}

/// qs_error_terms for a group whose values and reconstruction are known to be finite: no test
/// per element, and without weights one chain for both error sums (they add the same terms, so
/// they stay equal through a whole unweighted call).
static inline void qs_error_terms_finite(const float *x, const float *w, int n, const float *b, double *sums) {
    if (w) { qs_error_terms(x, w, n, b, sums); return; }
    double sse = sums[0], norm = sums[1];
    for (int j = 0; j < n; j++) {
        double e = (double)(x[j] - b[j]);
        sse += e * e;
        norm += (double)x[j] * (double)x[j];
    }
    sums[0] = sse;
    sums[1] = norm;
    sums[2] = sse;
}

/// The reconstruction of n levels L: s·L + m, or s·(L − 8) for int4 symmetric.
static inline void qs_reconstruct(int kind, const uint8_t *levels, int n, float s, float m, float *b) {
    if (kind == PLM_Q4_SYM) for (int j = 0; j < n; j++) b[j] = s * (float)((int)levels[j] - 8);
    else for (int j = 0; j < n; j++) b[j] = s * (float)levels[j] + m;
}

int plm_qsearch_first_min_avx2(const float *err, int count);
void plm_quantize_rows_avx2(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                            int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums);
#endif

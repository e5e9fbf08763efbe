// The quantizers' scale searches with AVX2: the same sums as the portable twin (qsearch.c) and
// the Swift reference, lane for lane and in the same order, so the same bytes. Two layouts:
// one candidate across the 8 lanes of a chunk (the reference's layout, for single candidates
// and error evaluations), and 8 candidates across the lanes with the group's values broadcast
// one at a time (the grids of 21–41 candidates: lane l of every reference accumulator becomes
// one accumulator register, and the reference's final lane sum becomes 7 vector adds for 8
// candidates at once, so the horizontal sums and the least-squares solutions cost 1/8).
// Rounding uses vroundps (nearest even), which differs from the reference's 1.5·2^23 trick
// only in the sign of a zero level; no sum, product or stored level can see that sign.
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)
#if defined(__x86_64__)
#include "qsearch.h"
#include <float.h>
#include <immintrin.h>

#define AVX2 PLM_TARGET_AVX2
#define QS(name) avx2_##name

AVX2 static inline __m256 qv_round(__m256 x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

/// GroupSearch.levels: clamp to [lo, hi] keeping NaN (max/min return their second operand
/// when either is NaN), then round.
AVX2 static inline __m256 qv_levels(__m256 x, __m256 lo, __m256 hi) {
    return qv_round(_mm256_min_ps(hi, _mm256_max_ps(lo, x)));
}

AVX2 static inline float qv_sum(__m256 v) {
    float a[8] __attribute__((aligned(32)));
    _mm256_store_ps(a, v);
    return qs_sum8(a);
}

AVX2 static void avx2_sym_stats(const qs_group *g, float *vmax, float *sumWW) {
    __m256 ww = _mm256_setzero_ps(), amax = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int c = 0; c < g->chunks; c++) {
        __m256 x = _mm256_load_ps(g->v + 8 * c);
        ww = _mm256_add_ps(ww, _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(g->w + 8 * c), x), x));
        amax = _mm256_max_ps(amax, _mm256_and_ps(x, absmask));
    }
    *sumWW = qv_sum(ww);
    // The reference keeps the first value of the largest magnitude (its sign is the scale's).
    float a[8] __attribute__((aligned(32)));
    _mm256_store_ps(a, amax);
    float m = a[0];
    for (int l = 1; l < 8; l++) m = a[l] > m ? a[l] : m;
    float vm = 0;
    if (m > 0) {
        for (int j = 0; j < g->n; j++) if (fabsf(g->v[j]) == m) { vm = g->v[j]; break; }
    }
    *vmax = vm;
}

AVX2 static float avx2_abs_max(const qs_group *g) {
    __m256 amax = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int c = 0; c < g->chunks; c++) amax = _mm256_max_ps(amax, _mm256_and_ps(_mm256_load_ps(g->v + 8 * c), absmask));
    float a[8] __attribute__((aligned(32)));
    _mm256_store_ps(a, amax);
    float m = a[0];
    for (int l = 1; l < 8; l++) m = a[l] > m ? a[l] : m;
    return m;
}

AVX2 static void avx2_asym_stats(const qs_group *g, float *lo, float *hi, float *fn, float *sumW, float *sumWW) {
    __m256 sw = _mm256_setzero_ps(), ww = _mm256_setzero_ps(), w1 = _mm256_setzero_ps();
    __m256 vlo = _mm256_set1_ps(INFINITY), vhi = _mm256_set1_ps(-INFINITY);
    int full = g->n / 8;
    for (int c = 0; c < g->chunks; c++) {
        __m256 x = _mm256_load_ps(g->v + 8 * c), om = _mm256_load_ps(g->w + 8 * c);
        sw = _mm256_add_ps(sw, _mm256_mul_ps(om, x));
        ww = _mm256_add_ps(ww, _mm256_mul_ps(_mm256_mul_ps(om, x), x));
        w1 = _mm256_add_ps(w1, om);
        if (c < full) { vlo = _mm256_min_ps(vlo, x); vhi = _mm256_max_ps(vhi, x); }
    }
    float a[8] __attribute__((aligned(32))), b[8] __attribute__((aligned(32)));
    _mm256_store_ps(a, vlo);
    _mm256_store_ps(b, vhi);
    float l0 = a[0], h0 = b[0];
    for (int l = 1; l < 8; l++) { l0 = a[l] < l0 ? a[l] : l0; h0 = b[l] > h0 ? b[l] : h0; }
    for (int j = full * 8; j < g->n; j++) { float x = g->v[j]; l0 = x < l0 ? x : l0; h0 = x > h0 ? x : h0; }
    // Values are exact; only which zero (±0) the reference's in-order fold keeps can differ.
    if (l0 == 0 || h0 == 0) qs_minmax_seq(g, &l0, &h0);
    *lo = l0;
    *hi = h0;
    *fn = qv_sum(w1);
    *sumW = qv_sum(sw);
    *sumWW = qv_sum(ww);
}

/// Σωq², Σωqw of one candidate, one chunk per vector (the reference's layout).
AVX2 static void sym_moments1(const qs_group *g, float inv, __m256 vlo, __m256 vhi, float *sqq, float *sqw) {
    __m256 vi = _mm256_set1_ps(inv), qq = _mm256_setzero_ps(), qw = _mm256_setzero_ps();
    for (int c = 0; c < g->chunks; c++) {
        __m256 x = _mm256_load_ps(g->v + 8 * c);
        __m256 q = _mm256_mul_ps(qv_levels(_mm256_mul_ps(vi, x), vlo, vhi), _mm256_load_ps(g->m + 8 * c));
        __m256 wq = _mm256_mul_ps(_mm256_load_ps(g->w + 8 * c), q);
        qq = _mm256_add_ps(qq, _mm256_mul_ps(wq, q));
        qw = _mm256_add_ps(qw, _mm256_mul_ps(wq, x));
    }
    *sqq = qv_sum(qq);
    *sqw = qv_sum(qw);
}

/// Up to 8 candidates, one per lane. Lane l of the reference's accumulators sums elements
/// l, l + 8, l + 16, … in that order; here that is one register per l, added up in l order.
/// Past the group's end the reference's terms are ω·q·mask with mask 0: zero unless q is NaN or
/// ±Inf, which they must still spread; they are computed the same way.
AVX2 static void sym_moments8(const qs_group *g, const float *inv, __m256 vlo, __m256 vhi, float *sqq, float *sqw) {
    __m256 vi = _mm256_loadu_ps(inv), zero = _mm256_setzero_ps();
    __m256 tq = zero, tw = zero;
    int n = g->n, uniform = g->uniform;
    for (int l = 0; l < 8; l++) {
        __m256 qq = zero, qw = zero;
        for (int c = 0; c < g->chunks; c++) {
            int j = 8 * c + l;
            __m256 x = _mm256_broadcast_ss(g->v + j);
            __m256 q = qv_levels(_mm256_mul_ps(vi, x), vlo, vhi);
            __m256 wq;
            if (j >= n) { q = _mm256_mul_ps(q, zero); wq = _mm256_mul_ps(zero, q); }
            else wq = uniform ? q : _mm256_mul_ps(_mm256_broadcast_ss(g->w + j), q);
            qq = _mm256_add_ps(qq, _mm256_mul_ps(wq, q));
            qw = _mm256_add_ps(qw, _mm256_mul_ps(wq, x));
        }
        if (l == 0) { tq = qq; tw = qw; }
        else { tq = _mm256_add_ps(tq, qq); tw = _mm256_add_ps(tw, qw); }
    }
    _mm256_storeu_ps(sqq, tq);
    _mm256_storeu_ps(sqw, tw);
}

AVX2 static void avx2_sym_moments(const qs_group *g, const float *inv, int count, int lo, int hi, float *sqq, float *sqw) {
    __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi);
    int k = 0;
    for (; k + 2 <= count; k += 8) sym_moments8(g, inv + k, vlo, vhi, sqq + k, sqw + k);
    for (; k < count; k++) sym_moments1(g, inv[k], vlo, vhi, sqq + k, sqw + k);
}

/// An 8×8 transpose: lane l of out[k] is lane k of r[l].
AVX2 static inline void qv_transpose8(const __m256 *r, __m256 *out) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    out[0] = _mm256_permute2f128_ps(u0, u4, 0x20); out[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    out[2] = _mm256_permute2f128_ps(u2, u6, 0x20); out[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    out[4] = _mm256_permute2f128_ps(u0, u4, 0x31); out[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    out[6] = _mm256_permute2f128_ps(u2, u6, 0x31); out[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/// Lane k of the result is the reference's lane sum of r[k] (lanes added in order), for 8
/// vectors at once: an 8×8 transpose, then 7 vector adds.
AVX2 static inline __m256 qv_sums8(const __m256 *r) {
    __m256 c[8];
    qv_transpose8(r, c);
    __m256 sum = _mm256_add_ps(c[0], c[1]);
    for (int l = 2; l < 8; l++) sum = _mm256_add_ps(sum, c[l]);
    return sum;
}

AVX2 static void avx2_sym_errors(const qs_group *g, const float *scales, int count, int lo, int hi, float *err) {
    __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi);
    for (int k0 = 0; k0 < count; k0 += 8) {
        __m256 e[8];
        for (int k = 0; k < 8; k++) {
            e[k] = _mm256_setzero_ps();
            if (k0 + k >= count) continue;
            float s = scales[k0 + k];
            __m256 vs = _mm256_set1_ps(s), vi = _mm256_set1_ps(s == 0 ? 0 : 1 / s), acc = _mm256_setzero_ps();
            for (int c = 0; c < g->chunks; c++) {
                __m256 x = _mm256_load_ps(g->v + 8 * c);
                __m256 d = _mm256_sub_ps(_mm256_mul_ps(vs, qv_levels(_mm256_mul_ps(x, vi), vlo, vhi)), x);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(g->w + 8 * c), d), d));
            }
            e[k] = acc;
        }
        _mm256_storeu_ps(err + k0, qv_sums8(e));
    }
}

AVX2 static void asym_moments1(const qs_group *g, float inv, float off, __m256 vtop, float *sq, float *sqq, float *sqw) {
    __m256 vi = _mm256_set1_ps(inv), vo = _mm256_set1_ps(off), zero = _mm256_setzero_ps();
    __m256 q1 = zero, qq = zero, qw = zero;
    for (int c = 0; c < g->chunks; c++) {
        __m256 x = _mm256_load_ps(g->v + 8 * c);
        __m256 q = _mm256_mul_ps(qv_levels(_mm256_mul_ps(vi, _mm256_sub_ps(x, vo)), zero, vtop), _mm256_load_ps(g->m + 8 * c));
        __m256 wq = _mm256_mul_ps(_mm256_load_ps(g->w + 8 * c), q);
        q1 = _mm256_add_ps(q1, wq);
        qq = _mm256_add_ps(qq, _mm256_mul_ps(wq, q));
        qw = _mm256_add_ps(qw, _mm256_mul_ps(wq, x));
    }
    *sq = qv_sum(q1);
    *sqq = qv_sum(qq);
    *sqw = qv_sum(qw);
}

AVX2 static void asym_moments8(const qs_group *g, const float *inv, const float *off, __m256 vtop, float *sq, float *sqq, float *sqw) {
    __m256 vi = _mm256_loadu_ps(inv), vo = _mm256_loadu_ps(off), zero = _mm256_setzero_ps();
    __m256 t1 = zero, tq = zero, tw = zero;
    int n = g->n, uniform = g->uniform;
    for (int l = 0; l < 8; l++) {
        __m256 q1 = zero, qq = zero, qw = zero;
        for (int c = 0; c < g->chunks; c++) {
            int j = 8 * c + l;
            __m256 x = _mm256_broadcast_ss(g->v + j);
            __m256 q = qv_levels(_mm256_mul_ps(vi, _mm256_sub_ps(x, vo)), zero, vtop);
            __m256 wq;
            if (j >= n) { q = _mm256_mul_ps(q, zero); wq = _mm256_mul_ps(zero, q); }
            else wq = uniform ? q : _mm256_mul_ps(_mm256_broadcast_ss(g->w + j), q);
            q1 = _mm256_add_ps(q1, wq);
            qq = _mm256_add_ps(qq, _mm256_mul_ps(wq, q));
            qw = _mm256_add_ps(qw, _mm256_mul_ps(wq, x));
        }
        if (l == 0) { t1 = q1; tq = qq; tw = qw; }
        else { t1 = _mm256_add_ps(t1, q1); tq = _mm256_add_ps(tq, qq); tw = _mm256_add_ps(tw, qw); }
    }
    _mm256_storeu_ps(sq, t1);
    _mm256_storeu_ps(sqq, tq);
    _mm256_storeu_ps(sqw, tw);
}

/// asym_moments8 for the common case, with the same sums: a full group of uniform weights
/// whose values all lie at or above one shared offset, and finite positive inverse scales. Then
/// every d = x − off is finite and ≥ 0 (−0 only as −0 − (+0)), so inv·d is ≥ 0 or −0 and never
/// NaN, and the clamp at 0 returns it unchanged (max returns its second operand on equal zeros):
/// the clamp is dropped and d is computed once, not per batch. With uniform weights Σq and Σq²
/// add integers below 2^24, so they are exact in any form: q·q + acc is one fused multiply-add.
AVX2 static void asym_moments8_shifted(const qs_group *g, const float *d, const float *inv, __m256 vtop,
                                       float *sq, float *sqq, float *sqw) {
    __m256 vi = _mm256_loadu_ps(inv), zero = _mm256_setzero_ps();
    __m256 t1 = zero, tq = zero, tw = zero;
    // Two lanes l per pass: two independent accumulator chains hide the adds' latency.
    for (int l = 0; l < 8; l += 2) {
        __m256 a1 = zero, aq = zero, aw = zero, b1 = zero, bq = zero, bw = zero;
        for (int c = 0; c < g->chunks; c++) {
            int j = 8 * c + l;
            __m256 qa = qv_round(_mm256_min_ps(vtop, _mm256_mul_ps(vi, _mm256_broadcast_ss(d + j))));
            __m256 qb = qv_round(_mm256_min_ps(vtop, _mm256_mul_ps(vi, _mm256_broadcast_ss(d + j + 1))));
            a1 = _mm256_add_ps(a1, qa);
            b1 = _mm256_add_ps(b1, qb);
            aq = _mm256_fmadd_ps(qa, qa, aq);
            bq = _mm256_fmadd_ps(qb, qb, bq);
            aw = _mm256_add_ps(aw, _mm256_mul_ps(qa, _mm256_broadcast_ss(g->v + j)));
            bw = _mm256_add_ps(bw, _mm256_mul_ps(qb, _mm256_broadcast_ss(g->v + j + 1)));
        }
        if (l == 0) { t1 = a1; tq = aq; tw = aw; }
        else { t1 = _mm256_add_ps(t1, a1); tq = _mm256_add_ps(tq, aq); tw = _mm256_add_ps(tw, aw); }
        t1 = _mm256_add_ps(t1, b1);
        tq = _mm256_add_ps(tq, bq);
        tw = _mm256_add_ps(tw, bw);
    }
    _mm256_storeu_ps(sq, t1);
    _mm256_storeu_ps(sqq, tq);
    _mm256_storeu_ps(sqw, tw);
}

/// Whether asym_moments8_shifted gives asym_moments8's sums for the first `lanes` candidates
/// (the rest are padding whose sums nobody reads); d receives x − off.
AVX2 static int asym_shifted_applies(const qs_group *g, const float *inv, const float *off, int lanes, float *d) {
    if (!g->uniform || g->n != 8 * g->chunks) return 0;
    for (int k = 1; k < lanes; k++) {
        uint32_t a, b;
        memcpy(&a, &off[k], 4);
        memcpy(&b, &off[0], 4);
        if (a != b) return 0;
    }
    const __m256 zero = _mm256_setzero_ps(), big = _mm256_set1_ps(FLT_MAX);
    // inv in (0, FLT_MAX]: positive and finite (NaN fails both compares).
    __m256 vi = _mm256_loadu_ps(inv);
    int ok = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(vi, zero, _CMP_GT_OQ), _mm256_cmp_ps(vi, big, _CMP_LE_OQ)));
    if ((ok & ((1 << lanes) - 1)) != (1 << lanes) - 1) return 0;
    __m256 vo = _mm256_set1_ps(off[0]), fine = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int c = 0; c < g->chunks; c++) {
        __m256 x = _mm256_sub_ps(_mm256_load_ps(g->v + 8 * c), vo);
        _mm256_store_ps(d + 8 * c, x);
        fine = _mm256_and_ps(fine, _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GE_OQ), _mm256_cmp_ps(x, big, _CMP_LE_OQ)));
    }
    return _mm256_movemask_ps(fine) == 0xFF;
}

AVX2 static void avx2_asym_moments(const qs_group *g, const float *inv, const float *off, int count, int top,
                                   float *sq, float *sqq, float *sqw) {
    __m256 vtop = _mm256_set1_ps((float)top);
    float d[QS_MAX_GROUP] __attribute__((aligned(32)));
    int k = 0;
    for (; k + 2 <= count; k += 8) {
        int lanes = count - k < 8 ? count - k : 8;
        if (asym_shifted_applies(g, inv + k, off + k, lanes, d)) asym_moments8_shifted(g, d, inv + k, vtop, sq + k, sqq + k, sqw + k);
        else asym_moments8(g, inv + k, off + k, vtop, sq + k, sqq + k, sqw + k);
    }
    for (; k < count; k++) asym_moments1(g, inv[k], off[k], vtop, sq + k, sqq + k, sqw + k);
}

/// qs_asym_solve1 lane by lane, the same operations: the least-squares scale, minimum and error
/// of each lane's candidate; a rejected candidate's error is +Inf.
AVX2 static inline void qv_solve(__m256 SQ, __m256 SQQ, __m256 SQW, __m256 FN, __m256 SW, __m256 SWW, int non_positive_min,
                                 __m256 *s_out, __m256 *m_out, __m256 *e_out) {
    const __m256 two = _mm256_set1_ps(2), zero = _mm256_setzero_ps();
    __m256 det = _mm256_sub_ps(_mm256_mul_ps(FN, SQQ), _mm256_mul_ps(SQ, SQ));
    __m256 s = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(FN, SQW), _mm256_mul_ps(SQ, SW)), det);
    __m256 m = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(SQQ, SW), _mm256_mul_ps(SQ, SQW)), det);
    if (non_positive_min) {
        __m256 pos = _mm256_cmp_ps(m, zero, _CMP_GT_OQ);
        m = _mm256_blendv_ps(m, zero, pos);
        s = _mm256_blendv_ps(s, _mm256_div_ps(SQW, SQQ), pos);
    }
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(det, zero, _CMP_GT_OQ), _mm256_cmp_ps(s, zero, _CMP_GT_OQ));
    __m256 ts = _mm256_mul_ps(two, s);
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(s, s), SQQ);
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(ts, m), SQ));
    e = _mm256_sub_ps(e, _mm256_mul_ps(ts, SQW));
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(FN, m), m));
    e = _mm256_sub_ps(e, _mm256_mul_ps(_mm256_mul_ps(two, m), SW));
    e = _mm256_add_ps(e, SWW);
    *s_out = s;
    *m_out = m;
    *e_out = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), e, ok);
}

/// qs_asym_solve1 for 8 candidates of one group at once.
AVX2 static void avx2_asym_solve(const float *sq, const float *sqq, const float *sqw, int count, float fn, float sumW, float sumWW,
                                 int non_positive_min, float *s_out, float *m_out, float *sse_out) {
    const __m256 FN = _mm256_set1_ps(fn), SW = _mm256_set1_ps(sumW), SWW = _mm256_set1_ps(sumWW);
    for (int k0 = 0; k0 < count; k0 += 8) {
        __m256 s, m, e;
        qv_solve(_mm256_loadu_ps(sq + k0), _mm256_loadu_ps(sqq + k0), _mm256_loadu_ps(sqw + k0), FN, SW, SWW, non_positive_min, &s, &m, &e);
        _mm256_storeu_ps(s_out + k0, s);
        _mm256_storeu_ps(m_out + k0, m);
        _mm256_storeu_ps(sse_out + k0, e);
    }
}

AVX2 static void avx2_asym_errors(const qs_group *g, const float *scales, const float *mins, int count, int top, float *err) {
    __m256 vtop = _mm256_set1_ps((float)top), zero = _mm256_setzero_ps();
    int plain = g->uniform && g->n == 8 * g->chunks;
    for (int k0 = 0; k0 < count; k0 += 8) {
        __m256 e[8];
        for (int k = 0; k < 8; k++) {
            e[k] = zero;
            if (k0 + k >= count) continue;
            float s = scales[k0 + k];
            __m256 vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(mins[k0 + k]), vi = _mm256_set1_ps(s > 0 ? 1 / s : 0), acc = zero;
            if (plain) {
                // Every mask and weight is 1, and d·1 = d exactly: the same sums without them.
                for (int c = 0; c < g->chunks; c++) {
                    __m256 x = _mm256_load_ps(g->v + 8 * c);
                    __m256 q = qv_levels(_mm256_mul_ps(_mm256_sub_ps(x, vm), vi), zero, vtop);
                    __m256 d = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(vs, q), vm), x);
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(d, d));
                }
            } else {
                for (int c = 0; c < g->chunks; c++) {
                    __m256 x = _mm256_load_ps(g->v + 8 * c);
                    __m256 q = qv_levels(_mm256_mul_ps(_mm256_sub_ps(x, vm), vi), zero, vtop);
                    __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(vs, q), vm), x), _mm256_load_ps(g->m + 8 * c));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(g->w + 8 * c), d), d));
                }
            }
            e[k] = acc;
        }
        _mm256_storeu_ps(err + k0, qv_sums8(e));
    }
}

/// qs_first_min without a branch per candidate (they mispredicted often enough to cost a
/// tenth of the search): lanes past count and NaN errors become +Inf, the lowest value is found
/// with vector minima, and the first lane equal to it is the answer (±0 compare equal, as in
/// the scan, which keeps the first of them). err holds whole vectors (count rounded up to 8).
AVX2 static inline int avx2_first_min(const float *err, int count) {
    if (count > 32) return qs_first_min(err, count);
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 e[4];
    int blocks = (count + 7) / 8;
    __m256 m = inf;
    for (int b = 0; b < blocks; b++) {
        __m256 v = _mm256_loadu_ps(err + 8 * b);
        __m256 inside = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(count - 8 * b), lane));
        __m256 keep = _mm256_and_ps(inside, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN → +Inf
        e[b] = _mm256_blendv_ps(inf, v, keep);
        m = _mm256_min_ps(m, e[b]);
    }
    m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
    if (!(_mm256_cvtss_f32(m) < INFINITY)) return -1;
    for (int b = 0; b < blocks; b++) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(e[b], m, _CMP_EQ_OQ));
        if (hit) return 8 * b + __builtin_ctz((unsigned)hit);
    }
    return -1;
}

/// Σq, Σq², Σq·x of n candidates (n = 1 or 2; inv[i] per lane), for the 8 groups of a
/// super-block side by side (lane j = group j; T[e] holds element e of every group, D[e] =
/// T[e] − off). The reference's order lane for lane: element lane l (0…7) sums its chunks from
/// +0, then the 8 partial sums add in l order. Clamped to [0, top] as qv_levels does. Uniform
/// weights: w·q = q exactly. Two candidates run interleaved, each with its own sums, so their
/// dependency chains overlap and the loads of T and D are shared; `chunks` and `n` are
/// constants at every call, so the loops unroll.
/// Two shortcuts give the reference's values bit for bit. q is a whole number in [0, 15], so
/// q·q and every partial Σq² are exact in float and one fused multiply-add rounds them the same
/// way. When `off_is_min` (off ≤ every element and inv > 0, as in the grid) every inv·d is ≥ +0
/// or NaN (inv = +Inf on a flat group, d = +0), and the clamp at 0 passes both unchanged.
AVX2 __attribute__((always_inline)) static inline void lanes_moments(const __m256 *T, const __m256 *D, const int chunks, const int n,
                                                                    const int off_is_min, const __m256 *inv, __m256 vtop,
                                                                    __m256 *sq, __m256 *sqq, __m256 *sqw) {
    const __m256 zero = _mm256_setzero_ps();
    for (int l = 0; l < 8; l++) {
        __m256 q1[2] = { zero, zero }, qq[2] = { zero, zero }, qw[2] = { zero, zero };
        for (int c = 0; c < chunks; c++) {
            const __m256 d = D[8 * c + l], t = T[8 * c + l];
            for (int i = 0; i < n; i++) {
                const __m256 scaled = _mm256_mul_ps(inv[i], d);
                __m256 q = off_is_min ? qv_round(_mm256_min_ps(vtop, scaled)) : qv_levels(scaled, zero, vtop);
                q1[i] = _mm256_add_ps(q1[i], q);
                qq[i] = _mm256_fmadd_ps(q, q, qq[i]);
                qw[i] = _mm256_add_ps(qw[i], _mm256_mul_ps(q, t));
            }
        }
        for (int i = 0; i < n; i++) {
            if (l == 0) { sq[i] = q1[i]; sqq[i] = qq[i]; sqw[i] = qw[i]; }
            else { sq[i] = _mm256_add_ps(sq[i], q1[i]); sqq[i] = _mm256_add_ps(sqq[i], qq[i]); sqw[i] = _mm256_add_ps(sqw[i], qw[i]); }
        }
    }
}

/// GroupSearch.asymmetricError of n candidates (n = 1 or 2) per lane: Σ (s·q + m − x)² in the
/// reference's lane order, the candidates interleaved as in lanes_moments.
AVX2 __attribute__((always_inline)) static inline void lanes_errors(const __m256 *T, const int chunks, const int n, const __m256 *cs,
                                                                   const __m256 *cm, const __m256 *vi, __m256 vtop, __m256 *err) {
    const __m256 zero = _mm256_setzero_ps();
    for (int l = 0; l < 8; l++) {
        __m256 acc[2] = { zero, zero };
        for (int c = 0; c < chunks; c++) {
            const __m256 v = T[8 * c + l];
            for (int i = 0; i < n; i++) {
                __m256 q = qv_levels(_mm256_mul_ps(_mm256_sub_ps(v, cm[i]), vi[i]), zero, vtop);
                __m256 dv = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(cs[i], q), cm[i]), v);
                acc[i] = _mm256_add_ps(acc[i], _mm256_mul_ps(dv, dv));
            }
        }
        for (int i = 0; i < n; i++) err[i] = l == 0 ? acc[i] : _mm256_add_ps(err[i], acc[i]);
    }
}

/// Lane-wise "if (e < best) take": the scan's strict comparison (a NaN never wins).
AVX2 static inline __m256 lanes_take(__m256 e, __m256 best) { return _mm256_cmp_ps(e, best, _CMP_LT_OQ); }

/// QS(super_block) for a whole super-block of 8 full, finite groups without weights, the 8
/// groups side by side in the lanes instead of one group's candidates: the searches' serial
/// parts (sums of lanes, the refinement steps, the choices) run for 8 groups at once. Every
/// value is the one the per-group path (and the Swift reference) computes, operation for
/// operation. Returns 0 (nothing written) when the super-block does not qualify.
AVX2 __attribute__((always_inline)) static inline int lanes_super_block(const float *x, int64_t cols, const int group, int64_t groups,
                                                                        int64_t b, uint8_t *data, uint8_t *scales, double *sums) {
    const int64_t first = b * 8;
    if (groups - first < 8 || (first + 8) * group > cols) return 0;
    const int chunks = group / 8;
    __m256 T[QS_MAX_GROUP], D[QS_MAX_GROUP];
    const float *x0 = x + first * group;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), big = _mm256_set1_ps(FLT_MAX);
    __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int c = 0; c < chunks; c++) {
        __m256 r[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(x0 + j * group + 8 * c);
        qv_transpose8(r, T + 8 * c);
        for (int l = 0; l < 8; l++) finite = _mm256_and_ps(finite, _mm256_cmp_ps(_mm256_and_ps(T[8 * c + l], absmask), big, _CMP_LE_OQ));
    }
    if (_mm256_movemask_ps(finite) != 0xFF) return 0;  // the per-group path stores the NaN markers

    // asym_stats: the sums in the reference's lane order, min and max folded in element order.
    const __m256 zero = _mm256_setzero_ps();
    __m256 SW = zero, SWW = zero, lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY);
    for (int l = 0; l < 8; l++) {
        __m256 sw = zero, ww = zero;
        for (int c = 0; c < chunks; c++) {
            __m256 v = T[8 * c + l];
            sw = _mm256_add_ps(sw, v);
            ww = _mm256_add_ps(ww, _mm256_mul_ps(v, v));
        }
        if (l == 0) { SW = sw; SWW = ww; }
        else { SW = _mm256_add_ps(SW, sw); SWW = _mm256_add_ps(SWW, ww); }
    }
    for (int e = 0; e < group; e++) {
        lo = _mm256_min_ps(T[e], lo);  // x < lo ? x : lo (the first of equal values)
        hi = _mm256_max_ps(hi, T[e]);  // x >= hi ? x : hi (the last)
    }
    const __m256 FN = _mm256_set1_ps((float)group);  // Σω over a full unweighted group: exact
    // GroupSearch.asymmetric with top 15 and a non-positive minimum.
    const float ftop = 15;
    const __m256 vtop = _mm256_set1_ps(ftop);
    lo = _mm256_blendv_ps(lo, zero, _mm256_cmp_ps(zero, lo, _CMP_LT_OQ));  // (0 < lo) ? 0 : lo
    const __m256 flat = _mm256_cmp_ps(hi, lo, _CMP_NGT_UQ);                // !(hi > lo): scale 0, min lo
    const __m256 range = _mm256_sub_ps(hi, lo);
    __m256 best_e = _mm256_set1_ps(INFINITY), best_s = _mm256_div_ps(range, vtop), best_m = lo;
    for (int e = 0; e < group; e++) D[e] = _mm256_sub_ps(T[e], lo);
    _Static_assert((QS_STEPS + 2) % 2 == 0, "the grid runs in pairs of candidates");
    for (int k = 0; k <= QS_STEPS + 1; k += 2) {
        // Candidate 0 is plain min-max rounding; then top − 1 + 0.1·step for step 0…20.
        __m256 inv[2], sq[2], sqq[2], sqw[2];
        for (int i = 0; i < 2; i++) {
            const int kk = k + i;
            const float numerator = kk == 0 ? ftop : -1.0f + QS_STEP_SIZE * (float)(kk - 1) + ftop;
            inv[i] = _mm256_div_ps(_mm256_set1_ps(numerator), range);
        }
        lanes_moments(T, D, chunks, 2, 1, inv, vtop, sq, sqq, sqw);
        for (int i = 0; i < 2; i++) {  // the choices in candidate order
            __m256 cs, cm, ce;
            qv_solve(sq[i], sqq[i], sqw[i], FN, SW, SWW, 1, &cs, &cm, &ce);
            __m256 take = lanes_take(ce, best_e);
            best_e = _mm256_blendv_ps(best_e, ce, take);
            best_s = _mm256_blendv_ps(best_s, cs, take);
            best_m = _mm256_blendv_ps(best_m, cm, take);
        }
    }
    // Up to 3 refinements per group; a group stops at its first step that does not improve.
    __m256 active = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int it = 0; it < 3 && _mm256_movemask_ps(active); it++) {
        const __m256 before = best_e, inv = _mm256_div_ps(_mm256_set1_ps(1), best_s);
        for (int e = 0; e < group; e++) D[e] = _mm256_sub_ps(T[e], best_m);
        __m256 sq, sqq, sqw, cs, cm, ce;
        lanes_moments(T, D, chunks, 1, 0, &inv, vtop, &sq, &sqq, &sqw);
        qv_solve(sq, sqq, sqw, FN, SW, SWW, 1, &cs, &cm, &ce);
        __m256 take = _mm256_and_ps(active, lanes_take(ce, best_e));
        best_e = _mm256_blendv_ps(best_e, ce, take);
        best_s = _mm256_blendv_ps(best_s, cs, take);
        best_m = _mm256_blendv_ps(best_m, cm, take);
        active = _mm256_and_ps(active, _mm256_cmp_ps(best_e, before, _CMP_NGE_UQ));  // break when best ≥ before
    }
    float fs[8], fm[8];
    _mm256_storeu_ps(fs, _mm256_blendv_ps(best_s, zero, flat));
    _mm256_storeu_ps(fm, _mm256_blendv_ps(best_m, lo, flat));

    // The super-block's two f16 scales, then the 6-bit indices, as QS(super_block).
    float max_scale = fs[0], max_neg_min = -fm[0];
    for (int j = 1; j < 8; j++) {
        if (max_scale < fs[j]) max_scale = fs[j];
        if (max_neg_min < -fm[j]) max_neg_min = -fm[j];
    }
    uint16_t d = qs_f16(max_scale / 63), dmin = qs_f16(max_neg_min / 63);
    float fd = plm_f16_to_f32(d), fdmin = plm_f16_to_f32(dmin);
    int a0[8] __attribute__((aligned(32))), b0[8] __attribute__((aligned(32)));
    for (int j = 0; j < 8; j++) {
        a0[j] = fd == 0 ? 0 : qs_clamp_index(roundf(fs[j] / fd), 0, 63);
        b0[j] = fdmin == 0 ? 0 : qs_clamp_index(roundf(-fm[j] / fdmin), 0, 63);
    }
    const __m256i A0 = _mm256_load_si256((const __m256i *)a0), B0 = _mm256_load_si256((const __m256i *)b0);
    const __m256i lim_lo = _mm256_set1_epi32(-1), lim_hi = _mm256_set1_epi32(64);
    const __m256 vfd = _mm256_set1_ps(fd), vnegdmin = _mm256_set1_ps(-fdmin);
    // The 9 neighbouring index pairs in the scan's order; their errors two at a time.
    __m256i ia[9], ib[9];
    __m256 err[9];
    for (int k = 0; k < 9; k++) {
        ia[k] = _mm256_add_epi32(A0, _mm256_set1_epi32(k / 3 - 1));
        ib[k] = _mm256_add_epi32(B0, _mm256_set1_epi32(k % 3 - 1));
    }
    for (int k = 0; k < 9; k += 2) {
        const int n = k + 1 < 9 ? 2 : 1;
        __m256 cs[2], cm[2], vi[2];
        for (int i = 0; i < n; i++) {
            cs[i] = _mm256_mul_ps(vfd, _mm256_cvtepi32_ps(ia[k + i]));
            cm[i] = _mm256_mul_ps(vnegdmin, _mm256_cvtepi32_ps(ib[k + i]));
            vi[i] = _mm256_blendv_ps(zero, _mm256_div_ps(_mm256_set1_ps(1), cs[i]), _mm256_cmp_ps(cs[i], zero, _CMP_GT_OQ));
        }
        if (n == 2) lanes_errors(T, chunks, 2, cs, cm, vi, vtop, err + k);
        else lanes_errors(T, chunks, 1, cs, cm, vi, vtop, err + k);
    }
    __m256 best = _mm256_set1_ps(INFINITY);
    __m256i best_a = A0, best_b = B0;
    for (int k = 0; k < 9; k++) {
        __m256i inside = _mm256_and_si256(_mm256_and_si256(_mm256_cmpgt_epi32(ia[k], lim_lo), _mm256_cmpgt_epi32(lim_hi, ia[k])),
                                          _mm256_and_si256(_mm256_cmpgt_epi32(ib[k], lim_lo), _mm256_cmpgt_epi32(lim_hi, ib[k])));
        // A candidate out of range is not in the list the scan walks: +Inf never wins.
        __m256 e = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), err[k], _mm256_castsi256_ps(inside));
        __m256 take = lanes_take(e, best);
        best = _mm256_blendv_ps(best, e, take);
        best_a = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best_a), _mm256_castsi256_ps(ia[k]), take));
        best_b = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best_b), _mm256_castsi256_ps(ib[k]), take));
    }
    int a[8] __attribute__((aligned(32))), bi[8] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)a, best_a);
    _mm256_store_si256((__m256i *)bi, best_b);

    // Levels (qs_assign_asymmetric lane by lane: NaN → 0, clamp, round), then per group the
    // nibbles and the error terms in element order.
    const __m256 scale = _mm256_mul_ps(vfd, _mm256_cvtepi32_ps(best_a)), minimum = _mm256_mul_ps(vnegdmin, _mm256_cvtepi32_ps(best_b));
    const __m256 inverse = _mm256_blendv_ps(zero, _mm256_div_ps(_mm256_set1_ps(1), scale), _mm256_cmp_ps(scale, zero, _CMP_GT_OQ));
    int32_t lv[QS_MAX_GROUP][8] __attribute__((aligned(32)));
    for (int e = 0; e < group; e++) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(T[e], minimum), inverse);
        t = _mm256_min_ps(_mm256_max_ps(t, zero), vtop);  // max(t, 0) turns NaN into 0
        _mm256_store_si256((__m256i *)lv[e], _mm256_cvtps_epi32(qv_round(t)));
    }
    const int finite_scales = isfinite(fd) && isfinite(fdmin);
    for (int j = 0; j < 8; j++) {
        const int64_t i = first + j;
        uint8_t levels[QS_MAX_GROUP];
        for (int e = 0; e < group; e++) levels[e] = (uint8_t)lv[e][j];
        qs_pack_nibbles(levels, group, data + i * group / 2);
        if (sums) {
            float rec[QS_MAX_GROUP];
            qs_reconstruct(PLM_Q4_ASYM_K6, levels, group, fd * (float)a[j], -fdmin * (float)bi[j], rec);
            if (finite_scales) qs_error_terms_finite(x + i * group, NULL, group, rec, sums);
            else qs_error_terms(x + i * group, NULL, group, rec, sums);
        }
    }
    uint8_t *sc = scales + b * 16;
    qs_store_u16(sc, d);
    qs_store_u16(sc + 2, dmin);
    qs_pack_six_bits(a, sc + 4);
    qs_pack_six_bits(bi, sc + 10);
    return 1;
}
/// lanes_super_block, with a copy for groups of 32 (the default) in which the chunk count is a
/// constant, so that the element loops unroll.
AVX2 static int avx2_super_block_lanes(const float *x, int64_t cols, int group, int64_t groups, int64_t b,
                                       uint8_t *data, uint8_t *scales, double *sums) {
    if (group == 32) return lanes_super_block(x, cols, 32, groups, b, data, scales, sums);
    return lanes_super_block(x, cols, group, groups, b, data, scales, sums);
}
#define QS_SUPER_BLOCK_LANES avx2_super_block_lanes

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#include "qsearch_body.h"
#pragma clang attribute pop

int plm_qsearch_first_min_avx2(const float *err, int count) { return avx2_first_min(err, count); }

void plm_quantize_rows_avx2(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                            int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums) {
    avx2_rows(kind, group, x, weight, weight_row_stride, rows, cols, data, scales, mins, sums);
}
#endif

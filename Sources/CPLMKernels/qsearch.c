// The quantizers' scale searches in C: the portable instantiation (plain scalar lanes, the C
// twin of the Swift reference in Sources/PLMQuant), the run-time dispatch, and the quantization
// error of converted rows. No fused multiply-adds anywhere: the Swift code has none, and a
// contracted a·b + c rounds once where it rounds twice, which would change stored bytes.
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)
#include "qsearch.h"

#define QS(name) port_##name

static void port_sym_stats(const qs_group *g, float *vmax, float *sumWW) {
    float ww[8] = { 0 }, vm = 0;
    for (int c = 0; c < g->chunks; c++) {
        for (int l = 0; l < 8; l++) {
            float x = g->v[8 * c + l];
            ww[l] = ww[l] + (g->w[8 * c + l] * x) * x;
        }
        for (int l = 0; l < 8; l++) { float x = g->v[8 * c + l]; if (fabsf(x) > fabsf(vm)) vm = x; }
    }
    *vmax = vm;
    *sumWW = qs_sum8(ww);
}

static void port_sym_moments(const qs_group *g, const float *inv, int count, int lo, int hi, float *sqq, float *sqw) {
    float flo = (float)lo, fhi = (float)hi;
    for (int k = 0; k < count; k++) {
        float qq[8] = { 0 }, qw[8] = { 0 };
        for (int c = 0; c < g->chunks; c++) {
            for (int l = 0; l < 8; l++) {
                int j = 8 * c + l;
                float x = g->v[j];
                float q = qs_levels1(inv[k] * x, flo, fhi) * g->m[j];
                float wq = g->w[j] * q;
                qq[l] = qq[l] + wq * q;
                qw[l] = qw[l] + wq * x;
            }
        }
        sqq[k] = qs_sum8(qq);
        sqw[k] = qs_sum8(qw);
    }
}

static void port_sym_errors(const qs_group *g, const float *scales, int count, int lo, int hi, float *err) {
    float flo = (float)lo, fhi = (float)hi;
    for (int k = 0; k < count; k++) {
        float s = scales[k], vi = s == 0 ? 0 : 1 / s;
        float e[8] = { 0 };
        for (int c = 0; c < g->chunks; c++) {
            for (int l = 0; l < 8; l++) {
                int j = 8 * c + l;
                float x = g->v[j];
                float d = s * qs_levels1(x * vi, flo, fhi) - x;
                e[l] = e[l] + (g->w[j] * d) * d;
            }
        }
        err[k] = qs_sum8(e);
    }
}

static void port_asym_stats(const qs_group *g, float *lo, float *hi, float *fn, float *sumW, float *sumWW) {
    float sw[8] = { 0 }, ww[8] = { 0 }, w1[8] = { 0 };
    for (int c = 0; c < g->chunks; c++) {
        for (int l = 0; l < 8; l++) {
            int j = 8 * c + l;
            float x = g->v[j], om = g->w[j];
            sw[l] = sw[l] + om * x;
            ww[l] = ww[l] + (om * x) * x;
            w1[l] = w1[l] + om;
        }
    }
    qs_minmax_seq(g, lo, hi);
    *fn = qs_sum8(w1);
    *sumW = qs_sum8(sw);
    *sumWW = qs_sum8(ww);
}

static void port_asym_moments(const qs_group *g, const float *inv, const float *off, int count, int top,
                              float *sq, float *sqq, float *sqw) {
    float ftop = (float)top;
    for (int k = 0; k < count; k++) {
        float q1[8] = { 0 }, qq[8] = { 0 }, qw[8] = { 0 };
        for (int c = 0; c < g->chunks; c++) {
            for (int l = 0; l < 8; l++) {
                int j = 8 * c + l;
                float x = g->v[j];
                float q = qs_levels1(inv[k] * (x - off[k]), 0, ftop) * g->m[j];
                float wq = g->w[j] * q;
                q1[l] = q1[l] + wq;
                qq[l] = qq[l] + wq * q;
                qw[l] = qw[l] + wq * x;
            }
        }
        sq[k] = qs_sum8(q1);
        sqq[k] = qs_sum8(qq);
        sqw[k] = qs_sum8(qw);
    }
}

static void port_asym_solve(const float *sq, const float *sqq, const float *sqw, int count, float fn, float sumW, float sumWW,
                            int non_positive_min, float *s, float *m, float *sse) {
    for (int k = 0; k < count; k++) {
        if (!qs_asym_solve1(sq[k], sqq[k], sqw[k], fn, sumW, sumWW, non_positive_min, &s[k], &m[k], &sse[k])) sse[k] = INFINITY;  // never wins
    }
}

static void port_asym_errors(const qs_group *g, const float *scales, const float *mins, int count, int top, float *err) {
    float ftop = (float)top;
    for (int k = 0; k < count; k++) {
        float s = scales[k], mn = mins[k], vi = s > 0 ? 1 / s : 0;
        float e[8] = { 0 };
        for (int c = 0; c < g->chunks; c++) {
            for (int l = 0; l < 8; l++) {
                int j = 8 * c + l;
                float x = g->v[j];
                float d = ((s * qs_levels1((x - mn) * vi, 0, ftop) + mn) - x) * g->m[j];
                e[l] = e[l] + (g->w[j] * d) * d;
            }
        }
        err[k] = qs_sum8(e);
    }
}

#define port_abs_max qs_abs_max_scalar
#define port_first_min qs_first_min
#include "qsearch_body.h"

void plm_quantize_rows_portable(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                                int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums) {
    port_rows(kind, group, x, weight, weight_row_stride, rows, cols, data, scales, mins, sums);
}

int plm_quantize_rows(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                      int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums, int impl) {
    if (kind < PLM_Q8_SYM || kind > PLM_Q4_ASYM_K6 || group < 8 || group > QS_MAX_GROUP || group % 8 != 0 || rows < 0 || cols < 1) return -1;
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2()) {
        plm_quantize_rows_avx2(kind, group, x, weight, weight_row_stride, rows, cols, data, scales, mins, sums);
        return 0;
    }
#else
    (void)impl;
#endif
    plm_quantize_rows_portable(kind, group, x, weight, weight_row_stride, rows, cols, data, scales, mins, sums);
    return 0;
}

int plm_qsearch_first_min(const float *err, int count, int impl) {
#if defined(__x86_64__)
    if (impl >= PLM_IMPL_AVX2 && plm_cpu_has_avx2()) return plm_qsearch_first_min_avx2(err, count);
#else
    (void)impl;
#endif
    return qs_first_min(err, count);
}

void plm_quantized_row_bytes(int kind, int group, int64_t cols, int64_t *data, int64_t *scales, int64_t *mins) {
    qs_row_bytes b = qs_layout(kind, group, cols);
    *data = b.data;
    *scales = b.scales;
    *mins = b.mins;
}

/// RowQuantizer.dequantizeRow's value of element j of group i (the Swift reference's order of
/// operations: int4 symmetric is s·(L − 8), not s·L − 8s).
static inline void qs_dequantize_row(int kind, int group, const uint8_t *data, const uint8_t *scales, const uint8_t *mins,
                                     int64_t cols, float *out) {
    int64_t groups = (cols + group - 1) / group;
    for (int64_t i = 0; i < groups; i++) {
        int n = qs_group_length(cols, group, i);
        float *y = out + i * group;
        float s = 0, m = 0;
        if (kind == PLM_Q4_ASYM_K6) {
            const uint8_t *b = scales + (i / 8) * 16;
            float d = plm_f16_to_f32(plm_load_u16(b)), dmin = plm_f16_to_f32(plm_load_u16(b + 2));
            s = d * (float)plm_six_bit(b + 4, (int)(i % 8));
            m = -dmin * (float)plm_six_bit(b + 10, (int)(i % 8));
        } else {
            s = plm_f16_to_f32(plm_load_u16(scales + 2 * i));
            if (mins) m = plm_f16_to_f32(plm_load_u16(mins + 2 * i));
        }
        if (kind == PLM_Q8_SYM) {
            const int8_t *q = (const int8_t *)(data + i * group);
            for (int j = 0; j < n; j++) y[j] = s * (float)q[j];
        } else if (kind == PLM_Q8_ASYM) {
            const uint8_t *q = data + i * group;
            for (int j = 0; j < n; j++) y[j] = s * (float)q[j] + m;
        } else {
            const uint8_t *q = data + i * group / 2;
            int h = (n + 1) / 2;
            for (int j = 0; j < n; j++) {
                int level = j < h ? (q[j] & 0x0F) : (q[j - h] >> 4);
                y[j] = kind == PLM_Q4_SYM ? s * (float)(level - 8) : s * (float)level + m;
            }
        }
    }
}

int plm_quantization_error(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                           int64_t rows, int64_t cols, const uint8_t *data, const uint8_t *scales, const uint8_t *mins,
                           float *scratch, double *sums) {
    if (kind < PLM_Q8_SYM || kind > PLM_Q4_ASYM_K6 || group < 8 || group > QS_MAX_GROUP || group % 8 != 0 || rows < 0 || cols < 1) return -1;
    qs_row_bytes rb = qs_layout(kind, group, cols);
    double sse = 0, norm = 0, weighted = 0;
    for (int64_t r = 0; r < rows; r++) {
        qs_dequantize_row(kind, group, data + r * rb.data, scales ? scales + r * rb.scales : NULL,
                          rb.mins ? mins + r * rb.mins : NULL, cols, scratch);
        const float *a = x + r * cols;
        const float *w = weight ? weight + r * weight_row_stride : NULL;
        for (int64_t k = 0; k < cols; k++) {
            float b = scratch[k];
            if (!isfinite(a[k]) || !isfinite(b)) continue;
            double e = (double)(a[k] - b);
            sse += e * e;
            weighted += (w ? ((double)w[k] * e) * e : e * e);
            norm += (double)a[k] * (double)a[k];
        }
    }
    sums[0] = sse;
    sums[1] = norm;
    sums[2] = weighted;
    return 0;
}

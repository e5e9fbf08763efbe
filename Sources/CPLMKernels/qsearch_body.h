// The row drivers of the quantizers' scale searches (plm_quantize_rows), shared by the portable
// and AVX2 instantiations: each includes this file after defining QS(name) (a name suffix) and
// the group kernels it calls. Everything here is scalar glue that mirrors, operation for
// operation, the Swift reference (Sources/PLMQuant/GroupQuantizer.swift, RowQuantizer.swift):
// the kernels return the same sums the Swift SIMD8 loops do, so every stored byte is the same.
//
// Kernels each instantiation defines (g: one loaded group, see qs_group in qsearch.h):
//   QS(sym_stats)(g, &vmax, &sumWW)                 first pass of GroupSearch.symmetric
//   QS(sym_moments)(g, inv, count, lo, hi, sqq, sqw) Σωq², Σωqw per candidate inverse scale
//   QS(sym_errors)(g, scales, count, lo, hi, err)    GroupSearch.symmetricError per scale
//   QS(asym_moments)(g, inv, off, count, top, sq, sqq, sqw)   Σωq, Σωq², Σωqw per candidate
//   QS(asym_stats)(g, &lo, &hi, &fn, &sumW, &sumWW)          first pass of GroupSearch.asymmetric
//   QS(asym_solve)(sq, sqq, sqw, count, ..., s, m, sse)  qs_asym_solve1 per candidate
//                                                        (a rejected one's sse is +Inf)
//   QS(asym_errors)(g, scales, mins, count, top, err)          GroupSearch.asymmetricError
//   QS(abs_max)(g)                                             the int8 codec's absmax
//   QS(first_min)(err, count)          qs_first_min: the first of the lowest errors below +Inf
//                                      (err holds whole vectors: count rounded up to 8)

/// GroupSearch.symmetric: the stored f16 scale (bits) for levels in [lo, hi].
static uint16_t QS(symmetric)(const qs_group *g, int lo, int hi) {
    float vmax, sumWW;
    QS(sym_stats)(g, &vmax, &sumWW);
    if (vmax == 0) return 0;
    float flo = (float)lo;
    float best_sse = INFINITY, best_scale = 0;
    // Candidate arrays hold whole vectors (kernels may read and write up to a multiple of 8).
    float inv[48] = { 0 }, sqq[48], sqw[48];
    int count = 0;
    for (int step = -QS_STEPS; step <= QS_STEPS; step++) inv[count++] = (flo + QS_STEP_SIZE * (float)step) / vmax;
    QS(sym_moments)(g, inv, count, lo, hi, sqq, sqw);
    for (int k = 0; k < count; k++) qs_sym_update(sqq[k], sqw[k], sumWW, &best_sse, &best_scale);
    for (int it = 0; it < 2; it++) {
        if (best_scale == 0) continue;
        float before = best_sse;
        float i1[8] = { 1 / best_scale }, q2[8], qw[8];
        QS(sym_moments)(g, i1, 1, lo, hi, q2, qw);
        qs_sym_update(q2[0], qw[0], sumWW, &best_sse, &best_scale);
        if (best_sse >= before) break;
    }
    uint16_t cand[4];
    int nc = qs_f16_neighbours(best_scale, cand);
    nc += qs_f16_neighbours(vmax / flo, cand + nc);
    float scales[8] = { 0 }, err[8];
    for (int k = 0; k < nc; k++) scales[k] = plm_f16_to_f32(cand[k]);
    QS(sym_errors)(g, scales, nc, lo, hi, err);
    return cand[qs_pick(err, nc)];
}

/// GroupSearch.asymmetric: the best (scale, min) before storage rounding.
static void QS(asymmetric)(const qs_group *g, int top, int non_positive_min, float *scale, float *min) {
    float lo, hi, fn, sumW, sumWW;
    QS(asym_stats)(g, &lo, &hi, &fn, &sumW, &sumWW);
    if (non_positive_min) lo = (0 < lo) ? 0 : lo;
    if (!(hi > lo)) { *scale = 0; *min = lo; return; }
    float ftop = (float)top;
    qs_asym_best best = { INFINITY, (hi - lo) / ftop, lo };
    float inv[24] = { 0 }, off[24] = { 0 }, sq[24], sqq[24], sqw[24];
    int count = 0;
    inv[count] = ftop / (hi - lo); off[count++] = lo;  // plain min-max rounding
    for (int step = 0; step <= QS_STEPS; step++) { inv[count] = (-1.0f + QS_STEP_SIZE * (float)step + ftop) / (hi - lo); off[count++] = lo; }
    QS(asym_moments)(g, inv, off, count, top, sq, sqq, sqw);
    float cs[24], cm[24], ce[24];
    QS(asym_solve)(sq, sqq, sqw, count, fn, sumW, sumWW, non_positive_min, cs, cm, ce);
    int pick = QS(first_min)(ce, count);
    if (pick >= 0) { best.sse = ce[pick]; best.scale = cs[pick]; best.min = cm[pick]; }
    for (int it = 0; it < 3; it++) {
        float before = best.sse;
        float i1[8] = { 1 / best.scale }, o1[8] = { best.min }, a[8], b[8], c[8];
        QS(asym_moments)(g, i1, o1, 1, top, a, b, c);
        qs_asym_update(a[0], b[0], c[0], fn, sumW, sumWW, non_positive_min, &best);
        if (best.sse >= before) break;
    }
    *scale = best.scale;
    *min = best.min;
}

/// int8 symmetric (Int8Codec.symmetric): f16 neighbours of absmax/127 shrunk by up to 0.3 %.
static uint16_t QS(int8_symmetric)(const qs_group *g, int8_t *q) {
    float amax = QS(abs_max)(g);
    int n = g->n;
    if (!(amax > 0)) { memset(q, 0, (size_t)n); return 0; }
    uint16_t cand[8];
    int nc = 0;
    for (int k = 0; k < 4; k++) nc += qs_f16_neighbours(amax / 127 * (1 - QS_SHRINK * (float)k), cand + nc);
    float scales[8] = { 0 }, err[8];
    for (int k = 0; k < nc; k++) scales[k] = plm_f16_to_f32(cand[k]);
    QS(sym_errors)(g, scales, nc, -127, 127, err);
    uint16_t s = cand[qs_pick(err, nc)];
    float inverse = 1 / plm_f16_to_f32(s);
    for (int i = 0; i < n; i++) q[i] = (int8_t)qs_level(g->v[i] * inverse, -127, 127);
    return s;
}

/// k6 super-block b of a row (RowQuantizer.quantizeSuperBlock).
static void QS(super_block)(const float *x, const float *w, int64_t cols, int group, int64_t groups, int64_t b,
                            uint8_t *data, uint8_t *scales, qs_group *gs, double *sums) {
#ifdef QS_SUPER_BLOCK_LANES
    // An instantiation may take whole unweighted super-blocks 8 groups at a time (same bytes).
    if (!w && QS_SUPER_BLOCK_LANES(x, cols, group, groups, b, data, scales, sums)) return;
#endif
    int64_t first = b * 8;
    int count = (int)(groups - first < 8 ? groups - first : 8);
    float fs[8], fm[8];
    for (int j = 0; j < count; j++) {
        int64_t i = first + j;
        qs_load(&gs[j], x + i * group, w ? w + i * group : NULL, qs_group_length(cols, group, i));
        if (!gs[j].finite) { qs_store_nonfinite_super_block(cols, group, groups, b, data, scales); return; }
        QS(asymmetric)(&gs[j], 15, 1, &fs[j], &fm[j]);
    }
    float max_scale = fs[0], max_neg_min = -fm[0];
    for (int j = 1; j < count; j++) {
        if (max_scale < fs[j]) max_scale = fs[j];
        if (max_neg_min < -fm[j]) max_neg_min = -fm[j];
    }
    uint16_t d = qs_f16(max_scale / 63), dmin = qs_f16(max_neg_min / 63);
    float fd = plm_f16_to_f32(d), fdmin = plm_f16_to_f32(dmin);
    int a[8] = { 0 }, bi[8] = { 0 };
    uint8_t levels[QS_MAX_GROUP];
    for (int j = 0; j < count; j++) {
        int64_t i = first + j;
        int n = qs_group_length(cols, group, i);
        const float *xi = x + i * group;
        const qs_group *g = &gs[j];
        int a0 = fd == 0 ? 0 : qs_clamp_index(roundf(fs[j] / fd), 0, 63);
        int b0 = fdmin == 0 ? 0 : qs_clamp_index(roundf(-fm[j] / fdmin), 0, 63);
        float cs[16] = { 0 }, cm[16] = { 0 }, err[16];
        int ca[9], cb[9], nc = 0;
        for (int da = -1; da <= 1; da++) {
            for (int db = -1; db <= 1; db++) {
                int ia = a0 + da, ib = b0 + db;
                if (ia < 0 || ia > 63 || ib < 0 || ib > 63) continue;
                ca[nc] = ia; cb[nc] = ib;
                cs[nc] = fd * (float)ia;
                cm[nc] = -fdmin * (float)ib;
                nc++;
            }
        }
        QS(asym_errors)(g, cs, cm, nc, 15, err);
        int pick = QS(first_min)(err, nc);
        int best_a = pick >= 0 ? ca[pick] : a0, best_b = pick >= 0 ? cb[pick] : b0;
        a[j] = best_a;
        bi[j] = best_b;
        qs_assign_asymmetric(xi, n, fd * (float)best_a, -fdmin * (float)best_b, 15, levels);
        qs_pack_nibbles(levels, n, data + i * group / 2);
        if (sums) {
            float rec[QS_MAX_GROUP];
            qs_reconstruct(PLM_Q4_ASYM_K6, levels, n, fd * (float)best_a, -fdmin * (float)best_b, rec);
            // The group is finite (checked at load), and with finite d and dmin so is s·L + m
            // (|s·L| ≤ 65504·63·15).
            if (isfinite(fd) && isfinite(fdmin)) qs_error_terms_finite(xi, w ? w + i * group : NULL, n, rec, sums);
            else qs_error_terms(xi, w ? w + i * group : NULL, n, rec, sums);
        }
    }
    uint8_t *s = scales + b * 16;
    qs_store_u16(s, d);
    qs_store_u16(s + 2, dmin);
    qs_pack_six_bits(a, s + 4);
    qs_pack_six_bits(bi, s + 10);
}

/// One row (RowQuantizer.quantizeRow).
static void QS(row)(int kind, int group, const float *x, const float *w, int64_t cols,
                    uint8_t *data, uint8_t *scales, uint8_t *mins, qs_group *g, double *sums) {
    int64_t groups = (cols + group - 1) / group;
    uint8_t levels[QS_MAX_GROUP];
    float rec[QS_MAX_GROUP];
    // A group stored as NaN markers reconstructs to NaN everywhere: it adds no error terms.
    switch (kind) {
    case PLM_Q8_SYM:
    case PLM_Q8_ASYM:
        for (int64_t i = 0; i < groups; i++) {
            int n = qs_group_length(cols, group, i);
            const float *xi = x + i * group;
            uint8_t *q = data + i * group;
            if (!qs_all_finite(xi, n)) {
                memset(q, 0, (size_t)n);
                qs_store_u16(scales + 2 * i, QS_NONFINITE);
                if (kind == PLM_Q8_ASYM) qs_store_u16(mins + 2 * i, QS_NONFINITE);
            } else if (kind == PLM_Q8_SYM) {
                qs_load(g, xi, w ? w + i * group : NULL, n);
                uint16_t s = QS(int8_symmetric)(g, (int8_t *)q);
                qs_store_u16(scales + 2 * i, s);
                if (sums) {
                    float fs = plm_f16_to_f32(s);
                    for (int j = 0; j < n; j++) rec[j] = fs * (float)((const int8_t *)q)[j];
                    // Finite values (checked above) and a finite scale: |s·q| ≤ 65504·127.
                    if (isfinite(fs)) qs_error_terms_finite(xi, w ? w + i * group : NULL, n, rec, sums);
                    else qs_error_terms(xi, w ? w + i * group : NULL, n, rec, sums);
                }
            } else {
                uint16_t s, m;
                qs_int8_asymmetric(xi, n, q, &s, &m);
                qs_store_u16(scales + 2 * i, s);
                qs_store_u16(mins + 2 * i, m);
                if (sums) {
                    qs_reconstruct(PLM_Q8_ASYM, q, n, plm_f16_to_f32(s), plm_f16_to_f32(m), rec);
                    qs_error_terms(xi, w ? w + i * group : NULL, n, rec, sums);
                }
            }
        }
        break;
    case PLM_Q4_SYM:
        for (int64_t i = 0; i < groups; i++) {
            int n = qs_group_length(cols, group, i);
            const float *xi = x + i * group;
            qs_load(g, xi, w ? w + i * group : NULL, n);
            if (!g->finite) {
                memset(levels, 8, (size_t)n);  // q = 0
                qs_pack_nibbles(levels, n, data + i * group / 2);
                qs_store_u16(scales + 2 * i, QS_NONFINITE);
                continue;
            }
            uint16_t s = QS(symmetric)(g, -8, 7);
            float fs = plm_f16_to_f32(s);
            float inverse = fs == 0 ? 0 : 1 / fs;
            for (int j = 0; j < n; j++) levels[j] = (uint8_t)(qs_level(xi[j] * inverse, -8, 7) + 8);
            qs_pack_nibbles(levels, n, data + i * group / 2);
            qs_store_u16(scales + 2 * i, s);
            if (sums) {
                qs_reconstruct(PLM_Q4_SYM, levels, n, fs, 0, rec);
                qs_error_terms(xi, w ? w + i * group : NULL, n, rec, sums);
            }
        }
        break;
    case PLM_Q4_ASYM_F16:
        for (int64_t i = 0; i < groups; i++) {
            int n = qs_group_length(cols, group, i);
            const float *xi = x + i * group;
            qs_load(g, xi, w ? w + i * group : NULL, n);
            if (!g->finite) {
                memset(levels, 0, (size_t)n);
                qs_pack_nibbles(levels, n, data + i * group / 2);
                qs_store_u16(scales + 2 * i, QS_NONFINITE);
                qs_store_u16(mins + 2 * i, QS_NONFINITE);
                continue;
            }
            float fs, fm;
            QS(asymmetric)(g, 15, 0, &fs, &fm);
            uint16_t ns[2], nm[2];
            int cs = qs_f16_neighbours(fs, ns), cm = qs_f16_neighbours(fm, nm);
            float sc[8] = { 0 }, mc[8] = { 0 }, err[8];
            uint16_t bs[4], bm[4];
            int nc = 0;
            for (int a = 0; a < cs; a++) {
                for (int b = 0; b < cm; b++) {
                    bs[nc] = ns[a]; bm[nc] = nm[b];
                    sc[nc] = plm_f16_to_f32(ns[a]); mc[nc] = plm_f16_to_f32(nm[b]);
                    nc++;
                }
            }
            QS(asym_errors)(g, sc, mc, nc, 15, err);
            float best_e = INFINITY;
            uint16_t best_s = 0, best_m = 0;
            for (int k = 0; k < nc; k++) if (err[k] < best_e) { best_e = err[k]; best_s = bs[k]; best_m = bm[k]; }
            qs_assign_asymmetric(xi, n, plm_f16_to_f32(best_s), plm_f16_to_f32(best_m), 15, levels);
            qs_pack_nibbles(levels, n, data + i * group / 2);
            qs_store_u16(scales + 2 * i, best_s);
            qs_store_u16(mins + 2 * i, best_m);
            if (sums) {
                qs_reconstruct(PLM_Q4_ASYM_F16, levels, n, plm_f16_to_f32(best_s), plm_f16_to_f32(best_m), rec);
                qs_error_terms(xi, w ? w + i * group : NULL, n, rec, sums);
            }
        }
        break;
    case PLM_Q4_ASYM_K6: {
        int64_t blocks = (groups + 7) / 8;
        qs_group gs[8];  // the super-block's groups, loaded once for both passes
        for (int64_t b = 0; b < blocks; b++) QS(super_block)(x, w, cols, group, groups, b, data, scales, gs, sums);
        break;
    }
    default:
        break;
    }
}

static void QS(rows)(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                     int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums) {
    qs_group g;
    qs_row_bytes rb = qs_layout(kind, group, cols);
    if (sums) { sums[0] = 0; sums[1] = 0; sums[2] = 0; }
    for (int64_t r = 0; r < rows; r++) {
        QS(row)(kind, group, x + r * cols, weight ? weight + r * weight_row_stride : NULL, cols,
                data + r * rb.data, scales ? scales + r * rb.scales : NULL, mins ? mins + r * rb.mins : NULL, &g, sums);
    }
}

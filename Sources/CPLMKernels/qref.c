// The reference: plain C for every kernel, the definition each SIMD path is tested against and
// the fallback on CPUs without AVX2. It calls nothing faster (dispatch.c chooses).
#include "qcommon.h"
#include <float.h>

void plm_group_scale_min(const plm_qmatrix *w, int64_t r, int64_t g, float *scale, float *min) {
    const uint8_t *s = w->scales + r * w->scale_row_bytes;
    switch (w->kind) {
    case PLM_Q8_SYM: *scale = plm_f16_to_f32(plm_load_u16(s + 2 * g)); *min = -128.0f * *scale; break;
    case PLM_Q4_SYM: *scale = plm_f16_to_f32(plm_load_u16(s + 2 * g)); *min = -8.0f * *scale; break;
    case PLM_Q8_ASYM:
    case PLM_Q4_ASYM_F16:
        *scale = plm_f16_to_f32(plm_load_u16(s + 2 * g));
        *min = plm_f16_to_f32(plm_load_u16(w->mins + r * w->min_row_bytes + 2 * g));
        break;
    case PLM_Q4_ASYM_K6: {
        const uint8_t *b = plm_k6_block(w, r, g);
        float d = plm_f16_to_f32(plm_load_u16(b + PLM_K6_D)), dmin = plm_f16_to_f32(plm_load_u16(b + PLM_K6_DMIN));
        *scale = d * (float)plm_six_bit(b + PLM_K6_SCALE_INDICES, (int)(g % PLM_K6_GROUPS));
        *min = -dmin * (float)plm_six_bit(b + PLM_K6_MIN_INDICES, (int)(g % PLM_K6_GROUPS));
        break;
    }
    default: *scale = 0; *min = 0;
    }
}

/// One block of n ≤ 32 activations as levels in [−top, top] (absmax scale), padded with zeros to
/// 32, with its scale and scale·Σlevels. A NaN or Inf input must not become finite
/// levels (lrintf(NaN) is INT_MIN, which would clamp to −top): such a block gets a NaN
/// scale and sum, so every dot product that reads it is NaN.
static void block_levels(const float *v, int64_t n, int top, int32_t levels[32], float *scale, float *sum) {
    float amax = 0;
    int nonfinite = 0;
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(v[j]);
        nonfinite |= !(a <= FLT_MAX);
        if (a > amax) amax = a;
    }
    if (nonfinite) {
        memset(levels, 0, 32 * sizeof(int32_t));
        *scale = NAN;
        *sum = NAN;
        return;
    }
    // A block of subnormal values would overflow top/amax to infinity; scaling both by 2^64
    // (exact) keeps it finite and leaves every other block's arithmetic unchanged.
    const float boost = amax < 0x1p-60f ? 0x1p64f : 1.0f;
    const float inverse = amax > 0 ? (float)top / (amax * boost) : 0.0f;
    *scale = amax / (float)top;
    int32_t total = 0;
    for (int64_t j = 0; j < 32; j++) {
        int level = j < n ? (int)lrintf((v[j] * boost) * inverse) : 0;
        if (level > top) level = top;
        if (level < -top) level = -top;
        levels[j] = level;
        total += level;
    }
    *sum = *scale * (float)total;
}

void plm_quantize_activations_ref(const float *x, int64_t cols, int8_t *q, float *d, float *sum) {
    int32_t levels[32];
    for (int64_t b = 0; b < plm_blocks(cols); b++) {
        int64_t n = cols - b * 32 < 32 ? cols - b * 32 : 32;
        block_levels(x + b * 32, n, 127, levels, d + b, sum + b);
        for (int j = 0; j < 32; j++) q[b * 32 + j] = (int8_t)levels[j];
    }
}

void plm_quantize_activations16_ref(const float *x, int64_t cols, int16_t *q, float *d, float *sum) {
    int32_t levels[32];
    for (int64_t b = 0; b < plm_blocks(cols); b++) {
        int64_t n = cols - b * 32 < 32 ? cols - b * 32 : 32;
        block_levels(x + b * 32, n, 32767, levels, d + b, sum + b);
        for (int j = 0; j < 32; j++) q[b * 32 + j] = (int16_t)levels[j];
    }
}

/// Row r with int16 activations, scalar: per 32-block, s·d·Σ v·q + shift·d·Σq with the signed
/// levels v of plm_signed_level (|Σ v·q| ≤ 32·255·32767 < 2^31: exact in int32). A short last
/// group uses the fp32 activations, as in plm_qdot_tail.
static float plm_qdot16_row(const plm_qmatrix *w, const plm_qact16 *a, int64_t r) {
    int64_t groups = (w->cols + w->group - 1) / w->group;
    float acc = 0;
    for (int64_t g = 0; g < groups; g++) {
        float s, m;
        plm_group_scale_min(w, r, g, &s, &m);
        int64_t n = plm_group_length(w, g);
        if (n == w->group) {
            const float shift = plm_level_shift(w, s, m);
            for (int64_t b = 0; b < n / 32; b++) {
                int64_t block = (g * w->group) / 32 + b;
                int32_t dot = 0;
                for (int j = 0; j < 32; j++) dot += plm_signed_level(w, r, g, b * 32 + j) * (int32_t)a->q[block * 32 + j];
                acc += s * a->d[block] * (float)dot + shift * a->sum[block];
            }
        } else {
            acc += plm_qdot_f32_tail(w, a->x, r, g);
        }
    }
    return acc;
}

void plm_qgemv16_ref(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) y[r - r0] = plm_qdot16_row(w, a, r);
}

/// Groups from `first_group` to the end of row r, scalar, in W·A8 form. For a short last group
/// the fp32 activations are used (its nibble layout differs from full groups).
float plm_qdot_tail(const plm_qmatrix *w, const plm_qact *a, int64_t r, int64_t first_group) {
    int64_t groups = (w->cols + w->group - 1) / w->group;
    float acc = 0;
    for (int64_t g = first_group; g < groups; g++) {
        float s, m;
        plm_group_scale_min(w, r, g, &s, &m);
        int64_t n = plm_group_length(w, g);
        if (n == w->group) {
            for (int64_t b = 0; b < n / 32; b++) {
                int64_t block = (g * w->group) / 32 + b;
                int32_t dot = 0;
                for (int j = 0; j < 32; j++) dot += plm_level(w, r, g, b * 32 + j) * (int32_t)a->q[block * 32 + j];
                acc += s * a->d[block] * (float)dot + m * a->sum[block];
            }
        } else {
            const float *x = a->x + g * w->group;
            for (int64_t j = 0; j < n; j++) acc += (s * (float)plm_level(w, r, g, j) + m) * x[j];
        }
    }
    return acc;
}

void plm_qgemv_ref(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) y[r - r0] = plm_qdot_tail(w, a, r, 0);
}

float plm_qdot_f32_tail(const plm_qmatrix *w, const float *x, int64_t r, int64_t first_group) {
    int64_t groups = (w->cols + w->group - 1) / w->group;
    float acc = 0;
    for (int64_t g = first_group; g < groups; g++) {
        float s, m;
        plm_group_scale_min(w, r, g, &s, &m);
        int64_t n = plm_group_length(w, g);
        const float *v = x + g * w->group;
        for (int64_t j = 0; j < n; j++) acc += (s * (float)plm_level(w, r, g, j) + m) * v[j];
    }
    return acc;
}

void plm_qgemv_f32_ref(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) y[r - r0] = plm_qdot_f32_tail(w, x, r, 0);
}

void plm_dequantize_row(const plm_qmatrix *w, int64_t r, float *out) {
    int64_t groups = (w->cols + w->group - 1) / w->group;
    for (int64_t g = 0; g < groups; g++) {
        float s, m;
        plm_group_scale_min(w, r, g, &s, &m);
        int64_t n = plm_group_length(w, g);
        for (int64_t j = 0; j < n; j++) out[g * w->group + j] = s * (float)plm_level(w, r, g, j) + m;
    }
}

float plm_exp_shift_sum_ref(float *x, int64_t n, float shift) {
    float sum = 0;
    for (int64_t i = 0; i < n; i++) { x[i] = expf(x[i] - shift); sum += x[i]; }
    return sum;
}

void plm_gelu_erf_ref(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void plm_silu_mul_ref(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

float plm_max_ref(const float *x, int64_t n) {
    float m = x[0];
    for (int64_t i = 1; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

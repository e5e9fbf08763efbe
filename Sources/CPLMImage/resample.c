// Fast passes of the separable uint8 resize. Same integer arithmetic as resample_ref.c (so the
// results are identical, not close): the speed comes from loop order and from letting the
// compiler vectorise. Each kernel body is instantiated twice, portable and with the AVX2 target,
// and picked at run time.
#include "CPLMImage.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define PLM_X86 1
#endif

static inline __attribute__((always_inline)) uint8_t clamp_shift(int32_t sum, int32_t precision) {
    int32_t v = sum >> precision;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Vertical: every output row is a weighted sum of whole input rows, so the inner loop runs along
// the row (contiguous bytes) in blocks of int32 accumulators that the compiler keeps in vector
// registers.
enum { VBLOCK = 64 };

static inline __attribute__((always_inline)) void vertical_body(
    const uint8_t *src, int32_t row_bytes, uint8_t *dst, const plm_resample_axis *axis,
    int32_t row_begin, int32_t row_end) {
    const int32_t round = 1 << (axis->precision - 1);
    for (int32_t y = row_begin; y < row_end; y++) {
        const int16_t *w = axis->weights + (size_t)y * (size_t)axis->taps;
        const uint8_t *first = src + (size_t)axis->start[y] * (size_t)row_bytes;
        const int32_t count = axis->count[y];
        uint8_t *out = dst + (size_t)y * (size_t)row_bytes;
        int32_t k0 = 0;
        for (; k0 + VBLOCK <= row_bytes; k0 += VBLOCK) {
            int32_t acc[VBLOCK];
            for (int k = 0; k < VBLOCK; k++) acc[k] = round;
            for (int32_t j = 0; j < count; j++) {
                const uint8_t *in = first + (size_t)j * (size_t)row_bytes + k0;
                const int32_t wj = w[j];
                for (int k = 0; k < VBLOCK; k++) acc[k] += (int32_t)in[k] * wj;
            }
            for (int k = 0; k < VBLOCK; k++) out[k0 + k] = clamp_shift(acc[k], axis->precision);
        }
        for (int32_t k = k0; k < row_bytes; k++) {
            int32_t sum = round;
            for (int32_t j = 0; j < count; j++) sum += (int32_t)first[(size_t)j * (size_t)row_bytes + k] * w[j];
            out[k] = clamp_shift(sum, axis->precision);
        }
    }
}

// Horizontal: one output pixel reads `count` neighbouring input pixels; the channel loop is
// unrolled for RGB so the three sums stay in registers.
static inline __attribute__((always_inline)) void horizontal_body(
    const uint8_t *src, int32_t in_width, int32_t channels, uint8_t *dst,
    const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
    const int32_t out_width = axis->out_size;
    const int32_t round = 1 << (axis->precision - 1);
    const int32_t p = axis->precision;
    for (int32_t y = row_begin; y < row_end; y++) {
        const uint8_t *in = src + (size_t)y * (size_t)in_width * (size_t)channels;
        uint8_t *out = dst + (size_t)y * (size_t)out_width * (size_t)channels;
        if (channels == 3) {
            for (int32_t x = 0; x < out_width; x++) {
                const int16_t *w = axis->weights + (size_t)x * (size_t)axis->taps;
                const uint8_t *s = in + (size_t)axis->start[x] * 3;
                int32_t r = round, g = round, b = round;
                for (int32_t j = 0; j < axis->count[x]; j++) {
                    const int32_t wj = w[j];
                    r += (int32_t)s[3 * j] * wj;
                    g += (int32_t)s[3 * j + 1] * wj;
                    b += (int32_t)s[3 * j + 2] * wj;
                }
                out[3 * x] = clamp_shift(r, p);
                out[3 * x + 1] = clamp_shift(g, p);
                out[3 * x + 2] = clamp_shift(b, p);
            }
        } else {
            for (int32_t x = 0; x < out_width; x++) {
                const int16_t *w = axis->weights + (size_t)x * (size_t)axis->taps;
                const uint8_t *s = in + (size_t)axis->start[x] * (size_t)channels;
                for (int32_t c = 0; c < channels; c++) {
                    int32_t sum = round;
                    for (int32_t j = 0; j < axis->count[x]; j++)
                        sum += (int32_t)s[(size_t)j * (size_t)channels + (size_t)c] * w[j];
                    out[(size_t)x * (size_t)channels + (size_t)c] = clamp_shift(sum, p);
                }
            }
        }
    }
}

static void vertical_portable(const uint8_t *src, int32_t row_bytes, uint8_t *dst,
                              const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
    vertical_body(src, row_bytes, dst, axis, row_begin, row_end);
}

static void horizontal_portable(const uint8_t *src, int32_t in_width, int32_t channels, uint8_t *dst,
                                const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
    horizontal_body(src, in_width, channels, dst, axis, row_begin, row_end);
}

#ifdef PLM_X86
__attribute__((target("avx2")))
static void vertical_avx2(const uint8_t *src, int32_t row_bytes, uint8_t *dst,
                          const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
    vertical_body(src, row_bytes, dst, axis, row_begin, row_end);
}

__attribute__((target("avx2")))
static void horizontal_avx2(const uint8_t *src, int32_t in_width, int32_t channels, uint8_t *dst,
                            const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
    horizontal_body(src, in_width, channels, dst, axis, row_begin, row_end);
}
#endif

static int avx2_allowed = 1;

int plm_image_has_avx2(void) {
#ifdef PLM_X86
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

void plm_image_set_avx2(int enabled) { avx2_allowed = enabled; }

void plm_resample_horizontal(const uint8_t *src, int32_t in_width, int32_t channels,
                             uint8_t *dst, const plm_resample_axis *axis,
                             int32_t row_begin, int32_t row_end) {
#ifdef PLM_X86
    if (avx2_allowed && plm_image_has_avx2()) {
        horizontal_avx2(src, in_width, channels, dst, axis, row_begin, row_end);
        return;
    }
#endif
    horizontal_portable(src, in_width, channels, dst, axis, row_begin, row_end);
}

void plm_resample_vertical(const uint8_t *src, int32_t row_bytes, uint8_t *dst,
                           const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
#ifdef PLM_X86
    if (avx2_allowed && plm_image_has_avx2()) {
        vertical_avx2(src, row_bytes, dst, axis, row_begin, row_end);
        return;
    }
#endif
    vertical_portable(src, row_bytes, dst, axis, row_begin, row_end);
}

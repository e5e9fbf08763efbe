// Reference passes of the separable uint8 resize: the arithmetic of torch's
// basic_loop_aa_horizontal<uint8_t> / basic_loop_aa_vertical<uint8_t>, written as plainly as
// possible. The fast passes in resample.c are tested against these.
#include "CPLMImage.h"

static inline uint8_t clamp_shift(int32_t sum, int32_t precision) {
    int32_t v = sum >> precision;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

void plm_resample_horizontal_ref(const uint8_t *src, int32_t in_width, int32_t channels,
                                 uint8_t *dst, const plm_resample_axis *axis,
                                 int32_t row_begin, int32_t row_end) {
    const int32_t out_width = axis->out_size;
    for (int32_t y = row_begin; y < row_end; y++) {
        const uint8_t *in = src + (size_t)y * (size_t)in_width * (size_t)channels;
        uint8_t *out = dst + (size_t)y * (size_t)out_width * (size_t)channels;
        for (int32_t x = 0; x < out_width; x++) {
            const int16_t *w = axis->weights + (size_t)x * (size_t)axis->taps;
            for (int32_t c = 0; c < channels; c++) {
                int32_t sum = 1 << (axis->precision - 1);
                for (int32_t j = 0; j < axis->count[x]; j++)
                    sum += (int32_t)in[(size_t)(axis->start[x] + j) * (size_t)channels + (size_t)c] * w[j];
                out[(size_t)x * (size_t)channels + (size_t)c] = clamp_shift(sum, axis->precision);
            }
        }
    }
}

void plm_resample_vertical_ref(const uint8_t *src, int32_t row_bytes, uint8_t *dst,
                               const plm_resample_axis *axis, int32_t row_begin, int32_t row_end) {
    for (int32_t y = row_begin; y < row_end; y++) {
        const int16_t *w = axis->weights + (size_t)y * (size_t)axis->taps;
        uint8_t *out = dst + (size_t)y * (size_t)row_bytes;
        for (int32_t k = 0; k < row_bytes; k++) {
            int32_t sum = 1 << (axis->precision - 1);
            for (int32_t j = 0; j < axis->count[y]; j++)
                sum += (int32_t)src[(size_t)(axis->start[y] + j) * (size_t)row_bytes + (size_t)k] * w[j];
            out[k] = clamp_shift(sum, axis->precision);
        }
    }
}

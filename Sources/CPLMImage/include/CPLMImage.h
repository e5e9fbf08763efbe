// C edge of PLMImage: libpng and libjpeg behind setjmp/longjmp shims, and the uint8 resampling
// passes. The libraries report errors by longjmp; every setjmp lives in these C functions, so a
// longjmp never crosses a Swift frame. Each resampling pass has a plain reference twin
// (`*_ref`) that the tests compare the fast one with.
#ifndef CPLMIMAGE_H
#define CPLMIMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PLM_IMAGE_MESSAGE_SIZE = 200 };

/// Result codes shared by both decoders.
enum {
    PLM_IMAGE_OK = 0,
    PLM_IMAGE_CORRUPT = 1,     // the library rejected the data (message says why)
    PLM_IMAGE_TRUNCATED = 2,   // the data ended before the image did
    PLM_IMAGE_NO_MEMORY = 3,
    PLM_IMAGE_UNSUPPORTED = 4, // valid but outside what we decode (message says what)
};

// ---- PNG ----------------------------------------------------------------------------------

/// What the header says, and what `plm_png_read` will write: `channels` bytes (or 16-bit
/// native-endian samples when `sample_bytes` == 2) per pixel, rows of `width * channels *
/// sample_bytes` bytes. Palettes are expanded to RGB (their tRNS is not applied: PIL's
/// convert("RGB") ignores it), 1/2/4-bit grey is scaled to 8 bits, 16-bit colour keeps the high
/// byte (PIL's unpackers do the same), 16-bit grey without alpha stays 16-bit because PIL reads
/// it as mode I;16 and clips it to 255 when converting to RGB.
typedef struct {
    uint32_t width;
    uint32_t height;
    int bit_depth;
    int color_type;     // PNG_COLOR_TYPE_*
    int interlaced;
    int channels;       // of the output: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
    int sample_bytes;   // of the output: 1, or 2 for 16-bit grey
} plm_png_info;

typedef struct plm_png_reader plm_png_reader;

/// Reads the signature and header. On success *reader must be closed with plm_png_close.
/// max_width/max_height go to png_set_user_limits so libpng itself refuses larger images.
int plm_png_open(const uint8_t *data, size_t size, uint32_t max_width, uint32_t max_height,
                 plm_png_reader **reader, plm_png_info *info, char message[PLM_IMAGE_MESSAGE_SIZE]);
/// Decodes the whole image into out (height rows of row_bytes), then the chunks after it.
int plm_png_read(plm_png_reader *reader, uint8_t *out, size_t row_bytes,
                 char message[PLM_IMAGE_MESSAGE_SIZE]);
/// The eXIf chunk seen before or after the image data (call after plm_png_read): its size, and a
/// copy of its bytes into out.
uint32_t plm_png_exif_size(const plm_png_reader *reader);
void plm_png_copy_exif(const plm_png_reader *reader, uint8_t *out);
void plm_png_close(plm_png_reader *reader);

// ---- JPEG ---------------------------------------------------------------------------------

/// Colour spaces as stored in the file (libjpeg's J_COLOR_SPACE numbering).
typedef struct {
    uint32_t width;
    uint32_t height;
    int components;     // in the file
    int color_space;    // J_COLOR_SPACE of the file
    int channels;       // of the output: 1 grey, 3 RGB, 4 CMYK (raw, as stored)
    int progressive;
    uint32_t exif_size; // bytes of the first APP1 "Exif\0\0" payload after that prefix, 0 if none
} plm_jpeg_info;

typedef struct plm_jpeg_reader plm_jpeg_reader;

int plm_jpeg_open(const uint8_t *data, size_t size, plm_jpeg_reader **reader, plm_jpeg_info *info,
                  char message[PLM_IMAGE_MESSAGE_SIZE]);
void plm_jpeg_copy_exif(const plm_jpeg_reader *reader, uint8_t *out);
/// Decodes with libjpeg's defaults (accurate integer IDCT, fancy upsampling), as PIL does.
/// A premature end of data, which libjpeg only warns about, is reported as TRUNCATED.
int plm_jpeg_read(plm_jpeg_reader *reader, uint8_t *out, size_t row_bytes,
                  char message[PLM_IMAGE_MESSAGE_SIZE]);
void plm_jpeg_close(plm_jpeg_reader *reader);

// ---- Resampling ---------------------------------------------------------------------------

/// One axis of a separable resize: output i reads `count[i]` inputs from `start[i]` with the
/// fixed-point weights `weights[i * taps ...]`; sums are rounded by adding 1 << (precision - 1)
/// and shifted right by `precision`, then clamped to 0...255 (torch's uint8 antialias path).
typedef struct {
    const int32_t *start;
    const int32_t *count;
    const int16_t *weights;
    int32_t taps;
    int32_t precision;
    int32_t out_size;
} plm_resample_axis;

/// Horizontal pass over interleaved pixels: rows [row_begin, row_end) of src (in_width pixels of
/// `channels` bytes) into dst (axis->out_size pixels a row).
void plm_resample_horizontal(const uint8_t *src, int32_t in_width, int32_t channels,
                             uint8_t *dst, const plm_resample_axis *axis,
                             int32_t row_begin, int32_t row_end);
void plm_resample_horizontal_ref(const uint8_t *src, int32_t in_width, int32_t channels,
                                 uint8_t *dst, const plm_resample_axis *axis,
                                 int32_t row_begin, int32_t row_end);
/// Vertical pass: output rows [row_begin, row_end), each `row_bytes` bytes wide.
void plm_resample_vertical(const uint8_t *src, int32_t row_bytes, uint8_t *dst,
                           const plm_resample_axis *axis, int32_t row_begin, int32_t row_end);
void plm_resample_vertical_ref(const uint8_t *src, int32_t row_bytes, uint8_t *dst,
                               const plm_resample_axis *axis, int32_t row_begin, int32_t row_end);

/// Whether this CPU can run the AVX2 passes (the fast functions pick them by themselves).
int plm_image_has_avx2(void);
/// Forces the portable fast path (0) or allows AVX2 (1); for tests.
void plm_image_set_avx2(int enabled);

#ifdef __cplusplus
}
#endif

#endif

// libpng behind a setjmp shim. libpng reports errors by calling our error function, which
// longjmps back to the setjmp in whichever of these functions made the failing call; no Swift
// frame lies between them.
#include "CPLMImage.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

struct plm_png_reader {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size;
    size_t offset;
    int truncated;
    int keep16;       // 16-bit grey stays 16-bit (PIL mode I;16)
    char message[PLM_IMAGE_MESSAGE_SIZE];
};

static void copy_message(char *dst, const char *src) {
    if (!dst) return;
    size_t n = strlen(src);
    if (n >= PLM_IMAGE_MESSAGE_SIZE) n = PLM_IMAGE_MESSAGE_SIZE - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void on_error(png_structp png, png_const_charp text) {
    plm_png_reader *r = (plm_png_reader *)png_get_error_ptr(png);
    copy_message(r->message, text ? text : "libpng error");
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;  // warnings (bad ancillary CRCs, unknown chunks) do not stop PIL either
}

static void on_read(png_structp png, png_bytep out, size_t length) {
    plm_png_reader *r = (plm_png_reader *)png_get_io_ptr(png);
    if (length > r->size - r->offset) {
        r->truncated = 1;
        png_error(png, "the data ends before the image does");
    }
    memcpy(out, r->data + r->offset, length);
    r->offset += length;
}

static int fail(plm_png_reader *r, char *message) {
    copy_message(message, r->message);
    return r->truncated ? PLM_IMAGE_TRUNCATED : PLM_IMAGE_CORRUPT;
}

int plm_png_open(const uint8_t *data, size_t size, uint32_t max_width, uint32_t max_height,
                 plm_png_reader **reader, plm_png_info *info, char message[PLM_IMAGE_MESSAGE_SIZE]) {
    *reader = NULL;
    plm_png_reader *r = (plm_png_reader *)calloc(1, sizeof(plm_png_reader));
    if (!r) return PLM_IMAGE_NO_MEMORY;
    r->data = data;
    r->size = size;
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, on_error, on_warning);
    if (!r->png) { free(r); return PLM_IMAGE_NO_MEMORY; }
    r->info = png_create_info_struct(r->png);
    if (!r->info) { png_destroy_read_struct(&r->png, NULL, NULL); free(r); return PLM_IMAGE_NO_MEMORY; }
    *reader = r;

    if (setjmp(png_jmpbuf(r->png))) return fail(r, message);

    png_set_read_fn(r->png, r, on_read);
    png_set_user_limits(r->png, max_width, max_height);
    // Ancillary chunks (text, ICC) are not needed; cap what libpng may allocate for one.
    png_set_chunk_malloc_max(r->png, 8u << 20);
    png_read_info(r->png, r->info);

    png_uint_32 width = 0, height = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(r->png, r->info, &width, &height, &depth, &color, &interlace, NULL, NULL);

    // The transformations that give what PIL hands to convert("RGB").
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r->png);  // tRNS becomes alpha
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
    r->keep16 = (color == PNG_COLOR_TYPE_GRAY && depth == 16);
    if (depth == 16) {
        if (r->keep16) {
            uint16_t probe = 1;
            if (*(uint8_t *)&probe == 1) png_set_swap(r->png);  // native-endian samples
        } else {
            png_set_strip_16(r->png);  // high byte, as PIL's ;16B unpackers
        }
    }
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);

    info->width = width;
    info->height = height;
    info->bit_depth = depth;
    info->color_type = color;
    info->interlaced = interlace != PNG_INTERLACE_NONE;
    info->channels = png_get_channels(r->png, r->info);
    info->sample_bytes = png_get_bit_depth(r->png, r->info) == 16 ? 2 : 1;
    return PLM_IMAGE_OK;
}

int plm_png_read(plm_png_reader *r, uint8_t *out, size_t row_bytes, char message[PLM_IMAGE_MESSAGE_SIZE]) {
    png_uint_32 height = png_get_image_height(r->png, r->info);
    png_bytep *rows = (png_bytep *)malloc(sizeof(png_bytep) * (height ? height : 1));
    if (!rows) return PLM_IMAGE_NO_MEMORY;
    if (png_get_rowbytes(r->png, r->info) > row_bytes) {
        free(rows);
        copy_message(message, "row buffer too small");
        return PLM_IMAGE_UNSUPPORTED;
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = out + (size_t)y * row_bytes;
    if (setjmp(png_jmpbuf(r->png))) {
        free(rows);
        return fail(r, message);
    }
    png_read_image(r->png, rows);
    free(rows);
    // The chunks after the image (an eXIf may be there). A damaged tail after complete pixels is
    // not an error, as in PIL, which has the pixels by then.
    if (setjmp(png_jmpbuf(r->png))) return PLM_IMAGE_OK;
    png_read_end(r->png, r->info);
    return PLM_IMAGE_OK;
}

uint32_t plm_png_exif_size(const plm_png_reader *r) {
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 n = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(r->png, r->info, &n, &exif) && exif) return n;
#endif
    (void)r;
    return 0;
}

void plm_png_copy_exif(const plm_png_reader *r, uint8_t *out) {
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 n = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(r->png, r->info, &n, &exif) && exif) memcpy(out, exif, n);
#endif
    (void)r;
    (void)out;
}

void plm_png_close(plm_png_reader *r) {
    if (!r) return;
    png_destroy_read_struct(&r->png, &r->info, NULL);
    free(r);
}

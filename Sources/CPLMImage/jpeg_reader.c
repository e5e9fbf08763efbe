// libjpeg(-turbo) behind a setjmp shim. libjpeg's default error handler prints and calls exit();
// ours formats the message and longjmps back into these functions. Warnings are not fatal (PIL
// ignores them too) except a premature end of data, which libjpeg papers over with a fake EOI.
#include "CPLMImage.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char message[JMSG_LENGTH_MAX];
} plm_jpeg_error;

struct plm_jpeg_reader {
    struct jpeg_decompress_struct cinfo;
    plm_jpeg_error error;
    int started;
    int channels;
};

static void copy_message(char *dst, const char *src) {
    if (!dst) return;
    size_t n = strlen(src);
    if (n >= PLM_IMAGE_MESSAGE_SIZE) n = PLM_IMAGE_MESSAGE_SIZE - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void on_error_exit(j_common_ptr cinfo) {
    plm_jpeg_error *e = (plm_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void on_emit_message(j_common_ptr cinfo, int level) {
    plm_jpeg_error *e = (plm_jpeg_error *)cinfo->err;
    if (level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
            e->truncated = 1;
            (*cinfo->err->format_message)(cinfo, e->message);
        }
    }
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

static int fail(plm_jpeg_reader *r, char *message) {
    copy_message(message, r->error.message);
    return r->error.truncated ? PLM_IMAGE_TRUNCATED : PLM_IMAGE_CORRUPT;
}

int plm_jpeg_open(const uint8_t *data, size_t size, plm_jpeg_reader **reader, plm_jpeg_info *info,
                  char message[PLM_IMAGE_MESSAGE_SIZE]) {
    *reader = NULL;
    plm_jpeg_reader *r = (plm_jpeg_reader *)calloc(1, sizeof(plm_jpeg_reader));
    if (!r) return PLM_IMAGE_NO_MEMORY;
    r->cinfo.err = jpeg_std_error(&r->error.pub);
    r->error.pub.error_exit = on_error_exit;
    r->error.pub.emit_message = on_emit_message;
    r->error.pub.output_message = on_output_message;
    *reader = r;
    if (setjmp(r->error.jump)) return fail(r, message);
    jpeg_create_decompress(&r->cinfo);
    r->started = 1;
    // Bounds libjpeg's own working memory (coefficient buffers of progressive files).
    r->cinfo.mem->max_memory_to_use = 1024L << 20;
    jpeg_mem_src(&r->cinfo, data, (unsigned long)size);
    jpeg_save_markers(&r->cinfo, JPEG_APP0 + 1, 0xFFFF);
    if (jpeg_read_header(&r->cinfo, TRUE) != JPEG_HEADER_OK) {
        copy_message(r->error.message, "no image in the JPEG data");
        return fail(r, message);
    }
    if (r->error.truncated) return fail(r, message);

    // As PIL: the mode follows the component count; CMYK comes out as stored.
    switch (r->cinfo.num_components) {
    case 1: r->cinfo.out_color_space = JCS_GRAYSCALE; r->channels = 1; break;
    case 3: r->cinfo.out_color_space = JCS_RGB; r->channels = 3; break;
    case 4: r->cinfo.out_color_space = JCS_CMYK; r->channels = 4; break;
    default:
        snprintf(r->error.message, sizeof r->error.message, "JPEG with %d components", r->cinfo.num_components);
        copy_message(message, r->error.message);
        return PLM_IMAGE_UNSUPPORTED;
    }

    uint32_t exif = 0;
    for (jpeg_saved_marker_ptr m = r->cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
            exif += m->data_length - 6;
    }
    info->width = r->cinfo.image_width;
    info->height = r->cinfo.image_height;
    info->components = r->cinfo.num_components;
    info->color_space = (int)r->cinfo.jpeg_color_space;
    info->channels = r->channels;
    info->progressive = r->cinfo.progressive_mode ? 1 : 0;
    info->exif_size = exif;
    return PLM_IMAGE_OK;
}

void plm_jpeg_copy_exif(const plm_jpeg_reader *r, uint8_t *out) {
    // PIL joins the payloads of every APP1 Exif segment; so do we.
    for (jpeg_saved_marker_ptr m = r->cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            memcpy(out, m->data + 6, m->data_length - 6);
            out += m->data_length - 6;
        }
    }
}

int plm_jpeg_read(plm_jpeg_reader *r, uint8_t *out, size_t row_bytes, char message[PLM_IMAGE_MESSAGE_SIZE]) {
    if (setjmp(r->error.jump)) return fail(r, message);
    jpeg_start_decompress(&r->cinfo);
    if ((size_t)r->cinfo.output_width * (size_t)r->cinfo.output_components > row_bytes) {
        copy_message(message, "row buffer too small");
        return PLM_IMAGE_UNSUPPORTED;
    }
    while (r->cinfo.output_scanline < r->cinfo.output_height) {
        JSAMPROW row = out + (size_t)r->cinfo.output_scanline * row_bytes;
        jpeg_read_scanlines(&r->cinfo, &row, 1);
        if (r->error.truncated) return fail(r, message);
    }
    jpeg_finish_decompress(&r->cinfo);
    if (r->error.truncated) return fail(r, message);
    return PLM_IMAGE_OK;
}

void plm_jpeg_close(plm_jpeg_reader *r) {
    if (!r) return;
    if (r->started) jpeg_destroy_decompress(&r->cinfo);
    free(r);
}

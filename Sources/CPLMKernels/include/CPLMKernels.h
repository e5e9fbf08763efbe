// C kernels for plmq: checksums, the quantized matrix products, vector maths and the worker
// pool. Every kernel has a plain C reference twin (qref.c) that the tests compare it with; the
// byte layouts they read are declared once, in plm_layout.h.
#ifndef CPLMKERNELS_H
#define CPLMKERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "plm_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Streaming XXH64 (seed configurable), as specified by the xxHash project.
typedef struct {
    uint64_t total_length;
    uint64_t v[4];
    uint8_t buffer[32];
    uint32_t buffered;
    uint64_t seed;
} plm_xxh64_state;

void plm_xxh64_reset(plm_xxh64_state *state, uint64_t seed);
void plm_xxh64_update(plm_xxh64_state *state, const void *data, size_t length);
uint64_t plm_xxh64_digest(const plm_xxh64_state *state);
uint64_t plm_xxh64(const void *data, size_t length, uint64_t seed);

/// Quantized weight kinds (Formats/PLM.md). Every kind is read as unsigned levels L with
/// w = s·L + m per group: int4 symmetric stores L = q + 8 (m = −8s), int8 symmetric stores
/// q as int8 and is read as L = q + 128 (m = −128s).
enum {
    PLM_Q8_SYM = 0,
    PLM_Q8_ASYM = 1,
    PLM_Q4_SYM = 2,
    PLM_Q4_ASYM_F16 = 3,
    PLM_Q4_ASYM_K6 = 4,
};

/// Kernel implementations, best last.
enum {
    PLM_IMPL_PORTABLE = 0,
    PLM_IMPL_AVX2 = 1,
    PLM_IMPL_AVX512 = 2,
};

/// A quantized matrix [rows, cols] as stored in a .plm file (parts used in place).
typedef struct {
    int32_t kind;
    int32_t group;
    int64_t rows;
    int64_t cols;
    const uint8_t *data;
    const uint8_t *scales;
    const uint8_t *mins;
    int64_t data_row_bytes;
    int64_t scale_row_bytes;
    int64_t min_row_bytes;
    /// NULL, or the int8 kinds' levels interleaved by plm_interleave_q8: the AVX-512 tile GEMMs
    /// then read the rows from there (the same bytes), so the mapped levels need not be resident.
    const uint8_t *q8_tiles;
} plm_qmatrix;

/// Activations quantized to int8 in blocks of 32 along K: values q (padded with zeros to a whole
/// number of blocks), per-block scale d and per-block d·Σq.
typedef struct {
    const int8_t *q;
    const float *d;
    const float *sum;
    const float *x;   // the original fp32 values (for a short last weight group)
    int64_t cols;
} plm_qact;

/// The best implementation this CPU supports.
int plm_best_impl(void);

/// Quantizes one activation row: blocks(cols) = ceil(cols/32) blocks; q holds blocks·32 bytes.
/// AVX-512, AVX2 or the reference, as `impl` and the CPU allow.
void plm_quantize_activations(const float *x, int64_t cols, int8_t *q, float *d, float *sum, int impl);
/// The reference definition (plain C): the AVX-512 and AVX2 quantizers give the same bytes.
void plm_quantize_activations_ref(const float *x, int64_t cols, int8_t *q, float *d, float *sum);

/// y[r − r0] = W[r,:] · a for r in [r0, r1), with int8 activations (W4A8 / W8A8).
void plm_qgemv(const plm_qmatrix *w, const plm_qact *a, float *y, int64_t r0, int64_t r1, int impl);

/// Y[m, r − r0] (row stride ldy) = W[r,:] · a_m for activation rows m in [0, rows) and r in
/// [r0, r1): the prefill / vision path. Activation row m starts at q + m·blocks·32, d + m·blocks,
/// sum + m·blocks. Uses the AVX-512 tile kernel when `impl` allows, else one GEMV per row.
void plm_qgemm(const plm_qmatrix *w, const int8_t *q, const float *d, const float *sum, const float *x,
               int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1, int impl);

/// Activations quantized to int16 in blocks of 32 along K (the decode default): values q
/// (padded with zeros to whole blocks), per-block scale d = absmax/32767 and d·Σq. The rounding
/// error is 1/258 of int8's, so decode matches fp32 activations to about 1e-5 relative while
/// the dot products stay integer (vpmaddwd on AVX2).
typedef struct {
    const int16_t *q;
    const float *d;
    const float *sum;
    const float *x;   // the original fp32 values (for a short last weight group)
    int64_t cols;
} plm_qact16;

/// Quantizes one activation row to int16: blocks(cols) blocks; q holds blocks·32 values.
void plm_quantize_activations16(const float *x, int64_t cols, int16_t *q, float *d, float *sum, int impl);
void plm_quantize_activations16_ref(const float *x, int64_t cols, int16_t *q, float *d, float *sum);

/// y[r − r0] = W[r,:] · a for r in [r0, r1), with int16 activations (W4A16 / W8A16): vpdpwssd
/// on AVX-512 (VNNI), vpmaddwd on AVX2.
void plm_qgemv16(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1, int impl);

/// plm_qgemm with int16 activation rows (blocks(cols)·32 values per row, d and sum per block):
/// the AVX-512 tile GEMM over activations split into bytes when `impl` allows and rows ≥ 4,
/// else one plm_qgemv16 per row. Like plm_qgemm's tile GEMM, a short last weight group is
/// computed from the quantized activations too (plm_qgemv16 uses fp32 there).
void plm_qgemm16(const plm_qmatrix *w, const int16_t *q, const float *d, const float *sum, const float *x,
                 int64_t rows, float *y, int64_t ldy, int64_t r0, int64_t r1, int impl);

/// The reference definition of plm_qgemv16 (plain C).
void plm_qgemv16_ref(const plm_qmatrix *w, const plm_qact16 *a, float *y, int64_t r0, int64_t r1);

/// The same with fp32 activations: dequantized weights times x, no activation rounding (the
/// decode default; bandwidth-bound, so about as fast as the int8 path). The weights are
/// dequantized in registers. AVX-512 machines run the AVX2 kernel for it (no AVX-512 twin: the
/// int16 kernels are as exact and faster).
void plm_qgemv_f32(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1, int impl);

/// The reference definition of plm_qgemv_f32 (plain C), which the SIMD kernel is tested against.
void plm_qgemv_f32_ref(const plm_qmatrix *w, const float *x, float *y, int64_t r0, int64_t r1);

/// An int4 k6 group-32 matrix repacked at load for decode and prefill, in tiles of
/// PLM_TILE_ROWS rows (the layout is in plm_layout.h). Same values as the file.
typedef struct {
    int64_t rows;
    int64_t cols;
    int64_t tiles;
    int64_t tile_bytes;
    uint8_t *bytes;
} plm_q4k6_repacked;

/// Repacks w if it is int4 k6 with groups of 32 and cols a multiple of 256 (else returns 0).
/// Tiles [tile0, tile1) only, so callers can split the work; `out->bytes` must hold
/// tiles·tile_bytes (see plm_repacked_tile_bytes).
int plm_repack_q4k6(const plm_qmatrix *w, plm_q4k6_repacked *out, int64_t tile0, int64_t tile1);
int64_t plm_repacked_tile_bytes(int64_t cols);

/// y[r − 16·tile0] = W[r,:] · a for the rows of tiles [tile0, tile1): AVX-512 VNNI, AVX2
/// (vpmaddubsw over 8 rows per register) or the plain C reference, as `impl` and the CPU allow.
void plm_qgemv_repacked(const plm_q4k6_repacked *w, const plm_qact *a, float *y, int64_t tile0, int64_t tile1, int impl);

/// The same with int16 activations (the decode default), split into high and low bytes so that
/// both halves run on the int8 dot products; same values as plm_qgemv16 on the original.
void plm_qgemv16_repacked(const plm_q4k6_repacked *w, const plm_qact16 *a, float *y, int64_t tile0, int64_t tile1, int impl);

/// The tile GEMM over the repacked layout (same results as plm_qgemm on the original), so a
/// repacked matrix's mapped pages need not stay resident. Rows of tiles [tile0, tile1): the
/// AVX-512 or AVX2 tile kernel, else one repacked GEMV per activation row.
void plm_qgemm_repacked(const plm_q4k6_repacked *w, const int8_t *q, const float *d, const float *sum,
                        int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1, int impl);

/// The same with int16 activation rows. Returns 0 (y untouched) when the AVX-512 kernel found
/// no memory for the split activations, else 1.
int plm_qgemm16_repacked(const plm_q4k6_repacked *w, const int16_t *q, const float *d, const float *sum,
                         int64_t rows, float *y, int64_t ldy, int64_t tile0, int64_t tile1, int impl);

/// Row r of the repacked matrix dequantized: bit for bit plm_dequantize_row on the original.
void plm_repacked_dequantize_row(const plm_q4k6_repacked *w, int64_t r, float *out);

/// The int8 kinds' levels interleaved PLM_Q8_TILE_ROWS rows at a time (plm_layout.h), so a
/// decode GEMV reads one stream instead of four rows at once. Returns 0 (nothing written) unless
/// w is int8 with cols a multiple of 32 and of the group; `tiles` must hold
/// plm_q8_tiles_bytes(w) bytes. Rows [4·tile0, 4·tile1) only, so callers can split the work.
int plm_interleave_q8(const plm_qmatrix *w, uint8_t *tiles, int64_t tile0, int64_t tile1);
int64_t plm_q8_tiles_bytes(const plm_qmatrix *w);

/// plm_qgemv16 with the levels from the interleaved copy (scales from w): AVX2, else the C
/// reference over the same bytes. r0 must be a multiple of PLM_Q8_TILE_ROWS.
void plm_qgemv16_q8tiles(const plm_qmatrix *w, const uint8_t *tiles, const plm_qact16 *a, float *y, int64_t r0, int64_t r1, int impl);

/// Row r dequantized from the interleaved copy: bit for bit plm_dequantize_row on the original.
void plm_q8tiles_dequantize_row(const plm_qmatrix *w, const uint8_t *tiles, int64_t r, float *out);

/// A persistent pool of worker threads (created once, on first use). plm_pool_run calls
/// task(context, i) for i in [0, workers): i = 0 on the calling thread, the others on pool
/// threads, and returns when all are done. It never allocates, so a decode step stays
/// allocation-free on any number of threads. Calls from several threads take turns; a task must
/// not call plm_pool_run itself.
typedef void (*plm_task)(void *context, int worker);
void plm_pool_run(int workers, plm_task task, void *context);
/// Claims the next `n` items of a shared counter for a worker (returns the first; the counter
/// starts at 0): sections whose workers may run at different speeds hand out chunks this way.
static inline int64_t plm_pool_claim(int64_t *counter, int64_t n) {
    return __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/// x[i] = exp(x[i] − shift) for i < n; returns the sum. `impl` as for the matmuls; the portable
/// path uses libm's expf and is the reference.
float plm_exp_shift_sum(float *x, int64_t n, float shift, int impl);

/// gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^−gate[i]) · up[i] for i < n (the Llama MLP).
/// The portable path (plm_silu_mul_ref) uses libm's expf; AVX-512 and AVX2 the polynomial exp of
/// plm_exp_shift_sum (relative error ~2e-7).
void plm_silu_mul(float *gate, const float *up, int64_t n, int impl);
void plm_silu_mul_ref(float *gate, const float *up, int64_t n);

/// The largest of n values (n ≥ 1).
float plm_max(const float *x, int64_t n, int impl);
/// The reference loop. The AVX-512 and AVX2 twins return the same value when no x is NaN (with a
/// NaN they may differ; the softmax that uses it is NaN either way).
float plm_max_ref(const float *x, int64_t n);

/// x = 0.5·x·(1 + erf(x/√2)) in place (exact-erf GELU). Portable path: libm erff.
void plm_gelu_erf(float *x, int64_t n, int impl);

/// Int8 multiply-adds per second that one core reaches with the int8 dot-product instruction the
/// quantized GEMMs use (AVX-512: vpdpbusd on zmm; AVX2: vpmaddubsw + vpmaddwd + vpaddd), from
/// registers only, over `iterations` rounds of 12 independent chains: the peak `plmq bench`
/// reports the GEMMs against. 0 for the portable implementation.
double plm_int8_dot_peak(int64_t iterations, int impl);

/// Reads `bytes` bytes (a multiple of 64) with vector loads and returns a value that depends on
/// all of them, so the reads cannot be optimised away: the bandwidth probe of `plmq bench`.
uint64_t plm_read_bytes(const void *data, size_t bytes);

/// Scale and minimum of group g of row r (the definition every kernel follows).
void plm_group_scale_min(const plm_qmatrix *w, int64_t r, int64_t g, float *scale, float *min);

/// Row r of w dequantized into out[0 ..< cols]: w = s·L + m per group (the reference, and the
/// one dequantization path of a quantized token-embedding lookup).
void plm_dequantize_row(const plm_qmatrix *w, int64_t r, float *out);

/// Exact bf16 weights [rows, cols] (row stride cols, any byte alignment), used in place by the
/// fp32 engine: y[r − r0] = W[r,:] · x for r in [r0, r1). AVX2 when `impl` allows, else the
/// reference loop (plm_bf16_gemv_ref).
void plm_bf16_gemv(const void *w, int64_t cols, const float *x, float *y, int64_t r0, int64_t r1, int impl);
void plm_bf16_gemv_ref(const void *w, int64_t cols, const float *x, float *y, int64_t r0, int64_t r1);

/// out[i] = W[i] widened to fp32 for i < count (exact).
void plm_bf16_widen(const void *w, int64_t count, float *out, int impl);
void plm_bf16_widen_ref(const void *w, int64_t count, float *out);

/// bf16 attention products (attn_bf16.c; layouts in plm_layout.h): the CPU has
/// AVX512-BF16 (vdpbf16ps) besides plmq's AVX-512 set.
int plm_cpu_has_avx512_bf16(void);
/// uint16 elements of a head's packed keys or values for `keys` keys of `dim` dimensions.
int64_t plm_bf16_keys_count(int64_t keys, int64_t dim);
int64_t plm_bf16_values_count(int64_t keys, int64_t dim);
/// Keys [keys, dim] (row stride `stride` floats) rounded to bf16 and packed in blocks of 16 keys;
/// values packed in pairs of keys. `dim` a multiple of 16. Same bytes on every path.
void plm_bf16_pack_keys(const float *k, int64_t stride, int64_t keys, int64_t dim, uint16_t *out, int impl);
void plm_bf16_pack_keys_ref(const float *k, int64_t stride, int64_t keys, int64_t dim, uint16_t *out);
void plm_bf16_pack_values(const float *v, int64_t stride, int64_t keys, int64_t dim, uint16_t *out, int impl);
void plm_bf16_pack_values_ref(const float *v, int64_t stride, int64_t keys, int64_t dim, uint16_t *out);
/// Rows [rows, cols] of x rounded to bf16 rows of out_stride ≥ cols elements (zeros after
/// cols): round to nearest even, denormals to zero.
void plm_bf16_round_rows(const float *x, int64_t stride, int64_t rows, int64_t cols, uint16_t *out, int64_t out_stride, int impl);
void plm_bf16_round_rows_ref(const float *x, int64_t stride, int64_t rows, int64_t cols, uint16_t *out, int64_t out_stride);
/// s[i·lds + j] = scale · q_i · key_(k0 + j) for i < rows, j < nk: q bf16 rows of dim, keys
/// packed, k0 a multiple of 16. fp32 sums of exact products.
void plm_bf16_scores(const uint16_t *q, int64_t rows, const uint16_t *keys, int64_t k0, int64_t nk, int64_t dim,
                     float scale, float *s, int64_t lds, int impl);
void plm_bf16_scores_ref(const uint16_t *q, int64_t rows, const uint16_t *keys, int64_t k0, int64_t nk, int64_t dim,
                         float scale, float *s, int64_t lds);
/// fp32 scores over packed keys (attn_f32.c): floats of a head's keys for `keys` keys of `dim`
/// dimensions in blocks of PLM_BF16_KEY_BLOCK ([dim][16] each, zero padded), and the packing.
int64_t plm_f32_keys_count(int64_t keys, int64_t dim);
void plm_f32_pack_keys(const float *k, int64_t stride, int64_t keys, int64_t dim, float *out);
/// s[i·lds + j] = scale · q_i · key_(k0 + j) for i < rows, j < nk: q rows of stride ldq, keys
/// packed, k0 a multiple of 16. One fused multiply-add per dimension in order, then the scale:
/// the same bits on every path.
void plm_f32_scores(const float *q, int64_t ldq, int64_t rows, const float *keys, int64_t k0, int64_t nk, int64_t dim,
                    float scale, float *s, int64_t lds, int impl);
void plm_f32_scores_ref(const float *q, int64_t ldq, int64_t rows, const float *keys, int64_t k0, int64_t nk, int64_t dim,
                        float scale, float *s, int64_t lds);
/// acc[i·ldacc + c] += Σ_j p[i·ldp + j] · value_(k0 + j)[c] for i < rows, c < dim, j < nk: p bf16
/// rows holding nk rounded up to even (a zero after an odd nk), values packed, k0 even.
void plm_bf16_pv(const uint16_t *p, int64_t ldp, int64_t rows, const uint16_t *values, int64_t k0, int64_t nk, int64_t dim,
                 float *acc, int64_t ldacc, int impl);
void plm_bf16_pv_ref(const uint16_t *p, int64_t ldp, int64_t rows, const uint16_t *values, int64_t k0, int64_t nk, int64_t dim,
                     float *acc, int64_t ldacc);

/// The KV cache (kvcache.c; layout in plm_layout.h, PLM_KV_KEY_BLOCK): one layer's keys and
/// values of `kv_heads` heads of `head_dim` dimensions, elements fp32 or f16.
enum { PLM_KV_F32 = 0, PLM_KV_F16 = 1 };
typedef struct plm_kv_layout {
    int32_t kind;
    int32_t kv_heads;
    int32_t head_dim;
} plm_kv_layout;
/// Elements of one layer's keys (or values) for `positions` positions (rounded up to 16).
int64_t plm_kv_elements(const plm_kv_layout *l, int64_t positions);
/// fp32 → f16, round to nearest even (subnormals kept, overflow to ±inf, NaN quiet): what
/// vcvtps2ph does. And back (exact).
uint16_t plm_f16_round(float x);
float plm_f16_value(uint16_t h);
/// Writes positions first ..< first + rows: k and v rows of kv_heads·head_dim floats at row
/// strides k_stride, v_stride. Same bytes on every path.
void plm_kv_store(const plm_kv_layout *l, void *keys, void *values, int64_t first, int64_t rows,
                  const float *k, int64_t k_stride, const float *v, int64_t v_stride, int impl);
void plm_kv_store_ref(const plm_kv_layout *l, void *keys, void *values, int64_t first, int64_t rows,
                      const float *k, int64_t k_stride, const float *v, int64_t v_stride);
/// Positions 0 ..< count as fp32 rows [count, kv_heads·head_dim] (exact; for prefill's
/// blocked attention). Either output may be NULL.
void plm_kv_widen(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, float *k, float *v, int impl);
void plm_kv_widen_ref(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, float *k, float *v);
/// A decoding step's attention for the `queries` query heads that share key/value head `head`:
/// q and out are rows of head_dim floats (q_i at q + i·head_dim), over cached positions
/// 0 ..< count (count ≥ 1): out_i = softmax(scale · q_i·Kᵀ) · V, in fp32. `scratch` holds
/// plm_kv_attend_scratch floats.
int64_t plm_kv_attend_scratch(int64_t queries, int64_t count);
void plm_kv_attend(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, int64_t head,
                   const float *q, int64_t queries, float scale, float *scratch, float *out, int impl);
/// The plain C definition (libm expf, sums in position and dimension order).
void plm_kv_attend_ref(const plm_kv_layout *l, const void *keys, const void *values, int64_t count, int64_t head,
                       const float *q, int64_t queries, float scale, float *scratch, float *out);

/// Quantizes rows [0, rows) of x (row-major, `cols` floats per row) as `kind` with groups of
/// `group` (8…256, a multiple of 8) into the three parts of a .plm tensor (Formats/PLM.md; each
/// points at the first row's bytes, row sizes from plm_quantized_row_bytes; `mins` may be NULL
/// for kinds without it). The same bytes as the Swift reference, RowQuantizer.quantize
/// (Sources/PLMQuant), on every path: the scale searches in qsearch.c (portable, the C twin of
/// the reference) and qsearch_avx2.c.
/// `weight`: NULL (every element's squared error counts alike) or positive finite weights ω,
/// element k of row r at weight[r·weight_row_stride + k]: stride 0 shares one row of weights
/// (calibration's column importance), stride cols gives every element its own. int8 asymmetric
/// is range-based and ignores them. Groups holding a NaN or ±Inf are stored as NaN markers
/// (RowQuantizer.nonFiniteMarker). `sums`: NULL, or 3 doubles that receive the error sums of
/// plm_quantization_error over these rows (computed group by group as they are stored, the same
/// doubles). Returns 0, or −1 for an unknown kind or group size.
int plm_quantize_rows(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                      int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums, int impl);
void plm_quantize_rows_portable(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                                int64_t rows, int64_t cols, uint8_t *data, uint8_t *scales, uint8_t *mins, double *sums);

/// The searches' choice among candidate errors: the first of the lowest below +Inf (NaN never
/// wins), −1 when there is none. `err` holds count rounded up to 8 floats (the AVX2 path reads
/// whole vectors). Exported so the tests can hold the AVX2 path to the scan.
int plm_qsearch_first_min(const float *err, int count, int impl);

/// Bytes per row of each part for plm_quantize_rows.
void plm_quantized_row_bytes(int kind, int group, int64_t cols, int64_t *data, int64_t *scales, int64_t *mins);

/// The converter's error sums over rows quantized by plm_quantize_rows: sums[0] = Σ(w − ŵ)²,
/// sums[1] = Σw², sums[2] = Σω(w − ŵ)² (ω as for plm_quantize_rows, 1 when NULL), in doubles,
/// element by element in row-major order, skipping elements where w or ŵ is not finite. ŵ is
/// RowQuantizer.dequantize's value. `scratch` holds cols floats. Returns 0, or −1 as above.
int plm_quantization_error(int kind, int group, const float *x, const float *weight, int64_t weight_row_stride,
                           int64_t rows, int64_t cols, const uint8_t *data, const uint8_t *scales, const uint8_t *mins,
                           float *scratch, double *sums);

#ifdef __cplusplus
}
#endif
#endif

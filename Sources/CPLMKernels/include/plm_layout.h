// Every byte layout the quantized kernels read, declared once. Formats/PLM.md defines the file
// layouts (levels and scales of each storage type); the repacked layout is plmq's in-memory
// decode layout, built at load. Swift reads the constants from here too (PLM_TILE_ROWS).
#ifndef PLM_LAYOUT_H
#define PLM_LAYOUT_H

#include <stdint.h>

enum {
    /// Values per activation block (int8 activations carry one scale per block).
    PLM_BLOCK = 32,

    // int4 levels of one group of n values (n = group size, or shorter for a row's last group):
    // ceil(n/2) bytes; byte j holds value j in its low nibble and value j + ceil(n/2) in its
    // high nibble. int8 levels: one byte per value.

    // k6 scales (int4-asym-k6): per row, one 16-byte block per 8 groups:
    //   [0,2) d (f16) · [2,4) dmin (f16) · [4,10) eight 6-bit scale indices · [10,16) eight
    //   6-bit min indices, little-endian bit order (index i at bits 6i…6i+5).
    //   scale = d · index, min = −dmin · min index.
    PLM_K6_GROUPS = 8,
    PLM_K6_BLOCK_BYTES = 16,
    PLM_K6_D = 0,
    PLM_K6_DMIN = 2,
    PLM_K6_SCALE_INDICES = 4,
    PLM_K6_MIN_INDICES = 10,

    /// Weight rows per work item and per repacked tile: 16 fp32 lanes of one zmm register.
    PLM_TILE_ROWS = 16,

    // Repacked int4 k6 g32 layout (plm_q4k6_repacked): per tile of PLM_TILE_ROWS rows, per
    // super-block of 256 columns (8 blocks of 32):
    //   a header of the 16 rows' d (f32) then the 16 rows' −dmin (f32);
    //   then per 32-column block: the 16 rows' scale indices (u8), the 16 rows' min indices
    //   (u8), and 256 bytes of nibbles, 64 bytes per 8 columns c…c+7: row i's 4 bytes hold
    //   columns c…c+3 in their low nibbles and c+4…c+7 in their high nibbles.
    PLM_RP_SUPERBLOCK_COLUMNS = 256,
    PLM_RP_HEADER_BYTES = 2 * PLM_TILE_ROWS * 4,
    PLM_RP_BLOCK_SCALE_INDICES = 0,
    PLM_RP_BLOCK_MIN_INDICES = PLM_TILE_ROWS,
    PLM_RP_BLOCK_NIBBLES = 2 * PLM_TILE_ROWS,
    PLM_RP_NIBBLES_PER_8_COLUMNS = PLM_TILE_ROWS * 4,
    PLM_RP_BLOCK_BYTES = 2 * PLM_TILE_ROWS + PLM_BLOCK * PLM_TILE_ROWS / 2,
    PLM_RP_SUPERBLOCK_BYTES = PLM_RP_HEADER_BYTES + 8 * PLM_RP_BLOCK_BYTES,

    // Row-interleaved int8 levels (plm_q8_tiles, the decode layout of the int8 kinds on AVX2 and
    // AVX-512 machines, built at load when cols is a multiple of 32 and of the group): per tile of PLM_Q8_TILE_ROWS rows,
    // per 32-column block, the tile's rows' 32 level bytes one after another (row k at 32·k);
    // a short last tile is padded with zero rows. Scales stay in the file's layout.
    PLM_Q8_TILE_ROWS = 4,

    // bf16 attention operands (attn_bf16.c), packed per head and call:
    // - keys in blocks of PLM_BF16_KEY_BLOCK keys: block kb, dimension pair p (dims 2p, 2p+1)
    //   is one zmm of 16 keys × 2 bf16 at element ((kb·dim/2 + p)·16 + key % 16)·2, so one
    //   vdpbf16ps against a broadcast query pair gives 16 keys' partial scores; keys past the end
    //   are zeros.
    // - values in pairs of keys: pair t, dimension c holds keys 2t and 2t + 1 at elements
    //   (t·dim + c)·2 and +1, so a broadcast pair of probabilities times one zmm adds two keys'
    //   terms to 16 output dimensions; a missing odd last key is zero.
    // - queries and probabilities: bf16 rows (row stride given by the caller).
    PLM_BF16_KEY_BLOCK = 16,

    // The KV cache of one layer (kvcache.c), elements f32 or f16 (plm_kv_layout.kind), H key/value
    // heads of D dimensions, positions rounded up to blocks of PLM_KV_KEY_BLOCK:
    // - keys transposed per block of 16 positions: position p, head h, dimension d at element
    //   ((p / 16 · H + h) · D + d) · 16 + p % 16, so one vector load holds dimension d of 16
    //   keys and a decoding query's scores need no horizontal sums;
    // - values as rows: position p, head h, dimension d at element (p · H + h) · D + d.
    // Growing the cache keeps every element where it is (positions only append).
    PLM_KV_KEY_BLOCK = 16,
};

_Static_assert(PLM_K6_MIN_INDICES + 6 == PLM_K6_BLOCK_BYTES, "k6 block: d, dmin and two 6-byte index fields");
_Static_assert(PLM_K6_SCALE_INDICES + 6 == PLM_K6_MIN_INDICES, "k6 block: scale indices take 6 bytes");
_Static_assert(PLM_RP_BLOCK_NIBBLES + 4 * PLM_RP_NIBBLES_PER_8_COLUMNS == PLM_RP_BLOCK_BYTES, "repacked block: indices then 4 × 64 nibble bytes");
_Static_assert(PLM_RP_BLOCK_BYTES == 288, "repacked block: 16 + 16 index bytes + 256 nibble bytes");
_Static_assert(PLM_RP_SUPERBLOCK_BYTES == 128 + 8 * 288, "repacked super-block: header + 8 blocks");
_Static_assert(PLM_TILE_ROWS * 4 == 64, "a tile's 16 fp32 lanes fill one 64-byte zmm register");

#endif

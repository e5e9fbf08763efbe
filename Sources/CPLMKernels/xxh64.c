// XXH64, written from the algorithm description: four 64-bit lanes over 32-byte stripes, then a
// merge, the tail in 8/4/1-byte steps, and an avalanche.
#include "CPLMKernels.h"
#include <string.h>

static const uint64_t P1 = 0x9E3779B185EBCA87ULL;
static const uint64_t P2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t P3 = 0x165667B19E3779F9ULL;
static const uint64_t P4 = 0x85EBCA77C2B2AE63ULL;
static const uint64_t P5 = 0x27D4EB2F165667C5ULL;

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t read64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t read32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static inline uint64_t round64(uint64_t acc, uint64_t input) {
    acc += input * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static inline uint64_t merge(uint64_t acc, uint64_t lane) {
    acc ^= round64(0, lane);
    return acc * P1 + P4;
}

void plm_xxh64_reset(plm_xxh64_state *s, uint64_t seed) {
    memset(s, 0, sizeof(*s));
    s->seed = seed;
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
}

static void consume_stripes(plm_xxh64_state *s, const uint8_t *p, size_t stripes) {
    uint64_t v0 = s->v[0], v1 = s->v[1], v2 = s->v[2], v3 = s->v[3];
    for (size_t i = 0; i < stripes; i++, p += 32) {
        v0 = round64(v0, read64(p));
        v1 = round64(v1, read64(p + 8));
        v2 = round64(v2, read64(p + 16));
        v3 = round64(v3, read64(p + 24));
    }
    s->v[0] = v0; s->v[1] = v1; s->v[2] = v2; s->v[3] = v3;
}

void plm_xxh64_update(plm_xxh64_state *s, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    s->total_length += length;
    if (s->buffered) {
        size_t take = 32 - s->buffered;
        if (take > length) take = length;
        memcpy(s->buffer + s->buffered, p, take);
        s->buffered += (uint32_t)take;
        p += take;
        length -= take;
        if (s->buffered < 32) return;
        consume_stripes(s, s->buffer, 1);
        s->buffered = 0;
    }
    size_t stripes = length / 32;
    consume_stripes(s, p, stripes);
    p += stripes * 32;
    length -= stripes * 32;
    memcpy(s->buffer, p, length);
    s->buffered = (uint32_t)length;
}

uint64_t plm_xxh64_digest(const plm_xxh64_state *s) {
    uint64_t h;
    if (s->total_length >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        h = merge(h, s->v[0]);
        h = merge(h, s->v[1]);
        h = merge(h, s->v[2]);
        h = merge(h, s->v[3]);
    } else {
        h = s->seed + P5;
    }
    h += s->total_length;
    const uint8_t *p = s->buffer;
    size_t n = s->buffered;
    while (n >= 8) {
        h ^= round64(0, read64(p));
        h = rotl(h, 27) * P1 + P4;
        p += 8; n -= 8;
    }
    if (n >= 4) {
        h ^= (uint64_t)read32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4; n -= 4;
    }
    while (n > 0) {
        h ^= (*p) * P5;
        h = rotl(h, 11) * P1;
        p++; n--;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t plm_xxh64(const void *data, size_t length, uint64_t seed) {
    plm_xxh64_state s;
    plm_xxh64_reset(&s, seed);
    plm_xxh64_update(&s, data, length);
    return plm_xxh64_digest(&s);
}

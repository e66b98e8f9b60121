/*
 * kv_hash.h -- XXH64, written from the published xxHash specification
 * (doc/xxhash_spec.md of the xxHash project, "XXH64 Algorithm Description").
 *
 * XXH64 rather than XXH3-64: its specification is short and stable, it is
 * byte-at-a-time streamable with a 32-byte state (the record checksum is
 * computed over header, key, metadata and value pieces, and over streamed
 * values whose length is unknown up front), and at 8+ GB/s it is never the
 * bottleneck of a disk write.  Output is bit-exact with xxhash.xxh64().
 *
 * Thread safety: all functions are pure; a state belongs to one caller.
 */
#ifndef KV_HASH_H
#define KV_HASH_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
typedef struct kv_xxh64_state {
    uint64_t total_len;   /* bytes fed so far */
    uint64_t v[4];        /* the four accumulator lanes */
    uint8_t  mem[32];     /* input not yet consumed as a full 32-byte stripe */
    uint32_t memsize;     /* bytes buffered in mem */
    uint32_t reserved;    /* keeps the struct a multiple of 8 bytes */
    uint64_t seed;        /* seed given to reset, needed by digest for short inputs */
} kv_xxh64_state;

/* One-shot XXH64 of len bytes at data (data may be NULL when len == 0). */
uint64_t kv_xxh64(const void *data, size_t len, uint64_t seed);

/* Streaming: reset, any number of updates, digest (digest does not modify the state). */
void     kv_xxh64_reset(kv_xxh64_state *st, uint64_t seed);
void     kv_xxh64_update(kv_xxh64_state *st, const void *data, size_t len);
uint64_t kv_xxh64_digest(const kv_xxh64_state *st);
/* CDEF-END */

#endif

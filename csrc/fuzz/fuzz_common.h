/*
 * fuzz_common.h -- helpers shared by the libFuzzer harnesses of csrc/fuzz.
 *
 * Random bytes almost never carry a valid XXH64, so a fuzzer alone would only
 * ever test the "not a record" path.  fuzz_seal_records() walks the input the
 * way a writer lays records out and recomputes each record's checksums where
 * its lengths fit, letting the fuzzer explore record shapes, batches, torn
 * records and damaged values behind valid checksums.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kv_format.h"
#include "kv_hash.h"

static inline uint64_t fuzz_get16(const uint8_t *p) { return (uint64_t)p[0] | (uint64_t)p[1] << 8; }
static inline uint64_t fuzz_get32(const uint8_t *p) { return fuzz_get16(p) | fuzz_get16(p + 2) << 16; }
static inline void fuzz_put32(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void fuzz_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes check and hcheck of every record laid out from `start` in buf[0..n),
 * stepping by each record's padded size, until a length does not fit. */
static inline void fuzz_seal_records(uint8_t *buf, size_t n, size_t start)
{
    size_t o = start;
    while (o + KV_REC_HDR_SIZE <= n) {
        uint8_t *h = buf + o;
        uint64_t klen = fuzz_get16(h + KV_REC_OFF_KLEN), mlen = fuzz_get16(h + KV_REC_OFF_MLEN);
        uint64_t vlen = fuzz_get32(h + KV_REC_OFF_VLEN);
        uint64_t size = KV_REC_HDR_SIZE + klen + mlen + vlen;
        if (size > n - o)
            return;
        kv_xxh64_state st;
        kv_xxh64_reset(&st, 0);
        kv_xxh64_update(&st, h + KV_REC_CHECK_FROM, KV_REC_CHECK_TO - KV_REC_CHECK_FROM);
        kv_xxh64_update(&st, h + KV_REC_HDR_SIZE, (size_t)(klen + mlen + vlen));
        fuzz_put64(h + KV_REC_OFF_CHECK, kv_xxh64_digest(&st));
        kv_xxh64_reset(&st, 0);
        kv_xxh64_update(&st, h + KV_REC_HCHECK_FROM, KV_REC_HDR_SIZE - KV_REC_HCHECK_FROM);
        kv_xxh64_update(&st, h + KV_REC_HDR_SIZE, (size_t)(klen + mlen));
        fuzz_put32(h + KV_REC_OFF_HCHECK, (uint32_t)kv_xxh64_digest(&st));
        o += (size + 7) & ~(uint64_t)7;
    }
}

/* A valid 64-byte segment header for segment `id` (FORMAT.md section 2). */
static inline void fuzz_segment_header(uint8_t hdr[KV_SEG_HDR_SIZE], uint64_t id, uint32_t flags,
                                       uint64_t seq_floor)
{
    memset(hdr, 0, KV_SEG_HDR_SIZE);
    memcpy(hdr, KV_SEG_MAGIC, 8);
    fuzz_put32(hdr + KV_SEG_OFF_VERSION, KV_FORMAT_VERSION);
    fuzz_put32(hdr + KV_SEG_OFF_FLAGS, flags);
    fuzz_put64(hdr + KV_SEG_OFF_ID, id);
    fuzz_put64(hdr + KV_SEG_OFF_SEQ_FLOOR, seq_floor);
    fuzz_put64(hdr + KV_SEG_OFF_HCHECK, kv_xxh64(hdr, KV_SEG_OFF_HCHECK, 0));
}

#endif

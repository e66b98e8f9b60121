/*
 * kv_format.h -- on-disk constants and field offsets.  Every value here is
 * defined by docs/FORMAT.md (section named beside it); change both together
 * and bump KV_FORMAT_VERSION.  Little-endian helpers live here so that every
 * decoder reads fields the same way, whatever the host byte order.
 */
#ifndef KV_FORMAT_H
#define KV_FORMAT_H

#include <stdint.h>
#include <string.h>

/* FORMAT.md section 2: segment header */
#define KV_FORMAT_VERSION      1
#define KV_SEG_MAGIC           "KVENGSEG"
#define KV_SEG_HDR_SIZE        64
#define KV_SEG_OFF_VERSION     8
#define KV_SEG_OFF_FLAGS       12
#define KV_SEG_OFF_ID          16
#define KV_SEG_OFF_SEQ_FLOOR   24
#define KV_SEG_OFF_CREATED     32
#define KV_SEG_OFF_HCHECK      56
#define KV_SEG_F_COMPACTED     0x1u

/* FORMAT.md section 3: records */
#define KV_REC_MAGIC           0xEC4B5652u
#define KV_REC_HDR_SIZE        48
#define KV_REC_ALIGN           8
#define KV_REC_OFF_HCHECK      4
#define KV_REC_OFF_TYPE        8
#define KV_REC_OFF_FLAGS       9
#define KV_REC_OFF_KLEN        10
#define KV_REC_OFF_MLEN        12
#define KV_REC_OFF_RSV16       14
#define KV_REC_OFF_VLEN        16
#define KV_REC_OFF_RSV32       20
#define KV_REC_OFF_SEQ         24
#define KV_REC_OFF_EXPIRATION  32
#define KV_REC_OFF_CHECK       40
#define KV_REC_HCHECK_FROM     8     /* hcheck covers header bytes 8..47, then key and meta */
#define KV_REC_CHECK_FROM      8     /* check covers header bytes 8..39, then the payload */
#define KV_REC_CHECK_TO        40

#define KV_REC_PUT             1
#define KV_REC_DELETE          2
#define KV_REC_EXPIRE          3
#define KV_REC_BATCH_COMMIT    4
#define KV_REC_F_BATCH         0x1u

#define KV_MAX_KEY             2047u
#define KV_MAX_META            65535u
#define KV_MAX_VALUE           (32u * 1024u * 1024u)
#define KV_BATCH_COMMIT_VLEN   16u

/* FORMAT.md section 6: hint files */
#define KV_HINT_MAGIC          "KVENGHNT"
#define KV_HINT_HDR_SIZE       24
#define KV_HINT_OFF_VERSION    8
#define KV_HINT_OFF_ID         16
#define KV_HINT_ENTRY_SIZE     32
#define KV_HINT_TRAILER_SIZE   32
#define KV_HINT_TR_MAX_SEQ     0     /* trailer offsets */
#define KV_HINT_TR_DATA_SIZE   8
#define KV_HINT_TR_COUNT       16
#define KV_HINT_TR_CHECK       24
#define KV_HINT_F_META         0x1u

/* FORMAT.md section 7.1: compaction manifest */
#define KV_MANIFEST_MAGIC      "KVENGCMP"
#define KV_MANIFEST_HDR_SIZE   16

static inline uint64_t kv_rec_size(uint32_t klen, uint32_t mlen, uint32_t vlen)
{
    return (uint64_t)KV_REC_HDR_SIZE + klen + mlen + vlen;
}

static inline uint64_t kv_pad8(uint64_t n)
{
    return (n + (KV_REC_ALIGN - 1)) & ~(uint64_t)(KV_REC_ALIGN - 1);
}

static inline uint16_t kv_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t kv_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t kv_get64(const uint8_t *p)
{
    return (uint64_t)kv_get32(p) | ((uint64_t)kv_get32(p + 4) << 32);
}

static inline void kv_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void kv_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void kv_put64(uint8_t *p, uint64_t v)
{
    kv_put32(p, (uint32_t)v);
    kv_put32(p + 4, (uint32_t)(v >> 32));
}

#endif

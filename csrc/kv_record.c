/*
 * kv_record.c -- the record codec of docs/FORMAT.md section 3.
 *
 * Owns the two checksums of a record and the plausibility rules a reader
 * applies before trusting any length it read from disk.  A header is trusted
 * only after kv_rec_peek (bounds against the format limits and the bytes left
 * in the file) and kv_rec_header_ok (hcheck over header, key and metadata) both
 * pass; the payload only after kv_rec_body_ok.
 */
#include "kv_record.h"

void kv_rec_begin(uint8_t hdr[KV_REC_HDR_SIZE], const kv_rec *r, const void *key,
                  const void *meta, kv_xxh64_state *st)
{
    memset(hdr, 0, KV_REC_HDR_SIZE);
    kv_put32(hdr, KV_REC_MAGIC);
    hdr[KV_REC_OFF_TYPE] = r->type;
    hdr[KV_REC_OFF_FLAGS] = r->flags;
    kv_put16(hdr + KV_REC_OFF_KLEN, (uint16_t)r->klen);
    kv_put16(hdr + KV_REC_OFF_MLEN, (uint16_t)r->mlen);
    kv_put32(hdr + KV_REC_OFF_VLEN, r->vlen);
    kv_put64(hdr + KV_REC_OFF_SEQ, r->seq);
    kv_put64(hdr + KV_REC_OFF_EXPIRATION, r->expiration);
    kv_xxh64_reset(st, 0);
    kv_xxh64_update(st, hdr + KV_REC_CHECK_FROM, KV_REC_CHECK_TO - KV_REC_CHECK_FROM);
    kv_xxh64_update(st, key, r->klen);
    kv_xxh64_update(st, meta, r->mlen);
}

static uint32_t header_check(const uint8_t *hdr, const void *key, uint32_t klen,
                             const void *meta, uint32_t mlen)
{
    kv_xxh64_state hs;
    kv_xxh64_reset(&hs, 0);
    kv_xxh64_update(&hs, hdr + KV_REC_HCHECK_FROM, KV_REC_HDR_SIZE - KV_REC_HCHECK_FROM);
    kv_xxh64_update(&hs, key, klen);
    kv_xxh64_update(&hs, meta, mlen);
    return (uint32_t)kv_xxh64_digest(&hs);
}

void kv_rec_seal(uint8_t hdr[KV_REC_HDR_SIZE], const kv_xxh64_state *st, const void *key,
                 uint32_t klen, const void *meta, uint32_t mlen)
{
    kv_put64(hdr + KV_REC_OFF_CHECK, kv_xxh64_digest(st));
    kv_put32(hdr + KV_REC_OFF_HCHECK, header_check(hdr, key, klen, meta, mlen));
}

int kv_rec_peek(const uint8_t *hdr, uint64_t remaining, kv_rec *r)
{
    if (remaining < KV_REC_HDR_SIZE || kv_get32(hdr) != KV_REC_MAGIC)
        return 0;
    uint8_t type = hdr[KV_REC_OFF_TYPE];
    uint8_t flags = hdr[KV_REC_OFF_FLAGS];
    if (type < KV_REC_PUT || type > KV_REC_BATCH_COMMIT || (flags & ~KV_REC_F_BATCH) != 0)
        return 0;
    if (kv_get16(hdr + KV_REC_OFF_RSV16) != 0 || kv_get32(hdr + KV_REC_OFF_RSV32) != 0)
        return 0;
    uint32_t klen = kv_get16(hdr + KV_REC_OFF_KLEN);
    uint32_t mlen = kv_get16(hdr + KV_REC_OFF_MLEN);
    uint32_t vlen = kv_get32(hdr + KV_REC_OFF_VLEN);
    if (klen > KV_MAX_KEY || vlen > KV_MAX_VALUE)
        return 0;
    if (kv_rec_size(klen, mlen, vlen) > remaining)
        return 0;
    /* Shapes fixed by the record type (FORMAT.md section 3, table). */
    if (type == KV_REC_BATCH_COMMIT) {
        if (klen != 0 || mlen != 0 || vlen != KV_BATCH_COMMIT_VLEN || (flags & KV_REC_F_BATCH))
            return 0;
    } else if (type != KV_REC_PUT && (mlen != 0 || vlen != 0)) {
        return 0;
    }
    r->type = type;
    r->flags = flags;
    r->klen = klen;
    r->mlen = mlen;
    r->vlen = vlen;
    r->seq = kv_get64(hdr + KV_REC_OFF_SEQ);
    r->expiration = kv_get64(hdr + KV_REC_OFF_EXPIRATION);
    r->check = kv_get64(hdr + KV_REC_OFF_CHECK);
    return 1;
}

int kv_rec_header_ok(const uint8_t *hdr, const kv_rec *r)
{
    const uint8_t *key = hdr + KV_REC_HDR_SIZE;
    return header_check(hdr, key, r->klen, key + r->klen, r->mlen) ==
           kv_get32(hdr + KV_REC_OFF_HCHECK);
}

int kv_rec_body_ok(const uint8_t *rec, const kv_rec *r)
{
    kv_xxh64_state st;
    kv_xxh64_reset(&st, 0);
    kv_xxh64_update(&st, rec + KV_REC_CHECK_FROM, KV_REC_CHECK_TO - KV_REC_CHECK_FROM);
    kv_xxh64_update(&st, rec + KV_REC_HDR_SIZE, (size_t)r->klen + r->mlen + r->vlen);
    return kv_xxh64_digest(&st) == r->check;
}

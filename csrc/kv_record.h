/*
 * kv_record.h -- encode and validate one record (docs/FORMAT.md section 3).
 * Pure functions over memory; no I/O.
 */
#ifndef KV_RECORD_H
#define KV_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "kv_format.h"
#include "kv_hash.h"

/* Decoded header fields. */
typedef struct kv_rec {
    uint8_t  type;        /* KV_REC_* */
    uint8_t  flags;       /* KV_REC_F_* */
    uint32_t klen;        /* key bytes */
    uint32_t mlen;        /* metadata bytes */
    uint32_t vlen;        /* value bytes */
    uint64_t seq;         /* global sequence number */
    uint64_t expiration;  /* seconds since the epoch, 0 = never */
    uint64_t check;       /* stored body checksum */
} kv_rec;

/* Fills hdr[0..47] except the checksums and starts the body checksum over
 * header bytes 8..39, key and meta.  The caller feeds the value into *st and
 * then calls kv_rec_seal. */
void kv_rec_begin(uint8_t hdr[KV_REC_HDR_SIZE], const kv_rec *r, const void *key,
                  const void *meta, kv_xxh64_state *st);
/* Writes check (from *st) and hcheck (over header, key and meta) into hdr. */
void kv_rec_seal(uint8_t hdr[KV_REC_HDR_SIZE], const kv_xxh64_state *st, const void *key,
                 uint32_t klen, const void *meta, uint32_t mlen);

/* Plausibility of a header found at a position with `remaining` bytes left in
 * the file: magic, type, reserved bits, bounds of every length.  Returns 1 and
 * fills *r when plausible.  Does not look at the key or the checksums. */
int kv_rec_peek(const uint8_t *hdr, uint64_t remaining, kv_rec *r);
/* 1 when hcheck matches; hdr is followed in memory by the key and metadata. */
int kv_rec_header_ok(const uint8_t *hdr, const kv_rec *r);
/* 1 when the body checksum matches; rec points at a whole record (header first). */
int kv_rec_body_ok(const uint8_t *rec, const kv_rec *r);

#endif

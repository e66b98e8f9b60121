/*
 * kv_index.h -- the keydir: key -> location of the newest record, plus the
 * ordered view that serves list(prefix, start_after, limit).
 *
 * Layout is position independent: entries, keys, hash slots and tree nodes
 * live in arrays addressed by 32-bit indices, never by pointers, so the whole
 * index can be written to a file and read back without fix-ups.
 *
 * The index does no locking; kv_db serialises writers and readers around it.
 */
#ifndef KV_INDEX_H
#define KV_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "kv_error.h"

#define KV_INDEX_MAX_KEY 2047u        /* key length fits the 11 low bits of klen_flags */

/* kv_loc.flags (5 bits) */
#define KV_LOC_HAS_META   0x01u       /* record carries metadata (list must read it) */
#define KV_LOC_TOMBSTONE  0x02u       /* only during recovery: newest record is a delete */
#define KV_LOC_CORRUPT    0x04u       /* newest record for the key failed its body checksum */
#define KV_LOC_FLAG_MASK  0x1fu

/* Where the newest record of a key lives. */
typedef struct kv_loc {
    uint32_t rec_off;     /* byte offset of the record in its segment */
    uint32_t rec_len;     /* record length: header + key + meta + value, without padding */
    uint32_t expiration;  /* seconds since the epoch, 0 = never, saturated at UINT32_MAX */
    uint16_t seg;         /* slot in kv_db's segment table */
    uint16_t flags;       /* KV_LOC_* */
} kv_loc;

typedef struct kv_index kv_index;

/* Ordered cursor; valid until the next modification of the index. */
typedef struct kv_index_cursor {
    uint32_t node;        /* current leaf node, UINT32_MAX when exhausted */
    uint32_t pos;         /* position inside the leaf */
} kv_index_cursor;

/* All functions returning int: 0 = OK, KV_ENOMEM (< 0) when an allocation failed
 * (the index is then unchanged), documented otherwise. */
int      kv_index_new(kv_index **out);
void     kv_index_free(kv_index *ix);
uint32_t kv_index_count(const kv_index *ix);          /* live keys */
size_t   kv_index_memory(const kv_index *ix);         /* bytes currently allocated by the index */

/* Grows the hash table at once to hold n keys below its growth load, so that a
 * bulk load (open from hint files) does not rehash step by step.  KV_ENOMEM
 * leaves the index as it was. */
int kv_index_reserve(kv_index *ix, uint64_t n);
/* Hints the CPU to fetch the hash slot of key: a bulk load calls it a few keys
 * ahead of each put, so the slot's cache miss overlaps other work. */
void kv_index_prefetch(const kv_index *ix, const void *key, uint32_t klen);

/* Bulk load (open): on an empty index, puts and deletes leave the ordered view
 * alone until kv_index_build_order builds it at once from the live keys,
 * sorted; inserting them one by one in write order would miss the cache at
 * every tree level.  Until then seek/next see no keys.  KV_EINVAL when the
 * index is not empty or already deferred. */
int kv_index_defer_order(kv_index *ix);
/* Builds the ordered view after kv_index_defer_order.  KV_ENOMEM leaves the
 * index deferred (gets, puts and deletes still work); KV_EINVAL when it was
 * not deferred. */
int kv_index_build_order(kv_index *ix);

/* 1 and *loc filled when key is present, 0 when not (also for a key longer than
 * KV_INDEX_MAX_KEY or NULL with klen > 0: such a key cannot be in the index). */
int kv_index_get(const kv_index *ix, const void *key, uint32_t klen, kv_loc *loc);
/* kv_index_get without comparing the key's bytes, which saves their cache
 * miss: 1 and *loc of the first entry with key's 32-bit hash and length.  That
 * is key's entry unless another key shares both (for a random key, about one
 * lookup in 2^32 per slot probed), so a caller must check the key where it
 * reads the record and, if it differs, ask kv_index_get.  0 is exact: absent. */
int kv_index_get_unchecked(const kv_index *ix, const void *key, uint32_t klen, kv_loc *loc);

/* Insert or replace.  *had_old = 1 and *old = previous location when the key was
 * present.  *id_out (may be NULL) = the entry id, stable until the key is deleted. */
int kv_index_put(kv_index *ix, const void *key, uint32_t klen, const kv_loc *loc,
                 kv_loc *old, int *had_old, uint32_t *id_out);

/* Replace the location only if the current one is at (expect_seg, expect_off):
 * the compactor's "a racing write wins".  Returns 1 if replaced, 0 if not (absent or moved). */
int kv_index_replace_if(kv_index *ix, const void *key, uint32_t klen,
                        uint16_t expect_seg, uint32_t expect_off, const kv_loc *loc);

/* Remove.  Returns 1 and fills *old (may be NULL) when the key was present, 0 otherwise
 * (an invalid key included, as for kv_index_get). */
int kv_index_del(kv_index *ix, const void *key, uint32_t klen, kv_loc *old);

/* Entry access by id (ids are < kv_index_id_limit()); returns 0 for a free id. */
uint32_t kv_index_id_limit(const kv_index *ix);
int kv_index_entry(const kv_index *ix, uint32_t id, const uint8_t **key, uint32_t *klen, kv_loc *loc);

/* Ordered iteration in memcmp order of keys (shorter key first on a common prefix).
 * seek: position at the first key >= start (inclusive = 1) or > start (inclusive = 0);
 * start may be empty (klen 0) to begin at the smallest key. */
void kv_index_seek(const kv_index *ix, const void *start, uint32_t slen, int inclusive,
                   kv_index_cursor *cur);
/* 1 and the entry at the cursor (then advances), 0 at the end. key points into the index
 * and is valid until the next modification. */
int  kv_index_next(const kv_index *ix, kv_index_cursor *cur, const uint8_t **key,
                   uint32_t *klen, kv_loc *loc);

#endif

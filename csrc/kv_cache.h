/*
 * kv_cache.h -- a bounded in-memory cache of small records recently read, so
 * that a repeated get of a hot key costs no system call.
 *
 * Entries are keyed by where a record lies (segment id, offset), never by key:
 * a record never changes once written, and a handle never reuses a segment id,
 * so an entry is never wrong.  It can only become unreachable (the index moved
 * on to a newer record, or compaction retired its segment); such an entry is
 * never asked for again and ages out.  So nothing is invalidated on write,
 * and the writer never touches the cache.
 *
 * Only records whose checksums passed are put in (kv_read.c).
 */
#ifndef KV_CACHE_H
#define KV_CACHE_H

#include <stdint.h>

typedef struct kv_cache kv_cache;

typedef struct kv_cache_stats {
    uint64_t hits;
    uint64_t misses;   /* reads not served: first reads (kv_cache_seen 0) and lookups that failed */
    uint64_t bytes;    /* memory charged: the doorkeeper's bits, entries, their bytes,
                        * bucket arrays; never more than the budget */
    uint64_t records;
} kv_cache_stats;

/* Below this a cache would keep next to nothing. */
#define KV_CACHE_MIN_BUDGET ((uint64_t)4096)

/* A cache of at most budget bytes; NULL when budget is under
 * KV_CACHE_MIN_BUDGET (0 is "no cache") or memory is short.  Every function
 * below accepts NULL as "no cache". */
kv_cache *kv_cache_new(uint64_t budget);
void kv_cache_free(kv_cache *c);
/* Marks (seg_id, off) as read and tells whether it was marked before: 1 when the
 * record is worth looking up and, on a miss, keeping.  Lock-free.  A record is
 * kept only from its second read on, so a pass over many records read once
 * mostly costs one bit each, not an allocation, and does not push out hot
 * records; marks are shared by hashing, so about one in sixteen such reads is
 * admitted all the same.  The marks are cleared now and then; a cached record
 * read right after gets one more read from disk. */
int kv_cache_seen(kv_cache *c, uint64_t seg_id, uint64_t off);
/* Copies the len-byte record at (seg_id, off) into dst: 1 when it was cached. */
int kv_cache_get(kv_cache *c, uint64_t seg_id, uint64_t off, uint32_t len, uint8_t *dst);
/* Keeps a copy of a checked record, evicting others to stay within budget.
 * Records too large to be worth their room, or a failed allocation, are
 * silently not cached. */
void kv_cache_put(kv_cache *c, uint64_t seg_id, uint64_t off, const uint8_t *rec, uint32_t len);
void kv_cache_stats_get(kv_cache *c, kv_cache_stats *out);

#endif

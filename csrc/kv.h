/*
 * kv.h -- the public API of the kvengine C core.
 *
 * The region between the CDEF markers is read verbatim by cffi
 * (csrc/build_ffi.py), so it holds only declarations cffi understands; the
 * marked regions of kv_error.h, kv_hash.h and kv_io.h join it.
 *
 * Conventions (as LMDB's):
 *   - every int-returning function returns 0, a positive errno, or a
 *     negative KV_E* code (csrc/kv_error.h); kv_strerror() names both;
 *   - results come back through out-parameters; there is no global error;
 *   - keys, metadata and values are byte ranges (pointer + length); the
 *     core copies what it keeps and never holds a caller's pointer;
 *   - a kv_db is safe to share between threads: one writer at a time
 *     (internal mutex), readers concurrent with the writer and each other.
 *     A kv_buf belongs to one thread at a time.
 *   - expiry decisions take `now` (seconds since the epoch) from the caller,
 *     so time is a parameter and tests control it.
 */
#ifndef KV_H
#define KV_H

#include <stddef.h>
#include <stdint.h>

#include "kv_error.h"
#include "kv_hash.h"

/* CDEF-BEGIN */
#define KV_SYNC_OS      1   /* each write is in the kernel on return: survives a killed process */
#define KV_SYNC_ALWAYS  2   /* each write is on stable storage on return (group commit) */

/* Damage kinds reported by kv_damage_get (docs/FORMAT.md section 5). */
#define KV_DAMAGE_RECORD       1   /* a record whose value checksum failed */
#define KV_DAMAGE_REGION       2   /* bytes that hold no valid record, followed by valid ones */
#define KV_DAMAGE_TAIL         3   /* torn tail of the newest segment (cut off by a writer) */
#define KV_DAMAGE_HEADER       4   /* a segment header that failed validation */
#define KV_DAMAGE_BATCH        5   /* batch members without their commit record, dropped */
#define KV_DAMAGE_SEALED_TAIL  6   /* invalid bytes at the end of a sealed segment (kept) */
#define KV_DAMAGE_MANIFEST     7   /* an invalid compaction manifest, ignored (seg_id = its id) */

/* Record kinds in kv_op.type (match FORMAT.md record types). */
#define KV_OP_PUT     1
#define KV_OP_DELETE  2

typedef struct kv_db kv_db;

typedef struct kv_options {
    uint64_t max_segment_bytes;  /* roll over to a new segment past this size */
    int32_t  sync_mode;          /* KV_SYNC_* */
    int32_t  readonly;           /* 1: no lock, no writes, no repairs */
    int32_t  reserved;           /* zero */
    uint64_t read_cache_bytes;   /* memory for recently read small records; 0: none,
                                  * else at least KV_MIN_READ_CACHE_BYTES */
} kv_options;

/* The smallest record cache kv_open accepts: a smaller one, split in sixteen
 * shards, would keep only a few small records. */
#define KV_MIN_READ_CACHE_BYTES 65536

/* A growable buffer the core fills; owned by the caller, freed by kv_buf_free. */
typedef struct kv_buf {
    uint8_t *data;   /* NULL until first use */
    size_t   cap;    /* bytes allocated */
} kv_buf;

/* One found record: key, meta and value lie in a kv_buf at the given offsets. */
typedef struct kv_value {
    uint64_t expiration;  /* seconds since the epoch, 0 = never */
    uint64_t seq;         /* sequence number of the record */
    uint64_t seg_id;      /* segment holding it */
    uint64_t offset;      /* record offset in that segment */
    uint64_t value_off;   /* value offset: in the kv_buf (kv_get) or in the file (kv_open_value) */
    uint32_t meta_off;    /* metadata offset in the kv_buf (kv_get) */
    uint32_t mlen;        /* metadata bytes */
    uint32_t vlen;        /* value bytes */
    uint32_t reserved;    /* zero */
} kv_value;

/* One batch operation (kv_write_batch). */
typedef struct kv_op {
    const char *key;
    const char *meta;
    const char *value;
    uint64_t    vlen;
    uint64_t    expiration;
    uint32_t    klen;
    uint32_t    mlen;
    int32_t     type;        /* KV_OP_PUT or KV_OP_DELETE */
    int32_t     reserved;
} kv_op;

/* One listed key; key and meta lie in the kv_buf at the given offsets. */
typedef struct kv_list_item {
    uint64_t expiration;  /* 0 = never */
    uint64_t seg_id;      /* where the record is (for error messages) */
    uint64_t offset;
    uint32_t key_off;
    uint32_t klen;
    uint32_t meta_off;
    uint32_t mlen;
    int32_t  status;      /* 0, or KV_ECORRUPT when the record's metadata failed its check */
    uint32_t reserved;
} kv_list_item;

typedef struct kv_stats {
    uint64_t keys;                 /* keys in the index (expired ones included until compacted) */
    uint64_t expired_keys;         /* of those, expired at `now` */
    uint64_t index_bytes;          /* memory held by the index */
    uint64_t segments;             /* segment files */
    uint64_t disk_bytes;           /* bytes in all segment files */
    uint64_t live_bytes;           /* bytes of records that serve reads (padded) */
    uint64_t expired_bytes;        /* bytes of expired records the index still points at */
    uint64_t dead_bytes;           /* overwritten or deleted records, tombstones, damage */
    uint64_t tombstone_bytes;      /* bytes of DELETE / EXPIRE records */
    uint64_t next_seq;             /* next sequence number */
    uint64_t torn_bytes_cut;       /* cut off the newest segment at open */
    uint64_t damaged_records;      /* count of damage reports */
    uint64_t writes;               /* records appended since open */
    uint64_t syncs;                /* fdatasync calls since open */
    uint64_t hinted_segments;      /* segments loaded from their hint file at open */
    uint64_t hints_rejected;       /* hint files found invalid at open (segment scanned) */
    uint64_t cache_hits;           /* reads served by the record cache since open */
    uint64_t cache_misses;         /* reads of records up to KV_GET_TL_MAX that were not */
    uint64_t cache_bytes;          /* memory the record cache holds */
    uint64_t cache_records;        /* records in it */
} kv_stats;

typedef struct kv_seg_info {
    uint64_t id;
    uint64_t size;             /* file bytes */
    uint64_t live_bytes;       /* padded bytes of records the index points at */
    uint64_t live_records;
    uint64_t expired_bytes;    /* part of live_bytes already expired at `now` */
    uint64_t tombstone_bytes;  /* DELETE / EXPIRE records */
    uint64_t dead_bytes;       /* size - header - live - tombstones */
    uint32_t flags;            /* segment header flags */
    int32_t  active;           /* 1 for the segment being appended to */
    uint64_t min_seq;          /* no record in the file has a smaller sequence number */
    int32_t  damaged;          /* 1 when damage was reported in it (never compacted) */
    int32_t  hinted;           /* 1 when a valid hint file describes it */
} kv_seg_info;

typedef struct kv_damage {
    uint64_t seg_id;
    uint64_t offset;
    uint64_t length;
    int32_t  kind;      /* KV_DAMAGE_* */
    int32_t  reserved;
} kv_damage;

const char *kv_version(void);

/* Opens (creating unless readonly) the store directory at path.
 * Errors: KV_ELOCKED, KV_ECORRUPT (unreadable directory contents), KV_EVERSION,
 * KV_ENOMEM, KV_EINVAL (bad options), errno (ENOENT for a missing readonly store,
 * ELOOP for a symlinked directory, EACCES ...). */
int kv_open(const char *path, const kv_options *opt, kv_db **out);
/* Syncs (unless the handle failed), closes every file and frees the index; waits
 * for calls in flight.  Later calls on the handle return KV_ECLOSED.  Returns the
 * first error met; the files are closed in every case. */
int kv_close(kv_db *db);
/* Frees the handle's memory after kv_close (cffi's ffi.gc destructor). */
void kv_free(kv_db *db);

/* Appends a PUT.  Errors: KV_EREADONLY, KV_ETOOBIG, KV_EFAILED, errno (ENOSPC ...). */
int kv_put(kv_db *db, const char *key, uint32_t klen, const char *meta, uint32_t mlen,
           const char *value, uint64_t vlen, uint64_t expiration);
/* As kv_put, the value being the first vlen bytes of the file fd (a spool file). */
int kv_put_fd(kv_db *db, const char *key, uint32_t klen, const char *meta, uint32_t mlen,
              int fd, uint64_t vlen, uint64_t expiration);
/* Appends a DELETE when the key is present; *existed tells (may be NULL). */
int kv_delete(kv_db *db, const char *key, uint32_t klen, int *existed);
/* All-or-nothing batch of n operations (docs/FORMAT.md section 4). */
int kv_write_batch(kv_db *db, const kv_op *ops, uint32_t n);
/* Makes every write acknowledged so far durable (fdatasync). */
int kv_sync(kv_db *db);

/* `now` of the reads below (kv_get, kv_get_tl, kv_get_into, kv_open_value, kv_list):
 * seconds since the epoch, or KV_NOW_SYSTEM for the system's real-time clock
 * read by the core itself, which spares a caller with no clock of its own a
 * clock call and a conversion per read. */
#define KV_NOW_SYSTEM   0xFFFFFFFFFFFFFFFF
/* Reads the newest value of key into buf.  0 found; KV_ENOTFOUND when absent or
 * expired at now; KV_ECORRUPT when the record failed its checksum (out->seg_id
 * and out->offset name it). */
int kv_get(kv_db *db, const char *key, uint32_t klen, uint64_t now, kv_buf *buf, kv_value *out);
/* kv_get into the calling thread's own buffer, for callers that cross into C
 * per read (one call instead of passing a buffer and an out struct).  Returns
 * the value's length; KV_GET_MISSING when absent or expired at now;
 * KV_GET_FAILED when the read failed: kv_get_tl_rc() is its code and
 * kv_get_tl_value() its kv_value (seg_id and offset of a corrupt record).  The
 * value lies at kv_get_tl_data() until this thread's next kv_get_tl.
 * A record longer than KV_GET_TL_MAX bytes is not copied (the buffer would stay
 * that large): only its header, key and metadata are read and checked, and the
 * result is KV_GET_LARGE with the value's length in kv_get_tl_value()->vlen,
 * for the caller to read it with kv_get_into. */
#define KV_GET_MISSING  -1
#define KV_GET_FAILED   -2
#define KV_GET_LARGE    -3
#define KV_GET_TL_MAX   262144
int64_t kv_get_tl(kv_db *db, const char *key, uint32_t klen, uint64_t now);
const char *kv_get_tl_data(void);
int kv_get_tl_rc(void);
const kv_value *kv_get_tl_value(void);
/* Reads the newest value of key straight into dst, which holds cap bytes, and
 * checks it as it goes.  0 found: out->vlen is the value's length, and the value
 * was copied only when out->vlen == cap (otherwise nothing was: the key was
 * overwritten since the caller sized dst; size it again).  Otherwise as kv_get. */
int kv_get_into(kv_db *db, const char *key, uint32_t klen, uint64_t now, char *dst,
                uint64_t cap, kv_value *out);
/* For streaming reads: verifies the record, then returns a new descriptor of its
 * segment in *fd_out (the caller closes it) and the value's file offset in
 * out->value_off; meta is copied into buf.  Same results as kv_get. */
int kv_open_value(kv_db *db, const char *key, uint32_t klen, uint64_t now, kv_buf *buf,
                  kv_value *out, int *fd_out);
/* What a listed page holds, in kv_list's *found: the caller can skip a column
 * that is zero throughout without looking at each item. */
#define KV_LIST_EXPIRING  1   /* some item has an expiration */
#define KV_LIST_META      2   /* some item has metadata */
#define KV_LIST_BAD       4   /* some item's status is set */
/* Lists up to limit unexpired keys with the given prefix in byte order, starting
 * after `after` (alen 0: from the start of the prefix).  The keys go into buf back
 * to back from offset 0, then the metadata when want_meta; *more = 1 when more
 * keys follow; *found = the KV_LIST_* flags of the items. */
int kv_list(kv_db *db, const char *prefix, uint32_t plen, const char *after, uint32_t alen,
            uint64_t now, uint32_t limit, int want_meta, kv_buf *buf, kv_list_item *items,
            uint32_t *n_out, int *more, uint32_t *found);
/* Counts unexpired keys with prefix and their padded record bytes. */
int kv_count_prefix(kv_db *db, const char *prefix, uint32_t plen, uint64_t now,
                    uint64_t *keys, uint64_t *bytes);

int kv_stats_get(kv_db *db, uint64_t now, kv_stats *out);
/* Fills up to cap segment descriptions, oldest first; *n = how many exist. */
int kv_segments(kv_db *db, uint64_t now, kv_seg_info *out, uint32_t cap, uint32_t *n);
uint32_t kv_damage_count(kv_db *db);
int kv_damage_get(kv_db *db, uint32_t i, kv_damage *out);

void kv_buf_free(kv_buf *buf);

/* ---- compaction (docs/FORMAT.md section 7.1) and hint files (section 6) ---- */
#define KV_COMPACT_DRY_RUN      1   /* decide and count, write nothing */
#define KV_COMPACT_SEAL_ACTIVE  2   /* seal the active segment first and include it */

/* Reasons a record is dropped (indices of dropped_records / dropped_bytes). */
#define KV_DROP_OVERWRITTEN  0   /* a newer version of the key exists */
#define KV_DROP_DELETED      1   /* the key was deleted */
#define KV_DROP_EXPIRED      2   /* expired at the compaction's now */
#define KV_DROP_TOMBSTONE    3   /* DELETE / EXPIRE / BATCH_COMMIT no longer needed */

typedef struct kv_compact kv_compact;

typedef struct kv_compact_report {
    uint64_t segments_in;
    uint64_t segments_out;
    uint64_t bytes_in;             /* file bytes of the input segments */
    uint64_t bytes_out;            /* file bytes of the output segments */
    uint64_t bytes_read;           /* input bytes consumed so far */
    uint64_t bytes_total;          /* input bytes to consume */
    uint64_t bytes_written;        /* record bytes written to outputs (with headers) */
    uint64_t records_kept;
    uint64_t expire_tombstones;    /* EXPIRE records written for dropped expired PUTs */
    uint64_t raced;                /* copies not installed: a write replaced the key meanwhile */
    uint64_t dropped_records[4];   /* by KV_DROP_* */
    uint64_t dropped_bytes[4];     /* padded bytes, by KV_DROP_* */
} kv_compact_report;

/* Starts a compaction of the n sealed segments ids (n 0: every sealed, undamaged
 * segment) at time now, with KV_COMPACT_* flags.  The work is done by
 * kv_compact_step calls (each a bounded slice, so the caller can report
 * progress and stop early) and made visible by kv_compact_finish; neither
 * holds the writer lock except for brief moments.  kv_compact_free releases the
 * context, removing unfinished outputs.  One compaction at a time: KV_EBUSY.
 * Errors: KV_EINVAL (an id that is missing, active or damaged), KV_EREADONLY. */
int  kv_compact_begin(kv_db *db, uint64_t now, const uint64_t *ids, uint32_t n, int flags,
                      kv_compact **out);
/* Consumes about budget input bytes; *finished = 1 when all input is read.
 * KV_ECORRUPT when an input turned out damaged (the compaction is abandoned). */
int  kv_compact_step(kv_compact *c, uint64_t budget, int *finished);
/* Fills the report so far (works at any stage). */
void kv_compact_progress(const kv_compact *c, kv_compact_report *out);
/* Makes the outputs durable, switches the index, retires the inputs. */
int  kv_compact_finish(kv_compact *c, kv_compact_report *out);
void kv_compact_free(kv_compact *c);

/* Writes the hint files of segments sealed since the last call (a writer's
 * background duty; also done by kv_close and by compaction). */
int  kv_hint_flush(kv_db *db);

/* Read-only check of the hint file <id>.hint in the store directory dir
 * against its segment, without opening the store: 0 when valid; KV_ECORRUPT
 * with *bad_off the offset in the hint file of the first problem; ENOENT when
 * the hint (or its segment) does not exist; another errno or KV_ENOMEM. */
int  kv_hint_check(const char *dir, uint64_t seg_id, uint64_t *bad_off);

/* CDEF-END */

/* kv_get_tl in two halves, for a binding that holds an interpreter lock it
 * releases only around work that may wait (engine._hotpath): a miss or a
 * record in the cache never waits, and releasing and taking the lock back
 * would cost it as much as the lookup.  kv_get_tl_begin never waits for the
 * index lock and never reads a file; it answers as kv_get_tl does, or
 *   KV_GET_BUSY     a writer held the index lock: nothing is held; call
 *                   kv_get_tl, which waits for it;
 *   KV_GET_PENDING  the record must be read from its file: it is located and
 *                   its segment pinned for this thread, whose next read must be
 *                   kv_get_tl_finish with the same key, which reads it and
 *                   answers as kv_get_tl does.
 * Outside the cdef: through cffi every call releases the lock anyway. */
#define KV_GET_BUSY     -4
#define KV_GET_PENDING  -5
int64_t kv_get_tl_begin(kv_db *db, const char *key, uint32_t klen, uint64_t now);
int64_t kv_get_tl_finish(const char *key, uint32_t klen);

#endif

/*
 * kv_db.h -- the handle's internal state, shared by kv_db.c (lifecycle and
 * writes), kv_recover.c (open-time scan) and kv_read.c (reads, listing, stats).
 *
 * Locking (in this order when several are held):
 *   synclock  one fdatasync at a time; group commit waits here
 *   wlock     the single writer: appends, rollover, index mutation
 *   ixlock    rwlock over the index and segment table membership; readers
 *             take it shared only to look up and pin a segment, then read
 *             the file without any lock
 * A segment's refs pin it: a reader increments refs under ixlock before it
 * reads the file, so a segment is closed only when nobody reads it.
 *
 * compactlock (taken before all others) serialises compaction calls and hint
 * flushes; a compaction holds it only inside each call, never between them,
 * and takes wlock + ixlock only for short slices (adding its outputs, a
 * chunk of index switch-over, retiring its inputs), so puts keep flowing.
 * Segment-table membership (db->segs) changes only under wlock + ixlock.
 */
#ifndef KV_DB_H
#define KV_DB_H

#include <pthread.h>
#include <stdint.h>

#include "kv.h"
#include "kv_cache.h"
#include "kv_hint.h"
#include "kv_index.h"
#include "kv_segment.h"

#define KV_MAX_SEGS 65535u
#define KV_MAX_BATCH_BYTES (1u << 30)
#define KV_MAX_SEGMENT_BYTES (2u << 30)

typedef struct kv_segfile {
    uint64_t id;               /* segment id (file name) */
    int      fd;               /* open descriptor; read-write only for the active segment */
    uint32_t flags;            /* header flags (KV_SEG_F_*) */
    int      header_ok;        /* header validated at open */
    uint64_t size;             /* bytes in the file; the active segment's append offset */
    uint64_t live_bytes;       /* padded bytes of records the index points at */
    uint64_t live_records;     /* records the index points at */
    uint64_t tomb_bytes;       /* padded bytes of DELETE / EXPIRE records */
    uint64_t min_seq;          /* lower bound of the sequence numbers in the file */
    int      damaged;          /* damage reported: never compacted, no hint */
    int      sealed;           /* takes no more records; its hint is queued or abandoned */
    int      hinted;           /* a valid <id>.hint describes the file */
    int      compacting;       /* an input of the compaction in progress */
    uint32_t refs;             /* readers currently using fd (atomic) */
} kv_segfile;

/* A sealed segment whose hint waits to be written (kv_hint_flush). */
typedef struct kv_pending_hint {
    uint64_t    seg_id;
    uint64_t    data_size;
    kv_hint_buf hint;
} kv_pending_hint;

struct kv_db {
    int              dirfd;        /* the store directory */
    int              lockfd;       /* LOCK file holding the writer flock, -1 if readonly */
    int              readonly;     /* opened with kv_options.readonly */
    int              sync_mode;    /* KV_SYNC_* */
    uint64_t         max_seg;      /* rollover threshold */
    int              closed;       /* set by kv_close; later calls get KV_ECLOSED */
    int              failed;       /* errno of a failed sync/repair: writes refused */
    pthread_mutex_t  synclock;
    pthread_mutex_t  wlock;
    pthread_rwlock_t ixlock;
    kv_index        *ix;           /* key -> newest record */
    kv_segfile     **segs;         /* slot -> segment, KV_MAX_SEGS slots */
    int              active;       /* slot being appended to, -1 when none */
    uint64_t         next_seq;     /* next record sequence number */
    uint64_t         next_seg_id;  /* id for the next new segment */
    uint64_t         written_seq;  /* last sequence number appended */
    uint64_t         synced_seq;   /* every record up to this one is fdatasynced */
    kv_damage       *damage;       /* reports from open, and of corrupt reads */
    uint32_t         ndamage;
    uint32_t         damage_cap;
    uint64_t         torn_cut;     /* bytes cut off at open */
    uint64_t         writes;       /* records appended */
    uint64_t         syncs;        /* fdatasync calls */
    pthread_mutex_t  compactlock;
    int              compacting;   /* a kv_compact context exists */
    kv_hint_buf      hint_acc;     /* hint entries of the active segment */
    int              hint_acc_ok;  /* 0: the active segment gets no hint when sealed */
    kv_pending_hint *pending;      /* sealed segments awaiting their hint (wlock) */
    uint32_t         npending;
    uint32_t         pending_cap;
    uint64_t         hinted_segs;  /* loaded from hints at open */
    uint64_t         hints_bad;    /* hints rejected at open */
    kv_cache        *cache;        /* recently read records; NULL: none (kv_cache.h) */
};

/* kv_db.c */
int  kv_db_add_damage(kv_db *db, uint64_t seg_id, uint64_t off, uint64_t len, int kind);
int  kv_db_new_slot(kv_db *db, kv_segfile *sf, uint16_t *slot);
int  kv_db_start_segment(kv_db *db);
void kv_db_unpin(kv_segfile *sf);
/* Seals the active segment if it holds records and starts a new one.  Caller holds wlock. */
int  kv_db_seal_active(kv_db *db);
/* Slot of segment id, or -1.  Caller holds wlock or ixlock. */
int  kv_db_find_slot(const kv_db *db, uint64_t id);
static inline int kv_expired(uint32_t expiration, uint64_t now)
{
    return expiration != 0 && now >= expiration;
}
static inline uint32_t kv_sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* kv_recover.c: rebuilds the index from the segment files (FORMAT.md section 5). */
int kv_recover(kv_db *db);


#endif

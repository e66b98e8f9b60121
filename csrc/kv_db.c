/*
 * kv_db.c -- the store handle: open and close, the single-writer append
 * path, segment rollover, batches and group commit.
 *
 * Implements docs/FORMAT.md sections 4 and 7.  Invariants kept here:
 *   - a record reaches the index only after the whole record is in the file;
 *     a failed write is cut off again (ftruncate to its start) before the
 *     error returns, so the next append follows a valid record (R10);
 *   - in KV_SYNC_ALWAYS a write returns only after an fdatasync that covers
 *     it; concurrent writers share one fdatasync (group commit);
 *   - a failed fdatasync stops the handle (KV_EFAILED) rather than retrying:
 *     the kernel may have dropped the dirty pages (R9);
 *   - a new segment's header and directory entry are durable before any
 *     record is placed in it (R2), the old segment is fdatasynced when sealed.
 */
#define _GNU_SOURCE
#include "kv_db.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv_io.h"

static const uint8_t zeros[KV_REC_ALIGN];
/* Records up to this size are assembled in one stack buffer and written whole. */
#define SMALL_RECORD 4096

const char *kv_version(void)
{
    return KV_PACKAGE_VERSION;
}

int kv_db_add_damage(kv_db *db, uint64_t seg_id, uint64_t off, uint64_t len, int kind)
{
    if (db->ndamage == db->damage_cap) {
        uint32_t cap = db->damage_cap ? db->damage_cap * 2 : 16;
        kv_damage *d = realloc(db->damage, cap * sizeof *d);
        if (!d)
            return KV_ENOMEM;
        db->damage = d;
        db->damage_cap = cap;
    }
    kv_damage *d = &db->damage[db->ndamage++];
    d->seg_id = seg_id;
    d->offset = off;
    d->length = len;
    d->kind = kind;
    d->reserved = 0;
    return 0;
}

int kv_db_new_slot(kv_db *db, kv_segfile *sf, uint16_t *slot)
{
    for (uint32_t i = 0; i < KV_MAX_SEGS; i++) {
        if (!db->segs[i]) {
            db->segs[i] = sf;
            *slot = (uint16_t)i;
            return 0;
        }
    }
    return KV_ETOOBIG;
}

void kv_db_unpin(kv_segfile *sf)
{
    __atomic_sub_fetch(&sf->refs, 1, __ATOMIC_RELEASE);
}

int kv_db_find_slot(const kv_db *db, uint64_t id)
{
    for (uint32_t i = 0; i < KV_MAX_SEGS; i++)
        if (db->segs[i] && db->segs[i]->id == id)
            return (int)i;
    return -1;
}

/* Creates the next segment and makes it the active one.  Caller holds wlock
 * (or is kv_open, alone with the handle). */
int kv_db_start_segment(kv_db *db)
{
    char name[32];
    kv_seg_hdr h = {KV_FORMAT_VERSION, 0, db->next_seg_id, db->next_seq, 0};
    kv_segfile *sf = calloc(1, sizeof *sf);
    uint16_t slot;
    int fd, rc, sync_failed = 0;

    if (!sf)
        return KV_ENOMEM;
    kv_seg_name(name, h.id, ".seg");
    rc = kv_seg_create(db->dirfd, name, &h, &fd, &sync_failed);
    if (rc) {
        /* A failed write or open costs only this attempt (the file is gone
         * again); a failed fdatasync is never shrugged off (R9). */
        if (sync_failed)
            db->failed = rc;
        free(sf);
        return rc;
    }
    rc = kv_io_fsync(db->dirfd);
    if (rc) {
        /* The new file's directory entry may or may not be durable, and a failed
         * fsync is never retried (R9): the handle stops, reopening recovers. */
        kv_io_close(fd);
        free(sf);
        db->failed = rc;
        return rc;
    }
    sf->id = h.id;
    sf->fd = fd;
    sf->header_ok = 1;
    sf->size = KV_SEG_HDR_SIZE;
    sf->min_seq = UINT64_MAX;
    pthread_rwlock_wrlock(&db->ixlock);
    rc = kv_db_new_slot(db, sf, &slot);
    pthread_rwlock_unlock(&db->ixlock);
    if (rc) {
        kv_io_close(fd);
        kv_io_unlinkat(db->dirfd, name); /* or the next attempt finds its name taken */
        free(sf);
        return rc;
    }
    db->next_seg_id++;
    db->active = slot;
    kv_hint_buf_free(&db->hint_acc);
    db->hint_acc_ok = 1;
    return 0;
}

/* Queues the hint of the segment being sealed for kv_hint_flush (FORMAT.md
 * section 6): its entries were collected as its records were published, so
 * writing it costs no read of the segment.  The accumulator is handed over
 * whole and then disowned: until kv_db_start_segment gives the next segment a
 * fresh one, nothing collected can be mistaken for a segment's complete hint.
 * Caller holds wlock. */
static void queue_hint(kv_db *db, kv_segfile *sf)
{
    int ok = db->hint_acc_ok && !sf->damaged;
    sf->sealed = 1;
    db->hint_acc_ok = 0;
    if (!ok) {
        kv_hint_buf_free(&db->hint_acc);
        return;
    }
    if (db->npending == db->pending_cap) {
        uint32_t cap = db->pending_cap ? db->pending_cap * 2 : 8;
        kv_pending_hint *p = realloc(db->pending, cap * sizeof *p);
        if (!p) {
            kv_hint_buf_free(&db->hint_acc); /* no hint: the next open scans the segment */
            return;
        }
        db->pending = p;
        db->pending_cap = cap;
    }
    db->pending[db->npending++] = (kv_pending_hint){sf->id, sf->size, db->hint_acc};
    kv_hint_buf_init(&db->hint_acc);
}

/* Seals the active segment: on disk whole (R8: damage there is corruption
 * from now on), its hint queued.  The fdatasync is paid here in every sync
 * mode, before the next segment receives a record: otherwise a power cut could
 * keep a later segment while an earlier one lost its tail, a hole that no open
 * can see (recovery only cuts the tail of the newest segment).  Caller holds
 * wlock. */
static int seal(kv_db *db, kv_segfile *cur)
{
    int rc = kv_io_datasync(cur->fd);
    db->syncs++;
    if (rc) {
        db->failed = rc;
        return rc;
    }
    __atomic_store_n(&db->synced_seq, db->written_seq, __ATOMIC_RELEASE);
    queue_hint(db, cur);
    return 0;
}

/* A segment is sealed once.  It stays the active one until its successor
 * exists, and starting that can fail (ENOSPC, EMFILE) and be retried by the
 * next write: the retry must neither append to the sealed segment nor seal it
 * again, or its second hint (of only the records after the first seal) would
 * replace the first and hide the earlier records at open. */
int kv_db_seal_active(kv_db *db)
{
    kv_segfile *cur = db->active >= 0 ? db->segs[db->active] : NULL;
    int rc;
    if (cur && !cur->sealed && cur->size == KV_SEG_HDR_SIZE)
        return 0;
    if (cur && !cur->sealed && (rc = seal(db, cur)) != 0)
        return rc;
    return kv_db_start_segment(db);
}

/* Makes room for `need` bytes in the active segment, sealing it and starting a
 * new one when it is full (or was sealed by an earlier attempt whose new
 * segment could not be created).  An empty segment takes a record of any
 * size, so a maximal value always fits.  Caller holds wlock. */
static int ensure_room(kv_db *db, uint64_t need)
{
    kv_segfile *cur = db->active >= 0 ? db->segs[db->active] : NULL;
    if (cur && !cur->sealed &&
        (cur->size + need <= db->max_seg || cur->size == KV_SEG_HDR_SIZE))
        return 0;
    if (cur && !cur->sealed) {
        int rc = seal(db, cur);
        if (rc)
            return rc;
    }
    return kv_db_start_segment(db);
}

static int check_writable(kv_db *db)
{
    if (db->closed)
        return KV_ECLOSED;
    if (db->readonly)
        return KV_EREADONLY;
    if (db->failed)
        return KV_EFAILED;
    return 0;
}

/* Cuts a failed append back off the file.  If even that fails the file's end
 * is unknown and the handle stops. */
static void undo_append(kv_db *db, kv_segfile *sf, uint64_t off)
{
    if (kv_io_truncate(sf->fd, off) != 0)
        db->failed = EIO;
}

/* Waits until every record up to seq is on stable storage. */
static int group_sync(kv_db *db, uint64_t seq)
{
    int rc = 0;
    pthread_mutex_lock(&db->synclock);
    if (__atomic_load_n(&db->synced_seq, __ATOMIC_ACQUIRE) >= seq)
        goto out;
    pthread_mutex_lock(&db->wlock);
    if (db->closed || db->failed || db->active < 0) {
        rc = db->closed ? KV_ECLOSED : db->failed ? KV_EFAILED : 0;
        pthread_mutex_unlock(&db->wlock);
        goto out;
    }
    uint64_t target = db->written_seq;
    int fd = db->segs[db->active]->fd;
    pthread_mutex_unlock(&db->wlock);
    /* Records before the active segment were synced when it was sealed, so one
     * fdatasync of the active segment covers everything up to target. */
    rc = kv_io_datasync(fd);
    __atomic_add_fetch(&db->syncs, 1, __ATOMIC_RELAXED);
    if (rc) {
        __atomic_store_n(&db->failed, rc, __ATOMIC_RELEASE);
        goto out;
    }
    if (target > __atomic_load_n(&db->synced_seq, __ATOMIC_ACQUIRE))
        __atomic_store_n(&db->synced_seq, target, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&db->synclock);
    return rc;
}

int kv_sync(kv_db *db)
{
    int rc;
    pthread_mutex_lock(&db->wlock);
    rc = db->closed ? KV_ECLOSED : db->readonly ? 0 : db->failed ? KV_EFAILED : 0;
    uint64_t seq = db->written_seq;
    pthread_mutex_unlock(&db->wlock);
    if (rc || db->readonly)
        return rc;
    return group_sync(db, seq);
}

/* Publishes a record written at (slot, off) in the index and the accounting.
 * Caller holds wlock. */
static int publish(kv_db *db, const char *key, uint32_t klen, const kv_rec *r, uint16_t slot,
                   uint64_t off)
{
    kv_loc loc, old;
    int had_old = 0, rc = 0;
    uint64_t padded = kv_pad8(kv_rec_size(r->klen, r->mlen, r->vlen));
    kv_segfile *sf = db->segs[slot];

    pthread_rwlock_wrlock(&db->ixlock);
    if (r->type == KV_REC_PUT) {
        loc.rec_off = (uint32_t)off;
        loc.rec_len = (uint32_t)kv_rec_size(r->klen, r->mlen, r->vlen);
        loc.expiration = kv_sat32(r->expiration);
        loc.seg = slot;
        loc.flags = r->mlen ? KV_LOC_HAS_META : 0;
        rc = kv_index_put(db->ix, key, klen, &loc, &old, &had_old, NULL);
        if (!rc) {
            sf->live_bytes += padded;
            sf->live_records++;
        }
    } else {
        had_old = kv_index_del(db->ix, key, klen, &old);
        sf->tomb_bytes += padded;
    }
    if (!rc) {
        if (r->seq < sf->min_seq)
            sf->min_seq = r->seq;
        if (db->hint_acc_ok &&
            kv_hint_add(&db->hint_acc, r->type, r->mlen != 0, key, klen, off,
                        kv_rec_size(r->klen, r->mlen, r->vlen), r->seq, r->expiration) != 0)
            db->hint_acc_ok = 0; /* out of memory: this segment will be scanned instead */
    }
    if (had_old) {
        kv_segfile *os = db->segs[old.seg];
        os->live_bytes -= kv_pad8(old.rec_len);
        os->live_records--;
    }
    pthread_rwlock_unlock(&db->ixlock);
    return rc;
}

static int validate_sizes(uint32_t klen, uint32_t mlen, uint64_t vlen)
{
    if (klen > KV_MAX_KEY || mlen > KV_MAX_META || vlen > KV_MAX_VALUE)
        return KV_ETOOBIG;
    return 0;
}

/* Appends one record whose value comes from memory.  Caller holds wlock. */
static int append_one(kv_db *db, int type, const char *key, uint32_t klen, const char *meta,
                      uint32_t mlen, const char *value, uint64_t vlen, uint64_t expiration,
                      uint64_t *seq_out)
{
    uint8_t hdr[KV_REC_HDR_SIZE];
    kv_xxh64_state st;
    kv_rec r = {(uint8_t)type, 0, klen, mlen, (uint32_t)vlen, db->next_seq, expiration, 0};
    uint64_t size = kv_rec_size(klen, mlen, (uint32_t)vlen);
    uint64_t padded = kv_pad8(size);
    int rc = ensure_room(db, padded);
    if (rc)
        return rc;
    kv_segfile *sf = db->segs[db->active];
    uint64_t off = sf->size;

    kv_rec_begin(hdr, &r, key, meta, &st);
    kv_xxh64_update(&st, value, (size_t)vlen);
    kv_rec_seal(hdr, &st, key, klen, meta, mlen);
    struct iovec iov[5] = {
        {hdr, sizeof hdr},
        {(void *)key, klen},
        {(void *)meta, mlen},
        {(void *)value, (size_t)vlen},
        {(void *)zeros, (size_t)(padded - size)},
    };
    if (padded <= SMALL_RECORD) {
        /* One contiguous buffer: a single-segment write costs the kernel less
         * than gathering five pieces, more than the copy costs here. */
        uint8_t rec[SMALL_RECORD];
        size_t at = 0;
        for (int i = 0; i < 5; i++) {
            if (iov[i].iov_len) /* a NULL base with no bytes is never copied from */
                memcpy(rec + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        struct iovec one = {rec, at};
        rc = kv_io_pwritev(sf->fd, &one, 1, off);
    } else {
        rc = kv_io_pwritev(sf->fd, iov, 5, off);
    }
    if (rc) {
        undo_append(db, sf, off);
        return rc;
    }
    rc = publish(db, key, klen, &r, (uint16_t)db->active, off);
    if (rc) {
        undo_append(db, sf, off);
        return rc;
    }
    sf->size = off + padded;
    db->next_seq++;
    db->written_seq = r.seq;
    db->writes++;
    *seq_out = r.seq;
    return 0;
}

static int finish_write(kv_db *db, int rc, uint64_t seq)
{
    pthread_mutex_unlock(&db->wlock);
    if (rc == 0 && db->sync_mode == KV_SYNC_ALWAYS)
        rc = group_sync(db, seq);
    return rc;
}

int kv_put(kv_db *db, const char *key, uint32_t klen, const char *meta, uint32_t mlen,
           const char *value, uint64_t vlen, uint64_t expiration)
{
    uint64_t seq = 0;
    int rc = validate_sizes(klen, mlen, vlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&db->wlock);
    rc = check_writable(db);
    if (!rc)
        rc = append_one(db, KV_REC_PUT, key, klen, meta, mlen, value, vlen, expiration, &seq);
    return finish_write(db, rc, seq);
}

int kv_delete(kv_db *db, const char *key, uint32_t klen, int *existed)
{
    uint64_t seq = 0;
    kv_loc loc;
    int present = 0;
    int rc = validate_sizes(klen, 0, 0);
    if (existed)
        *existed = 0;
    if (rc)
        return rc;
    pthread_mutex_lock(&db->wlock);
    rc = check_writable(db);
    /* Index mutators (writers, the compactor's switch-over) all hold wlock, so the
     * writer may read the index without ixlock. */
    if (!rc)
        present = kv_index_get(db->ix, key, klen, &loc);
    /* A key absent from the index has no live version on disk: no tombstone needed. */
    if (!rc && present)
        rc = append_one(db, KV_REC_DELETE, key, klen, NULL, 0, NULL, 0, 0, &seq);
    if (!rc && existed)
        *existed = present;
    return finish_write(db, rc, seq);
}

/* Hashes the first vlen bytes of the spool file fd into *st. */
static int hash_spool(int fd, uint64_t vlen, uint8_t *chunk, size_t cap, kv_xxh64_state *st)
{
    for (uint64_t pos = 0; pos < vlen;) {
        size_t want = vlen - pos < cap ? (size_t)(vlen - pos) : cap, got;
        int rc = kv_io_pread(fd, chunk, want, pos, &got);
        if (rc)
            return rc;
        if (got != want)
            return EIO; /* the spool file is shorter than promised */
        kv_xxh64_update(st, chunk, want);
        pos += want;
    }
    return 0;
}

/* Appends a PUT whose value is the first vlen bytes of the spool file fd.  The
 * value is hashed first, so that the record can be written as every record is:
 * header first (FORMAT.md section 7).  A crash during the copy leaves a torn
 * record whose value bytes a reader never searches for records. */
int kv_put_fd(kv_db *db, const char *key, uint32_t klen, const char *meta, uint32_t mlen,
              int fd, uint64_t vlen, uint64_t expiration)
{
    enum { CHUNK = 1 << 20 };
    uint8_t hdr[KV_REC_HDR_SIZE];
    kv_xxh64_state st;
    uint64_t seq = 0;
    int rc = validate_sizes(klen, mlen, vlen);
    if (rc)
        return rc;
    uint8_t *chunk = malloc(CHUNK);
    if (!chunk)
        return KV_ENOMEM;
    pthread_mutex_lock(&db->wlock);
    rc = check_writable(db);
    kv_rec r = {KV_REC_PUT, 0, klen, mlen, (uint32_t)vlen, db->next_seq, expiration, 0};
    uint64_t size = kv_rec_size(klen, mlen, (uint32_t)vlen);
    uint64_t padded = kv_pad8(size);
    if (!rc)
        rc = ensure_room(db, padded);
    if (rc)
        goto done;
    kv_segfile *sf = db->segs[db->active];
    uint64_t off = sf->size;
    kv_rec_begin(hdr, &r, key, meta, &st);
    rc = hash_spool(fd, vlen, chunk, CHUNK, &st);
    if (rc)
        goto done; /* nothing written yet */
    kv_rec_seal(hdr, &st, key, klen, meta, mlen);
    struct iovec iov[3] = {{hdr, sizeof hdr}, {(void *)key, klen}, {(void *)meta, mlen}};
    rc = kv_io_pwritev(sf->fd, iov, 3, off);
    uint64_t dst = off + KV_REC_HDR_SIZE + klen + mlen;
    for (uint64_t pos = 0; !rc && pos < vlen;) {
        size_t want = vlen - pos < CHUNK ? (size_t)(vlen - pos) : CHUNK, got;
        rc = kv_io_pread(fd, chunk, want, pos, &got);
        if (!rc && got != want)
            rc = EIO;
        if (!rc) {
            struct iovec v = {chunk, want};
            rc = kv_io_pwritev(sf->fd, &v, 1, dst + pos);
        }
        pos += want;
    }
    if (!rc && padded > size) {
        struct iovec pad = {(void *)zeros, (size_t)(padded - size)};
        rc = kv_io_pwritev(sf->fd, &pad, 1, off + size);
    }
    if (!rc)
        rc = publish(db, key, klen, &r, (uint16_t)db->active, off);
    if (rc) {
        undo_append(db, sf, off);
        goto done;
    }
    sf->size = off + padded;
    db->next_seq++;
    db->written_seq = r.seq;
    db->writes++;
    seq = r.seq;
done:
    free(chunk);
    return finish_write(db, rc, seq);
}

/* A batch is one append of its member records and a BATCH_COMMIT (FORMAT.md
 * section 4).  It is validated whole before anything is written. */
int kv_write_batch(kv_db *db, const kv_op *ops, uint32_t n)
{
    uint64_t total = 0, seq = 0;
    int rc = 0;
    if (n == 0)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        const kv_op *op = &ops[i];
        if (op->type != KV_OP_PUT && op->type != KV_OP_DELETE)
            return KV_EINVAL;
        uint64_t vlen = op->type == KV_OP_PUT ? op->vlen : 0;
        uint32_t mlen = op->type == KV_OP_PUT ? op->mlen : 0;
        if ((rc = validate_sizes(op->klen, mlen, vlen)) != 0)
            return rc;
        total += kv_pad8(kv_rec_size(op->klen, mlen, (uint32_t)vlen));
    }
    total += kv_pad8(kv_rec_size(0, 0, KV_BATCH_COMMIT_VLEN));
    if (total > KV_MAX_BATCH_BYTES)
        return KV_ETOOBIG;

    /* Headers of all records, then the commit record's 16-byte value. */
    uint8_t *hdrs = malloc(((size_t)n + 1) * KV_REC_HDR_SIZE + KV_BATCH_COMMIT_VLEN);
    struct iovec *iov = malloc(((size_t)n * 5 + 2) * sizeof *iov);
    kv_rec *recs = malloc(((size_t)n + 1) * sizeof *recs);
    if (!hdrs || !iov || !recs) {
        rc = KV_ENOMEM;
        goto free_out;
    }
    pthread_mutex_lock(&db->wlock);
    rc = check_writable(db);
    if (!rc)
        rc = ensure_room(db, total);
    if (rc)
        goto unlock_out;

    kv_segfile *sf = db->segs[db->active];
    uint64_t off = sf->size, first = db->next_seq;
    int k = 0;
    for (uint32_t i = 0; i < n; i++) {
        kv_xxh64_state st;
        uint8_t *h = hdrs + (size_t)i * KV_REC_HDR_SIZE;
        const kv_op *op = &ops[i];
        int put = op->type == KV_OP_PUT;
        kv_rec *r = &recs[i];
        *r = (kv_rec){put ? KV_REC_PUT : KV_REC_DELETE, KV_REC_F_BATCH, op->klen,
                      put ? op->mlen : 0, put ? (uint32_t)op->vlen : 0, first + i,
                      put ? op->expiration : 0, 0};
        kv_rec_begin(h, r, op->key, op->meta, &st);
        kv_xxh64_update(&st, op->value, r->vlen);
        kv_rec_seal(h, &st, op->key, r->klen, op->meta, r->mlen);
        uint64_t size = kv_rec_size(r->klen, r->mlen, r->vlen);
        iov[k++] = (struct iovec){h, KV_REC_HDR_SIZE};
        iov[k++] = (struct iovec){(void *)op->key, r->klen};
        iov[k++] = (struct iovec){(void *)op->meta, r->mlen};
        iov[k++] = (struct iovec){(void *)op->value, r->vlen};
        iov[k++] = (struct iovec){(void *)zeros, (size_t)(kv_pad8(size) - size)};
    }
    {
        kv_xxh64_state st;
        uint8_t *h = hdrs + (size_t)n * KV_REC_HDR_SIZE;
        uint8_t *commit = h + KV_REC_HDR_SIZE;
        kv_rec *r = &recs[n];
        kv_put64(commit, first);
        kv_put32(commit + 8, n);
        kv_put32(commit + 12, 0);
        *r = (kv_rec){KV_REC_BATCH_COMMIT, 0, 0, 0, KV_BATCH_COMMIT_VLEN, first + n, 0, 0};
        kv_rec_begin(h, r, NULL, NULL, &st);
        kv_xxh64_update(&st, commit, KV_BATCH_COMMIT_VLEN);
        kv_rec_seal(h, &st, NULL, 0, NULL, 0);
        /* 48 + 16 bytes: already a multiple of 8, no padding */
        iov[k++] = (struct iovec){h, KV_REC_HDR_SIZE + KV_BATCH_COMMIT_VLEN};
    }
    rc = kv_io_pwritev(sf->fd, iov, k, off);
    if (rc) {
        undo_append(db, sf, off);
        goto unlock_out;
    }
    uint64_t pos = off;
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = publish(db, ops[i].key, ops[i].klen, &recs[i], (uint16_t)db->active, pos);
        pos += kv_pad8(kv_rec_size(recs[i].klen, recs[i].mlen, recs[i].vlen));
    }
    if (rc) {
        /* The batch is on disk but only partly in the index: the handle can no
         * longer answer consistently; reopening applies it whole. */
        db->failed = rc;
        goto unlock_out;
    }
    /* The commit record counts as dead bytes: no reader needs it once the batch is
     * applied, and compaction always drops it (as accounting from a hint, which
     * does not list commit records, sees it too). */
    sf->size = off + total;
    if (db->hint_acc_ok)
        kv_hint_note_seq(&db->hint_acc, first + n); /* the commit has no hint entry */
    db->next_seq = first + n + 1;
    db->written_seq = first + n;
    db->writes += n + 1;
    seq = first + n;
unlock_out:
    rc = finish_write(db, rc, seq);
free_out:
    free(hdrs);
    free(iov);
    free(recs);
    return rc;
}

static int open_dir(const char *path, int readonly, int *dirfd)
{
    int fd;
    if (!readonly && mkdir(path, 0700) != 0 && errno != EEXIST)
        return errno;
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    *dirfd = fd;
    return 0;
}

int kv_open(const char *path, const kv_options *opt, kv_db **out)
{
    int rc;
    kv_db *db;

    if (!opt || (opt->sync_mode != KV_SYNC_OS && opt->sync_mode != KV_SYNC_ALWAYS))
        return KV_EINVAL;
    if (opt->max_segment_bytes < 4096 || opt->max_segment_bytes > KV_MAX_SEGMENT_BYTES)
        return KV_EINVAL;
    if (opt->read_cache_bytes && opt->read_cache_bytes < KV_MIN_READ_CACHE_BYTES)
        return KV_EINVAL;
    db = calloc(1, sizeof *db);
    if (!db)
        return KV_ENOMEM;
    db->dirfd = db->lockfd = db->active = -1;
    db->readonly = opt->readonly != 0;
    db->sync_mode = opt->sync_mode;
    db->max_seg = opt->max_segment_bytes;
    db->next_seq = 1;
    db->next_seg_id = 1;
    pthread_mutex_init(&db->synclock, NULL);
    pthread_mutex_init(&db->wlock, NULL);
    pthread_rwlock_init(&db->ixlock, NULL);
    pthread_mutex_init(&db->compactlock, NULL);
    kv_hint_buf_init(&db->hint_acc);
    db->segs = calloc(KV_MAX_SEGS, sizeof *db->segs);
    if (!db->segs) {
        rc = KV_ENOMEM;
        goto fail;
    }
    if ((rc = kv_index_new(&db->ix)) != 0)
        goto fail;
    db->cache = kv_cache_new(opt->read_cache_bytes);
    if (opt->read_cache_bytes && !db->cache) {
        rc = KV_ENOMEM;
        goto fail;
    }
    if ((rc = open_dir(path, db->readonly, &db->dirfd)) != 0)
        goto fail;
    if (!db->readonly) {
        rc = kv_io_openat(db->dirfd, "LOCK", O_RDWR | O_CREAT | O_NOFOLLOW, 0600, &db->lockfd);
        if (!rc) {
            rc = kv_io_lock(db->lockfd);
            if (rc == EWOULDBLOCK || rc == EAGAIN)
                rc = KV_ELOCKED;
        }
        if (rc)
            goto fail;
    }
    if ((rc = kv_recover(db)) != 0)
        goto fail;
    if (!db->readonly && db->active < 0 && (rc = kv_db_start_segment(db)) != 0)
        goto fail;
    db->synced_seq = db->written_seq = db->next_seq - 1;
    *out = db;
    return 0;
fail:
    kv_close(db);
    kv_free(db);
    return rc;
}

/* Writes the queued hints.  Caller holds compactlock, and not wlock. */
static int flush_hints(kv_db *db)
{
    int rc = 0, wrote = 0;
    pthread_mutex_lock(&db->wlock);
    kv_pending_hint *p = db->pending;
    uint32_t n = db->npending;
    int skip = db->closed || db->readonly || db->failed;
    db->pending = NULL;
    db->npending = db->pending_cap = 0;
    pthread_mutex_unlock(&db->wlock);
    for (uint32_t i = 0; i < n; i++) {
        /* Only compaction (serialised with this by compactlock) retires segments,
         * so a segment found here stays until the loop ends. */
        pthread_rwlock_rdlock(&db->ixlock);
        int slot = skip ? -1 : kv_db_find_slot(db, p[i].seg_id);
        kv_segfile *sf = slot >= 0 ? db->segs[slot] : NULL;
        pthread_rwlock_unlock(&db->ixlock);
        /* seal() fdatasynced the segment: the hint describes bytes on disk. */
        if (sf && sf->size == p[i].data_size && !sf->hinted && !sf->damaged) {
            int e = kv_hint_write(db->dirfd, p[i].seg_id, p[i].data_size, &p[i].hint);
            if (!e) {
                sf->hinted = 1;
                wrote = 1;
            } else if (!rc) {
                rc = e;
            }
        }
        kv_hint_buf_free(&p[i].hint);
    }
    free(p);
    if (wrote) {
        int e = kv_io_fsync(db->dirfd);
        if (e) {
            /* The directory's state on disk is unknown, segment entries too (R9). */
            __atomic_store_n(&db->failed, e, __ATOMIC_RELEASE);
            if (!rc)
                rc = e;
        }
    }
    return rc;
}

int kv_hint_flush(kv_db *db)
{
    pthread_mutex_lock(&db->compactlock);
    int rc = flush_hints(db);
    pthread_mutex_unlock(&db->compactlock);
    return rc;
}

/* At close the active segment gets a hint too, describing it at its final
 * size: the next open reads it instead of the segment, and a writer that
 * resumes appending removes it first (FORMAT.md section 6).  Caller holds
 * wlock.  A failure only costs the next open a scan. */
static void hint_active_at_close(kv_db *db)
{
    kv_segfile *sf = db->active >= 0 ? db->segs[db->active] : NULL;
    if (!sf || db->readonly || db->failed || !db->hint_acc_ok || sf->damaged ||
        sf->size == KV_SEG_HDR_SIZE)
        return;
    if (kv_hint_write(db->dirfd, sf->id, sf->size, &db->hint_acc) == 0)
        kv_io_fsync(db->dirfd);
}

int kv_close(kv_db *db)
{
    int rc = 0;
    if (!db)
        return 0;
    pthread_mutex_lock(&db->compactlock);
    if (db->compacting && !db->closed) {
        pthread_mutex_unlock(&db->compactlock);
        return KV_EBUSY;
    }
    if (!db->closed)
        flush_hints(db);
    pthread_mutex_lock(&db->synclock);
    pthread_mutex_lock(&db->wlock);
    if (db->closed) {
        pthread_mutex_unlock(&db->wlock);
        pthread_mutex_unlock(&db->synclock);
        pthread_mutex_unlock(&db->compactlock);
        return KV_ECLOSED;
    }
    if (!rc && !db->readonly && !db->failed && db->active >= 0 &&
        db->synced_seq < db->written_seq) {
        rc = kv_io_datasync(db->segs[db->active]->fd);
        db->syncs++;
        if (rc)
            db->failed = rc;
    }
    hint_active_at_close(db);
    pthread_rwlock_wrlock(&db->ixlock);
    db->closed = 1;
    pthread_rwlock_unlock(&db->ixlock);
    /* Readers that pinned a segment before `closed` was set finish their pread. */
    for (uint32_t i = 0; db->segs && i < KV_MAX_SEGS; i++) {
        kv_segfile *sf = db->segs[i];
        if (!sf)
            continue;
        while (__atomic_load_n(&sf->refs, __ATOMIC_ACQUIRE) != 0)
            sched_yield();
        int e = kv_io_close(sf->fd);
        if (!rc)
            rc = e;
        free(sf);
        db->segs[i] = NULL;
    }
    kv_index_free(db->ix);
    db->ix = NULL;
    kv_cache_free(db->cache); /* after the wait above: no reader is left in it */
    db->cache = NULL;
    if (db->dirfd >= 0)
        kv_io_close(db->dirfd);
    if (db->lockfd >= 0)
        kv_io_close(db->lockfd); /* releases the flock */
    db->dirfd = db->lockfd = -1;
    for (uint32_t i = 0; i < db->npending; i++)
        kv_hint_buf_free(&db->pending[i].hint);
    free(db->pending);
    db->pending = NULL;
    db->npending = db->pending_cap = 0;
    kv_hint_buf_free(&db->hint_acc);
    pthread_mutex_unlock(&db->wlock);
    pthread_mutex_unlock(&db->synclock);
    pthread_mutex_unlock(&db->compactlock);
    return rc;
}

void kv_free(kv_db *db)
{
    if (!db)
        return;
    if (!db->closed)
        kv_close(db);
    pthread_mutex_destroy(&db->synclock);
    pthread_mutex_destroy(&db->wlock);
    pthread_rwlock_destroy(&db->ixlock);
    pthread_mutex_destroy(&db->compactlock);
    free(db->segs);
    free(db->damage);
    free(db);
}

void kv_buf_free(kv_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->cap = 0;
}

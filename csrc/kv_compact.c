/*
 * kv_compact.c -- the compactor: rewrites sealed segments without their dead
 * records, online (docs/FORMAT.md section 7.1).
 *
 * Why it is safe:
 *   - liveness is decided against the index: a PUT is copied only while the
 *     index points at this very copy, and the switch-over replaces an index
 *     entry only where it still points at the input copy, so a write that
 *     raced the compactor wins;
 *   - nothing that could shadow an older version is dropped unless no segment
 *     outside the set can hold an older record of the key (the smallest
 *     sequence number of every other segment, min_seq, says so); an expired
 *     PUT that may shadow one leaves an EXPIRE tombstone with its sequence
 *     number in its place;
 *   - outputs (segment and hint) are durable and renamed into place before
 *     the index points at them; the inputs are named in a durable manifest
 *     before the first is unlinked, so a crash at any instant leaves inputs,
 *     outputs, or both (identical records), and open completes a manifest;
 *   - the long work (reading inputs, writing outputs) holds no lock the
 *     writer needs; wlock + ixlock are taken only to add the outputs to the
 *     segment table, for slices of the index switch-over, and to retire the
 *     inputs, whose descriptors are closed as soon as no reader pins them.
 */
#define _GNU_SOURCE
#include "kv_compact.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_io.h"

#define WBUF_SIZE (1u << 18)
#define SWITCH_SLICE 64u /* index entries switched per brief hold of the locks */
#define NO_SLOT UINT16_MAX

static const uint8_t zeros[KV_REC_ALIGN];

/* Where a copied record came from (NO_SLOT for records with no index entry). */
typedef struct move {
    uint32_t old_off;
    uint16_t old_slot;
} move;

typedef struct out_seg {
    uint64_t    id;
    uint16_t    slot;        /* in the segment table, once installed */
    int         fd;          /* -1 in a dry run, or once the table owns it */
    int         renamed;     /* <id>.seg exists (no longer .tmp) */
    uint64_t    size;        /* file bytes, header included */
    uint64_t    tomb_bytes;
    kv_hint_buf hint;        /* one entry per record written */
    move       *moves;       /* parallel to the hint entries */
    uint64_t    nmoves, movecap;
} out_seg;

struct kv_compact {
    kv_db             *db;
    uint64_t           now;
    int                flags;
    uint32_t           nin;
    kv_segfile       **in;
    uint16_t          *in_slot;
    uint64_t          *in_size;     /* bytes to read of each input */
    uint32_t           cur;         /* input being read */
    int                scanning;
    kv_scan            sc;
    uint64_t           consumed;    /* bytes of finished inputs */
    uint64_t           outside_min; /* smallest sequence number outside the set */
    uint64_t           seq_floor;   /* header seq_floor of the outputs */
    out_seg           *outs;
    uint32_t           nouts, outcap;
    uint8_t           *wbuf;        /* pending bytes of the last output */
    size_t             wlen;
    uint64_t           wend;        /* file offset just past the bytes given to out_write */
    kv_hint_buf        expired;     /* dropped expired PUTs: rec_off = offset, seq = slot */
    int                read_done;   /* every input consumed */
    int                installed;   /* outputs in the segment table */
    int                retired;     /* inputs gone from the table */
    int                discarded;   /* outputs removed from disk */
    kv_compact_report  rep;
};

/* ---- manifests ---------------------------------------------------------- */

static int write_manifest(int dirfd, uint64_t id, const uint64_t *ids, uint32_t n)
{
    size_t size = KV_MANIFEST_HDR_SIZE + (size_t)n * 8 + 8;
    uint8_t *m = malloc(size);
    char tmp[40], name[32];
    int rc;
    if (!m)
        return KV_ENOMEM;
    memcpy(m, KV_MANIFEST_MAGIC, 8);
    kv_put32(m + 8, KV_FORMAT_VERSION);
    kv_put32(m + 12, n);
    for (uint32_t i = 0; i < n; i++)
        kv_put64(m + KV_MANIFEST_HDR_SIZE + (size_t)i * 8, ids[i]);
    kv_put64(m + size - 8, kv_xxh64(m, size - 8, 0));
    kv_seg_name(name, id, ".compact");
    kv_seg_name(tmp, id, ".compact.tmp");
    struct iovec iov = {m, size};
    rc = kv_io_replace_file(dirfd, tmp, name, &iov, 1);
    if (!rc)
        rc = kv_io_fsync(dirfd);
    free(m);
    return rc;
}

/* Reads manifest `name`; 0 with the ids, KV_ECORRUPT, or an errno. */
static int read_manifest(int dirfd, const char *name, uint64_t **ids_out, uint32_t *n_out)
{
    uint64_t size;
    size_t got;
    int fd, rc = kv_io_openat(dirfd, name, O_RDONLY | O_NOFOLLOW, 0, &fd);
    if (rc)
        return rc;
    uint8_t *m = NULL;
    rc = kv_io_size(fd, &size);
    if (!rc && (size < KV_MANIFEST_HDR_SIZE + 8 ||
                size > KV_MANIFEST_HDR_SIZE + 8 + (uint64_t)KV_MAX_SEGS * 8))
        rc = KV_ECORRUPT;
    if (!rc && !(m = malloc((size_t)size)))
        rc = KV_ENOMEM;
    if (!rc)
        rc = kv_io_pread(fd, m, (size_t)size, 0, &got);
    kv_io_close(fd);
    if (!rc && (got != size || memcmp(m, KV_MANIFEST_MAGIC, 8) != 0 ||
                kv_get32(m + 8) != KV_FORMAT_VERSION ||
                KV_MANIFEST_HDR_SIZE + (uint64_t)kv_get32(m + 12) * 8 + 8 != size ||
                kv_xxh64(m, (size_t)size - 8, 0) != kv_get64(m + size - 8)))
        rc = KV_ECORRUPT;
    if (!rc) {
        uint32_t n = kv_get32(m + 12);
        uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) {
            rc = KV_ENOMEM;
        } else {
            for (uint32_t i = 0; i < n; i++)
                ids[i] = kv_get64(m + KV_MANIFEST_HDR_SIZE + (size_t)i * 8);
            *ids_out = ids;
            *n_out = n;
        }
    }
    free(m);
    return rc;
}

/* Unlinks the segments a manifest names and their hints, then the manifest. */
static int complete_manifest(int dirfd, const char *name, const uint64_t *ids, uint32_t n)
{
    int rc;
    for (uint32_t i = 0; i < n; i++) {
        char f[32];
        kv_seg_name(f, ids[i], ".seg");
        rc = kv_io_unlinkat(dirfd, f);
        if (rc && rc != ENOENT)
            return rc;
        kv_seg_name(f, ids[i], ".hint");
        rc = kv_io_unlinkat(dirfd, f);
        if (rc && rc != ENOENT)
            return rc;
    }
    if ((rc = kv_io_fsync(dirfd)) != 0)
        return rc;
    if ((rc = kv_io_unlinkat(dirfd, name)) != 0)
        return rc;
    return kv_io_fsync(dirfd);
}

int kv_manifests_apply(kv_db *db, uint64_t **ids_out, uint32_t *n_out, uint64_t *max_id)
{
    uint64_t *all = NULL;
    uint32_t nall = 0, cap = 0;
    DIR *d;
    int rc = kv_io_opendir(db->dirfd, &d);
    if (rc)
        return rc;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        uint64_t id, *ids = NULL;
        uint32_t n = 0;
        if (strlen(de->d_name) != 24 || !kv_seg_parse_id(de->d_name, ".compact", &id))
            continue;
        if (id > *max_id)
            *max_id = id;
        int e = read_manifest(db->dirfd, de->d_name, &ids, &n);
        if (e == KV_ECORRUPT) {
            rc = kv_db_add_damage(db, id, 0, 0, KV_DAMAGE_MANIFEST);
            continue;
        }
        if (e) {
            rc = e;
            break;
        }
        if (!db->readonly) {
            rc = complete_manifest(db->dirfd, de->d_name, ids, n);
        } else if (nall + n >= cap || !all) {
            uint32_t c = cap ? cap : 16;
            while (c <= nall + n)
                c *= 2;
            uint64_t *na = realloc(all, c * sizeof *na);
            if (!na) {
                rc = KV_ENOMEM;
            } else {
                all = na;
                cap = c;
            }
        }
        if (!rc && db->readonly) {
            memcpy(all + nall, ids, (size_t)n * sizeof *ids);
            nall += n;
        }
        free(ids);
    }
    closedir(d);
    if (rc) {
        free(all);
        return rc;
    }
    *ids_out = all;
    *n_out = nall;
    return 0;
}

/* ---- the copy loop ------------------------------------------------------- */

static void drop(kv_compact *c, int reason, uint64_t padded)
{
    c->rep.dropped_records[reason]++;
    c->rep.dropped_bytes[reason] += padded;
}

static int flush_wbuf(kv_compact *c)
{
    out_seg *o = c->nouts ? &c->outs[c->nouts - 1] : NULL;
    if (!o || !c->wlen || o->fd < 0) {
        c->wlen = 0;
        return 0;
    }
    struct iovec iov = {c->wbuf, c->wlen};
    uint64_t at = c->wend - c->wlen;
    int rc = kv_io_pwritev(o->fd, &iov, 1, at);
    /* Output goes to disk as it is produced rather than in one burst at the
     * final fdatasync, which would compete with the writer's puts. */
    if (!rc)
        kv_io_writeback(o->fd, at, c->wlen);
    c->wlen = 0;
    return rc;
}

/* Appends bytes to the last output (out_room already counted them in its size). */
static int out_write(kv_compact *c, const void *p, size_t n)
{
    out_seg *o = &c->outs[c->nouts - 1];
    if (o->fd < 0)
        return 0;
    if (c->wlen + n > WBUF_SIZE) {
        int rc = flush_wbuf(c);
        if (rc)
            return rc;
        if (n > WBUF_SIZE) {
            struct iovec iov = {(void *)p, n};
            rc = kv_io_pwritev(o->fd, &iov, 1, c->wend);
            c->wend += n;
            return rc;
        }
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
    c->wend += n;
    return 0;
}

static void tmp_name(char out[40], uint64_t id)
{
    kv_seg_name(out, id, ".seg.tmp");
}

/* Starts a new output segment <id>.seg.tmp. */
static int new_output(kv_compact *c)
{
    kv_db *db = c->db;
    int dry = c->flags & KV_COMPACT_DRY_RUN;
    int rc = flush_wbuf(c);
    if (rc)
        return rc;
    if (c->nouts == c->outcap) {
        uint32_t cap = c->outcap ? c->outcap * 2 : 4;
        out_seg *n = realloc(c->outs, cap * sizeof *n);
        if (!n)
            return KV_ENOMEM;
        c->outs = n;
        c->outcap = cap;
    }
    out_seg *o = &c->outs[c->nouts];
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->size = KV_SEG_HDR_SIZE;
    kv_hint_buf_init(&o->hint);
    if (!dry) {
        char name[40];
        pthread_mutex_lock(&db->wlock);
        o->id = db->next_seg_id++;
        pthread_mutex_unlock(&db->wlock);
        kv_seg_hdr h = {KV_FORMAT_VERSION, KV_SEG_F_COMPACTED, o->id, c->seq_floor, 0};
        tmp_name(name, o->id);
        int sync_failed = 0;
        if ((rc = kv_seg_create(db->dirfd, name, &h, &o->fd, &sync_failed)) != 0) {
            if (sync_failed)
                __atomic_store_n(&db->failed, rc, __ATOMIC_RELEASE); /* R9 */
            return rc;
        }
    }
    c->nouts++;
    c->wend = KV_SEG_HDR_SIZE;
    c->rep.segments_out = c->nouts;
    return 0;
}

/* Reserves room for a record of `padded` bytes; returns its offset. */
static int out_room(kv_compact *c, uint64_t padded, uint64_t *off)
{
    out_seg *o = c->nouts ? &c->outs[c->nouts - 1] : NULL;
    if (!o || (o->size + padded > c->db->max_seg && o->size > KV_SEG_HDR_SIZE)) {
        int rc = new_output(c);
        if (rc)
            return rc;
        o = &c->outs[c->nouts - 1];
    }
    *off = o->size;
    o->size += padded;
    c->rep.bytes_written += padded;
    return 0;
}

/* Records an output record in its hint and move list. */
static int note_output(kv_compact *c, const kv_rec *r, const uint8_t *key, uint64_t off,
                       uint16_t old_slot, uint64_t old_off)
{
    out_seg *o = &c->outs[c->nouts - 1];
    uint64_t len = kv_rec_size(r->klen, r->mlen, r->vlen);
    int rc = kv_hint_add(&o->hint, r->type, r->mlen != 0, key, r->klen, off, len, r->seq,
                         r->expiration);
    if (rc)
        return rc;
    if (o->nmoves == o->movecap) {
        uint64_t cap = o->movecap ? o->movecap * 2 : 1024;
        move *m = realloc(o->moves, cap * sizeof *m);
        if (!m)
            return KV_ENOMEM;
        o->moves = m;
        o->movecap = cap;
    }
    o->moves[o->nmoves++] = (move){(uint32_t)old_off, old_slot};
    if (r->type != KV_REC_PUT)
        o->tomb_bytes += kv_pad8(len);
    c->rep.records_kept++;
    return 0;
}

/* Copies a record; a batch member loses its BATCH flag (its commit record is
 * not copied, and the member was committed: FORMAT.md section 7.1), which
 * changes both checksums, so it is re-sealed. */
static int copy_record(kv_compact *c, const kv_scan_event *ev, uint16_t slot, int is_put)
{
    uint64_t size = kv_rec_size(ev->rec.klen, ev->rec.mlen, ev->rec.vlen), off;
    uint64_t padded = kv_pad8(size);
    const uint8_t *key = ev->data + KV_REC_HDR_SIZE;
    kv_rec r = ev->rec;
    int rc = out_room(c, padded, &off);
    if (rc)
        return rc;
    if (r.flags & KV_REC_F_BATCH) {
        uint8_t hdr[KV_REC_HDR_SIZE];
        kv_xxh64_state st;
        const uint8_t *meta = key + r.klen;
        r.flags = 0;
        kv_rec_begin(hdr, &r, key, meta, &st);
        kv_xxh64_update(&st, meta + r.mlen, r.vlen);
        kv_rec_seal(hdr, &st, key, r.klen, meta, r.mlen);
        rc = out_write(c, hdr, KV_REC_HDR_SIZE);
        if (!rc)
            rc = out_write(c, ev->data + KV_REC_HDR_SIZE, (size_t)size - KV_REC_HDR_SIZE);
    } else {
        rc = out_write(c, ev->data, (size_t)size);
    }
    if (!rc)
        rc = out_write(c, zeros, (size_t)(padded - size));
    if (!rc)
        rc = note_output(c, &r, key, off, is_put ? slot : NO_SLOT, ev->off);
    return rc;
}

/* Writes an EXPIRE tombstone standing in for a dropped expired PUT. */
static int write_expire(kv_compact *c, const kv_rec *put, const uint8_t *key)
{
    uint8_t hdr[KV_REC_HDR_SIZE];
    kv_xxh64_state st;
    kv_rec r = {KV_REC_EXPIRE, 0, put->klen, 0, 0, put->seq, 0, 0};
    uint64_t size = kv_rec_size(r.klen, 0, 0), off;
    uint64_t padded = kv_pad8(size);
    int rc = out_room(c, padded, &off);
    if (rc)
        return rc;
    kv_rec_begin(hdr, &r, key, NULL, &st);
    kv_rec_seal(hdr, &st, key, r.klen, NULL, 0);
    rc = out_write(c, hdr, KV_REC_HDR_SIZE);
    if (!rc)
        rc = out_write(c, key, r.klen);
    if (!rc)
        rc = out_write(c, zeros, (size_t)(padded - size));
    if (!rc)
        rc = note_output(c, &r, key, off, NO_SLOT, 0);
    if (!rc)
        c->rep.expire_tombstones++;
    return rc;
}

static int handle_record(kv_compact *c, const kv_scan_event *ev, uint16_t slot)
{
    const uint8_t *key = ev->data + KV_REC_HDR_SIZE;
    uint64_t padded = ev->end - ev->off;
    kv_loc loc;
    int present;

    if (ev->rec.type == KV_REC_BATCH_COMMIT) {
        drop(c, KV_DROP_TOMBSTONE, padded);
        return 0;
    }
    pthread_rwlock_rdlock(&c->db->ixlock);
    present = kv_index_get(c->db->ix, key, ev->rec.klen, &loc);
    pthread_rwlock_unlock(&c->db->ixlock);
    if (ev->rec.type == KV_REC_PUT) {
        int here = present && loc.seg == slot && loc.rec_off == ev->off &&
                   !(loc.flags & KV_LOC_TOMBSTONE);
        if (!here) {
            drop(c, present ? KV_DROP_OVERWRITTEN : KV_DROP_DELETED, padded);
            return 0;
        }
        if (ev->rec.expiration != 0 && c->now >= ev->rec.expiration) {
            drop(c, KV_DROP_EXPIRED, padded);
            int rc = kv_hint_add(&c->expired, KV_REC_PUT, 0, key, ev->rec.klen, ev->off, 0, slot,
                                 0);
            if (!rc && c->outside_min < ev->rec.seq)
                rc = write_expire(c, &ev->rec, key);
            return rc;
        }
        return copy_record(c, ev, slot, 1);
    }
    /* DELETE or EXPIRE: needed only while no newer version exists and an older
     * record of the key may survive outside the set. */
    if (present || c->outside_min >= ev->rec.seq) {
        drop(c, KV_DROP_TOMBSTONE, padded);
        return 0;
    }
    return copy_record(c, ev, slot, 0);
}

int kv_compact_begin(kv_db *db, uint64_t now, const uint64_t *ids, uint32_t n, int flags,
                     kv_compact **out)
{
    int dry = flags & KV_COMPACT_DRY_RUN;
    int rc = 0;
    *out = NULL;
    if (flags & ~(KV_COMPACT_DRY_RUN | KV_COMPACT_SEAL_ACTIVE))
        return KV_EINVAL;
    kv_compact *c = calloc(1, sizeof *c);
    if (!c)
        return KV_ENOMEM;
    c->db = db;
    c->now = now;
    c->flags = flags;
    kv_hint_buf_init(&c->expired);
    c->wbuf = malloc(WBUF_SIZE);
    c->in = calloc(KV_MAX_SEGS, sizeof *c->in);
    c->in_slot = calloc(KV_MAX_SEGS, sizeof *c->in_slot);
    c->in_size = calloc(KV_MAX_SEGS, sizeof *c->in_size);
    if (!c->wbuf || !c->in || !c->in_slot || !c->in_size) {
        rc = KV_ENOMEM;
        goto fail_nolock;
    }
    pthread_mutex_lock(&db->compactlock);
    if (db->closed)
        rc = KV_ECLOSED;
    else if (db->readonly && !dry)
        rc = KV_EREADONLY;
    else if (db->compacting)
        rc = KV_EBUSY;
    else if (db->failed)
        rc = KV_EFAILED;
    if (rc)
        goto fail;
    if ((flags & KV_COMPACT_SEAL_ACTIVE) && !dry && n == 0)
        rc = kv_sync(db); /* so that sealing, under wlock, has almost nothing left to sync */
    if (rc)
        goto fail;
    pthread_mutex_lock(&db->wlock);
    if ((flags & KV_COMPACT_SEAL_ACTIVE) && !dry && n == 0)
        rc = kv_db_seal_active(db);
    /* In a dry run the active segment may be read up to its current size:
     * nothing is written, so R15 (never compact the segment being appended
     * to) is not at stake. */
    int take_active = dry && (flags & KV_COMPACT_SEAL_ACTIVE) && n == 0;
    for (uint32_t i = 0; !rc && n == 0 && i < KV_MAX_SEGS; i++) {
        kv_segfile *sf = db->segs[i];
        if (!sf || sf->damaged || !sf->header_ok || ((int)i == db->active && !take_active))
            continue;
        c->in_slot[c->nin] = (uint16_t)i;
        c->in[c->nin++] = sf;
    }
    for (uint32_t k = 0; !rc && k < n; k++) {
        int slot = kv_db_find_slot(db, ids[k]);
        kv_segfile *sf = slot >= 0 ? db->segs[slot] : NULL;
        if (!sf || slot == db->active || sf->damaged || !sf->header_ok || sf->compacting) {
            rc = KV_EINVAL;
            break;
        }
        sf->compacting = 1; /* also catches an id given twice */
        c->in_slot[c->nin] = (uint16_t)slot;
        c->in[c->nin++] = sf;
    }
    c->outside_min = UINT64_MAX;
    for (uint32_t i = 0; !rc && i < KV_MAX_SEGS; i++) {
        kv_segfile *sf = db->segs[i];
        if (sf && !sf->compacting) {
            int inside = 0;
            for (uint32_t k = 0; k < c->nin && !inside; k++)
                inside = c->in[k] == sf;
            if (!inside && sf->min_seq < c->outside_min)
                c->outside_min = sf->min_seq;
        }
    }
    for (uint32_t k = 0; k < c->nin; k++) {
        c->in[k]->compacting = !rc && !dry;
        c->in_size[k] = c->in[k]->size;
        c->rep.bytes_in += c->in[k]->size;
        c->rep.bytes_total += c->in[k]->size - KV_SEG_HDR_SIZE;
    }
    c->rep.segments_in = c->nin;
    c->seq_floor = db->next_seq;
    pthread_mutex_unlock(&db->wlock);
    if (rc)
        goto fail;
    db->compacting = 1;
    pthread_mutex_unlock(&db->compactlock);
    *out = c;
    return 0;
fail:
    pthread_mutex_unlock(&db->compactlock);
fail_nolock:
    kv_hint_buf_free(&c->expired);
    free(c->wbuf);
    free(c->in);
    free(c->in_slot);
    free(c->in_size);
    free(c);
    return rc;
}

/* An input turned out damaged: it is reported and never compacted again. */
static int input_damaged(kv_compact *c, const kv_scan_event *ev)
{
    kv_db *db = c->db;
    kv_segfile *sf = c->in[c->cur];
    int kind = ev->kind == KV_SCAN_DAMAGED ? KV_DAMAGE_RECORD : KV_DAMAGE_REGION;
    pthread_mutex_lock(&db->wlock);
    kv_db_add_damage(db, sf->id, ev->off, ev->end - ev->off, kind);
    sf->damaged = 1;
    sf->min_seq = 0;
    pthread_mutex_unlock(&db->wlock);
    return KV_ECORRUPT;
}

int kv_compact_step(kv_compact *c, uint64_t budget, int *finished)
{
    kv_db *db = c->db;
    uint64_t used = 0;
    int rc = 0;
    *finished = 0;
    pthread_mutex_lock(&db->compactlock);
    if (db->closed)
        rc = KV_ECLOSED;
    while (!rc && used < budget && c->cur < c->nin) {
        kv_scan_event ev;
        if (!c->scanning) {
            rc = kv_scan_init(&c->sc, c->in[c->cur]->fd, c->in_size[c->cur], KV_SEG_HDR_SIZE);
            if (rc)
                break;
            c->scanning = 1;
        }
        if ((rc = kv_scan_next(&c->sc, &ev)) != 0)
            break;
        if (ev.kind == KV_SCAN_END) {
            kv_scan_free(&c->sc);
            c->scanning = 0;
            c->consumed += c->in_size[c->cur] - KV_SEG_HDR_SIZE;
            c->cur++;
            continue;
        }
        if (ev.kind != KV_SCAN_RECORD) {
            rc = input_damaged(c, &ev);
            break;
        }
        rc = handle_record(c, &ev, c->in_slot[c->cur]);
        used += ev.end - ev.off;
    }
    if (!rc && c->cur == c->nin) {
        c->read_done = 1;
        *finished = 1;
    }
    pthread_mutex_unlock(&db->compactlock);
    return rc;
}

void kv_compact_progress(const kv_compact *c, kv_compact_report *out)
{
    *out = c->rep;
    out->bytes_read = c->consumed + (c->scanning ? c->sc.pos - KV_SEG_HDR_SIZE : 0);
    out->bytes_out = 0;
    for (uint32_t i = 0; i < c->nouts; i++)
        out->bytes_out += c->outs[i].size;
}

/* Removes the outputs from disk (before any index entry points at them). */
static void discard_outputs(kv_compact *c)
{
    int dirty = 0;
    for (uint32_t i = 0; i < c->nouts; i++) {
        out_seg *o = &c->outs[i];
        char name[40];
        if (o->fd >= 0) {
            kv_io_close(o->fd);
            o->fd = -1;
        }
        if (c->flags & KV_COMPACT_DRY_RUN)
            continue;
        if (o->renamed) {
            kv_seg_name(name, o->id, ".seg");
            kv_io_unlinkat(c->db->dirfd, name);
            kv_seg_name(name, o->id, ".hint");
            kv_io_unlinkat(c->db->dirfd, name);
            dirty = 1;
        } else {
            tmp_name(name, o->id);
            kv_io_unlinkat(c->db->dirfd, name);
        }
    }
    if (dirty)
        kv_io_fsync(c->db->dirfd);
    c->discarded = 1;
}

/* Steps 1 and 2: outputs and their hints durable and in place. */
static int publish_outputs(kv_compact *c)
{
    kv_db *db = c->db;
    int rc = flush_wbuf(c);
    for (uint32_t i = 0; !rc && i < c->nouts; i++)
        if ((rc = kv_io_datasync(c->outs[i].fd)) != 0)
            __atomic_store_n(&db->failed, rc, __ATOMIC_RELEASE); /* R9 */
    for (uint32_t i = 0; !rc && i < c->nouts; i++) {
        out_seg *o = &c->outs[i];
        char tmp[40], name[32];
        tmp_name(tmp, o->id);
        kv_seg_name(name, o->id, ".seg");
        rc = kv_io_renameat(db->dirfd, tmp, name);
        if (!rc) {
            o->renamed = 1;
            rc = kv_hint_write(db->dirfd, o->id, o->size, &o->hint);
        }
    }
    if (!rc && (rc = kv_io_fsync(db->dirfd)) != 0)
        __atomic_store_n(&db->failed, rc, __ATOMIC_RELEASE); /* R9 */
    return rc;
}

/* Step 3a: the outputs join the segment table (nothing points at them yet). */
static int install_outputs(kv_compact *c)
{
    kv_db *db = c->db;
    uint32_t done = 0;
    int rc = 0;
    pthread_mutex_lock(&db->wlock);
    pthread_rwlock_wrlock(&db->ixlock);
    for (; done < c->nouts; done++) {
        out_seg *o = &c->outs[done];
        kv_segfile *sf = calloc(1, sizeof *sf);
        if (!sf) {
            rc = KV_ENOMEM;
            break;
        }
        sf->id = o->id;
        sf->fd = o->fd;
        sf->flags = KV_SEG_F_COMPACTED;
        sf->header_ok = 1;
        sf->size = o->size;
        sf->tomb_bytes = o->tomb_bytes;
        sf->min_seq = o->hint.min_seq;
        sf->hinted = 1;
        if ((rc = kv_db_new_slot(db, sf, &o->slot)) != 0) {
            free(sf);
            break;
        }
    }
    if (rc) {
        /* Undo: nothing in the index refers to them yet. */
        for (uint32_t i = 0; i < done; i++) {
            free(db->segs[c->outs[i].slot]);
            db->segs[c->outs[i].slot] = NULL;
        }
    } else {
        for (uint32_t i = 0; i < c->nouts; i++)
            c->outs[i].fd = -1; /* the table owns the descriptors now */
    }
    pthread_rwlock_unlock(&db->ixlock);
    pthread_mutex_unlock(&db->wlock);
    return rc;
}

/* Step 3b: points the index at the copies, a slice at a time, only where it
 * still points at the input copy; drops the entries of expired records. */
static void switch_index(kv_compact *c)
{
    kv_db *db = c->db;
    for (uint32_t i = 0; i < c->nouts; i++) {
        out_seg *o = &c->outs[i];
        uint16_t oslot = o->slot;
        kv_segfile *osf = db->segs[oslot];
        kv_hint_entry e;
        size_t pos = 0;
        uint64_t k = 0;
        while (k < o->nmoves) {
            pthread_mutex_lock(&db->wlock);
            pthread_rwlock_wrlock(&db->ixlock);
            for (uint32_t s = 0; s < SWITCH_SLICE && k < o->nmoves; s++, k++) {
                kv_hint_next(o->hint.data, kv_hint_buf_end(&o->hint), &pos, &e);
                move m = o->moves[k];
                if (m.old_slot == NO_SLOT)
                    continue;
                kv_loc loc = {e.rec_off, e.rec_len, kv_sat32(e.expiration), oslot,
                              e.has_meta ? KV_LOC_HAS_META : 0};
                uint64_t padded = kv_pad8(e.rec_len);
                if (kv_index_replace_if(db->ix, e.key, e.klen, m.old_slot, m.old_off, &loc) == 1) {
                    kv_segfile *old = db->segs[m.old_slot];
                    old->live_bytes -= padded;
                    old->live_records--;
                    osf->live_bytes += padded;
                    osf->live_records++;
                } else {
                    c->rep.raced++;
                }
            }
            pthread_rwlock_unlock(&db->ixlock);
            pthread_mutex_unlock(&db->wlock);
        }
    }
    kv_hint_entry e;
    size_t pos = 0;
    int more = 1;
    while (more) {
        pthread_mutex_lock(&db->wlock);
        pthread_rwlock_wrlock(&db->ixlock);
        for (uint32_t s = 0; s < SWITCH_SLICE; s++) {
            if (!(more = kv_hint_next(c->expired.data, kv_hint_buf_end(&c->expired), &pos, &e)))
                break;
            kv_loc loc;
            uint16_t slot = (uint16_t)e.seq;
            if (kv_index_get(db->ix, e.key, e.klen, &loc) && loc.seg == slot &&
                loc.rec_off == e.rec_off) {
                kv_index_del(db->ix, e.key, e.klen, NULL);
                db->segs[slot]->live_bytes -= kv_pad8(loc.rec_len);
                db->segs[slot]->live_records--;
            }
        }
        pthread_rwlock_unlock(&db->ixlock);
        pthread_mutex_unlock(&db->wlock);
    }
}

/* Step 5: the inputs leave the table; their descriptors close as soon as no
 * reader pins them; the files go. */
static int retire_inputs(kv_compact *c, uint64_t manifest_id)
{
    kv_db *db = c->db;
    int rc = 0;
    pthread_mutex_lock(&db->wlock);
    pthread_rwlock_wrlock(&db->ixlock);
    for (uint32_t k = 0; k < c->nin; k++)
        db->segs[c->in_slot[k]] = NULL;
    pthread_rwlock_unlock(&db->ixlock);
    pthread_mutex_unlock(&db->wlock);
    c->retired = 1;
    for (uint32_t k = 0; k < c->nin; k++) {
        kv_segfile *sf = c->in[k];
        char name[32];
        while (__atomic_load_n(&sf->refs, __ATOMIC_ACQUIRE) != 0)
            sched_yield();
        kv_io_close(sf->fd);
        kv_seg_name(name, sf->id, ".seg");
        int e = kv_io_unlinkat(db->dirfd, name);
        if (e && e != ENOENT && !rc)
            rc = e;
        kv_seg_name(name, sf->id, ".hint");
        e = kv_io_unlinkat(db->dirfd, name);
        if (e && e != ENOENT && !rc)
            rc = e;
        free(sf);
        c->in[k] = NULL;
    }
    int e = kv_io_fsync(db->dirfd);
    if (e) {
        db->failed = e;
        return e;
    }
    if (!rc) {
        char name[32];
        kv_seg_name(name, manifest_id, ".compact");
        rc = kv_io_unlinkat(db->dirfd, name);
        if (!rc && (rc = kv_io_fsync(db->dirfd)) != 0)
            db->failed = rc;
    }
    return rc;
}

int kv_compact_finish(kv_compact *c, kv_compact_report *out)
{
    kv_db *db = c->db;
    int rc = 0;
    pthread_mutex_lock(&db->compactlock);
    if (db->closed)
        rc = KV_ECLOSED;
    else if (!c->read_done || c->installed)
        rc = KV_EINVAL;
    if (rc || (c->flags & KV_COMPACT_DRY_RUN)) {
        kv_compact_progress(c, out);
        if (!rc && (c->flags & KV_COMPACT_SEAL_ACTIVE))
            out->bytes_out += KV_SEG_HDR_SIZE; /* the new active segment a real pass starts */
        pthread_mutex_unlock(&db->compactlock);
        return rc;
    }
    if ((rc = publish_outputs(c)) != 0 || (rc = install_outputs(c)) != 0) {
        discard_outputs(c);
        goto out;
    }
    c->installed = 1;
    switch_index(c);
    /* Newer versions that let this pass drop records must outlive a crash. */
    pthread_mutex_unlock(&db->compactlock);
    rc = kv_sync(db);
    pthread_mutex_lock(&db->compactlock);
    if (rc)
        goto out;
    uint64_t manifest_id;
    if (c->nouts) {
        manifest_id = c->outs[0].id;
    } else {
        pthread_mutex_lock(&db->wlock);
        manifest_id = db->next_seg_id++;
        pthread_mutex_unlock(&db->wlock);
    }
    uint64_t *ids = malloc((c->nin ? c->nin : 1) * sizeof *ids);
    if (!ids) {
        rc = KV_ENOMEM;
        goto out;
    }
    for (uint32_t k = 0; k < c->nin; k++)
        ids[k] = c->in[k]->id;
    rc = write_manifest(db->dirfd, manifest_id, ids, c->nin);
    free(ids);
    if (rc) {
        /* Inputs and outputs both stay; the handle stops and a reopen reads the
         * identical copies as one. */
        db->failed = rc;
        goto out;
    }
    rc = retire_inputs(c, manifest_id);
out:
    kv_compact_progress(c, out);
    pthread_mutex_unlock(&db->compactlock);
    return rc;
}

void kv_compact_free(kv_compact *c)
{
    if (!c)
        return;
    kv_db *db = c->db;
    pthread_mutex_lock(&db->compactlock);
    if (c->scanning)
        kv_scan_free(&c->sc);
    if (!c->installed && !c->discarded)
        discard_outputs(c);
    if (!c->retired) {
        pthread_mutex_lock(&db->wlock);
        for (uint32_t k = 0; k < c->nin; k++)
            if (c->in[k])
                c->in[k]->compacting = 0;
        pthread_mutex_unlock(&db->wlock);
    }
    for (uint32_t i = 0; i < c->nouts; i++) {
        kv_hint_buf_free(&c->outs[i].hint);
        free(c->outs[i].moves);
    }
    db->compacting = 0;
    pthread_mutex_unlock(&db->compactlock);
    kv_hint_buf_free(&c->expired);
    free(c->outs);
    free(c->wbuf);
    free(c->in);
    free(c->in_slot);
    free(c->in_size);
    free(c);
}

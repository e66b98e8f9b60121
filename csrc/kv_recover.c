/*
 * kv_recover.c -- rebuilds the index from the segment files at open.
 *
 * Implements docs/FORMAT.md sections 4, 5 and 5.1:
 *   - versions are ordered by sequence number, whatever the file order, so
 *     compaction outputs and logs can be read in any order;
 *   - batch members count only when their BATCH_COMMIT is read;
 *   - damage is reported with file and offset and costs only itself; the only
 *     bytes ever cut are the torn tail of the newest non-COMPACTED segment, and
 *     only by a writer;
 *   - a record whose value failed its checksum still names its key (hcheck
 *     vouches for header and key), so that key reads as corrupt instead of
 *     silently falling back to an older version.
 * While the store opens, DELETE / EXPIRE records sit in the index as
 * tombstone entries so that an older PUT read later cannot win; they are
 * removed once every segment is read.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_db.h"
#include "kv_io.h"

/* Sequence number of each index entry during recovery, by entry id. */
typedef struct seq_table {
    uint64_t *seq;
    uint32_t  cap;
} seq_table;

/* A batch member held until its commit is read. */
typedef struct pending_rec {
    kv_rec   rec;
    uint64_t off;
    uint8_t *key;
} pending_rec;

typedef struct pending_batch {
    pending_rec *recs;
    uint32_t     n;
    uint32_t     cap;
    uint64_t     first_off;
} pending_batch;

/* A damaged record of the newest segment, applied only if valid records follow it. */
typedef struct damaged_rec {
    kv_rec   rec;
    uint64_t off;
    uint8_t *key;
} damaged_rec;

typedef struct recovery {
    kv_db        *db;
    seq_table     seqs;
    pending_batch batch;
    uint64_t      max_seq;
} recovery;

static int seq_reserve(seq_table *t, uint32_t id)
{
    if (id < t->cap)
        return 0;
    uint32_t cap = t->cap ? t->cap : 1024;
    while (cap <= id)
        cap *= 2;
    uint64_t *n = realloc(t->seq, (size_t)cap * sizeof *n);
    if (!n)
        return KV_ENOMEM;
    memset(n + t->cap, 0, (size_t)(cap - t->cap) * sizeof *n);
    t->seq = n;
    t->cap = cap;
    return 0;
}

/* Makes the record the key's newest version unless a newer one is known. */
static int apply(recovery *rv, const uint8_t *key, const kv_rec *r, uint16_t slot, uint64_t off,
                 int corrupt)
{
    kv_loc loc, old;
    int had_old;
    uint32_t id;
    int rc;

    loc.rec_off = (uint32_t)off;
    loc.rec_len = (uint32_t)kv_rec_size(r->klen, r->mlen, r->vlen);
    loc.expiration = kv_sat32(r->expiration);
    loc.seg = slot;
    loc.flags = 0;
    if (r->type != KV_REC_PUT)
        loc.flags |= KV_LOC_TOMBSTONE;
    if (r->mlen)
        loc.flags |= KV_LOC_HAS_META;
    if (corrupt)
        loc.flags |= KV_LOC_CORRUPT;
    rc = kv_index_put(rv->db->ix, key, r->klen, &loc, &old, &had_old, &id);
    if (rc)
        return rc;
    if ((rc = seq_reserve(&rv->seqs, id)) != 0)
        return rc;
    if (had_old && rv->seqs.seq[id] > r->seq) {
        /* An older record read after a newer one (e.g. from a compaction input). */
        rc = kv_index_put(rv->db->ix, key, r->klen, &old, &loc, &had_old, NULL);
        return rc;
    }
    rv->seqs.seq[id] = r->seq;
    return 0;
}

static void batch_clear(pending_batch *b)
{
    for (uint32_t i = 0; i < b->n; i++)
        free(b->recs[i].key);
    b->n = 0;
}

static int batch_add(pending_batch *b, const kv_scan_event *ev)
{
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 64;
        pending_rec *n = realloc(b->recs, cap * sizeof *n);
        if (!n)
            return KV_ENOMEM;
        b->recs = n;
        b->cap = cap;
    }
    uint8_t *key = malloc(ev->rec.klen ? ev->rec.klen : 1);
    if (!key)
        return KV_ENOMEM;
    memcpy(key, ev->data + KV_REC_HDR_SIZE, ev->rec.klen);
    if (b->n == 0)
        b->first_off = ev->off;
    b->recs[b->n++] = (pending_rec){ev->rec, ev->off, key};
    return 0;
}

/* Drops batch members whose commit never came (the writer died mid-batch). */
static int batch_drop(recovery *rv, kv_segfile *sf, uint64_t end)
{
    int rc = 0;
    if (rv->batch.n)
        rc = kv_db_add_damage(rv->db, sf->id, rv->batch.first_off, end - rv->batch.first_off,
                              KV_DAMAGE_BATCH);
    batch_clear(&rv->batch);
    return rc;
}

static int batch_commit(recovery *rv, kv_segfile *sf, const kv_scan_event *ev, uint16_t slot)
{
    const uint8_t *v = ev->data + KV_REC_HDR_SIZE;
    uint64_t first = kv_get64(v);
    uint32_t count = kv_get32(v + 8);
    pending_batch *b = &rv->batch;
    uint32_t i = 0;
    int rc = 0;

    /* Members older than this batch belong to an earlier one whose commit never
     * came (the writer died mid-batch, then the next batch was appended after
     * it): they are dropped and reported, and cannot hide this batch. */
    while (i < b->n && b->recs[i].rec.seq < first)
        i++;
    if (i > 0)
        rc = kv_db_add_damage(rv->db, sf->id, b->recs[0].off,
                              (i < b->n ? b->recs[i].off : ev->off) - b->recs[0].off,
                              KV_DAMAGE_BATCH);
    for (; i < b->n && !rc; i++) {
        if (b->recs[i].rec.seq < first + count)
            rc = apply(rv, b->recs[i].key, &b->recs[i].rec, slot, b->recs[i].off, 0);
    }
    batch_clear(b);
    return rc;
}

static int scan_segment(recovery *rv, uint16_t slot, int newest)
{
    kv_db *db = rv->db;
    kv_segfile *sf = db->segs[slot];
    kv_scan sc;
    kv_scan_event ev;
    damaged_rec *dmg = NULL;
    uint32_t ndmg = 0, dmgcap = 0;
    uint32_t first_damage = db->ndamage;
    uint64_t scan_size = sf->size > UINT32_MAX ? UINT32_MAX : sf->size;
    int rc;

    if (sf->size < KV_SEG_HDR_SIZE)
        return 0;
    if ((rc = kv_scan_init(&sc, sf->fd, scan_size, KV_SEG_HDR_SIZE)) != 0)
        return rc;
    while ((rc = kv_scan_next(&sc, &ev)) == 0 && ev.kind != KV_SCAN_END) {
        const uint8_t *key = ev.data + KV_REC_HDR_SIZE;
        if (ev.kind == KV_SCAN_REGION) {
            rc = batch_drop(rv, sf, ev.off);
            if (!rc)
                rc = kv_db_add_damage(db, sf->id, ev.off, ev.end - ev.off, KV_DAMAGE_REGION);
        } else if (ev.kind == KV_SCAN_DAMAGED) {
            rc = kv_db_add_damage(db, sf->id, ev.off, ev.end - ev.off, KV_DAMAGE_RECORD);
            if (!rc && ev.rec.type != KV_REC_BATCH_COMMIT) {
                /* Remembered: whether it is damage or a torn tail is known at the end. */
                if (ndmg == dmgcap) {
                    dmgcap = dmgcap ? dmgcap * 2 : 16;
                    damaged_rec *n = realloc(dmg, dmgcap * sizeof *n);
                    if (!n) {
                        rc = KV_ENOMEM;
                        break;
                    }
                    dmg = n;
                }
                uint8_t *k = malloc(ev.rec.klen ? ev.rec.klen : 1);
                if (!k) {
                    rc = KV_ENOMEM;
                    break;
                }
                memcpy(k, key, ev.rec.klen);
                dmg[ndmg++] = (damaged_rec){ev.rec, ev.off, k};
            }
        } else {
            if (ev.bad_pad) {
                uint64_t size = kv_rec_size(ev.rec.klen, ev.rec.mlen, ev.rec.vlen);
                rc = kv_db_add_damage(db, sf->id, ev.off + size, ev.end - ev.off - size,
                                      KV_DAMAGE_REGION);
                if (rc)
                    break;
            }
            if (ev.rec.seq > rv->max_seq)
                rv->max_seq = ev.rec.seq;
            if (ev.rec.type == KV_REC_DELETE || ev.rec.type == KV_REC_EXPIRE)
                sf->tomb_bytes += ev.end - ev.off;
            if (ev.rec.type == KV_REC_BATCH_COMMIT) {
                sf->tomb_bytes += ev.end - ev.off;
                rc = batch_commit(rv, sf, &ev, slot);
            } else if (ev.rec.flags & KV_REC_F_BATCH) {
                rc = batch_add(&rv->batch, &ev);
            } else {
                rc = batch_drop(rv, sf, ev.off);
                if (!rc)
                    rc = apply(rv, key, &ev.rec, slot, ev.off, 0);
            }
        }
        if (rc)
            break;
    }
    if (!rc)
        rc = batch_drop(rv, sf, sc.valid_end < sf->size ? sc.valid_end : sf->size);
    uint64_t valid_end = sc.valid_end;
    kv_scan_free(&sc);

    if (!rc && (newest || scan_size < sf->size) && valid_end != sf->size) {
        /* Reports inside the tail are replaced by one tail report. */
        uint32_t w = first_damage;
        for (uint32_t i = first_damage; i < db->ndamage; i++) {
            kv_damage *d = &db->damage[i];
            if (d->kind == KV_DAMAGE_BATCH || d->offset < valid_end)
                db->damage[w++] = *d;
        }
        db->ndamage = w;
        if (valid_end < sf->size)
            rc = kv_db_add_damage(db, sf->id, valid_end, sf->size - valid_end,
                                  newest ? KV_DAMAGE_TAIL : KV_DAMAGE_SEALED_TAIL);
    }
    for (uint32_t i = 0; i < ndmg; i++) {
        /* In the newest segment a damaged record at the end is a torn write, not
         * an acknowledged one; anywhere else the key's newest version is lost. */
        int in_tail = newest && dmg[i].off >= valid_end;
        if (!rc && !in_tail) {
            if (dmg[i].rec.seq > rv->max_seq)
                rv->max_seq = dmg[i].rec.seq;
            rc = apply(rv, dmg[i].key, &dmg[i].rec, slot, dmg[i].off, 1);
        }
        free(dmg[i].key);
    }
    free(dmg);
    if (rc)
        return rc;

    if (newest && valid_end != sf->size) {
        if (db->readonly) {
            sf->size = valid_end < sf->size ? valid_end : sf->size;
            return 0;
        }
        /* Cut the torn tail (or restore the last record's missing padding). */
        if (valid_end < sf->size)
            db->torn_cut += sf->size - valid_end;
        rc = kv_io_truncate(sf->fd, valid_end);
        if (!rc)
            rc = kv_io_datasync(sf->fd);
        if (rc)
            return rc;
        sf->size = valid_end;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists segment ids in the directory; a writer also removes leftover *.tmp files. */
static int list_segments(kv_db *db, uint64_t **ids_out, uint32_t *n_out)
{
    int fd = dup(db->dirfd);
    if (fd < 0)
        return errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return e;
    }
    uint64_t *ids = NULL;
    uint32_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        uint64_t id;
        if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
            if (!db->readonly)
                kv_io_unlinkat(db->dirfd, de->d_name);
            continue;
        }
        if (len != 20 || !kv_seg_parse_name(de->d_name, &id))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *nn = realloc(ids, cap * sizeof *nn);
            if (!nn) {
                rc = KV_ENOMEM;
                break;
            }
            ids = nn;
        }
        ids[n++] = id;
    }
    closedir(d);
    if (rc) {
        free(ids);
        return rc;
    }
    if (n > KV_MAX_SEGS) {
        free(ids);
        return KV_ETOOBIG;
    }
    if (n) /* ids is NULL in an empty directory, and qsort's base must not be */
        qsort(ids, n, sizeof *ids, cmp_u64);
    *ids_out = ids;
    *n_out = n;
    return 0;
}

/* Opens every segment and reads its header.  Slots follow id order. */
static int open_segments(kv_db *db, const uint64_t *ids, uint32_t n, uint64_t *seq_floor)
{
    for (uint32_t i = 0; i < n; i++) {
        char name[32];
        kv_seg_hdr h;
        uint16_t slot;
        kv_segfile *sf = calloc(1, sizeof *sf);
        int rc;
        if (!sf)
            return KV_ENOMEM;
        kv_seg_name(name, ids[i], ".seg");
        rc = kv_io_openat(db->dirfd, name, (db->readonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW, 0,
                          &sf->fd);
        if (rc) {
            free(sf);
            return rc;
        }
        sf->id = ids[i];
        if ((rc = kv_db_new_slot(db, sf, &slot)) != 0) {
            kv_io_close(sf->fd);
            free(sf);
            return rc;
        }
        if ((rc = kv_io_size(sf->fd, &sf->size)) != 0)
            return rc;
        rc = kv_seg_read_header(sf->fd, sf->size, ids[i], &h);
        if (rc == KV_EVERSION)
            return rc;
        if (rc == 0) {
            sf->header_ok = 1;
            sf->flags = h.flags;
            if (h.seq_floor > *seq_floor)
                *seq_floor = h.seq_floor;
        } else if (rc != KV_ECORRUPT) {
            return rc;
        }
        if (ids[i] >= db->next_seg_id)
            db->next_seg_id = ids[i] + 1;
    }
    return 0;
}

/* Removes the tombstone entries and computes each segment's live bytes. */
static int finish_index(kv_db *db)
{
    uint32_t limit = kv_index_id_limit(db->ix);
    for (uint32_t id = 0; id < limit; id++) {
        const uint8_t *key;
        uint32_t klen;
        kv_loc loc;
        if (!kv_index_entry(db->ix, id, &key, &klen, &loc))
            continue;
        if (loc.flags & KV_LOC_TOMBSTONE) {
            kv_index_del(db->ix, key, klen, NULL);
            continue;
        }
        kv_segfile *sf = db->segs[loc.seg];
        sf->live_bytes += kv_pad8(loc.rec_len);
        sf->live_records++;
    }
    return 0;
}

int kv_recover(kv_db *db)
{
    recovery rv;
    uint64_t *ids = NULL, seq_floor = 0;
    uint32_t n = 0;
    int rc;

    memset(&rv, 0, sizeof rv);
    rv.db = db;
    if ((rc = list_segments(db, &ids, &n)) != 0)
        return rc;
    if ((rc = open_segments(db, ids, n, &seq_floor)) != 0)
        goto out;

    /* The torn-tail candidate: the newest segment a writer appended to. */
    int newest = -1;
    for (int i = (int)n - 1; i >= 0; i--) {
        kv_segfile *sf = db->segs[i];
        if (!sf->header_ok || !(sf->flags & KV_SEG_F_COMPACTED)) {
            newest = i;
            break;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        kv_segfile *sf = db->segs[i];
        if (!sf->header_ok) {
            uint32_t before = db->ndamage;
            uint64_t cut = db->torn_cut;
            if ((rc = scan_segment(&rv, (uint16_t)i, (int)i == newest)) != 0)
                goto out;
            int has_records = sf->size > KV_SEG_HDR_SIZE;
            if ((int)i == newest && !has_records && !db->readonly) {
                /* The remains of an interrupted segment creation. */
                char name[32];
                kv_seg_name(name, sf->id, ".seg");
                db->ndamage = before;
                db->torn_cut = cut;
                kv_io_close(sf->fd);
                kv_io_unlinkat(db->dirfd, name);
                kv_io_fsync(db->dirfd);
                free(sf);
                db->segs[i] = NULL;
                continue;
            }
            if ((rc = kv_db_add_damage(db, sf->id, 0, KV_SEG_HDR_SIZE, KV_DAMAGE_HEADER)) != 0)
                goto out;
            continue;
        }
        if ((rc = scan_segment(&rv, (uint16_t)i, (int)i == newest)) != 0)
            goto out;
    }
    if ((rc = finish_index(db)) != 0)
        goto out;
    db->next_seq = rv.max_seq + 1;
    if (seq_floor > db->next_seq)
        db->next_seq = seq_floor;

    /* A writer continues the newest segment when it is a healthy log segment. */
    if (!db->readonly && newest >= 0 && db->segs[newest]) {
        kv_segfile *sf = db->segs[newest];
        int healthy = sf->header_ok && sf->size < db->max_seg;
        for (uint32_t i = 0; healthy && i < db->ndamage; i++)
            if (db->damage[i].seg_id == sf->id && db->damage[i].kind != KV_DAMAGE_TAIL &&
                db->damage[i].kind != KV_DAMAGE_BATCH)
                healthy = 0;
        if (healthy)
            db->active = newest;
    }
out:
    batch_clear(&rv.batch);
    free(rv.batch.recs);
    free(rv.seqs.seq);
    free(ids);
    return rc;
}

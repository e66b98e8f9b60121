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
 *
 * Hint files (section 6) stand in for a segment's records when valid; a
 * segment whose hint is missing or bad is scanned, and a writer then writes
 * its hint from what the scan applied.  Compaction manifests (section 7.1)
 * are completed before any segment is read.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_compact.h"
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
    kv_hint_buf  *collect;   /* hint entries of the segment being scanned, or NULL */
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

/* Makes a record the key's newest version unless a newer one is known. */
static int apply_fields(recovery *rv, const uint8_t *key, uint32_t klen, int type,
                        uint32_t rec_len, int has_meta, uint64_t seq, uint64_t expiration,
                        uint16_t slot, uint64_t off, int corrupt)
{
    kv_loc loc, old;
    int had_old;
    uint32_t id;
    int rc;

    loc.rec_off = (uint32_t)off;
    loc.rec_len = rec_len;
    loc.expiration = kv_sat32(expiration);
    loc.seg = slot;
    loc.flags = 0;
    if (type != KV_REC_PUT)
        loc.flags |= KV_LOC_TOMBSTONE;
    if (has_meta)
        loc.flags |= KV_LOC_HAS_META;
    if (corrupt)
        loc.flags |= KV_LOC_CORRUPT;
    rc = kv_index_put(rv->db->ix, key, klen, &loc, &old, &had_old, &id);
    if (rc)
        return rc;
    if ((rc = seq_reserve(&rv->seqs, id)) != 0)
        return rc;
    if (had_old && rv->seqs.seq[id] > seq) {
        /* An older record read after a newer one (e.g. from a compaction input). */
        rc = kv_index_put(rv->db->ix, key, klen, &old, &loc, &had_old, NULL);
        return rc;
    }
    rv->seqs.seq[id] = seq;
    return 0;
}

static int apply(recovery *rv, const uint8_t *key, const kv_rec *r, uint16_t slot, uint64_t off,
                 int corrupt)
{
    uint64_t len = kv_rec_size(r->klen, r->mlen, r->vlen);
    int rc = apply_fields(rv, key, r->klen, r->type, (uint32_t)len, r->mlen != 0, r->seq,
                          r->expiration, slot, off, corrupt);
    if (!rc && !corrupt && rv->collect &&
        kv_hint_add(rv->collect, r->type, r->mlen != 0, key, r->klen, off, len, r->seq,
                    r->expiration) != 0) {
        kv_hint_buf_free(rv->collect); /* out of memory: no hint for this segment */
        rv->collect = NULL;
    }
    return rc;
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
    uint32_t start = 0;
    int rc = 0;

    /* Members older than this batch are what is left of an earlier batch whose
     * writer died before its commit (the retried batch may follow right after
     * them): they are dropped and reported, and must not cost this batch. */
    while (start < b->n && b->recs[start].rec.seq < first)
        start++;
    if (start > 0) {
        uint64_t end = start < b->n ? b->recs[start].off : ev->off;
        rc = kv_db_add_damage(rv->db, sf->id, b->first_off, end - b->first_off,
                              KV_DAMAGE_BATCH);
    }
    /* A member lost to damage (reported where it lies) costs only itself: the
     * commit vouches for the batch, so the members still readable are applied. */
    if (rc || start == b->n) {
        batch_clear(b);
        return rc; /* a commit without its members: nothing to apply */
    }
    for (uint32_t i = start; i < b->n && !rc; i++) {
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
        /* A region event carries no data (NULL: no offset may be applied to it). */
        const uint8_t *key = ev.data ? ev.data + KV_REC_HDR_SIZE : NULL;
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
            if (rv->collect) /* every record, applied or not: see FORMAT.md section 6 */
                kv_hint_note_seq(rv->collect, ev.rec.seq);
            if (ev.rec.seq < sf->min_seq)
                sf->min_seq = ev.rec.seq;
            if (ev.rec.type == KV_REC_DELETE || ev.rec.type == KV_REC_EXPIRE)
                sf->tomb_bytes += ev.end - ev.off;
            if (ev.rec.type == KV_REC_BATCH_COMMIT) {
                rc = batch_commit(rv, sf, &ev, slot); /* its bytes count as dead (kv_db.c) */
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

static int contains(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static int push_id(uint64_t **ids, uint32_t *n, uint32_t *cap, uint64_t id)
{
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 64;
        uint64_t *nn = realloc(*ids, c * sizeof *nn);
        if (!nn)
            return KV_ENOMEM;
        *ids = nn;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

/* Lists segment ids in the directory, leaving out those retired by a
 * compaction manifest; a writer also removes leftover *.tmp files and hint
 * files whose segment is gone. */
static int list_segments(kv_db *db, const uint64_t *retired, uint32_t nretired,
                         uint64_t **ids_out, uint32_t *n_out)
{
    DIR *d;
    int rc = kv_io_opendir(db->dirfd, &d);
    if (rc)
        return rc;
    uint64_t *ids = NULL, *hints = NULL;
    uint32_t n = 0, cap = 0, nh = 0, hcap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        uint64_t id;
        if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
            if (!db->readonly)
                kv_io_unlinkat(db->dirfd, de->d_name);
            continue;
        }
        if (len == 21 && kv_seg_parse_id(de->d_name, ".hint", &id)) {
            if (!db->readonly && (rc = push_id(&hints, &nh, &hcap, id)) != 0)
                break;
            continue;
        }
        if (len != 20 || !kv_seg_parse_name(de->d_name, &id) || contains(retired, nretired, id))
            continue;
        if ((rc = push_id(&ids, &n, &cap, id)) != 0)
            break;
    }
    closedir(d);
    for (uint32_t i = 0; !rc && i < nh; i++) {
        if (!contains(ids, n, hints[i])) {
            char name[32];
            kv_seg_name(name, hints[i], ".hint");
            kv_io_unlinkat(db->dirfd, name);
        }
    }
    free(hints);
    if (rc) {
        free(ids);
        return rc;
    }
    if (n > KV_MAX_SEGS) {
        free(ids);
        return KV_ETOOBIG;
    }
    if (n > 1) /* qsort(NULL, 0, ...) is undefined: a new store has no segments */
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
        sf->min_seq = UINT64_MAX;
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
    return kv_index_build_order(db->ix);
}

/* 1 when damage that makes the segment untrustworthy was reported in it: a
 * torn tail was cut away, and uncommitted batch members are never applied, so
 * neither of those counts. */
static int seg_damaged(const kv_db *db, uint64_t id)
{
    for (uint32_t i = 0; i < db->ndamage; i++)
        if (db->damage[i].seg_id == id && db->damage[i].kind != KV_DAMAGE_TAIL &&
            db->damage[i].kind != KV_DAMAGE_BATCH)
            return 1;
    return 0;
}

/* 1 when the segment may get a hint: no damage reported in it but a torn tail
 * that was cut away.  Uncommitted batch members do not make it untrustworthy
 * (seg_damaged), but a hint would hide their report from every later open, so
 * such a segment is scanned each time, and opens read the same with or without
 * hints. */
static int seg_hintable(const kv_db *db, uint64_t id)
{
    for (uint32_t i = 0; i < db->ndamage; i++)
        if (db->damage[i].seg_id == id && db->damage[i].kind != KV_DAMAGE_TAIL)
            return 0;
    return 1;
}

/* Applies the entries of a validated hint file. */
static int apply_hint(recovery *rv, uint16_t slot, const kv_hint_file *hf)
{
    enum { AHEAD = 8 };
    kv_segfile *sf = rv->db->segs[slot];
    kv_hint_entry e, pe;
    size_t pos = 0, ahead = 0, end = kv_hint_file_end(hf);
    /* The hash slots of the next keys are fetched while this one is put. */
    for (int i = 0; i < AHEAD && kv_hint_next(hf->data, end, &ahead, &pe); i++)
        kv_index_prefetch(rv->db->ix, pe.key, pe.klen);
    /* The trailer's max_seq also covers records the hint has no entry for (batch
     * commits, members of a batch that never committed): never reused. */
    if (hf->max_seq > rv->max_seq)
        rv->max_seq = hf->max_seq;
    while (kv_hint_next(hf->data, end, &pos, &e)) {
        if (kv_hint_next(hf->data, end, &ahead, &pe))
            kv_index_prefetch(rv->db->ix, pe.key, pe.klen);
        int rc = apply_fields(rv, e.key, e.klen, e.type, e.rec_len, e.has_meta, e.seq,
                              e.expiration, slot, e.rec_off, 0);
        if (rc)
            return rc;
        if (e.seq > rv->max_seq)
            rv->max_seq = e.seq;
        if (e.seq < sf->min_seq)
            sf->min_seq = e.seq;
        if (e.type != KV_REC_PUT)
            sf->tomb_bytes += kv_pad8(e.rec_len);
    }
    return 0;
}

/* Turns a loaded hint file into the active segment's hint accumulator (same
 * layout: header, entries; the trailer is dropped). */
static void hint_file_to_acc(kv_db *db, kv_hint_file *hf)
{
    kv_hint_buf_free(&db->hint_acc);
    db->hint_acc.data = hf->data;
    db->hint_acc.cap = hf->cap;
    db->hint_acc.len = kv_hint_file_end(hf);
    db->hint_acc.count = hf->count;
    db->hint_acc.max_seq = hf->max_seq;
    memset(hf, 0, sizeof *hf);
    db->hint_acc_ok = 1;
}

int kv_recover(kv_db *db)
{
    recovery rv;
    uint64_t *ids = NULL, *retired = NULL, seq_floor = 0, max_manifest = 0;
    uint32_t n = 0, nretired = 0;
    kv_hint_buf newest_col;
    kv_hint_file newest_hint, hf = {0}; /* hf: one buffer for every hint read */
    int rc, wrote_hints = 0, newest_from_hint = 0, newest_collected = 0;

    memset(&rv, 0, sizeof rv);
    memset(&newest_hint, 0, sizeof newest_hint);
    kv_hint_buf_init(&newest_col);
    rv.db = db;
    if ((rc = kv_manifests_apply(db, &retired, &nretired, &max_manifest)) != 0)
        return rc;
    if ((rc = list_segments(db, retired, nretired, &ids, &n)) != 0)
        goto out;
    if ((rc = open_segments(db, ids, n, &seq_floor)) != 0)
        goto out;
    if (max_manifest >= db->next_seg_id)
        db->next_seg_id = max_manifest + 1;

    /* The torn-tail candidate: the newest segment a writer appended to. */
    int newest = -1;
    for (int i = (int)n - 1; i >= 0; i--) {
        kv_segfile *sf = db->segs[i];
        if (!sf->header_ok || !(sf->flags & KV_SEG_F_COMPACTED)) {
            newest = i;
            break;
        }
    }
    /* Size the index once for every key the hints announce. */
    uint64_t announced = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t c = db->segs[i]->header_ok ? kv_hint_peek_count(db->dirfd, db->segs[i]->id) : 0;
        uint64_t most = db->segs[i]->size / KV_REC_HDR_SIZE; /* a record per entry */
        announced += c < most ? c : most;
    }
    if (announced && (rc = kv_index_reserve(db->ix, announced)) != 0)
        goto out;
    /* Keys arrive in write order: the ordered view is built once, sorted. */
    if ((rc = kv_index_defer_order(db->ix)) != 0)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        kv_segfile *sf = db->segs[i];
        if (!sf->header_ok) {
            uint32_t before = db->ndamage;
            uint64_t cut = db->torn_cut;
            if ((rc = scan_segment(&rv, (uint16_t)i, (int)i == newest)) != 0)
                goto out;
            int has_records = sf->size > KV_SEG_HDR_SIZE;
            if ((int)i == newest && !has_records) {
                /* The remains of an interrupted segment creation: no damage, and a
                 * writer removes them (a read-only open just leaves them out). */
                char name[32];
                kv_seg_name(name, sf->id, ".seg");
                db->ndamage = before;
                db->torn_cut = cut;
                kv_io_close(sf->fd);
                if (!db->readonly) {
                    kv_io_unlinkat(db->dirfd, name);
                    kv_io_fsync(db->dirfd);
                }
                free(sf);
                db->segs[i] = NULL;
                continue;
            }
            if ((rc = kv_db_add_damage(db, sf->id, 0, KV_SEG_HDR_SIZE, KV_DAMAGE_HEADER)) != 0)
                goto out;
            continue;
        }
        uint64_t bad;
        rc = kv_hint_load(db->dirfd, sf->id, sf->size, &hf, &bad);
        if (rc == 0) {
            rc = apply_hint(&rv, (uint16_t)i, &hf);
            sf->hinted = 1;
            db->hinted_segs++;
            if ((int)i == newest && !rc) {
                newest_hint = hf; /* its memory moves there */
                memset(&hf, 0, sizeof hf);
                newest_from_hint = 1;
            }
            if (rc)
                goto out;
            continue;
        }
        if (rc == KV_ENOMEM)
            goto out;
        if (rc != ENOENT)
            db->hints_bad++; /* bad or unreadable: the segment is the truth */
        kv_hint_buf col;
        kv_hint_buf_init(&col);
        rv.collect = db->readonly ? NULL : &col;
        rc = scan_segment(&rv, (uint16_t)i, (int)i == newest);
        int collected = rv.collect != NULL;
        rv.collect = NULL;
        if (rc) {
            kv_hint_buf_free(&col);
            goto out;
        }
        if (collected && seg_hintable(db, sf->id)) {
            if ((int)i == newest) {
                newest_col = col; /* its fate is known once the active segment is chosen */
                newest_collected = 1;
                continue;
            }
            if (kv_hint_write(db->dirfd, sf->id, sf->size, &col) == 0) {
                sf->hinted = 1;
                wrote_hints = 1;
            }
        }
        kv_hint_buf_free(&col);
    }
    if ((rc = finish_index(db)) != 0)
        goto out;
    db->next_seq = rv.max_seq + 1;
    if (seq_floor > db->next_seq)
        db->next_seq = seq_floor;
    for (uint32_t i = 0; i < n; i++) {
        kv_segfile *sf = db->segs[i];
        if (sf && (!sf->header_ok || seg_damaged(db, sf->id))) {
            sf->damaged = 1;
            sf->min_seq = 0; /* damage may hide records of any age */
        }
    }

    /* A writer continues the newest segment when it is a healthy log segment. */
    if (!db->readonly && newest >= 0 && db->segs[newest]) {
        kv_segfile *sf = db->segs[newest];
        int healthy = sf->header_ok && sf->size < db->max_seg && !sf->damaged;
        if (healthy) {
            char name[32];
            db->active = newest;
            db->hint_acc_ok = 1;
            if (newest_from_hint) {
                hint_file_to_acc(db, &newest_hint);
                sf->hinted = 0;
            } else {
                db->hint_acc = newest_col;
                kv_hint_buf_init(&newest_col);
                db->hint_acc_ok = newest_collected;
            }
            /* Appending makes any hint of the segment stale, and it goes first: also
             * one rejected just now (e.g. for a torn tail cut since it was written),
             * since the segment can grow back to the very size it describes, and
             * the hint would then pass for valid with records it no longer holds. */
            kv_seg_name(name, sf->id, ".hint");
            rc = kv_io_unlinkat(db->dirfd, name);
            if (rc == ENOENT)
                rc = 0;
            else if (!rc)
                rc = kv_io_fsync(db->dirfd);
            if (rc)
                goto out;
        } else if (newest_collected && !sf->damaged &&
                   kv_hint_write(db->dirfd, sf->id, sf->size, &newest_col) == 0) {
            sf->hinted = 1;
            wrote_hints = 1;
        }
    }
    if (wrote_hints)
        rc = kv_io_fsync(db->dirfd);
out:
    kv_hint_buf_free(&newest_col);
    kv_hint_file_free(&newest_hint);
    kv_hint_file_free(&hf);
    batch_clear(&rv.batch);
    free(rv.batch.recs);
    free(rv.seqs.seq);
    free(ids);
    free(retired);
    return rc;
}

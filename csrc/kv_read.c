/*
 * kv_read.c -- the read side: get, streamed get, ordered listing, stats.
 *
 * A read takes ixlock shared only long enough to find the key's location and
 * pin its segment; the file read itself runs without any lock, so a large
 * read never holds up the writer.  Every record read is checked before its
 * bytes are handed out: header and key (hcheck, plus the key compared with the
 * one asked for) and the value (check).  A mismatch is KV_ECORRUPT naming the
 * segment and offset, never data.  Small records that passed go into the
 * record cache (kv_cache.h), whose copies later gets use instead of the file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv_buf.h"
#include "kv_db.h"
#include "kv_io.h"

static int buf_reserve(kv_buf *b, size_t n)
{
    return kv_grow(&b->data, &b->cap, n, 256);
}

/* now as the caller gave it, or for KV_NOW_SYSTEM the clock Python's
 * time.time() reads, truncated as int() does. */
static uint64_t resolve_now(uint64_t now)
{
    if (now != KV_NOW_SYSTEM)
        return now;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec > 0 ? (uint64_t)ts.tv_sec : 0;
}

/* Finds key and pins its segment.  0, KV_ENOTFOUND, KV_ECLOSED, or when
 * !wait, KV_EBUSY: a writer holds the index lock (nothing is held).  With
 * *checked = 0 on entry the key's bytes are not compared when the entry found
 * is live and readable (kv_index_get_unchecked): *checked stays 0 and the
 * caller must find the key in the record it reads, or ask again with
 * *checked = 1.  KV_ENOTFOUND is always exact. */
static int locate(kv_db *db, const char *key, uint32_t klen, uint64_t now, int wait,
                  int *checked, kv_loc *loc, kv_segfile **sf)
{
    int rc = 0, found;
    if (klen > KV_MAX_KEY)
        return KV_ENOTFOUND;
    now = resolve_now(now);
    if (wait)
        pthread_rwlock_rdlock(&db->ixlock);
    else if (pthread_rwlock_tryrdlock(&db->ixlock) != 0)
        return KV_EBUSY;
    if (db->closed) {
        pthread_rwlock_unlock(&db->ixlock);
        return KV_ECLOSED;
    }
    found = *checked ? kv_index_get(db->ix, key, klen, loc)
                     : kv_index_get_unchecked(db->ix, key, klen, loc);
    if (found && !*checked &&
        ((loc->flags & (KV_LOC_TOMBSTONE | KV_LOC_CORRUPT)) || kv_expired(loc->expiration, now))) {
        /* An answer other than "read this record" is given only for the key
         * itself, not for another that shares its hash. */
        *checked = 1;
        found = kv_index_get(db->ix, key, klen, loc);
    }
    if (!found || (loc->flags & KV_LOC_TOMBSTONE) || kv_expired(loc->expiration, now))
        rc = KV_ENOTFOUND;
    else {
        *sf = db->segs[loc->seg];
        __atomic_add_fetch(&(*sf)->refs, 1, __ATOMIC_ACQUIRE);
    }
    pthread_rwlock_unlock(&db->ixlock);
    return rc;
}

/* Checks the first `have` bytes of a record read from loc (at least its header,
 * key and metadata): a plausible header of the size the index expects, for
 * this exact key, with a valid hcheck. */
static int header_matches(const uint8_t *p, size_t have, const kv_loc *loc, const char *key,
                          uint32_t klen, kv_rec *r)
{
    if (have < KV_REC_HDR_SIZE || !kv_rec_peek(p, loc->rec_len, r) || r->type != KV_REC_PUT)
        return 0;
    if (kv_rec_size(r->klen, r->mlen, r->vlen) != loc->rec_len || r->klen != klen)
        return 0;
    if ((size_t)KV_REC_HDR_SIZE + r->klen + r->mlen > have)
        return 0;
    return kv_rec_header_ok(p, r) && memcmp(p + KV_REC_HDR_SIZE, key, klen) == 0;
}

static void describe(kv_value *out, const kv_segfile *sf, const kv_loc *loc)
{
    memset(out, 0, sizeof *out);
    out->seg_id = sf->id;
    out->offset = loc->rec_off;
}

/* A record's header, key and metadata: the most kv_get_tl and kv_get_into read
 * before the value. */
#define HEAD_MAX ((size_t)KV_REC_HDR_SIZE + KV_MAX_KEY + KV_MAX_META)
/* Bytes of a value read (and hashed) per pread: small enough to stay in L2. */
#define VALUE_CHUNK ((size_t)256 << 10)
/* Smallest value read by two threads: below it, starting a thread costs more
 * than the overlap saves. */
#define PIPELINE_MIN ((uint64_t)4 << 20)

/* Reads the header, key and metadata of the record at loc into buf and checks
 * them (hcheck, and the key is the one asked for).  0, KV_ECORRUPT or an errno. */
static int read_head(const kv_segfile *sf, const kv_loc *loc, const char *key, uint32_t klen,
                     kv_buf *buf, kv_rec *r)
{
    size_t want = loc->rec_len < HEAD_MAX ? loc->rec_len : HEAD_MAX;
    size_t got;
    int rc = buf_reserve(buf, want);
    if (!rc)
        rc = kv_io_pread(sf->fd, buf->data, want, loc->rec_off, &got);
    if (!rc && (got != want || !header_matches(buf->data, got, loc, key, klen, r)))
        rc = KV_ECORRUPT;
    return rc;
}

static void fill_value(kv_value *out, const kv_rec *r, uint64_t value_off)
{
    out->expiration = r->expiration;
    out->seq = r->seq;
    out->meta_off = KV_REC_HDR_SIZE + r->klen;
    out->mlen = r->mlen;
    out->value_off = value_off;
    out->vlen = r->vlen;
}

/* A value read by a second thread while the caller hashes what it has read:
 * the copy out of the page cache and the checksum pass, each about as fast as
 * the other, overlap instead of adding up.  The hash stays one sequential
 * pass (XXH64 cannot be split), a chunk behind the reads. */
typedef struct value_reader {
    int       fd;
    uint8_t  *dst;
    uint64_t  voff, vlen;
    uint64_t  done;      /* bytes in dst so far (atomic: release by the reader) */
    int       finished;  /* the reader is done; rc is final (atomic) */
    int       stop;      /* the hasher gave up: read no further (atomic) */
    int       rc;
    pthread_mutex_t lock;  /* with moved: wakes a hasher that stopped spinning */
    pthread_cond_t  moved;
} value_reader;

/* How long the hasher spins for the next chunk before it sleeps.  From the
 * page cache a chunk comes in 10-30 us, and waking from a condition variable
 * costs about as much, so a hot read never sleeps; a read from the disk, which
 * may take milliseconds a chunk, sleeps instead of keeping a core busy. */
#define SPIN_NS 100000

static void reader_moved(value_reader *vr)
{
    pthread_mutex_lock(&vr->lock);
    pthread_cond_signal(&vr->moved);
    pthread_mutex_unlock(&vr->lock);
}

static void *value_reader_main(void *arg)
{
    value_reader *vr = arg;
    size_t got;
    int rc = 0;
    for (uint64_t pos = 0; pos < vr->vlen && !__atomic_load_n(&vr->stop, __ATOMIC_RELAXED);
         pos += got) {
        size_t want = vr->vlen - pos < VALUE_CHUNK ? (size_t)(vr->vlen - pos) : VALUE_CHUNK;
        rc = kv_io_pread(vr->fd, vr->dst + pos, want, vr->voff + pos, &got);
        if (!rc && got != want)
            rc = KV_ECORRUPT;
        if (rc)
            break;
        __atomic_store_n(&vr->done, pos + got, __ATOMIC_RELEASE);
        reader_moved(vr);
    }
    vr->rc = rc;
    __atomic_store_n(&vr->finished, 1, __ATOMIC_RELEASE);
    reader_moved(vr);
    return NULL;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits until the reader has read past `hashed` or finished: spins for
 * SPIN_NS, then sleeps on the condition variable.  The reader signals under
 * the lock after each store, and the condition is checked under it, so no
 * wake-up is lost. */
static void wait_for_reader(value_reader *vr, uint64_t hashed)
{
    uint64_t start = 0;
    for (;;) {
        if (__atomic_load_n(&vr->done, __ATOMIC_ACQUIRE) > hashed ||
            __atomic_load_n(&vr->finished, __ATOMIC_ACQUIRE))
            return;
        uint64_t now = monotonic_ns();
        if (!start)
            start = now;
        else if (now - start > SPIN_NS)
            break;
        sched_yield();
    }
    pthread_mutex_lock(&vr->lock);
    while (__atomic_load_n(&vr->done, __ATOMIC_ACQUIRE) <= hashed &&
           !__atomic_load_n(&vr->finished, __ATOMIC_ACQUIRE))
        pthread_cond_wait(&vr->moved, &vr->lock);
    pthread_mutex_unlock(&vr->lock);
}

/* read_value's loop for a large value kept whole (advance = 1): -1 when no
 * thread could be started (the caller reads alone), else 0, KV_ECORRUPT or an
 * errno, with the value hashed into st. */
static int read_value_pipelined(int fd, uint64_t voff, uint64_t vlen, uint8_t *dst,
                                kv_xxh64_state *st)
{
    value_reader vr = {.fd = fd, .dst = dst, .voff = voff, .vlen = vlen};
    pthread_t t;
    if (pthread_mutex_init(&vr.lock, NULL) != 0)
        return -1;
    if (pthread_cond_init(&vr.moved, NULL) != 0) {
        pthread_mutex_destroy(&vr.lock);
        return -1;
    }
    if (pthread_create(&t, NULL, value_reader_main, &vr) != 0) {
        pthread_cond_destroy(&vr.moved);
        pthread_mutex_destroy(&vr.lock);
        return -1;
    }
    uint64_t hashed = 0;
    while (hashed < vlen) {
        int finished = __atomic_load_n(&vr.finished, __ATOMIC_ACQUIRE);
        uint64_t ready = __atomic_load_n(&vr.done, __ATOMIC_ACQUIRE);
        if (ready > hashed) {
            kv_xxh64_update(st, dst + hashed, (size_t)(ready - hashed));
            hashed = ready;
        } else if (finished) {
            break; /* the reader failed: its rc says why */
        } else {
            wait_for_reader(&vr, hashed);
        }
    }
    __atomic_store_n(&vr.stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    pthread_cond_destroy(&vr.moved);
    pthread_mutex_destroy(&vr.lock);
    return vr.rc ? vr.rc : hashed == vlen ? 0 : KV_ECORRUPT;
}

/* Reads a value whose head (at `head`, already checked) was read, chunk by chunk
 * from the file offset voff, into dst, and checks the record's checksum.  Each
 * chunk is hashed right after its read, while it is still in the CPU cache, so
 * the value is brought from memory once; a value of PIPELINE_MIN bytes or more
 * is read by a second thread meanwhile (read_value_pipelined).  advance = 0
 * reuses one chunk of dst (a check without keeping the bytes).  0, KV_ECORRUPT
 * or an errno. */
static int read_value(int fd, const uint8_t *head, const kv_rec *r, uint64_t voff,
                      uint8_t *dst, int advance)
{
    kv_xxh64_state st;
    size_t got;
    int rc = 0;
    kv_xxh64_reset(&st, 0);
    kv_xxh64_update(&st, head + KV_REC_CHECK_FROM, KV_REC_CHECK_TO - KV_REC_CHECK_FROM);
    kv_xxh64_update(&st, head + KV_REC_HDR_SIZE, (size_t)r->klen + r->mlen);
    if (advance && r->vlen >= PIPELINE_MIN) {
        rc = read_value_pipelined(fd, voff, r->vlen, dst, &st);
        if (rc >= 0)
            return rc ? rc : kv_xxh64_digest(&st) == r->check ? 0 : KV_ECORRUPT;
        rc = 0;
    }
    for (uint64_t pos = 0; !rc && pos < r->vlen; pos += got) {
        size_t want = r->vlen - pos < VALUE_CHUNK ? (size_t)(r->vlen - pos) : VALUE_CHUNK;
        uint8_t *at = advance ? dst + pos : dst;
        rc = kv_io_pread(fd, at, want, voff + pos, &got);
        if (!rc && got != want)
            rc = KV_ECORRUPT;
        if (!rc)
            kv_xxh64_update(&st, at, want);
    }
    if (!rc && kv_xxh64_digest(&st) != r->check)
        rc = KV_ECORRUPT;
    return rc;
}

/* The record cache's copy of the record at loc, into buf (reserved for the
 * whole record): its copy passed the file read's checks when it was kept, so
 * only the header is checked again (a cheap guard that the index and the
 * cache agree on the key).  *hit says whether the cache held it, *seen whether
 * the cache's doorkeeper had seen it before (a file read then keeps it).
 * 0 or an error code. */
static int read_cached(kv_cache *cache, const kv_segfile *sf, const kv_loc *loc, const char *key,
                       uint32_t klen, kv_buf *buf, kv_value *out, int *seen, int *hit)
{
    kv_rec r;
    int rc = buf_reserve(buf, loc->rec_len);
    *hit = 0;
    *seen = 0;
    if (rc)
        return rc;
    *seen = kv_cache_seen(cache, sf->id, loc->rec_off);
    if (!*seen || !kv_cache_get(cache, sf->id, loc->rec_off, loc->rec_len, buf->data))
        return 0;
    if (!header_matches(buf->data, loc->rec_len, loc, key, klen, &r))
        return KV_ECORRUPT;
    fill_value(out, &r, (uint64_t)KV_REC_HDR_SIZE + r.klen + r.mlen);
    *hit = 1;
    return 0;
}

/* The whole record at loc from its file into buf (reserved by read_cached),
 * checked (header, key, value); kept in the cache when `seen`. */
static int read_file(kv_cache *cache, const kv_segfile *sf, const kv_loc *loc, const char *key,
                     uint32_t klen, int seen, kv_buf *buf, kv_value *out)
{
    kv_rec r;
    size_t got;
    int rc = kv_io_pread(sf->fd, buf->data, loc->rec_len, loc->rec_off, &got);
    if (rc)
        return rc;
    if (got != loc->rec_len || !header_matches(buf->data, got, loc, key, klen, &r) ||
        !kv_rec_body_ok(buf->data, &r))
        return KV_ECORRUPT;
    if (seen)
        kv_cache_put(cache, sf->id, loc->rec_off, buf->data, loc->rec_len);
    fill_value(out, &r, (uint64_t)KV_REC_HDR_SIZE + r.klen + r.mlen);
    return 0;
}

/* Reads the whole record at loc into buf and checks it, from the record cache
 * when it holds the record. */
static int read_record(kv_cache *cache, const kv_segfile *sf, const kv_loc *loc, const char *key,
                       uint32_t klen, kv_buf *buf, kv_value *out)
{
    int seen, hit;
    int rc = read_cached(cache, sf, loc, key, klen, buf, out, &seen, &hit);
    if (rc || hit)
        return rc;
    return read_file(cache, sf, loc, key, klen, seen, buf, out);
}

int kv_get(kv_db *db, const char *key, uint32_t klen, uint64_t now, kv_buf *buf, kv_value *out)
{
    kv_loc loc;
    kv_segfile *sf;
    int checked = 1;
    int rc = locate(db, key, klen, now, 1, &checked, &loc, &sf);
    if (rc)
        return rc;
    describe(out, sf, &loc);
    rc = (loc.flags & KV_LOC_CORRUPT) ? KV_ECORRUPT
                                      : read_record(db->cache, sf, &loc, key, klen, buf, out);
    kv_db_unpin(sf);
    return rc;
}

/* kv_get_tl's per-thread scratch.  The pthread key exists for its destructor:
 * a thread's buffer is freed when the thread ends. */
typedef struct tl_read {
    kv_buf buf;
    kv_value out;
    /* Between kv_get_tl_begin's KV_GET_PENDING and kv_get_tl_finish: the
     * located record, its pinned segment, the doorkeeper's answer, and the
     * store and clock reading to look the key up again with (see tl_begin). */
    int pending;
    int seen;
    int checked;  /* loc was found with the key compared (see locate) */
    kv_db *db;
    uint64_t now;
    kv_segfile *sf;
    kv_loc loc;
} tl_read;

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static int tl_key_ok;
static _Thread_local tl_read *tl_cur;
static _Thread_local int tl_rc;

static void tl_free(void *p)
{
    tl_read *t = p;
    kv_buf_free(&t->buf);
    free(t);
}

static void tl_key_init(void)
{
    tl_key_ok = pthread_key_create(&tl_key, tl_free) == 0;
}

static tl_read *tl_get(void)
{
    if (tl_cur)
        return tl_cur;
    pthread_once(&tl_once, tl_key_init);
    if (!tl_key_ok)
        return NULL;
    tl_read *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (pthread_setspecific(tl_key, t)) {
        free(t);
        return NULL;
    }
    tl_cur = t;
    return t;
}

static int64_t tl_failed(int rc)
{
    tl_rc = rc;
    return KV_GET_FAILED;
}

/* kv_get_tl's answer for the record at loc, read with result rc. */
static int64_t tl_answer(const tl_read *t, const kv_loc *loc, int rc)
{
    if (rc)
        return tl_failed(rc);
    return loc->rec_len <= KV_GET_TL_MAX ? (int64_t)t->out.vlen : KV_GET_LARGE;
}

/* The file read of the pending record, which the cache did not hold.  A
 * record longer than KV_GET_TL_MAX is not copied into this thread's buffer,
 * which would then stay that large: only its head is read, for the caller to
 * size the value and read it with kv_get_into. */
static int tl_from_file(tl_read *t, const char *key, uint32_t klen)
{
    kv_rec r;
    if (t->loc.rec_len <= KV_GET_TL_MAX)
        return read_file(t->db->cache, t->sf, &t->loc, key, klen, t->seen, &t->buf, &t->out);
    int rc = read_head(t->sf, &t->loc, key, klen, &t->buf, &r);
    if (!rc)
        fill_value(&t->out, &r, 0);
    return rc;
}

/* Where a read after a lookup without the key compared failed. */
typedef struct tl_failure {
    uint64_t seg_id;
    uint32_t rec_off;
} tl_failure;

/* kv_get_tl_begin, and with wait = 1 the first half of kv_get_tl: locates
 * key and serves it from the cache when it can.  KV_GET_PENDING with the
 * record's segment pinned in t when the file must be read; any other value is
 * kv_get_tl's answer, with nothing held.
 *
 * The key is looked up without comparing its bytes (see locate): the record
 * read next holds the key and is compared with it anyway, so the index's
 * comparison would only add a cache miss (8% of a cold get).  A read that
 * fails after such a lookup -- another key's record, were two keys to share a
 * 32-bit hash, fails its key check -- is looked up again with the key
 * compared (`failed` says where the failed read was): the same record again
 * is the key's own and damaged, anything else is read. */
static int64_t tl_begin(kv_db *db, const char *key, uint32_t klen, uint64_t now, int wait,
                        const tl_failure *failed)
{
    tl_read *t = tl_get();
    int checked = failed != NULL;
    if (!t)
        return tl_failed(KV_ENOMEM);
    if (t->pending) { /* a begin without its finish: let its segment go */
        t->pending = 0;
        kv_db_unpin(t->sf);
    }
    int hit = 0, rc = locate(db, key, klen, now, wait, &checked, &t->loc, &t->sf);
    if (rc == KV_ENOTFOUND)
        return KV_GET_MISSING;
    if (rc == KV_EBUSY)
        return KV_GET_BUSY;
    if (rc)
        return tl_failed(rc);
    describe(&t->out, t->sf, &t->loc);
    t->seen = 0;
    if ((t->loc.flags & KV_LOC_CORRUPT) ||
        (failed && t->sf->id == failed->seg_id && t->loc.rec_off == failed->rec_off))
        rc = KV_ECORRUPT;
    else if (t->loc.rec_len <= KV_GET_TL_MAX)
        rc = read_cached(db->cache, t->sf, &t->loc, key, klen, &t->buf, &t->out, &t->seen, &hit);
    if (!rc && !hit) {
        t->pending = 1;
        t->checked = checked;
        t->db = db;
        t->now = now;
        return KV_GET_PENDING;
    }
    tl_failure f = {t->sf->id, t->loc.rec_off}; /* before the unpin: sf may go */
    kv_db_unpin(t->sf);
    if (rc == KV_ECORRUPT && !checked)
        return tl_begin(db, key, klen, now, wait, &f);
    return tl_answer(t, &t->loc, rc);
}

/* tl_begin waiting for the index lock, then its file read if one is pending. */
static int64_t tl_whole(kv_db *db, const char *key, uint32_t klen, uint64_t now,
                        const tl_failure *failed)
{
    int64_t n = tl_begin(db, key, klen, now, 1, failed);
    return n == KV_GET_PENDING ? kv_get_tl_finish(key, klen) : n;
}

int64_t kv_get_tl(kv_db *db, const char *key, uint32_t klen, uint64_t now)
{
    return tl_whole(db, key, klen, now, NULL);
}

int64_t kv_get_tl_begin(kv_db *db, const char *key, uint32_t klen, uint64_t now)
{
    return tl_begin(db, key, klen, now, 0, NULL);
}

int64_t kv_get_tl_finish(const char *key, uint32_t klen)
{
    tl_read *t = tl_cur;
    if (!t || !t->pending)
        return tl_failed(KV_EINVAL);
    t->pending = 0;
    int rc = tl_from_file(t, key, klen);
    tl_failure f = {t->sf->id, t->loc.rec_off}; /* before the unpin: sf may go */
    kv_db_unpin(t->sf);
    if (rc == KV_ECORRUPT && !t->checked)
        return tl_whole(t->db, key, klen, t->now, &f);
    return tl_answer(t, &t->loc, rc);
}

int kv_get_into(kv_db *db, const char *key, uint32_t klen, uint64_t now, char *dst,
                uint64_t cap, kv_value *out)
{
    tl_read *t = tl_get();
    kv_loc loc;
    kv_segfile *sf;
    kv_rec r;
    if (!t)
        return KV_ENOMEM;
    int checked = 1;
    int rc = locate(db, key, klen, now, 1, &checked, &loc, &sf);
    if (rc)
        return rc;
    describe(out, sf, &loc);
    if (loc.flags & KV_LOC_CORRUPT)
        rc = KV_ECORRUPT;
    else
        rc = read_head(sf, &loc, key, klen, &t->buf, &r);
    if (!rc) {
        uint64_t voff = (uint64_t)loc.rec_off + KV_REC_HDR_SIZE + r.klen + r.mlen;
        fill_value(out, &r, voff);
        if (r.vlen == cap)
            rc = read_value(sf->fd, t->buf.data, &r, voff, (uint8_t *)dst, 1);
    }
    kv_db_unpin(sf);
    return rc;
}

const char *kv_get_tl_data(void)
{
    return tl_cur ? (const char *)tl_cur->buf.data + tl_cur->out.value_off : NULL;
}

int kv_get_tl_rc(void)
{
    return tl_rc;
}

const kv_value *kv_get_tl_value(void)
{
    static const kv_value none;
    return tl_cur ? &tl_cur->out : &none;
}

int kv_open_value(kv_db *db, const char *key, uint32_t klen, uint64_t now, kv_buf *buf,
                  kv_value *out, int *fd_out)
{
    kv_loc loc;
    kv_segfile *sf;
    kv_rec r;
    int checked = 1;
    int rc = locate(db, key, klen, now, 1, &checked, &loc, &sf);
    if (rc)
        return rc;
    describe(out, sf, &loc);
    /* The head stays in buf (the caller copies the metadata from it); the value
     * is checked through one chunk-sized scratch after it, so a 25 MiB value
     * costs one chunk of memory here. */
    rc = (loc.flags & KV_LOC_CORRUPT) ? KV_ECORRUPT : read_head(sf, &loc, key, klen, buf, &r);
    if (!rc) {
        uint64_t voff = (uint64_t)loc.rec_off + KV_REC_HDR_SIZE + r.klen + r.mlen;
        size_t head = KV_REC_HDR_SIZE + r.klen + r.mlen;
        fill_value(out, &r, voff);
        rc = buf_reserve(buf, head + (r.vlen < VALUE_CHUNK ? r.vlen : VALUE_CHUNK));
        if (!rc)
            rc = read_value(sf->fd, buf->data, &r, voff, buf->data + head, 0);
        if (!rc) {
            /* A descriptor of its own keeps the bytes readable even if the
             * segment is compacted away while the caller streams. */
            int fd = fcntl(sf->fd, F_DUPFD_CLOEXEC, 0);
            if (fd < 0)
                rc = errno;
            else
                *fd_out = fd;
        }
    }
    kv_db_unpin(sf);
    return rc;
}

static int has_prefix(const uint8_t *key, uint32_t klen, const char *prefix, uint32_t plen)
{
    return klen >= plen && memcmp(key, prefix, plen) == 0;
}

static int key_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Positions cur at the first key that has the prefix and comes after `after`. */
static void seek_start(kv_db *db, const char *prefix, uint32_t plen, const char *after,
                       uint32_t alen, kv_index_cursor *cur)
{
    if (alen && key_cmp(after, alen, prefix, plen) >= 0)
        kv_index_seek(db->ix, after, alen, 0, cur);
    else
        kv_index_seek(db->ix, prefix, plen, 1, cur);
}

int kv_list(kv_db *db, const char *prefix, uint32_t plen, const char *after, uint32_t alen,
            uint64_t now, uint32_t limit, int want_meta, kv_buf *buf, kv_list_item *items,
            uint32_t *n_out, int *more, uint32_t *found)
{
    kv_index_cursor cur;
    const uint8_t *key;
    uint32_t klen, n = 0;
    kv_loc loc;
    size_t used = 0;
    int rc = 0;

    *n_out = 0;
    *more = 0;
    *found = 0;
    now = resolve_now(now);
    /* Where each listed record lives, for the metadata reads after the lock; the
     * segment pointers are taken under the lock, as compaction may retire a
     * segment's table slot once the lock is released (the pin keeps the file). */
    kv_loc *locs = malloc((limit ? limit : 1) * sizeof *locs);
    kv_segfile **segs = malloc((limit ? limit : 1) * sizeof *segs);
    if (!locs || !segs) {
        free(locs);
        free(segs);
        return KV_ENOMEM;
    }
    pthread_rwlock_rdlock(&db->ixlock);
    if (db->closed) {
        rc = KV_ECLOSED;
        goto unlock;
    }
    seek_start(db, prefix, plen, after, alen, &cur);
    while (kv_index_next(db->ix, &cur, &key, &klen, &loc)) {
        if (!has_prefix(key, klen, prefix, plen))
            break;
        if ((loc.flags & KV_LOC_TOMBSTONE) || kv_expired(loc.expiration, now))
            continue;
        if (n == limit) {
            *more = 1;
            break;
        }
        if ((rc = buf_reserve(buf, used + klen)) != 0)
            break;
        if (klen) /* an empty key with nothing listed yet: buf->data may still be NULL */
            memcpy(buf->data + used, key, klen);
        kv_list_item *it = &items[n];
        memset(it, 0, sizeof *it);
        it->key_off = (uint32_t)used;
        it->klen = klen;
        it->expiration = loc.expiration;
        it->seg_id = db->segs[loc.seg]->id;
        it->offset = loc.rec_off;
        used += klen;
        locs[n] = loc;
        segs[n] = db->segs[loc.seg];
        if (want_meta && (loc.flags & KV_LOC_HAS_META))
            __atomic_add_fetch(&db->segs[loc.seg]->refs, 1, __ATOMIC_ACQUIRE);
        n++;
    }
unlock:
    pthread_rwlock_unlock(&db->ixlock);
    if (rc) {
        for (uint32_t i = 0; i < n; i++)
            if (want_meta && (locs[i].flags & KV_LOC_HAS_META))
                kv_db_unpin(segs[i]);
        free(locs);
        free(segs);
        return rc;
    }
    /* Metadata (and the exact expiration) come from each record's header, key and
     * metadata, which hcheck covers: the value is not read. */
    for (uint32_t i = 0; i < n; i++) {
        if (!want_meta || !(locs[i].flags & KV_LOC_HAS_META))
            continue;
        kv_segfile *sf = segs[i];
        kv_list_item *it = &items[i];
        size_t head = KV_REC_HDR_SIZE + (size_t)KV_MAX_KEY + KV_MAX_META;
        if (head > locs[i].rec_len)
            head = locs[i].rec_len;
        int e = buf_reserve(buf, used + head);
        size_t got = 0;
        kv_rec r;
        if (!e)
            e = kv_io_pread(sf->fd, buf->data + used, head, locs[i].rec_off, &got);
        kv_db_unpin(sf);
        if (e) {
            if (!rc)
                rc = e;
            continue;
        }
        /* buf may have moved: the key is addressed afresh */
        const char *k = (const char *)buf->data + it->key_off;
        if (!header_matches(buf->data + used, got, &locs[i], k, it->klen, &r)) {
            it->status = KV_ECORRUPT;
            continue;
        }
        /* Keep only the metadata: move it to where the header was read. */
        memmove(buf->data + used, buf->data + used + KV_REC_HDR_SIZE + r.klen, r.mlen);
        it->meta_off = (uint32_t)used;
        it->mlen = r.mlen;
        it->expiration = r.expiration;
        used += r.mlen;
    }
    free(locs);
    free(segs);
    if (rc)
        return rc;
    uint32_t f = 0;
    for (uint32_t i = 0; i < n; i++)
        f |= (items[i].expiration ? KV_LIST_EXPIRING : 0) | (items[i].mlen ? KV_LIST_META : 0) |
             (items[i].status ? KV_LIST_BAD : 0);
    *found = f;
    *n_out = n;
    return 0;
}

int kv_count_prefix(kv_db *db, const char *prefix, uint32_t plen, uint64_t now, uint64_t *keys,
                    uint64_t *bytes)
{
    kv_index_cursor cur;
    const uint8_t *key;
    uint32_t klen;
    kv_loc loc;
    *keys = *bytes = 0;
    pthread_rwlock_rdlock(&db->ixlock);
    if (db->closed) {
        pthread_rwlock_unlock(&db->ixlock);
        return KV_ECLOSED;
    }
    kv_index_seek(db->ix, prefix, plen, 1, &cur);
    while (kv_index_next(db->ix, &cur, &key, &klen, &loc)) {
        if (!has_prefix(key, klen, prefix, plen))
            break;
        if (kv_expired(loc.expiration, now))
            continue;
        (*keys)++;
        *bytes += kv_pad8(loc.rec_len);
    }
    pthread_rwlock_unlock(&db->ixlock);
    return 0;
}

/* Expired bytes per segment slot, from one pass over the index. */
static int expired_by_slot(kv_db *db, uint64_t now, uint64_t **out, uint64_t *keys)
{
    uint64_t *exp = calloc(KV_MAX_SEGS, sizeof *exp);
    if (!exp)
        return KV_ENOMEM;
    uint32_t limit = kv_index_id_limit(db->ix);
    *keys = 0;
    for (uint32_t id = 0; id < limit; id++) {
        const uint8_t *key;
        uint32_t klen;
        kv_loc loc;
        if (kv_index_entry(db->ix, id, &key, &klen, &loc) && kv_expired(loc.expiration, now)) {
            exp[loc.seg] += kv_pad8(loc.rec_len);
            (*keys)++;
        }
    }
    *out = exp;
    return 0;
}

static void seg_info(const kv_db *db, uint32_t slot, const uint64_t *exp, kv_seg_info *o)
{
    const kv_segfile *sf = db->segs[slot];
    uint64_t body = sf->size > KV_SEG_HDR_SIZE ? sf->size - KV_SEG_HDR_SIZE : 0;
    memset(o, 0, sizeof *o);
    o->id = sf->id;
    o->size = sf->size;
    o->live_bytes = sf->live_bytes;
    o->live_records = sf->live_records;
    o->expired_bytes = exp[slot];
    o->tombstone_bytes = sf->tomb_bytes;
    o->dead_bytes = body > sf->live_bytes + sf->tomb_bytes ? body - sf->live_bytes - sf->tomb_bytes
                                                          : 0;
    o->flags = sf->flags;
    o->active = (int)slot == db->active;
    o->min_seq = sf->min_seq;
    o->damaged = sf->damaged;
    o->hinted = sf->hinted;
}

int kv_stats_get(kv_db *db, uint64_t now, kv_stats *out)
{
    uint64_t *exp;
    int rc;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&db->wlock); /* segment sizes and counters are the writer's */
    pthread_rwlock_rdlock(&db->ixlock);
    if (db->closed) {
        rc = KV_ECLOSED;
        goto out;
    }
    if ((rc = expired_by_slot(db, now, &exp, &out->expired_keys)) != 0)
        goto out;
    out->keys = kv_index_count(db->ix);
    out->index_bytes = kv_index_memory(db->ix);
    for (uint32_t i = 0; i < KV_MAX_SEGS; i++) {
        if (!db->segs[i])
            continue;
        kv_seg_info si;
        seg_info(db, i, exp, &si);
        out->segments++;
        out->disk_bytes += si.size;
        out->live_bytes += si.live_bytes;
        out->expired_bytes += si.expired_bytes;
        out->tombstone_bytes += si.tombstone_bytes;
        out->dead_bytes += si.dead_bytes + si.tombstone_bytes;
    }
    free(exp);
    out->next_seq = db->next_seq;
    out->torn_bytes_cut = db->torn_cut;
    out->damaged_records = db->ndamage;
    out->writes = db->writes;
    out->syncs = __atomic_load_n(&db->syncs, __ATOMIC_RELAXED);
    out->hinted_segments = db->hinted_segs;
    out->hints_rejected = db->hints_bad;
    kv_cache_stats cs;
    kv_cache_stats_get(db->cache, &cs);
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    out->cache_bytes = cs.bytes;
    out->cache_records = cs.records;
out:
    pthread_rwlock_unlock(&db->ixlock);
    pthread_mutex_unlock(&db->wlock);
    return rc;
}

static int cmp_seg(const void *a, const void *b)
{
    const kv_seg_info *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Per-segment figures for the compaction policy, which looks often: the writer
 * lock is held only to copy each segment's counters, and the expired bytes
 * come from a walk of the index in slices under the shared index lock, so
 * neither a put nor a reader waits for a whole walk of a large index. */
int kv_segments(kv_db *db, uint64_t now, kv_seg_info *out, uint32_t cap, uint32_t *n)
{
    enum { SLICE = 4096 };
    uint64_t *zero = calloc(KV_MAX_SEGS, sizeof *zero);
    uint16_t *slots = NULL;
    uint32_t found = 0;
    int rc = 0;
    *n = 0;
    if (!zero)
        return KV_ENOMEM;
    if (cap && !(slots = malloc((size_t)cap * sizeof *slots))) {
        free(zero);
        return KV_ENOMEM;
    }
    pthread_mutex_lock(&db->wlock);
    pthread_rwlock_rdlock(&db->ixlock);
    if (db->closed)
        rc = KV_ECLOSED;
    for (uint32_t i = 0; !rc && i < KV_MAX_SEGS; i++) {
        if (!db->segs[i])
            continue;
        if (found < cap) {
            seg_info(db, i, zero, &out[found]);
            slots[found] = (uint16_t)i;
        }
        found++;
    }
    pthread_rwlock_unlock(&db->ixlock);
    pthread_mutex_unlock(&db->wlock);
    uint32_t listed = found < cap ? found : cap;
    uint64_t *exp = zero; /* reused: expired bytes by slot */
    for (uint32_t id = 0; !rc && listed;) {
        pthread_rwlock_rdlock(&db->ixlock);
        if (db->closed) {
            rc = KV_ECLOSED;
            pthread_rwlock_unlock(&db->ixlock);
            break;
        }
        uint32_t limit = kv_index_id_limit(db->ix);
        uint32_t end = id >= limit ? id : limit - id > SLICE ? id + SLICE : limit;
        for (; id < end; id++) {
            const uint8_t *key;
            uint32_t klen;
            kv_loc loc;
            if (kv_index_entry(db->ix, id, &key, &klen, &loc) && kv_expired(loc.expiration, now))
                exp[loc.seg] += kv_pad8(loc.rec_len);
        }
        for (uint32_t k = 0; id >= limit && k < listed; k++) {
            /* A slot that changed hands meanwhile (compaction) counts nothing. */
            kv_segfile *sf = db->segs[slots[k]];
            out[k].expired_bytes = sf && sf->id == out[k].id ? exp[slots[k]] : 0;
        }
        pthread_rwlock_unlock(&db->ixlock);
        if (id >= limit)
            break;
    }
    free(zero);
    free(slots);
    if (rc)
        return rc;
    if (listed)
        qsort(out, listed, sizeof *out, cmp_seg);
    *n = found;
    return 0;
}

uint32_t kv_damage_count(kv_db *db)
{
    pthread_mutex_lock(&db->wlock);
    uint32_t n = db->ndamage;
    pthread_mutex_unlock(&db->wlock);
    return n;
}

int kv_damage_get(kv_db *db, uint32_t i, kv_damage *out)
{
    int rc = 0;
    pthread_mutex_lock(&db->wlock);
    if (i < db->ndamage)
        *out = db->damage[i];
    else
        rc = KV_EINVAL;
    pthread_mutex_unlock(&db->wlock);
    return rc;
}

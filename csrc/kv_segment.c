/*
 * kv_segment.c -- segment headers and the record scanner.
 *
 * Owns FORMAT.md sections 2 and 5: what makes a segment header valid, how a
 * reader walks records, and how it finds its way again after damage.
 *
 * The scanner never trusts the file: a length is used only after
 * kv_rec_peek bounded it by the format limits and by the bytes left in the
 * file, and after hcheck vouched for header, key and metadata.  Memory is bounded by
 * one read window (1 MiB) or one maximal record, whichever is larger.
 * After a position that holds no valid header, it steps forward 8 bytes at a
 * time (records are 8-aligned) until a header validates, so a damaged length
 * field costs only its own record.
 */
#define _GNU_SOURCE
#include "kv_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_error.h"
#include "kv_io.h"

#define SCAN_WINDOW (1u << 20)

void kv_seg_name(char out[32], uint64_t id, const char *suffix)
{
    snprintf(out, 32, "%016llx%s", (unsigned long long)id, suffix);
}

int kv_seg_parse_name(const char *name, uint64_t *id)
{
    return kv_seg_parse_id(name, ".seg", id);
}

int kv_seg_parse_id(const char *name, const char *suffix, uint64_t *id)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return 0;
        v = (v << 4) | (uint64_t)d;
    }
    if (strcmp(name + 16, suffix) != 0)
        return 0;
    *id = v;
    return 1;
}

int kv_seg_create(int dirfd, const char *name, const kv_seg_hdr *h, int *fd_out,
                  int *sync_failed)
{
    uint8_t hdr[KV_SEG_HDR_SIZE];
    struct timespec ts;
    int fd, rc;

    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, KV_SEG_MAGIC, 8);
    kv_put32(hdr + KV_SEG_OFF_VERSION, KV_FORMAT_VERSION);
    kv_put32(hdr + KV_SEG_OFF_FLAGS, h->flags);
    kv_put64(hdr + KV_SEG_OFF_ID, h->id);
    kv_put64(hdr + KV_SEG_OFF_SEQ_FLOOR, h->seq_floor);
    clock_gettime(CLOCK_REALTIME, &ts);
    kv_put64(hdr + KV_SEG_OFF_CREATED, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    kv_put64(hdr + KV_SEG_OFF_HCHECK, kv_xxh64(hdr, KV_SEG_OFF_HCHECK, 0));

    rc = kv_io_openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd);
    if (rc)
        return rc;
    struct iovec iov = {hdr, sizeof hdr};
    rc = kv_io_pwritev(fd, &iov, 1, 0);
    if (!rc && (rc = kv_io_datasync(fd)) != 0 && sync_failed)
        *sync_failed = 1;
    if (rc) {
        kv_io_close(fd);
        kv_io_unlinkat(dirfd, name);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int kv_seg_read_header(int fd, uint64_t file_size, uint64_t expect_id, kv_seg_hdr *h)
{
    uint8_t hdr[KV_SEG_HDR_SIZE];
    size_t got;
    int rc;

    if (file_size < KV_SEG_HDR_SIZE)
        return KV_ECORRUPT;
    rc = kv_io_pread(fd, hdr, sizeof hdr, 0, &got);
    if (rc)
        return rc;
    if (got != sizeof hdr || memcmp(hdr, KV_SEG_MAGIC, 8) != 0)
        return KV_ECORRUPT;
    if (kv_xxh64(hdr, KV_SEG_OFF_HCHECK, 0) != kv_get64(hdr + KV_SEG_OFF_HCHECK))
        return KV_ECORRUPT;
    h->version = kv_get32(hdr + KV_SEG_OFF_VERSION);
    h->flags = kv_get32(hdr + KV_SEG_OFF_FLAGS);
    h->id = kv_get64(hdr + KV_SEG_OFF_ID);
    h->seq_floor = kv_get64(hdr + KV_SEG_OFF_SEQ_FLOOR);
    h->created_ns = kv_get64(hdr + KV_SEG_OFF_CREATED);
    if (h->version != KV_FORMAT_VERSION)
        return KV_EVERSION;
    if (h->id != expect_id)
        return KV_ECORRUPT;
    return 0;
}

int kv_scan_init(kv_scan *s, int fd, uint64_t size, uint64_t start)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->size = size;
    s->pos = start;
    s->valid_end = start;
    s->cap = SCAN_WINDOW;
    s->buf = malloc(s->cap);
    return s->buf ? 0 : KV_ENOMEM;
}

void kv_scan_free(kv_scan *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* Makes file bytes [off, off+n) available; *p points at them.  n is bounded
 * by the caller (a header, or a record whose lengths were already checked
 * against the format limits), so the window grows to at most one record. */
static int window(kv_scan *s, uint64_t off, size_t n, const uint8_t **p)
{
    if (off >= s->win_off && off + n <= s->win_off + s->win_len) {
        *p = s->buf + (off - s->win_off);
        return 0;
    }
    if (n > s->cap) {
        uint8_t *nb = realloc(s->buf, n);
        if (!nb)
            return KV_ENOMEM;
        s->buf = nb;
        s->cap = n;
    }
    size_t want = s->cap;
    if (s->size - off < want)
        want = (size_t)(s->size - off);
    size_t got;
    int rc = kv_io_pread(s->fd, s->buf, want, off, &got);
    if (rc)
        return rc;
    s->win_off = off;
    s->win_len = got;
    if (got < n)
        return EIO; /* the file shrank under us */
    *p = s->buf;
    return 0;
}

/* Is there a header-valid record at off?  Fills *r. */
static int header_at(kv_scan *s, uint64_t off, kv_rec *r, int *rc)
{
    const uint8_t *p;
    uint64_t remaining = s->size - off;
    *rc = 0;
    if (remaining < KV_REC_HDR_SIZE)
        return 0;
    if ((*rc = window(s, off, KV_REC_HDR_SIZE, &p)) != 0)
        return 0;
    if (!kv_rec_peek(p, remaining, r))
        return 0;
    if ((*rc = window(s, off, KV_REC_HDR_SIZE + r->klen + r->mlen, &p)) != 0)
        return 0;
    return kv_rec_header_ok(p, r);
}

/* Is there, at off, the torn last write of the file: a record whose header, key
 * and metadata are whole and vouched for by hcheck, but whose extent runs past
 * the end of the file?  Its value bytes must not be searched for records (a
 * value may hold anything, even bytes that look like records), so everything
 * from off to the end of the file is its tail. */
static int torn_at(kv_scan *s, uint64_t off, int *rc)
{
    const uint8_t *p;
    kv_rec r;
    uint64_t remaining = s->size - off;
    *rc = 0;
    if (remaining < KV_REC_HDR_SIZE)
        return 0;
    if ((*rc = window(s, off, KV_REC_HDR_SIZE, &p)) != 0)
        return 0;
    if (!kv_rec_peek(p, UINT64_MAX, &r) || kv_rec_size(r.klen, r.mlen, r.vlen) <= remaining)
        return 0;
    if ((uint64_t)KV_REC_HDR_SIZE + r.klen + r.mlen > remaining)
        return 0;
    if ((*rc = window(s, off, KV_REC_HDR_SIZE + r.klen + r.mlen, &p)) != 0)
        return 0;
    return kv_rec_header_ok(p, &r);
}

int kv_scan_next(kv_scan *s, kv_scan_event *ev)
{
    kv_rec r;
    int rc;

    memset(ev, 0, sizeof *ev);
    if (s->pos >= s->size) {
        ev->kind = KV_SCAN_END;
        return 0;
    }
    if (header_at(s, s->pos, &r, &rc)) {
        const uint8_t *p;
        uint64_t size = kv_rec_size(r.klen, r.mlen, r.vlen);
        uint64_t end = s->pos + kv_pad8(size);
        if (end > s->size)
            end = s->size; /* padding of the last record may be missing */
        if ((rc = window(s, s->pos, (size_t)(end - s->pos), &p)) != 0)
            return rc;
        ev->off = s->pos;
        ev->end = end;
        ev->rec = r;
        ev->data = p;
        if (kv_rec_body_ok(p, &r)) {
            ev->kind = KV_SCAN_RECORD;
            s->valid_end = s->pos + kv_pad8(size);
            /* Padding is covered by no checksum; zero is its only valid content. */
            for (uint64_t i = size; i < end - s->pos; i++)
                ev->bad_pad |= p[i] != 0;
        } else {
            ev->kind = KV_SCAN_DAMAGED;
        }
        s->pos = end;
        return 0;
    }
    if (rc)
        return rc;
    /* No record here: find the next header-valid one, unless this is the
     * torn last write, or one is found before it. */
    uint64_t start = s->pos, o = s->pos;
    if (torn_at(s, o, &rc))
        o = s->size;
    if (rc)
        return rc;
    while (o < s->size) {
        o += KV_REC_ALIGN;
        if (o + KV_REC_HDR_SIZE > s->size) {
            o = s->size;
            break;
        }
        if (header_at(s, o, &r, &rc))
            break;
        if (!rc && torn_at(s, o, &rc))
            o = s->size;
        if (rc)
            return rc;
    }
    ev->kind = KV_SCAN_REGION;
    ev->off = start;
    ev->end = o;
    s->pos = o;
    return 0;
}

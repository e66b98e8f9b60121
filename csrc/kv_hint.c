/*
 * kv_hint.c -- writing, validating and reading hint files (docs/FORMAT.md
 * section 6).
 *
 * The loader never trusts the file: its size is bounded by the segment's size
 * before anything is allocated (every entry stands for a record at least as
 * long as itself), the whole-file checksum is verified before any entry is
 * decoded, and each entry is then checked against the format's limits and the
 * segment's size, so an entry can never send a reader outside its segment.
 */
#define _GNU_SOURCE
#include "kv_hint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"
#include "kv_buf.h"
#include "kv_hash.h"
#include "kv_io.h"
#include "kv_segment.h"

void kv_hint_buf_init(kv_hint_buf *b)
{
    memset(b, 0, sizeof *b);
    b->min_seq = UINT64_MAX;
}

void kv_hint_buf_free(kv_hint_buf *b)
{
    free(b->data);
    kv_hint_buf_init(b);
}

int kv_hint_add(kv_hint_buf *b, int type, int has_meta, const void *key, uint32_t klen,
                uint64_t rec_off, uint64_t rec_len, uint64_t seq, uint64_t expiration)
{
    size_t need = (b->len ? b->len : KV_HINT_HDR_SIZE) + KV_HINT_ENTRY_SIZE + klen;
    if (kv_grow(&b->data, &b->cap, need, 4096))
        return KV_ENOMEM;
    if (!b->len)
        b->len = KV_HINT_HDR_SIZE;
    uint8_t *p = b->data + b->len;
    p[0] = (uint8_t)type;
    p[1] = has_meta ? KV_HINT_F_META : 0;
    kv_put16(p + 2, (uint16_t)klen);
    kv_put32(p + 4, (uint32_t)rec_off);
    kv_put32(p + 8, (uint32_t)rec_len);
    kv_put32(p + 12, 0);
    kv_put64(p + 16, seq);
    kv_put64(p + 24, expiration);
    memcpy(p + KV_HINT_ENTRY_SIZE, key, klen);
    b->len = need;
    b->count++;
    if (seq < b->min_seq)
        b->min_seq = seq;
    kv_hint_note_seq(b, seq);
    return 0;
}

int kv_hint_next(const uint8_t *data, size_t end, size_t *pos, kv_hint_entry *e)
{
    size_t p = *pos ? *pos : KV_HINT_HDR_SIZE;
    if (!data || p + KV_HINT_ENTRY_SIZE > end)
        return 0;
    const uint8_t *q = data + p;
    e->type = q[0];
    e->has_meta = (q[1] & KV_HINT_F_META) != 0;
    e->klen = kv_get16(q + 2);
    e->rec_off = kv_get32(q + 4);
    e->rec_len = kv_get32(q + 8);
    e->seq = kv_get64(q + 16);
    e->expiration = kv_get64(q + 24);
    e->key = q + KV_HINT_ENTRY_SIZE;
    *pos = p + KV_HINT_ENTRY_SIZE + e->klen;
    return 1;
}

static void hint_header(uint8_t *h, uint64_t seg_id)
{
    memcpy(h, KV_HINT_MAGIC, 8);
    kv_put32(h + KV_HINT_OFF_VERSION, KV_FORMAT_VERSION);
    kv_put32(h + 12, 0);
    kv_put64(h + KV_HINT_OFF_ID, seg_id);
}

int kv_hint_write(int dirfd, uint64_t seg_id, uint64_t data_size, kv_hint_buf *b)
{
    uint8_t empty[KV_HINT_HDR_SIZE], trailer[KV_HINT_TRAILER_SIZE];
    char tmp[40], name[32];
    uint8_t *body = b->len ? b->data : empty;
    size_t blen = b->len ? b->len : KV_HINT_HDR_SIZE;

    hint_header(body, seg_id);
    kv_put64(trailer + KV_HINT_TR_MAX_SEQ, b->max_seq);
    kv_put64(trailer + KV_HINT_TR_DATA_SIZE, data_size);
    kv_put64(trailer + KV_HINT_TR_COUNT, b->count);
    kv_xxh64_state st;
    kv_xxh64_reset(&st, 0);
    kv_xxh64_update(&st, body, blen);
    kv_xxh64_update(&st, trailer, KV_HINT_TR_CHECK);
    kv_put64(trailer + KV_HINT_TR_CHECK, kv_xxh64_digest(&st));

    kv_seg_name(name, seg_id, ".hint");
    kv_seg_name(tmp, seg_id, ".hint.tmp");
    struct iovec iov[2] = {{body, blen}, {trailer, sizeof trailer}};
    return kv_io_replace_file(dirfd, tmp, name, iov, 2);
}

void kv_hint_file_free(kv_hint_file *f)
{
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* Validates a whole hint file in memory; 0 or KV_ECORRUPT with *bad. */
static int validate(const uint8_t *d, size_t size, uint64_t seg_id, uint64_t data_size,
                    uint64_t *count, uint64_t *max_seq, uint64_t *bad)
{
    const size_t min = KV_HINT_HDR_SIZE + KV_HINT_TRAILER_SIZE;
    *bad = 0;
    if (size < min || memcmp(d, KV_HINT_MAGIC, 8) != 0)
        return KV_ECORRUPT;
    const uint8_t *t = d + size - KV_HINT_TRAILER_SIZE;
    if (kv_xxh64(d, size - 8, 0) != kv_get64(t + KV_HINT_TR_CHECK)) {
        *bad = size - 8;
        return KV_ECORRUPT;
    }
    if (kv_get32(d + KV_HINT_OFF_VERSION) != KV_FORMAT_VERSION || kv_get32(d + 12) != 0 ||
        kv_get64(d + KV_HINT_OFF_ID) != seg_id) {
        *bad = KV_HINT_OFF_VERSION;
        return KV_ECORRUPT;
    }
    if (kv_get64(t + KV_HINT_TR_DATA_SIZE) != data_size) {
        *bad = size - KV_HINT_TRAILER_SIZE + KV_HINT_TR_DATA_SIZE;
        return KV_ECORRUPT;
    }
    size_t end = size - KV_HINT_TRAILER_SIZE, pos = KV_HINT_HDR_SIZE;
    uint64_t n = 0, top = kv_get64(t + KV_HINT_TR_MAX_SEQ);
    while (pos < end) {
        const uint8_t *q = d + pos;
        *bad = pos;
        if (end - pos < KV_HINT_ENTRY_SIZE)
            return KV_ECORRUPT;
        uint32_t klen = kv_get16(q + 2);
        uint32_t off = kv_get32(q + 4), len = kv_get32(q + 8);
        uint8_t type = q[0], flags = q[1];
        if (type < KV_REC_PUT || type > KV_REC_EXPIRE || (flags & ~KV_HINT_F_META) != 0 ||
            kv_get32(q + 12) != 0 || klen > KV_MAX_KEY || end - pos - KV_HINT_ENTRY_SIZE < klen)
            return KV_ECORRUPT;
        uint64_t payload = (uint64_t)len - KV_REC_HDR_SIZE - klen;
        if (off < KV_SEG_HDR_SIZE || off % KV_REC_ALIGN != 0 ||
            len < (uint64_t)KV_REC_HDR_SIZE + klen || (uint64_t)off + len > data_size ||
            payload > (uint64_t)KV_MAX_META + KV_MAX_VALUE)
            return KV_ECORRUPT;
        if (type != KV_REC_PUT && (payload != 0 || flags))
            return KV_ECORRUPT;
        if ((flags & KV_HINT_F_META) && payload == 0)
            return KV_ECORRUPT;
        if (kv_get64(q + 16) > top)
            return KV_ECORRUPT; /* max_seq must bound every record */
        pos += KV_HINT_ENTRY_SIZE + klen;
        n++;
    }
    if (n != kv_get64(t + KV_HINT_TR_COUNT)) {
        *bad = size - KV_HINT_TRAILER_SIZE + KV_HINT_TR_COUNT;
        return KV_ECORRUPT;
    }
    *bad = 0;
    *count = n;
    *max_seq = top;
    return 0;
}

int kv_hint_load(int dirfd, uint64_t seg_id, uint64_t data_size, kv_hint_file *f,
                 uint64_t *bad_off)
{
    char name[32];
    uint64_t size;
    size_t got;
    int fd, rc;

    f->size = 0;
    f->count = 0;
    f->max_seq = 0;
    *bad_off = 0;
    kv_seg_name(name, seg_id, ".hint");
    rc = kv_io_openat(dirfd, name, O_RDONLY | O_NOFOLLOW, 0, &fd);
    if (rc)
        return rc;
    rc = kv_io_size(fd, &size);
    /* Every entry describes a record at least as long as the entry itself. */
    if (!rc && size > data_size + KV_HINT_HDR_SIZE + KV_HINT_TRAILER_SIZE) {
        *bad_off = data_size + KV_HINT_HDR_SIZE + KV_HINT_TRAILER_SIZE;
        rc = KV_ECORRUPT;
    }
    if (!rc && size < KV_HINT_HDR_SIZE + KV_HINT_TRAILER_SIZE) {
        *bad_off = size;
        rc = KV_ECORRUPT;
    }
    if (!rc && size > f->cap) {
        /* A fresh block, not realloc: nothing in the old one is worth copying. */
        free(f->data);
        f->cap = 0;
        f->data = malloc((size_t)size);
        if (!f->data)
            rc = KV_ENOMEM;
        else
            f->cap = (size_t)size;
    }
    if (!rc)
        rc = kv_io_pread(fd, f->data, (size_t)size, 0, &got);
    kv_io_close(fd);
    if (!rc && got != size) {
        *bad_off = got;
        rc = KV_ECORRUPT;
    }
    if (!rc)
        rc = validate(f->data, (size_t)size, seg_id, data_size, &f->count, &f->max_seq,
                      bad_off);
    if (rc) {
        f->count = 0;
        return rc;
    }
    f->size = (size_t)size;
    return 0;
}

uint64_t kv_hint_peek_count(int dirfd, uint64_t seg_id)
{
    uint8_t t[KV_HINT_TRAILER_SIZE];
    char name[32];
    uint64_t size, count = 0;
    size_t got;
    int fd;
    kv_seg_name(name, seg_id, ".hint");
    if (kv_io_openat(dirfd, name, O_RDONLY | O_NOFOLLOW, 0, &fd) != 0)
        return 0;
    if (kv_io_size(fd, &size) == 0 && size >= KV_HINT_HDR_SIZE + KV_HINT_TRAILER_SIZE &&
        kv_io_pread(fd, t, sizeof t, size - sizeof t, &got) == 0 && got == sizeof t) {
        count = kv_get64(t + KV_HINT_TR_COUNT);
        if (count > size / KV_HINT_ENTRY_SIZE)
            count = size / KV_HINT_ENTRY_SIZE;
    }
    kv_io_close(fd);
    return count;
}

int kv_hint_check(const char *dir, uint64_t seg_id, uint64_t *bad_off)
{
    kv_hint_file f = {0};
    char name[32];
    uint64_t size;
    int dirfd, segfd, rc;

    *bad_off = 0;
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return errno;
    kv_seg_name(name, seg_id, ".seg");
    rc = kv_io_openat(dirfd, name, O_RDONLY | O_NOFOLLOW, 0, &segfd);
    if (!rc) {
        rc = kv_io_size(segfd, &size);
        kv_io_close(segfd);
    }
    if (!rc)
        rc = kv_hint_load(dirfd, seg_id, size, &f, bad_off);
    kv_hint_file_free(&f);
    close(dirfd);
    return rc;
}

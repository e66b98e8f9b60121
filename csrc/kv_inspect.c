/*
 * kv_inspect.c -- the read-only segment inspector of kv_inspect.h.
 *
 * Owns no format rule of its own: the header is validated by
 * kv_seg_read_header and the records found by the recovery scanner
 * (kv_segment.c), so the inspector and recovery cannot disagree about what
 * a file holds.  What it adds is opening one file by path without a store
 * handle, and telling a tail region (invalid bytes up to the end of the
 * file) from a region followed by valid records.
 */
#define _GNU_SOURCE
#include "kv_inspect.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "kv_error.h"
#include "kv_io.h"
#include "kv_segment.h"

struct kv_inspect {
    int      fd;    /* the segment, opened O_RDONLY | O_NOFOLLOW */
    kv_scan  scan;  /* the recovery scanner over it */
};

/* The id a segment file's name carries, or 0 when the base name is not a
 * segment name. */
static int id_from_path(const char *path, uint64_t *id)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strlen(base) != 20)
        return 0;
    return kv_seg_parse_name(base, id);
}

int kv_inspect_open(const char *path, kv_inspect **out, kv_inspect_header *hdr)
{
    kv_seg_hdr h;
    uint64_t id, size;
    int fd, rc;

    memset(hdr, 0, sizeof *hdr);
    if (!path || !id_from_path(path, &id))
        return KV_EINVAL;
    /* O_NONBLOCK: a FIFO planted under a segment name must not hang the open;
     * reading it then fails (ESPIPE).  It changes nothing for a regular file. */
    rc = kv_io_openat(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0, &fd);
    if (rc)
        return rc;
    kv_inspect *in = calloc(1, sizeof *in);
    if (!in) {
        rc = KV_ENOMEM;
        goto fail;
    }
    in->fd = fd;
    if ((rc = kv_io_size(fd, &size)) != 0)
        goto fail;
    hdr->id = id;
    hdr->size = size;
    rc = kv_seg_read_header(fd, size, id, &h);
    if (rc == 0) {
        hdr->version = h.version;
        hdr->flags = h.flags;
        hdr->seq_floor = h.seq_floor;
        hdr->created_ns = h.created_ns;
    } else if (rc == KV_ECORRUPT) {
        hdr->status = KV_ECORRUPT;
    } else {
        goto fail;
    }
    if ((rc = kv_scan_init(&in->scan, fd, size, KV_SEG_HDR_SIZE)) != 0)
        goto fail;
    *out = in;
    return 0;
fail:
    free(in);
    kv_io_close(fd);
    return rc;
}

int kv_inspect_next(kv_inspect *in, kv_inspect_item *item, int *done)
{
    kv_scan_event ev;
    int rc = kv_scan_next(&in->scan, &ev);

    *done = 0;
    if (rc)
        return rc;
    if (ev.kind == KV_SCAN_END) {
        *done = 1;
        return 0;
    }
    memset(item, 0, sizeof *item);
    item->offset = ev.off;
    item->end = ev.end;
    if (ev.kind == KV_SCAN_REGION) {
        item->kind = ev.end >= in->scan.size ? KV_INSPECT_TAIL : KV_INSPECT_REGION;
        return 0;
    }
    item->kind = ev.kind == KV_SCAN_RECORD ? KV_INSPECT_RECORD : KV_INSPECT_DAMAGED;
    item->type = ev.rec.type;
    item->flags = ev.rec.flags;
    item->seq = ev.rec.seq;
    item->expiration = ev.rec.expiration;
    item->check = ev.rec.check;
    item->klen = ev.rec.klen;
    item->mlen = ev.rec.mlen;
    item->vlen = ev.rec.vlen;
    /* hcheck vouched for header, key and metadata, also of a damaged record. */
    item->key = ev.data + KV_REC_HDR_SIZE;
    item->meta = item->key + ev.rec.klen;
    return 0;
}

void kv_inspect_close(kv_inspect *in)
{
    if (!in)
        return;
    kv_scan_free(&in->scan);
    kv_io_close(in->fd);
    free(in);
}

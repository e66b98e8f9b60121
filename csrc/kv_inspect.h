/*
 * kv_inspect.h -- read-only decoding of one segment file by path, for the
 * `kvengine segments`, `inspect` and `verify` commands (docs/FORMAT.md
 * sections 2, 3 and 5).
 *
 * An inspector takes no lock and opens the file O_RDONLY | O_NOFOLLOW, so it
 * runs beside a writer and never follows a symbolic link planted under a
 * segment name.  It walks the file with the same scanner recovery uses
 * (kv_scan_*), so it trusts no length read from disk and reports damage the
 * way recovery sees it.  The file size is taken once at open: records a
 * writer appends later are not seen, and a record being appended at that
 * instant shows as a tail region.
 */
#ifndef KV_INSPECT_H
#define KV_INSPECT_H

#include <stdint.h>

/* CDEF-BEGIN */
/* What an inspected item is (kv_inspect_item.kind). */
#define KV_INSPECT_RECORD   1   /* a valid record: both checksums match */
#define KV_INSPECT_DAMAGED  2   /* header, key and metadata vouched for by hcheck; value checksum failed */
#define KV_INSPECT_REGION   3   /* bytes holding no valid record, followed by a valid one */
#define KV_INSPECT_TAIL     4   /* bytes holding no valid record, up to the end of the file */

typedef struct kv_inspect kv_inspect;

typedef struct kv_inspect_header {
    uint64_t id;          /* segment id from the file name */
    uint64_t size;        /* file bytes when the inspector opened it */
    uint64_t seq_floor;   /* from the header (0 when the header is invalid) */
    uint64_t created_ns;  /* from the header (0 when the header is invalid) */
    uint32_t version;     /* from the header (0 when the header is invalid) */
    uint32_t flags;       /* segment header flags (0 when the header is invalid) */
    int32_t  status;      /* 0, or KV_ECORRUPT: short file, bad magic, hcheck or id */
    int32_t  reserved;
} kv_inspect_header;

/* One record or damaged place.  key and meta point into the inspector's read
 * window and stay valid until the next kv_inspect_next or kv_inspect_close;
 * they are NULL for regions. */
typedef struct kv_inspect_item {
    uint64_t       offset;      /* start in the file */
    uint64_t       end;         /* end in the file (records: with padding) */
    uint64_t       seq;         /* sequence number (records) */
    uint64_t       expiration;  /* seconds since the epoch, 0 = never (records) */
    uint64_t       check;       /* stored value checksum (records) */
    const uint8_t *key;
    const uint8_t *meta;
    uint32_t       klen;
    uint32_t       mlen;
    uint32_t       vlen;
    int32_t        kind;        /* KV_INSPECT_* */
    uint8_t        type;        /* record type 1..4 (FORMAT.md section 3) */
    uint8_t        flags;       /* record flags (bit 0: batch member) */
    uint16_t       reserved;
} kv_inspect_item;

/* Opens the segment file at path read-only (O_NOFOLLOW; no store lock) and
 * reads its header into *hdr.  The file name must be "<16 hex digits>.seg":
 * the header's id is checked against it.  An invalid header is not an error
 * (hdr->status says so; the records after it are still scanned).
 * Errors: KV_EINVAL (not a segment file name), KV_EVERSION (a valid header of
 * another format version), KV_ENOMEM, errno (ENOENT, ELOOP for a symbolic
 * link, EISDIR, ESPIPE for a FIFO, EACCES ...).  *out is freed by kv_inspect_close.  One thread at a time. */
int kv_inspect_open(const char *path, kv_inspect **out, kv_inspect_header *hdr);
/* Next item in file order.  Returns 0 and sets *done = 1 (item untouched)
 * after the last one.  Errors: KV_ENOMEM, errno (EIO when the file shrank
 * while being read, e.g. a writer cut its torn tail). */
int kv_inspect_next(kv_inspect *in, kv_inspect_item *item, int *done);
void kv_inspect_close(kv_inspect *in);
/* CDEF-END */

#endif

/*
 * kv_segment.h -- one segment file: its header, and a scanner that walks its
 * records and damage (docs/FORMAT.md sections 2, 3 and 5).
 */
#ifndef KV_SEGMENT_H
#define KV_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "kv_record.h"

typedef struct kv_seg_hdr {
    uint32_t version;     /* format version */
    uint32_t flags;       /* KV_SEG_F_* */
    uint64_t id;          /* segment id */
    uint64_t seq_floor;   /* next sequence number when the segment was created */
    uint64_t created_ns;  /* informational */
} kv_seg_hdr;

/* File name of segment id with the given suffix (".seg", ".hint", ...). */
void kv_seg_name(char out[32], uint64_t id, const char *suffix);
/* Parses a file name "<16 hex>.seg"; returns 1 and the id when it is one. */
int kv_seg_parse_name(const char *name, uint64_t *id);
/* Parses "<16 hex><suffix>" (".hint", ".compact", ...) the same way. */
int kv_seg_parse_id(const char *name, const char *suffix, uint64_t *id);

/* Creates <name> (O_EXCL, 0600), writes and fdatasyncs the header.  The caller
 * fsyncs the directory.  *fd_out is the open read-write descriptor.  On failure
 * the file is removed again; *sync_failed (if not NULL) tells whether the
 * failed call was the fdatasync, which R9 makes fatal for the caller's handle. */
int kv_seg_create(int dirfd, const char *name, const kv_seg_hdr *h, int *fd_out,
                  int *sync_failed);
/* Reads and validates the header: 0, KV_ECORRUPT (bad header or file shorter than
 * a header) or KV_EVERSION, or an errno. */
int kv_seg_read_header(int fd, uint64_t file_size, uint64_t expect_id, kv_seg_hdr *h);

/* Scanner events */
#define KV_SCAN_RECORD   1   /* a valid record */
#define KV_SCAN_DAMAGED  2   /* header-valid record whose body checksum failed */
#define KV_SCAN_REGION   3   /* bytes [off, end) that hold no record */
#define KV_SCAN_END      0

typedef struct kv_scan_event {
    int            kind;  /* KV_SCAN_* */
    uint64_t       off;   /* start of the record or region */
    uint64_t       end;   /* end of the record (padded) or region */
    kv_rec         rec;   /* RECORD, DAMAGED: header fields */
    const uint8_t *data;  /* RECORD, DAMAGED: the whole record, valid until the next call */
    int            bad_pad;  /* RECORD: its padding bytes [off + size, end) are not all zero */
} kv_scan_event;

typedef struct kv_scan {
    int      fd;          /* file being scanned */
    uint64_t size;        /* bytes in the file when the scan began */
    uint64_t pos;         /* next offset to examine */
    uint64_t valid_end;   /* end (padded) of the last valid record, or of the header */
    uint8_t *buf;         /* read window */
    size_t   cap;         /* window capacity */
    uint64_t win_off;     /* file offset of buf[0] */
    size_t   win_len;     /* valid bytes in the window */
} kv_scan;

/* start: first record offset (KV_SEG_HDR_SIZE).  Returns 0 or KV_ENOMEM. */
int  kv_scan_init(kv_scan *s, int fd, uint64_t size, uint64_t start);
/* Next event; 0 or an errno/KV_ENOMEM.  After KV_SCAN_END, s->valid_end tells
 * where the valid prefix of the file ends (everything after it is tail). */
int  kv_scan_next(kv_scan *s, kv_scan_event *ev);
void kv_scan_free(kv_scan *s);

#endif

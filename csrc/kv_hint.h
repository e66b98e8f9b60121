/*
 * kv_hint.h -- hint files (docs/FORMAT.md section 6): a compact list of the
 * records of one sealed segment, so that open can rebuild the index without
 * reading values.  A hint is a cache, never the truth: it is used only when it
 * is whole, matches its segment's size, and every entry lies inside that
 * segment; otherwise the segment is scanned.
 */
#ifndef KV_HINT_H
#define KV_HINT_H

#include <stddef.h>
#include <stdint.h>

#include "kv_format.h"

/* Hint entries being collected for one segment.  data starts with room for
 * the file header, so the finished file is data followed by the trailer. */
typedef struct kv_hint_buf {
    uint8_t *data;
    size_t   len;
    size_t   cap;
    uint64_t count;   /* entries */
    uint64_t min_seq; /* smallest sequence number among the entries */
    uint64_t max_seq; /* largest sequence number of any record of the segment */
} kv_hint_buf;

/* One decoded entry; key points into the hint's memory. */
typedef struct kv_hint_entry {
    uint8_t        type;        /* KV_REC_PUT, KV_REC_DELETE, KV_REC_EXPIRE */
    uint8_t        has_meta;
    uint32_t       klen;
    uint32_t       rec_off;
    uint32_t       rec_len;
    uint64_t       seq;
    uint64_t       expiration;
    const uint8_t *key;
} kv_hint_entry;

/* A hint file read into memory and validated whole. */
typedef struct kv_hint_file {
    uint8_t *data;
    size_t   size;
    size_t   cap;    /* bytes allocated at data: reused by the next load */
    uint64_t count;
    uint64_t max_seq; /* the trailer's: no record of the segment has a larger one */
} kv_hint_file;

void kv_hint_buf_init(kv_hint_buf *b);
void kv_hint_buf_free(kv_hint_buf *b);
/* Appends an entry; 0 or KV_ENOMEM (the buffer is then unchanged). */
int  kv_hint_add(kv_hint_buf *b, int type, int has_meta, const void *key, uint32_t klen,
                 uint64_t rec_off, uint64_t rec_len, uint64_t seq, uint64_t expiration);
/* Counts a record that gets no entry (a BATCH_COMMIT, a batch member whose
 * commit never came) towards the trailer's max_seq: open must never hand out
 * its sequence number again. */
static inline void kv_hint_note_seq(kv_hint_buf *b, uint64_t seq)
{
    if (seq > b->max_seq)
        b->max_seq = seq;
}
/* Iterates over entries of a buffer or a loaded file: *pos starts at 0; returns
 * 1 and fills *e, or 0 at the end.  Only for data this module built or validated. */
int  kv_hint_next(const uint8_t *data, size_t end, size_t *pos, kv_hint_entry *e);
/* End of the entries (where the trailer starts) of a buffer or loaded file. */
static inline size_t kv_hint_buf_end(const kv_hint_buf *b)
{
    return b->len;
}
static inline size_t kv_hint_file_end(const kv_hint_file *f)
{
    return f->size - KV_HINT_TRAILER_SIZE;
}

/* Writes <id>.hint for a segment of data_size bytes: <id>.hint.tmp, fdatasync,
 * rename.  The caller fsyncs the directory (once for several hints). */
int  kv_hint_write(int dirfd, uint64_t seg_id, uint64_t data_size, kv_hint_buf *b);
/* Reads and validates <id>.hint against a segment of data_size bytes into f,
 * reusing its memory (zero-initialise f before the first load; free it with
 * kv_hint_file_free).  0 (file filled in), ENOENT when there is none,
 * KV_ECORRUPT with *bad_off the offset in the hint file of the first problem,
 * KV_ENOMEM, or an errno. */
int  kv_hint_load(int dirfd, uint64_t seg_id, uint64_t data_size, kv_hint_file *f,
                  uint64_t *bad_off);
void kv_hint_file_free(kv_hint_file *f);
/* The entry count a hint's trailer claims, bounded by what its size allows; 0
 * when it cannot be read.  Unvalidated: only for sizing the index before a load. */
uint64_t kv_hint_peek_count(int dirfd, uint64_t seg_id);

#endif

/*
 * kv_error.h -- the one error space of the C core (LMDB style).
 *
 *   0      success
 *   > 0    an errno value from the failing system call
 *   < 0    a KV_E* engine code below
 *
 * kv_strerror() (kv_error.c) gives the text for both ranges.  There is no
 * global "last error": every function returns its code.
 * These lines are also read by cffi (see csrc/build_ffi.py); keep them plain.
 */
#ifndef KV_ERROR_H
#define KV_ERROR_H

/* CDEF-BEGIN */
#define KV_OK          0
#define KV_ECORRUPT   -1   /* a record or file failed validation */
#define KV_ELOCKED    -2   /* another process holds the writer lock */
#define KV_ECLOSED    -3   /* handle already closed */
#define KV_EINVAL     -4   /* invalid argument */
#define KV_ETOOBIG    -5   /* key, metadata, value or batch over the format limits */
#define KV_EREADONLY  -6   /* write on a read-only handle */
#define KV_ENOMEM     -7   /* allocation failed */
#define KV_EVERSION   -8   /* file written by an unknown format version */
#define KV_EFAILED    -9   /* handle stopped after a failed fsync or write; reopen */
#define KV_ENOTFOUND  -10  /* no such key (internal; the API reports absence by value) */
#define KV_EBUSY      -11  /* operation already running (e.g. a second compaction) */

const char *kv_strerror(int rc);
/* CDEF-END */

#endif

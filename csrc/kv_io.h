/*
 * kv_io.h -- the only door to the operating system's file calls.
 *
 * Every open, read, write, sync, truncate, rename and unlink of the engine goes
 * through these functions, so a test can make any call fail (kv_io_fault_set),
 * the way SQLite's test VFS and Bitcask's bitcask_io do.  All functions return
 * 0 or a positive errno; none sets or reads a global error.
 */
#ifndef KV_IO_H
#define KV_IO_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* CDEF-BEGIN */
/* Operation classes for fault injection. */
#define KV_IO_OP_OPEN      1
#define KV_IO_OP_READ      2
#define KV_IO_OP_WRITE     3
#define KV_IO_OP_SYNC      4   /* fdatasync / fsync of files and directories */
#define KV_IO_OP_TRUNCATE  5
#define KV_IO_OP_RENAME    6
#define KV_IO_OP_UNLINK    7
/* As the err of kv_io_fault_set: the process kills itself (SIGKILL) instead of
 * making that call, leaving the files as a crash at that instant would. */
#define KV_IO_FAULT_KILL   -1
/* As the err of kv_io_fault_set: the call sleeps 2 ms, then runs as usual, as
 * on a slow disk (persistent: every call from nth on). */
#define KV_IO_FAULT_SLOW   -2
/* CDEF-END */
#define KV_IO_OP_COUNT     8

int kv_io_openat(int dirfd, const char *name, int flags, int mode, int *fd_out);
int kv_io_close(int fd);
/* Reads up to n bytes at off, looping over short reads; *got < n only at end of file. */
int kv_io_pread(int fd, void *buf, size_t n, uint64_t off, size_t *got);
/* Writes all iov bytes at off, continuing after short writes.  iov is modified. */
int kv_io_pwritev(int fd, struct iovec *iov, int iovcnt, uint64_t off);
int kv_io_datasync(int fd);
int kv_io_fsync(int fd);
/* Starts writeback of [off, off+len) without waiting (sync_file_range WRITE).
 * Pacing only: durability always comes from kv_io_datasync. */
int kv_io_writeback(int fd, uint64_t off, uint64_t len);
int kv_io_truncate(int fd, uint64_t len);
int kv_io_renameat(int dirfd, const char *from, const char *to);
int kv_io_unlinkat(int dirfd, const char *name);
int kv_io_size(int fd, uint64_t *size);
/* A directory stream over dirfd's directory, from its first entry; dirfd stays
 * open (closedir closes only the stream's own descriptor). */
int kv_io_opendir(int dirfd, DIR **out);
/* Writes the iov bytes as file `name` the durable way (R3): `tmp` created
 * (O_EXCL, 0600), written, fdatasynced, closed, renamed over `name`.  On failure
 * tmp is removed.  The caller fsyncs the directory. */
int kv_io_replace_file(int dirfd, const char *tmp, const char *name, struct iovec *iov, int iovcnt);
int kv_io_lock(int fd);   /* non-blocking exclusive flock; EWOULDBLOCK when held elsewhere */

/* CDEF-BEGIN */
/* Recording for power-loss simulation (the SQLite crash-VFS / ALICE model): while
 * recording, every call that changes files is journaled in call order, with the
 * bytes written, so a test can rebuild any state a power cut could leave: the
 * synced data plus any subset, prefix or torn part of what was not yet synced. */
#define KV_IO_EV_OPEN      1   /* name, fd, flags (O_CREAT | O_EXCL ... as given) */
#define KV_IO_EV_CLOSE     2   /* fd */
#define KV_IO_EV_WRITE     3   /* fd, off, len, data */
#define KV_IO_EV_TRUNCATE  4   /* fd, off = new length */
#define KV_IO_EV_SYNC      5   /* fd: fdatasync or fsync of a file */
#define KV_IO_EV_DIRSYNC   6   /* fd: fsync of a directory */
#define KV_IO_EV_RENAME    7   /* name -> name2 */
#define KV_IO_EV_UNLINK    8   /* name */

typedef struct kv_io_event {
    int32_t        kind;      /* KV_IO_EV_* */
    int32_t        fd;
    int32_t        flags;     /* OPEN: open flags */
    int32_t        reserved;
    uint64_t       off;       /* WRITE: file offset; TRUNCATE: new length */
    uint64_t       len;       /* WRITE: bytes */
    const uint8_t *data;      /* WRITE: the bytes, valid until recording restarts */
    char           name[64];  /* OPEN, RENAME (from), UNLINK */
    char           name2[64]; /* RENAME (to) */
} kv_io_event;

/* Starts (on = 1, clearing the journal) or stops (on = 0) recording.  Returns 0,
 * or ENOMEM when stopping if an event could not be journaled (the journal is then
 * incomplete and must not be replayed). */
int kv_io_record(int on);
/* Events journaled so far; kv_io_record_get copies the ith (0-based). */
uint64_t kv_io_record_count(void);
int kv_io_record_get(uint64_t i, kv_io_event *out);
/* Frees the journal (recording must be off). */
void kv_io_record_free(void);

/* Fault injection: the nth (1-based) future call of class op fails with err;
 * persistent = every call from then on fails.  op 0 clears all faults.
 * Returns how many calls of class op have been made so far. */
uint64_t kv_io_fault_set(int op, uint64_t nth, int err, int persistent);
/* CDEF-END */

#endif

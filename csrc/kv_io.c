/*
 * kv_io.c -- file system calls, and the fault-injection seam in front of them.
 *
 * Owns: every call into the OS that touches store files (docs/FORMAT.md
 * section 7 relies on each of them reporting failure faithfully).
 *
 * Why a seam: durability code is only as good as its error paths, and error
 * paths only run when something fails.  kv_io_fault_set() lets the test suite
 * fail the Nth write, sync, rename, ... with any errno and check that the
 * engine acknowledges nothing it did not store (DURABILITY.md R9, R10).
 *
 * Why a journal: a killed process loses nothing the kernel has, but a power
 * cut loses whatever was not yet fsynced, in any order and possibly torn.
 * kv_io_record() journals every successful call that changes files (each
 * write syscall with its bytes, truncate, sync, rename, unlink, open, close), so
 * that tests/test_power_loss.py can rebuild every state a power cut could leave
 * and check that no write acknowledged under sync="always" is lost.
 *
 * Invariants: short reads and writes are continued here, so callers see
 * either the whole transfer or an error; EINTR is retried.  A call is
 * journaled only once it succeeded, each write syscall separately (a short
 * write is journaled as the bytes it really wrote).
 */
#define _GNU_SOURCE
#include "kv_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct kv_fault {
    uint64_t calls;       /* calls of this class so far */
    uint64_t fail_at;     /* call number that fails, 0 = none */
    int      err;         /* errno to report */
    int      persistent;  /* keep failing after fail_at */
} kv_fault;

static kv_fault faults[KV_IO_OP_COUNT];

/* Returns the errno to inject for this call, or 0.  Counting uses atomics so
 * that concurrent readers and the writer can share the seam. */
static int injected(int op)
{
    kv_fault *f = &faults[op];
    uint64_t n = __atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
    uint64_t at = __atomic_load_n(&f->fail_at, __ATOMIC_RELAXED);
    if (at == 0 || n < at)
        return 0;
    if (n == at || __atomic_load_n(&f->persistent, __ATOMIC_RELAXED)) {
        int err = __atomic_load_n(&f->err, __ATOMIC_RELAXED);
        if (err == KV_IO_FAULT_KILL)
            raise(SIGKILL); /* crash tests: the process dies just before this call */
        if (err == KV_IO_FAULT_SLOW) {
            struct timespec ms2 = {0, 2000000};
            while (nanosleep(&ms2, &ms2) != 0 && errno == EINTR) {
            }
            return 0;
        }
        return err;
    }
    return 0;
}

uint64_t kv_io_fault_set(int op, uint64_t nth, int err, int persistent)
{
    if (op == 0) {
        for (int i = 0; i < KV_IO_OP_COUNT; i++)
            __atomic_store_n(&faults[i].fail_at, 0, __ATOMIC_RELAXED);
        return 0;
    }
    if (op < 0 || op >= KV_IO_OP_COUNT)
        return 0;
    kv_fault *f = &faults[op];
    uint64_t calls = __atomic_load_n(&f->calls, __ATOMIC_RELAXED);
    __atomic_store_n(&f->err, err, __ATOMIC_RELAXED);
    __atomic_store_n(&f->persistent, persistent, __ATOMIC_RELAXED);
    __atomic_store_n(&f->fail_at, nth ? calls + nth : 0, __ATOMIC_RELAXED);
    return calls;
}

/* -- the journal ------------------------------------------------------------ */

typedef struct journal_event {
    kv_io_event ev;
    uint64_t    data_at;  /* WRITE: where its bytes start in the blob */
} journal_event;

static pthread_mutex_t journal_lock = PTHREAD_MUTEX_INITIALIZER;
static int             recording;
static int             journal_lost;
static journal_event  *journal;
static uint64_t        journal_n, journal_cap;
static uint8_t        *blob;
static uint64_t        blob_len, blob_cap;

static int is_recording(void)
{
    return __atomic_load_n(&recording, __ATOMIC_ACQUIRE);
}

static int grow(void **p, uint64_t *cap, uint64_t need, size_t item)
{
    if (need <= *cap)
        return 0;
    uint64_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, (size_t)(n * item));
    if (!q)
        return ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static void copy_name(char dst[64], const char *src)
{
    if (src)
        snprintf(dst, 64, "%s", src);
    else
        dst[0] = 0;
}

/* Journals one event; a write's bytes are gathered from the first `len` bytes of iov. */
static void journal_add(int kind, int fd, int flags, uint64_t off, uint64_t len,
                        const struct iovec *iov, const char *name, const char *name2)
{
    pthread_mutex_lock(&journal_lock);
    if (!recording)
        goto out;
    if (grow((void **)&journal, &journal_cap, journal_n + 1, sizeof *journal) ||
        grow((void **)&blob, &blob_cap, blob_len + len, 1)) {
        journal_lost = 1;
        goto out;
    }
    journal_event *j = &journal[journal_n++];
    memset(j, 0, sizeof *j);
    j->ev.kind = kind;
    j->ev.fd = fd;
    j->ev.flags = flags;
    j->ev.off = off;
    j->ev.len = len;
    copy_name(j->ev.name, name);
    copy_name(j->ev.name2, name2);
    j->data_at = blob_len;
    for (uint64_t left = len; left > 0; iov++) {
        size_t n = iov->iov_len < left ? iov->iov_len : (size_t)left;
        if (n == 0)
            continue; /* an empty part may have a NULL base (no metadata, say) */
        memcpy(blob + blob_len, iov->iov_base, n);
        blob_len += n;
        left -= n;
    }
out:
    pthread_mutex_unlock(&journal_lock);
}

int kv_io_record(int on)
{
    int rc = 0;
    pthread_mutex_lock(&journal_lock);
    if (on) {
        journal_n = blob_len = 0;
        journal_lost = 0;
    } else if (journal_lost) {
        rc = ENOMEM;
    }
    __atomic_store_n(&recording, on != 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&journal_lock);
    return rc;
}

uint64_t kv_io_record_count(void)
{
    pthread_mutex_lock(&journal_lock);
    uint64_t n = journal_n;
    pthread_mutex_unlock(&journal_lock);
    return n;
}

int kv_io_record_get(uint64_t i, kv_io_event *out)
{
    int rc = 0;
    pthread_mutex_lock(&journal_lock);
    if (i >= journal_n) {
        rc = EINVAL;
    } else {
        *out = journal[i].ev;
        out->data = blob + journal[i].data_at;
    }
    pthread_mutex_unlock(&journal_lock);
    return rc;
}

void kv_io_record_free(void)
{
    pthread_mutex_lock(&journal_lock);
    if (!recording) {
        free(journal);
        free(blob);
        journal = NULL;
        blob = NULL;
        journal_n = journal_cap = blob_len = blob_cap = 0;
    }
    pthread_mutex_unlock(&journal_lock);
}

/* -- the calls ---------------------------------------------------------------- */

int kv_io_openat(int dirfd, const char *name, int flags, int mode, int *fd_out)
{
    int e = injected(KV_IO_OP_OPEN);
    if (e)
        return e;
    int fd;
    do {
        fd = openat(dirfd, name, flags | O_CLOEXEC, (mode_t)mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return errno;
    if (is_recording())
        journal_add(KV_IO_EV_OPEN, fd, flags, 0, 0, NULL, name, NULL);
    *fd_out = fd;
    return 0;
}

int kv_io_close(int fd)
{
    if (is_recording())
        journal_add(KV_IO_EV_CLOSE, fd, 0, 0, 0, NULL, NULL, NULL);
    /* close() must not be retried on EINTR on Linux: the descriptor is gone. */
    return close(fd) == 0 ? 0 : errno;
}

int kv_io_pread(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
    int e = injected(KV_IO_OP_READ);
    size_t done = 0;
    *got = 0;
    if (e)
        return e;
    if (off > (uint64_t)LLONG_MAX - n)
        return EINVAL;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

int kv_io_pwritev(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
    int e = injected(KV_IO_OP_WRITE);
    if (e)
        return e;
    while (iovcnt > 0) {
        if (iov->iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        int cnt = iovcnt > IOV_MAX ? IOV_MAX : iovcnt;
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        if (is_recording())
            journal_add(KV_IO_EV_WRITE, fd, 0, off, (uint64_t)w, iov, NULL, NULL);
        off += (uint64_t)w;
        size_t left = (size_t)w;
        while (left > 0 && iovcnt > 0) {
            if (left >= iov->iov_len) {
                left -= iov->iov_len;
                iov++;
                iovcnt--;
            } else {
                iov->iov_base = (char *)iov->iov_base + left;
                iov->iov_len -= left;
                left = 0;
            }
        }
    }
    return 0;
}

int kv_io_datasync(int fd)
{
    int e = injected(KV_IO_OP_SYNC);
    if (e)
        return e;
    /* No EINTR retry: after a failed sync the dirty pages may be gone (R9). */
    if (fdatasync(fd) != 0)
        return errno;
    if (is_recording())
        journal_add(KV_IO_EV_SYNC, fd, 0, 0, 0, NULL, NULL, NULL);
    return 0;
}

int kv_io_fsync(int fd)
{
    int e = injected(KV_IO_OP_SYNC);
    if (e)
        return e;
    if (fsync(fd) != 0)
        return errno;
    if (is_recording()) {
        struct stat st;
        int dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
        journal_add(dir ? KV_IO_EV_DIRSYNC : KV_IO_EV_SYNC, fd, 0, 0, 0, NULL, NULL, NULL);
    }
    return 0;
}

int kv_io_writeback(int fd, uint64_t off, uint64_t len)
{
    /* Advisory only (never a durability step, R1): starts writing dirty pages out
     * so that they do not pile up for one long fdatasync later. */
    return sync_file_range(fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : errno;
}

int kv_io_truncate(int fd, uint64_t len)
{
    int e = injected(KV_IO_OP_TRUNCATE);
    if (e)
        return e;
    int r;
    do {
        r = ftruncate(fd, (off_t)len);
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return errno;
    if (is_recording())
        journal_add(KV_IO_EV_TRUNCATE, fd, 0, len, 0, NULL, NULL, NULL);
    return 0;
}

int kv_io_renameat(int dirfd, const char *from, const char *to)
{
    int e = injected(KV_IO_OP_RENAME);
    if (e)
        return e;
    if (renameat(dirfd, from, dirfd, to) != 0)
        return errno;
    if (is_recording())
        journal_add(KV_IO_EV_RENAME, dirfd, 0, 0, 0, NULL, from, to);
    return 0;
}

int kv_io_unlinkat(int dirfd, const char *name)
{
    int e = injected(KV_IO_OP_UNLINK);
    if (e)
        return e;
    if (unlinkat(dirfd, name, 0) != 0)
        return errno;
    if (is_recording())
        journal_add(KV_IO_EV_UNLINK, dirfd, 0, 0, 0, NULL, name, NULL);
    return 0;
}

int kv_io_replace_file(int dirfd, const char *tmp, const char *name, struct iovec *iov, int iovcnt)
{
    int fd, rc;
    kv_io_unlinkat(dirfd, tmp); /* a leftover of an earlier attempt */
    rc = kv_io_openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, &fd);
    if (rc)
        return rc;
    rc = kv_io_pwritev(fd, iov, iovcnt, 0);
    if (!rc)
        rc = kv_io_datasync(fd);
    int e = kv_io_close(fd);
    if (!rc)
        rc = e;
    if (!rc)
        rc = kv_io_renameat(dirfd, tmp, name);
    if (rc)
        kv_io_unlinkat(dirfd, tmp);
    return rc;
}

int kv_io_opendir(int dirfd, DIR **out)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return e;
    }
    rewinddir(d);
    *out = d;
    return 0;
}

int kv_io_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return errno;
    if (!S_ISREG(st.st_mode))
        return EINVAL;
    *size = (uint64_t)st.st_size;
    return 0;
}

int kv_io_lock(int fd)
{
    int r;
    do {
        r = flock(fd, LOCK_EX | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

/*
 * fuzz_open.c -- libFuzzer harness for opening a store over arbitrary files:
 * recovery (kv_recover.c), the index it builds, and reads and listing over it.
 *
 * Input: a flags byte (bit 0: recompute record checksums; bit 1: open read-only;
 * bit 2: first segment COMPACTED), then up to three segment bodies separated by
 * the 4 bytes "SEG|".  Each becomes <id>.seg behind a valid header.  The store
 * must open or fail with an error code, and every key it lists must read back.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "kv.h"

static char dir[64];

static void clear_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d)
        abort();
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

/* The store directory lives as long as the fuzzing process. */
static void remove_dir(void)
{
    clear_dir();
    rmdir(dir);
}

static void write_segment(uint64_t id, const uint8_t *body, size_t n, int flags)
{
    char p[128];
    uint8_t *file = malloc(KV_SEG_HDR_SIZE + n);
    if (!file)
        abort();
    fuzz_segment_header(file, id, (flags & 4) && id == 1 ? KV_SEG_F_COMPACTED : 0, 1);
    memcpy(file + KV_SEG_HDR_SIZE, body, n);
    if (flags & 1)
        fuzz_seal_records(file, KV_SEG_HDR_SIZE + n, KV_SEG_HDR_SIZE);
    snprintf(p, sizeof p, "%s/%016llx.seg", dir, (unsigned long long)id);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, file, KV_SEG_HDR_SIZE + n) != (ssize_t)(KV_SEG_HDR_SIZE + n))
        abort();
    close(fd);
    free(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        /* tmpfs when there is one: every open syncs, and a disk would make that the cost. */
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0
                               ? "/dev/shm"
                               : "/tmp";
        snprintf(dir, sizeof dir, "%s/kvfuzz-open-XXXXXX", base);
        if (!mkdtemp(dir))
            abort();
        atexit(remove_dir);
    }
    if (size < 1)
        return 0;
    int flags = data[0];
    clear_dir();
    const uint8_t *p = data + 1, *end = data + size;
    for (uint64_t id = 1; id <= 3 && p <= end; id++) {
        const uint8_t *sep = memmem(p, (size_t)(end - p), "SEG|", 4);
        const uint8_t *stop = sep ? sep : end;
        write_segment(id, p, (size_t)(stop - p), flags);
        if (!sep)
            break;
        p = sep + 4;
    }

    kv_options opt = {1 << 20, KV_SYNC_OS, (flags & 2) ? 1 : 0};
    kv_db *db = NULL;
    if (kv_open(dir, &opt, &db) != 0)
        return 0;
    kv_buf buf = {0}, vbuf = {0};
    kv_list_item items[64];
    uint32_t n = 0, found = 0;
    int more = 0;
    if (kv_list(db, "", 0, "", 0, 0, 64, 1, &buf, items, &n, &more, &found) == 0) {
        for (uint32_t i = 0; i < n; i++) {
            kv_value v;
            if (items[i].klen > KV_MAX_KEY)
                abort();
            /* buf.data stays NULL when only empty keys were listed. */
            const char *key = items[i].klen ? (const char *)buf.data + items[i].key_off : "";
            int rc = kv_get(db, key, items[i].klen, 0, &vbuf, &v);
            if (rc != 0 && rc != KV_ECORRUPT)
                abort(); /* a listed key must read back (or be reported corrupt) */
        }
    }
    kv_stats st;
    (void)kv_stats_get(db, 0, &st);
    for (uint32_t i = 0; i < kv_damage_count(db); i++) {
        kv_damage d;
        if (kv_damage_get(db, i, &d) != 0 || d.seg_id < 1 || d.seg_id > 4)
            abort();
    }
    if (!opt.readonly) {
        /* Writing after recovery must work on whatever was recovered. */
        (void)kv_put(db, "fuzz", 4, NULL, 0, "v", 1, 0);
    }
    kv_buf_free(&buf);
    kv_buf_free(&vbuf);
    kv_close(db);
    kv_free(db);
    return 0;
}

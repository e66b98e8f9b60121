/*
 * fuzz_segment.c -- libFuzzer harness for the segment header reader and the
 * record scanner (kv_segment.c), the parsers recovery runs over every file.
 *
 * Input: flags byte (bit 0: recompute record checksums; bit 1: keep the
 * input's own first 64 bytes as the segment header instead of a valid one),
 * then the file bytes.  The scan must end, cover the file exactly once with
 * events in increasing order, and never report an extent outside the file.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "kv_io.h"
#include "kv_segment.h"

static int memfd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (memfd < 0 && (memfd = memfd_create("segment", 0)) < 0)
        abort();
    int raw_header = data[0] & 2;
    size_t body = size - 1;
    size_t n = raw_header ? body : KV_SEG_HDR_SIZE + body;
    uint8_t *file = malloc(n ? n : 1);
    if (!file)
        return 0;
    if (raw_header) {
        memcpy(file, data + 1, body);
    } else {
        fuzz_segment_header(file, 1, 0, 1);
        memcpy(file + KV_SEG_HDR_SIZE, data + 1, body);
    }
    if (data[0] & 1)
        fuzz_seal_records(file, n, KV_SEG_HDR_SIZE);
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, file, n, 0) != (ssize_t)n)
        abort();

    kv_seg_hdr h;
    (void)kv_seg_read_header(memfd, n, 1, &h);
    if (n >= KV_SEG_HDR_SIZE) {
        kv_scan sc;
        kv_scan_event ev;
        uint64_t pos = KV_SEG_HDR_SIZE;
        if (kv_scan_init(&sc, memfd, n, KV_SEG_HDR_SIZE) != 0)
            abort();
        while (kv_scan_next(&sc, &ev) == 0 && ev.kind != KV_SCAN_END) {
            if (ev.off != pos || ev.end <= ev.off || ev.end > n)
                abort(); /* events must tile the file in order */
            if (ev.kind != KV_SCAN_REGION &&
                ev.off + kv_rec_size(ev.rec.klen, ev.rec.mlen, ev.rec.vlen) > n)
                abort();
            pos = ev.end;
        }
        if (pos != n)
            abort();
        kv_scan_free(&sc);
    }
    free(file);
    return 0;
}

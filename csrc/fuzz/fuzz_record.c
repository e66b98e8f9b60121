/*
 * fuzz_record.c -- libFuzzer harness for the record decoder (kv_record.c).
 *
 * Input: flags byte (bit 0: recompute checksums first), then the record bytes.
 * Checks the decoder's contract: a header it accepts never describes a record
 * larger than the bytes it was given, and the checks read only those bytes
 * (ASan catches any read past them: the buffer is copied to an exact-size heap
 * block).
 */
#include <stdlib.h>

#include "fuzz_common.h"
#include "kv_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, n);
    if (data[0] & 1)
        fuzz_seal_records(buf, n, 0);
    kv_rec r;
    if (kv_rec_peek(buf, n, &r)) {
        uint64_t need = kv_rec_size(r.klen, r.mlen, r.vlen);
        if (need > n || r.klen > KV_MAX_KEY || r.vlen > KV_MAX_VALUE)
            abort(); /* the decoder accepted lengths it must refuse */
        if (kv_rec_header_ok(buf, &r))
            (void)kv_rec_body_ok(buf, &r);
    }
    free(buf);
    return 0;
}

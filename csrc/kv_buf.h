/*
 * kv_buf.h -- growth of the core's byte buffers (read buffers, hint
 * accumulators): capacity doubles from a first size, so appending n bytes one
 * piece at a time costs O(n) copying in all.
 */
#ifndef KV_BUF_H
#define KV_BUF_H

#include <stdint.h>
#include <stdlib.h>

#include "kv_error.h"

/* Makes *data hold at least need bytes, starting at first and doubling.  After
 * a successful call *data is never NULL, even for need 0 (a memcpy of 0 bytes
 * still needs a valid pointer).  KV_ENOMEM leaves the buffer as it was. */
static inline int kv_grow(uint8_t **data, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap && *data)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    uint8_t *d = realloc(*data, c);
    if (!d)
        return KV_ENOMEM;
    *data = d;
    *cap = c;
    return 0;
}

#endif

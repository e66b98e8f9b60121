/*
 * kv_error.c -- text for every code of the one error space (kv_error.h):
 * engine codes below zero, errno values above it.
 */
#include <string.h>

#include "kv_error.h"

const char *kv_strerror(int rc)
{
    switch (rc) {
    case KV_OK:
        return "success";
    case KV_ECORRUPT:
        return "data failed its checksum or format validation";
    case KV_ELOCKED:
        return "another process holds the store's writer lock";
    case KV_ECLOSED:
        return "store is closed";
    case KV_EINVAL:
        return "invalid argument";
    case KV_ETOOBIG:
        return "key, metadata, value or batch exceeds the format limits";
    case KV_EREADONLY:
        return "store is open read-only";
    case KV_ENOMEM:
        return "out of memory";
    case KV_EVERSION:
        return "file written by an unsupported format version";
    case KV_EFAILED:
        return "store stopped after a failed write or sync; reopen it";
    case KV_ENOTFOUND:
        return "not found";
    case KV_EBUSY:
        return "operation already in progress";
    default:
        /* strerror is thread-safe on glibc for known errno values */
        return rc > 0 ? strerror(rc) : "unknown error";
    }
}

/*
 * kv_index_hooks.h -- test and measurement hooks of kv_index.c, not part of the
 * API: the C tests (csrc/tests/test_index.c) and the memory profile
 * (csrc/bench/index_profile.c) use them; the Python binding only the hash
 * mask, for the tests of reads that collide.
 */
#ifndef KV_INDEX_HOOKS_H
#define KV_INDEX_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "kv_index.h"

typedef struct kv_index__stats {
    uint32_t nodes_live;      /* tree nodes in use */
    uint32_t height;          /* tree levels */
    uint32_t table_cap;       /* slots of cur */
    uint32_t migrating;       /* 1 while the old table is drained */
    uint64_t arena_words;     /* arena capacity in words */
    uint64_t arena_free;      /* words in key free lists */
} kv_index__stats;

/* Where the bytes go, and how long the probes of the current table are. */
typedef struct kv_index__profile {
    size_t   fixed;           /* the kv_index struct */
    size_t   entries;         /* entry chunks and their directory */
    size_t   keys;            /* key arena chunks and their directory */
    size_t   nodes;           /* tree node chunks and their directory */
    size_t   table;           /* cur */
    size_t   old_table;       /* old, while migrating */
    uint64_t key_bytes;       /* live key bytes, unrounded */
    uint32_t leaves;          /* leaves in the tree */
    uint32_t table_cap;       /* slots of cur */
    double   hit_mean;        /* slots read by a hit in cur, mean over the keys in cur */
    uint32_t hit_max;
    double   miss_mean;       /* slots read by a miss in cur, mean over all home slots */
    uint32_t miss_max;
} kv_index__profile;

/* CDEF-BEGIN */
/* ANDed into every key hash of every index (default all ones): a test sets it
 * to make keys collide, then restores it before opening another index. */
extern uint32_t kv_index__hash_mask;
/* CDEF-END */

/* When >= 0, that many more allocations succeed and every later one fails. */
extern long kv_index__alloc_fail_after;
/* Bytes (a multiple of 4096) of a draining hash table given back to the system
 * at a time, from tables of 4 units up: the tests lower it from 64 KiB. */
extern size_t kv_index__release_unit;

void kv_index__get_stats(const kv_index *ix, kv_index__stats *st);
void kv_index__get_profile(const kv_index *ix, kv_index__profile *pr);
/* 0 if every invariant holds, else 1 with a description in msg. */
int  kv_index__check(const kv_index *ix, char *msg, size_t msglen);

#endif

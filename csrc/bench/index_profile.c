/*
 * index_profile.c -- where the keydir's bytes go, per live key, and how long
 * its hash probes are, for stores of N keys built the two ways a store builds
 * its index: one put at a time (scattered key order, growth as it comes) and a
 * bulk load after kv_index_reserve (sorted order, as a store written in key
 * order reopens from its hints).  Keys: "key%013u" behind a 2-byte prefix, 18
 * bytes like the benchmark keys inside a namespace.
 *
 * Build and run with tools/index_profile.sh N...
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index.h"
#include "kv_index_hooks.h"

#define KLEN 18

static void key_of(char *buf, uint32_t k)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "\x01\x02key%013" PRIu32, k);
    memcpy(buf, tmp, KLEN);
}

static int run(uint32_t n, int bulk)
{
    kv_index *ix;
    char key[KLEN];
    kv_loc l = {0, 100, 0, 0, 0};
    if (kv_index_new(&ix) != 0)
        return 1;
    if (bulk && kv_index_reserve(ix, n) != 0)
        return 1;
    for (uint32_t i = 0; i < n; i++) {
        /* scattered: a multiplicative permutation of i */
        key_of(key, bulk ? i : (uint32_t)((uint64_t)i * 2654435761u % 4294967291u));
        l.rec_off = i;
        if (kv_index_put(ix, key, KLEN, &l, NULL, NULL, NULL) != 0)
            return 1;
    }
    kv_index__profile p;
    kv_index__get_profile(ix, &p);
    size_t total = kv_index_memory(ix);
    double d = n;
    printf("%-9s n=%9" PRIu32 "  total %5.1f B/key = %4.1f + %.0f key bytes | entries %4.1f"
           "  keys %4.1f  nodes %4.1f (%.0f%% leaf fill)  table %4.1f (load %.2f)  old %4.1f"
           " | probes hit %.2f/%u  miss %.2f/%u\n",
           bulk ? "bulk" : "scattered", n, total / d, total / d - (double)p.key_bytes / d,
           (double)p.key_bytes / d, p.entries / d, p.keys / d, p.nodes / d,
           100.0 * d / (126.0 * p.leaves), p.table / d, d / p.table_cap, p.old_table / d,
           p.hit_mean, p.hit_max, p.miss_mean, p.miss_max);
    kv_index_free(ix);
    return 0;
}

int main(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        uint32_t n = (uint32_t)strtoul(argv[a], NULL, 10);
        if (run(n, 0) || run(n, 1)) {
            fprintf(stderr, "index_profile: out of memory at %" PRIu32 " keys\n", n);
            return 1;
        }
    }
    return 0;
}

/*
 * test_index.c -- unit test of the keydir (kv_index.c) against a plain model.
 *
 * The model is an array of keys with a present flag and the location last put;
 * the ordered view is checked against the present keys sorted with the same
 * order the index promises (memcmp, a shorter key first on a common prefix).
 * kv_index__check() verifies the index's internal invariants along the way.
 *
 * Usage: test_index [random_ops [seed [growth_keys]]]
 *   defaults 200000 ops, seed 1, 300000 keys: a few seconds under ASan.
 *   tools/c_tests.sh passes $INDEX_TEST_ARGS, e.g. "5000000 7 10000000" for a soak.
 */
#include "kv_index.h"
#include "kv_index_hooks.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void check_invariants(const kv_index *ix, const char *where)
{
    char msg[256];
    int bad = kv_index__check(ix, msg, sizeof msg);
    CHECK(!bad, "%s: %s", where, msg);
    if (bad)
        exit(1);
}

/* xorshift64*: reproducible from the seed on every platform. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

static kv_loc loc_of(uint32_t n)
{
    kv_loc l;
    l.rec_off = n * 8u + 64u;
    l.rec_len = 48u + n % 1000u;
    l.expiration = n % 3 ? 0 : 1700000000u + n;
    l.seg = (uint16_t)(n % 65535u);
    l.flags = (uint16_t)(n % 2 ? KV_LOC_HAS_META : 0);
    return l;
}

static int loc_eq(const kv_loc *a, const kv_loc *b)
{
    return a->rec_off == b->rec_off && a->rec_len == b->rec_len &&
           a->expiration == b->expiration && a->seg == b->seg && a->flags == b->flags;
}

/* The order the index promises. */
static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* ---------------------------------------------------------------- model */

typedef struct mkey {
    uint8_t  bytes[40];
    uint32_t len;
    int      present;
    kv_loc   loc;
} mkey;

static mkey *model;
static uint32_t model_n;

static int cmp_mkey_ptr(const void *a, const void *b)
{
    const mkey *x = *(const mkey *const *)a, *y = *(const mkey *const *)b;
    return key_cmp(x->bytes, x->len, y->bytes, y->len);
}

/* Keys from a tiny alphabet with lengths 0..12 share prefixes and collide in
 * order often; a few long ones cross word boundaries of the key arena. */
static void make_keys(uint32_t n)
{
    model = calloc(n, sizeof *model);
    model_n = 0;
    static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0x7f, 0x80, 0xfe, 0xff};
    while (model_n < n) {
        mkey *k = &model[model_n];
        k->len = below(8) == 0 ? below(40) : below(13);
        for (uint32_t i = 0; i < k->len; i++)
            k->bytes[i] = alphabet[below(sizeof alphabet)];
        int dup = 0; /* duplicates would make the model ambiguous: a linear scan is fine here */
        for (uint32_t j = 0; j < model_n && !dup; j++)
            dup = model[j].len == k->len && memcmp(model[j].bytes, k->bytes, k->len) == 0;
        if (!dup)
            model_n++;
    }
}

/* Compares a full ordered walk and seeks at every model key with the sorted model. */
static void check_order(const kv_index *ix, const char *where)
{
    mkey **sorted = malloc((model_n ? model_n : 1) * sizeof *sorted);
    uint32_t live = 0;
    for (uint32_t i = 0; i < model_n; i++)
        if (model[i].present)
            sorted[live++] = &model[i];
    qsort(sorted, live, sizeof *sorted, cmp_mkey_ptr);
    CHECK(kv_index_count(ix) == live, "%s: count %u, model %u", where, kv_index_count(ix), live);

    kv_index_cursor cur;
    const uint8_t *key;
    uint32_t klen, pos = 0;
    kv_loc loc;
    kv_index_seek(ix, NULL, 0, 1, &cur);
    while (kv_index_next(ix, &cur, &key, &klen, &loc)) {
        CHECK(pos < live, "%s: walk yields more keys than the model holds", where);
        if (pos >= live)
            break;
        CHECK(key_cmp(key, klen, sorted[pos]->bytes, sorted[pos]->len) == 0 &&
                  loc_eq(&loc, &sorted[pos]->loc),
              "%s: walk position %u differs", where, pos);
        pos++;
    }
    CHECK(pos == live, "%s: walk yields %u keys, model %u", where, pos, live);

    /* Seek at every model key, present or not, inclusive and exclusive. */
    for (uint32_t i = 0; i < model_n; i++) {
        for (int inclusive = 0; inclusive <= 1; inclusive++) {
            uint32_t lo = 0, hi = live; /* first sorted key >= (or >) model[i] */
            while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                int c = key_cmp(sorted[mid]->bytes, sorted[mid]->len, model[i].bytes, model[i].len);
                if (c < 0 || (!inclusive && c == 0))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            kv_index_seek(ix, model[i].bytes, model[i].len, inclusive, &cur);
            int got = kv_index_next(ix, &cur, &key, &klen, &loc);
            if (lo == live) {
                CHECK(!got, "%s: seek past the end found a key", where);
            } else {
                CHECK(got && key_cmp(key, klen, sorted[lo]->bytes, sorted[lo]->len) == 0,
                      "%s: seek(%u, inclusive=%d) lands on the wrong key", where, i, inclusive);
            }
        }
    }
    free(sorted);
}

/* ---------------------------------------------------------------- tests */

static void test_basics(void)
{
    kv_index *ix;
    kv_loc a = loc_of(1), b = loc_of(2), got, old;
    int had_old = -1;
    uint32_t id1, id2;
    uint8_t longkey[KV_INDEX_MAX_KEY + 1];
    memset(longkey, 'L', sizeof longkey);

    CHECK(kv_index_new(&ix) == 0, "new");
    CHECK(kv_index_count(ix) == 0 && kv_index_get(ix, "k", 1, &got) == 0, "empty index");
    CHECK(kv_index_put(ix, "k", 1, &a, &old, &had_old, &id1) == 0 && had_old == 0, "put");
    CHECK(kv_index_get(ix, "k", 1, &got) == 1 && loc_eq(&got, &a), "get after put");
    CHECK(kv_index_get(ix, "k\0", 2, &got) == 0 && kv_index_get(ix, "", 0, &got) == 0,
          "keys differing by length are different keys");
    CHECK(kv_index_put(ix, "k", 1, &b, &old, &had_old, &id2) == 0 && had_old == 1 &&
              loc_eq(&old, &a) && id1 == id2,
          "overwrite returns the old location and keeps the id");
    CHECK(kv_index_get(ix, "k", 1, &got) == 1 && loc_eq(&got, &b), "get after overwrite");
    CHECK(kv_index_count(ix) == 1, "an overwrite adds no key");

    /* the empty key and the longest key */
    CHECK(kv_index_put(ix, "", 0, &a, NULL, NULL, NULL) == 0, "empty key");
    CHECK(kv_index_put(ix, longkey, KV_INDEX_MAX_KEY, &a, NULL, NULL, NULL) == 0, "max key");
    CHECK(kv_index_get(ix, longkey, KV_INDEX_MAX_KEY, &got) == 1, "get max key");
    CHECK(kv_index_put(ix, longkey, KV_INDEX_MAX_KEY + 1, &a, NULL, NULL, NULL) == KV_EINVAL,
          "a key over the limit is refused");
    CHECK(kv_index_put(ix, NULL, 3, &a, NULL, NULL, NULL) == KV_EINVAL, "NULL key");
    kv_loc badflags = a;
    badflags.flags = 0x20;
    CHECK(kv_index_put(ix, "x", 1, &badflags, NULL, NULL, NULL) == KV_EINVAL, "unknown flags");
    /* A key the index cannot hold is absent, never "found" with garbage. */
    CHECK(kv_index_get(ix, longkey, KV_INDEX_MAX_KEY + 1, &got) == 0, "get of an overlong key");
    CHECK(kv_index_del(ix, longkey, KV_INDEX_MAX_KEY + 1, &old) == 0, "del of an overlong key");

    /* replace_if: only where the index still points at the expected place */
    CHECK(kv_index_replace_if(ix, "k", 1, a.seg, a.rec_off, &a) == 0, "replace_if mismatch");
    CHECK(kv_index_get(ix, "k", 1, &got) == 1 && loc_eq(&got, &b), "mismatch changes nothing");
    CHECK(kv_index_replace_if(ix, "k", 1, b.seg, b.rec_off, &a) == 1, "replace_if match");
    CHECK(kv_index_get(ix, "k", 1, &got) == 1 && loc_eq(&got, &a), "replace_if took effect");
    CHECK(kv_index_replace_if(ix, "nope", 4, 0, 0, &a) == 0, "replace_if of an absent key");
    CHECK(kv_index_get(ix, "nope", 4, &got) == 0, "replace_if does not insert");

    /* entry access by id */
    const uint8_t *key;
    uint32_t klen;
    CHECK(kv_index_entry(ix, id1, &key, &klen, &got) == 1 && klen == 1 && key[0] == 'k',
          "entry by id");

    CHECK(kv_index_del(ix, "k", 1, &old) == 1 && loc_eq(&old, &a), "del");
    CHECK(kv_index_del(ix, "k", 1, &old) == 0, "del of an absent key");
    CHECK(kv_index_get(ix, "k", 1, &got) == 0, "get after del");
    CHECK(kv_index_entry(ix, id1, &key, &klen, &got) == 0, "a deleted id is free");
    CHECK(kv_index_count(ix) == 2, "count after del");
    check_invariants(ix, "basics");

    /* A key that points into the index's own arena (a prefix of a stored key): the
     * put must not read it after growing the arena.  The pointer is fetched afresh
     * for every put, since it is valid only until the next modification. */
    kv_index_cursor cur;
    for (uint32_t n = 1; n < 200; n++) {
        kv_index_seek(ix, longkey, KV_INDEX_MAX_KEY, 1, &cur);
        CHECK(kv_index_next(ix, &cur, &key, &klen, &got) == 1 && klen == KV_INDEX_MAX_KEY,
              "seek");
        CHECK(kv_index_put(ix, key, n, &b, NULL, NULL, NULL) == 0, "put of a key in the arena");
    }
    CHECK(kv_index_get(ix, longkey, 199, &got) == 1 && loc_eq(&got, &b), "arena keys stored");
    check_invariants(ix, "own-arena keys");
    kv_index_free(ix);
    kv_index_free(NULL);
}

/* Sequential and scattered inserts far past every chunk and table size. */
static void test_growth(uint32_t n)
{
    kv_index *ix;
    kv_index__stats st;
    kv_loc got, l;
    char key[32];
    size_t mem_empty;

    CHECK(kv_index_new(&ix) == 0, "new");
    mem_empty = kv_index_memory(ix);
    for (uint32_t i = 0; i < n; i++) {
        /* scattered: a multiplicative permutation of i, 16 bytes like the benchmark keys */
        uint32_t k = (uint32_t)((uint64_t)i * 2654435761u % 4294967291u);
        snprintf(key, sizeof key, "key%013" PRIu32, k);
        l = loc_of(i);
        CHECK(kv_index_put(ix, key, 16, &l, NULL, NULL, NULL) == 0, "put %u", i);
    }
    CHECK(kv_index_count(ix) == n, "count %u", kv_index_count(ix));
    kv_index__get_stats(ix, &st);
    CHECK(st.height >= 3 && st.table_cap >= n, "grown: height %u, table %u", st.height,
          st.table_cap);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)((uint64_t)i * 2654435761u % 4294967291u);
        snprintf(key, sizeof key, "key%013" PRIu32, k);
        l = loc_of(i);
        if (!(kv_index_get(ix, key, 16, &got) == 1 && loc_eq(&got, &l))) {
            CHECK(0, "get %u after growth", i);
            break;
        }
    }
    check_invariants(ix, "growth");
    size_t mem = kv_index_memory(ix);
    /* The design's worst case besides the key bytes (kv_index.c, MEMORY PER LIVE
     * KEY): entry 24, hash slot 4 at load 0.53 (7.5), a leaf slot at the minimum
     * fill of 63 ids per 512-byte node (8.2), inner nodes (0.5); plus one partly
     * used chunk of each array (96 + 64 + 64 KiB) and, while the table migrates,
     * the old table (5).  tools/index_profile.sh and bench/index_memory.py
     * measure the typical figures. */
    double per_key = (double)(mem - mem_empty - st.arena_words * 4) / n;
    double bound = 24 + 7.5 + 8.2 + 0.5 + (st.migrating ? 5 : 0) + (230 * 1024.0) / n;
    printf("index: %u keys, %.1f bytes per key besides key bytes (bound %.1f)%s\n", n, per_key,
           bound, st.migrating ? ", hash table migrating" : "");
    CHECK(per_key <= bound, "%.1f bytes per key, bound %.1f", per_key, bound);
    /* Scattered inserts: full leaves spill into a sibling before splitting. */
    double fill = (double)n / (126.0 * st.nodes_live);
    CHECK(n < 20000 || fill >= 0.8, "leaves %.0f%% full after scattered inserts", 100 * fill);

    /* ordered walk: strictly increasing */
    kv_index_cursor cur;
    const uint8_t *k, *prev = NULL;
    uint32_t klen, prevlen = 0, seen = 0;
    kv_index_seek(ix, NULL, 0, 1, &cur);
    while (kv_index_next(ix, &cur, &k, &klen, &got)) {
        if (prev && key_cmp(prev, prevlen, k, klen) >= 0) {
            CHECK(0, "walk out of order at %u", seen);
            break;
        }
        prev = k;
        prevlen = klen;
        seen++;
    }
    CHECK(seen == n, "walk saw %u of %u", seen, n);

    /* delete everything: the tree and the hash table shrink back */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kk = (uint32_t)((uint64_t)i * 2654435761u % 4294967291u);
        snprintf(key, sizeof key, "key%013" PRIu32, kk);
        CHECK(kv_index_del(ix, key, 16, NULL) == 1, "del %u", i);
    }
    kv_index__get_stats(ix, &st);
    CHECK(kv_index_count(ix) == 0 && st.height == 1 && st.nodes_live == 1, "emptied");
    CHECK(st.table_cap < n / 4, "the hash table shrank (%u slots)", st.table_cap);
    CHECK(kv_index_memory(ix) < mem, "memory went down");
    kv_index_seek(ix, NULL, 0, 1, &cur);
    CHECK(kv_index_next(ix, &cur, &k, &klen, &got) == 0, "an empty index lists nothing");
    check_invariants(ix, "emptied");
    kv_index_free(ix);
}

/* A bulk load after kv_index_reserve: the table is sized once, at load 2/3,
 * and keeps room for a fifth more keys; probe lengths at that load and at the
 * highest load growth allows (0.8) stay near linear probing's expectation for
 * a uniform hash: (1 + 1/(1-a)) / 2 slots per hit, (1 + 1/(1-a)^2) / 2 per miss,
 * i.e. 2 and 5 at 2/3, 3 and 13 at 0.8. */
static void test_reserve_and_probes(uint32_t n)
{
    kv_index *ix;
    kv_index__stats st;
    kv_index__profile pr;
    kv_loc l = loc_of(1);
    char key[32];

    CHECK(kv_index_new(&ix) == 0, "new");
    CHECK(kv_index_reserve(ix, n) == 0, "reserve");
    kv_index__get_stats(ix, &st);
    uint32_t cap = st.table_cap;
    CHECK(cap == n + n / 2 + 1 && !st.migrating, "reserved %u slots for %u keys", cap, n);
    uint32_t i = 0;
    for (; i < n; i++) {
        snprintf(key, sizeof key, "key%013" PRIu32, i);
        CHECK(kv_index_put(ix, key, 16, &l, NULL, NULL, NULL) == 0, "put %u", i);
    }
    kv_index__get_profile(ix, &pr);
    CHECK(pr.table_cap == cap && pr.old_table == 0, "the bulk load grew the table");
    CHECK(pr.hit_mean < 2.3 && pr.miss_mean < 6, "load 2/3: %.2f slots per hit, %.2f per miss",
          pr.hit_mean, pr.miss_mean);
    CHECK(pr.leaves == (n + 125) / 126, "sorted load: %u leaves for %u keys", pr.leaves, n);
    double per_key = (double)(kv_index_memory(ix) - pr.keys) / n;
    CHECK(per_key <= 24 + 6.1 + 4.1 + 0.2 + (230 * 1024.0) / n, "bulk load: %.1f bytes per key",
          per_key);
    /* up to load 0.8, no growth: scattered keys, the probes' worst case */
    for (uint32_t j = 1; i < cap - cap / 5; i++, j++) {
        snprintf(key, sizeof key, "kez%013" PRIu32, (uint32_t)((uint64_t)j * 2654435761u % 4294967291u));
        CHECK(kv_index_put(ix, key, 16, &l, NULL, NULL, NULL) == 0, "put %u", i);
    }
    kv_index__get_profile(ix, &pr);
    CHECK(pr.table_cap == cap && pr.old_table == 0, "grew before load 0.8");
    CHECK(pr.hit_mean < 3.5 && pr.miss_mean < 16, "load 0.8: %.2f slots per hit, %.2f per miss",
          pr.hit_mean, pr.miss_mean);
    printf("index: probes at load 0.8, %u slots: hit %.2f (max %u), miss %.2f (max %u)\n", cap,
           pr.hit_mean, pr.hit_max, pr.miss_mean, pr.miss_max);
    /* the next key starts a migration into a table 1.5 times as large */
    snprintf(key, sizeof key, "kez");
    CHECK(kv_index_put(ix, key, 3, &l, NULL, NULL, NULL) == 0, "put past load 0.8");
    kv_index__get_stats(ix, &st);
    CHECK(st.migrating && st.table_cap == cap + cap / 2, "grew to %u slots", st.table_cap);
    check_invariants(ix, "reserve");
    kv_index_free(ix);
}

/* Every key stays reachable at every step of a migration, with the drained
 * part of the old table given back to the system page by page (the probes of
 * old start at the migration's position, never below). */
static void test_migration_steps(void)
{
    kv_index *ix;
    kv_index__stats st;
    kv_loc l = loc_of(3);
    char key[32];
    uint32_t steps = 0, growths = 0;
    int was_migrating = 0;

    kv_index__release_unit = 4096;
    CHECK(kv_index_new(&ix) == 0, "new");
    for (uint32_t i = 0; i < 40000 && growths < 3; i++) {
        snprintf(key, sizeof key, "m%u", (uint32_t)((uint64_t)i * 2654435761u % 4294967291u));
        CHECK(kv_index_put(ix, key, (uint32_t)strlen(key), &l, NULL, NULL, NULL) == 0, "put %u", i);
        kv_index__get_stats(ix, &st);
        if (st.migrating && st.table_cap >= 6000) {
            check_invariants(ix, "migration step");
            steps++;
        }
        growths += was_migrating && !st.migrating && st.table_cap >= 6000;
        was_migrating = (int)st.migrating;
    }
    CHECK(growths == 3 && steps > 300, "%u migrations, %u steps checked", growths, steps);
    kv_index_free(ix);
    kv_index__release_unit = (size_t)64 << 10;
}

/* A failed allocation leaves the index unchanged, at every point of a put. */
static void test_alloc_failure(void)
{
    kv_index *ix;
    kv_loc l = loc_of(5), got;
    char key[32];
    uint32_t failures_seen = 0;

    for (long budget = 0; budget < 8; budget++) {
        kv_index__alloc_fail_after = budget;
        int rc = kv_index_new(&ix);
        kv_index__alloc_fail_after = -1;
        if (rc == 0)
            kv_index_free(ix);
        else
            CHECK(rc == KV_ENOMEM && ix == NULL, "new under allocation failure");
    }
    CHECK(kv_index_new(&ix) == 0, "new");
    for (uint32_t i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "k%u", i * 7919u);
        uint32_t before = kv_index_count(ix);
        kv_index__alloc_fail_after = 0;
        int rc = kv_index_put(ix, key, (uint32_t)strlen(key), &l, NULL, NULL, NULL);
        kv_index__alloc_fail_after = -1;
        if (rc == KV_ENOMEM) {
            failures_seen++;
            CHECK(kv_index_count(ix) == before && kv_index_get(ix, key, (uint32_t)strlen(key),
                                                               &got) == 0,
                  "a failed put changed the index");
            if (failures_seen % 64 == 1)
                check_invariants(ix, "after a failed put");
            rc = kv_index_put(ix, key, (uint32_t)strlen(key), &l, NULL, NULL, NULL);
        }
        CHECK(rc == 0, "put %u: %d", i, rc);
    }
    CHECK(failures_seen > 5, "allocation failures were exercised (%u)", failures_seen);
    check_invariants(ix, "alloc failure");
    kv_index_free(ix);
}

/* Random puts, overwrites, deletes, lookups and replace_ifs against the model. */
static void test_random(uint32_t ops, uint32_t nkeys)
{
    kv_index *ix;
    kv_loc got, old;
    int had_old;
    char where[64];

    make_keys(nkeys);
    CHECK(kv_index_new(&ix) == 0, "new");
    for (uint32_t op = 1; op <= ops; op++) {
        mkey *k = &model[below(model_n)];
        uint32_t r = below(100);
        if (r < 45) {
            kv_loc l = loc_of(op);
            CHECK(kv_index_put(ix, k->bytes, k->len, &l, &old, &had_old, NULL) == 0, "put");
            CHECK(had_old == k->present && (!had_old || loc_eq(&old, &k->loc)), "put old, op %u",
                  op);
            k->present = 1;
            k->loc = l;
        } else if (r < 75) {
            /* Deletes lean on the present keys so that the index also shrinks. */
            int rc = kv_index_del(ix, k->bytes, k->len, &old);
            CHECK(rc == k->present && (!rc || loc_eq(&old, &k->loc)), "del, op %u", op);
            k->present = 0;
        } else if (r < 95) {
            int rc = kv_index_get(ix, k->bytes, k->len, &got);
            CHECK(rc == k->present && (!rc || loc_eq(&got, &k->loc)), "get, op %u", op);
        } else {
            kv_loc l = loc_of(op + 1000000u);
            int match = below(2);
            uint16_t seg = match ? k->loc.seg : (uint16_t)(k->loc.seg + 1);
            int rc = kv_index_replace_if(ix, k->bytes, k->len, seg, k->loc.rec_off, &l);
            CHECK(rc == (k->present && match), "replace_if, op %u", op);
            if (rc == 1)
                k->loc = l;
        }
        if (op % (ops / 8 + 1) == 0) {
            snprintf(where, sizeof where, "random op %u", op);
            check_invariants(ix, where);
            check_order(ix, where);
        }
    }
    check_invariants(ix, "random end");
    check_order(ix, "random end");
    kv_index_free(ix);
    free(model);
}

/* A bulk load (kv_index_defer_order, puts and deletes, kv_index_build_order)
 * ends in the same keys, order and invariants as inserting key by key, at
 * every size around the node limits (one leaf, one inner level, two). */
static void test_bulk_order(void)
{
    static const uint32_t sizes[] = {0, 1, 2, 47, 48, 49, 126, 127, 252, 253,
                                     7938, 7939, 8191, 15877, 20000};
    char where[64];
    make_keys(20000);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint32_t n = sizes[si];
        kv_index *ix;
        CHECK(kv_index_new(&ix) == 0, "new");
        CHECK(kv_index_build_order(ix) == KV_EINVAL, "build without defer");
        CHECK(kv_index_defer_order(ix) == 0, "defer");
        CHECK(kv_index_defer_order(ix) == KV_EINVAL, "defer twice");
        for (uint32_t i = 0; i < model_n; i++)
            model[i].present = 0;
        for (uint32_t i = 0; i < n; i++) {
            mkey *k = &model[i];
            kv_loc l = loc_of(i);
            CHECK(kv_index_put(ix, k->bytes, k->len, &l, NULL, NULL, NULL) == 0, "bulk put");
            k->present = 1;
            k->loc = l;
            if (i % 5 == 4) {   /* an overwrite and a delete of earlier keys meanwhile */
                mkey *o = &model[below(i + 1)];
                if (o->present) {
                    kv_loc l2 = loc_of(i + 500000u);
                    CHECK(kv_index_put(ix, o->bytes, o->len, &l2, NULL, NULL, NULL) == 0, "ow");
                    o->loc = l2;
                }
                mkey *d = &model[below(i + 1)];
                CHECK(kv_index_del(ix, d->bytes, d->len, NULL) == d->present, "bulk del");
                d->present = 0;
            }
        }
        snprintf(where, sizeof where, "deferred, %u keys", n);
        check_invariants(ix, where);
        kv_index_cursor cur;
        const uint8_t *key;
        uint32_t klen;
        kv_loc loc;
        kv_index_seek(ix, NULL, 0, 1, &cur);
        CHECK(!kv_index_next(ix, &cur, &key, &klen, &loc), "%s: no ordered view yet", where);
        CHECK(kv_index_build_order(ix) == 0, "build");
        snprintf(where, sizeof where, "bulk built, %u keys", n);
        check_invariants(ix, where);
        check_order(ix, where);
        for (uint32_t op = 0; op < 2000 && n; op++) {   /* the built tree takes changes */
            mkey *k = &model[below(n)];
            if (below(2)) {
                kv_loc l = loc_of(op + 900000u);
                CHECK(kv_index_put(ix, k->bytes, k->len, &l, NULL, NULL, NULL) == 0, "put");
                k->present = 1;
                k->loc = l;
            } else {
                CHECK(kv_index_del(ix, k->bytes, k->len, NULL) == k->present, "del");
                k->present = 0;
            }
        }
        snprintf(where, sizeof where, "bulk built then changed, %u keys", n);
        check_invariants(ix, where);
        check_order(ix, where);
        kv_index_free(ix);
    }
    free(model);
}

/* Long shared prefixes take the sort through many 8-byte windows; a failed
 * allocation leaves the index deferred and usable, and a retry builds it. */
static void test_bulk_long_prefixes(uint32_t n)
{
    kv_index *ix;
    kv_loc l = loc_of(1);
    uint8_t key[64], prev[64];
    const uint8_t *k;
    uint32_t klen, plen = 0, seen = 0, len = 0;
    CHECK(kv_index_new(&ix) == 0 && kv_index_defer_order(ix) == 0, "new, defer");
    for (uint32_t i = 0; i < n; i++) {
        /* 29 shared bytes, then i scrambled, then a tail on some keys */
        len = 29;
        memcpy(key, "tenant-0001/session/2026-12-", 29);
        uint32_t v = i * 2654435761u;
        for (int b = 0; b < 4; b++)
            key[len++] = (uint8_t)(v >> (24 - 8 * b));
        if (i % 3 == 0)
            for (uint32_t t = 0; t < i % 17; t++)
                key[len++] = (uint8_t)('a' + t);
        CHECK(kv_index_put(ix, key, len, &l, NULL, NULL, NULL) == 0, "put");
    }
    kv_index__alloc_fail_after = 0;
    CHECK(kv_index_build_order(ix) == KV_ENOMEM, "build under allocation failure");
    kv_index__alloc_fail_after = -1;
    check_invariants(ix, "deferred after a failed build");
    CHECK(n == 0 || kv_index_get(ix, key, len, NULL) == 1, "gets work while deferred");
    CHECK(kv_index_build_order(ix) == 0, "build");
    check_invariants(ix, "long prefixes");
    kv_index_cursor cur;
    kv_index_seek(ix, NULL, 0, 1, &cur);
    while (kv_index_next(ix, &cur, &k, &klen, &l)) {
        CHECK(seen == 0 || key_cmp(prev, plen, k, klen) < 0, "order at key %u", seen);
        memcpy(prev, k, klen);
        plen = klen;
        seen++;
    }
    CHECK(seen == n, "walk yields %u keys of %u", seen, n);
    kv_index_free(ix);
}

int main(int argc, char **argv)
{
    uint32_t ops = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 200000u;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1u;
    uint32_t growth = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 300000u;
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;

    test_basics();
    test_growth(growth);
    test_reserve_and_probes(growth / 3 + 1000);
    test_migration_steps();
    test_alloc_failure();
    test_random(ops / 2, 3000);   /* few keys: many overwrites and deletes of the same key */
    test_random(ops / 2, 20000);  /* more keys: the tree splits and merges */
    test_bulk_order();
    test_bulk_long_prefixes(growth / 3);
    /* Again with the draining table given back page by page from 16 KiB tables
     * (4096 slots) up, as 256 KiB tables and larger are in 64 KiB steps. */
    kv_index__release_unit = 4096;
    test_growth(growth / 4);
    test_random(ops / 2, 20000);
    kv_index__release_unit = (size_t)64 << 10;
    if (failures) {
        fprintf(stderr, "test_index: %d failures (seed %" PRIu64 ")\n", failures, seed);
        return 1;
    }
    printf("test_index: ok (%u ops, seed %" PRIu64 ", %u growth keys)\n", ops, seed, growth);
    return 0;
}

/*
 * test_cache.c -- unit test of the record cache (kv_cache.c) against a model.
 *
 * A record's bytes are a function of (segment id, offset, length), so the
 * model of what may be cached is only which locations were put and with what
 * length: every hit is compared with the bytes regenerated from its location.
 * The cache's charges are learnt from the cache itself (an empty cache's
 * doorkeeper, one record's overhead) rather than from its private structs.
 *
 * Eviction is checked through hit rates that CLOCK keeps near 1 and that
 * random eviction, FIFO (a hit not setting the bit) or new entries starting
 * with the bit set would each pull well below the bar; the parameters sit
 * several standard deviations inside the bar for any seed.
 *
 * Usage: test_cache [ops [seed]]
 *   defaults 200000 ops, seed 1: under two seconds under ASan; the threads
 *   run 2 * ops each.  tools/c_tests.sh passes $CACHE_TEST_ARGS.
 */
#include "kv_cache.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* xorshift64*: reproducible from the seed on every platform.  Threads carry
 * their own state. */
static uint64_t xs(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
static uint64_t rng_state;
static uint64_t rnd(void) { return xs(&rng_state); }
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

/* splitmix64's finalizer: unrelated to the cache's own hash, so that content
 * and lengths do not line up with shards. */
static uint64_t scramble(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* The bytes of the record at a location; salt 0 is the record, any other salt
 * a different record of the same length, to show which one the cache kept. */
static void content(uint64_t seg, uint64_t off, uint32_t len, uint64_t salt, uint8_t *dst)
{
    uint64_t s = scramble(scramble(scramble(seg) ^ off) ^ len ^ (salt << 32)) | 1;
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t v = xs(&s);
        memcpy(dst + i, &v, len - i < 8 ? len - i : 8);
    }
}

static int content_ok(uint64_t seg, uint64_t off, uint32_t len, const uint8_t *got,
                      uint8_t *scratch)
{
    content(seg, off, len, 0, scratch);
    return memcmp(got, scratch, len) == 0;
}

#define MAX_LEN (80u << 10)
static uint8_t buf[MAX_LEN + 8], want[MAX_LEN + 8];

static kv_cache_stats stats(kv_cache *c)
{
    kv_cache_stats st;
    kv_cache_stats_get(c, &st);
    return st;
}

/* Charged by an empty cache: the doorkeeper's bits. */
static uint64_t empty_bytes(uint64_t budget)
{
    kv_cache *c = kv_cache_new(budget);
    uint64_t b = stats(c).bytes;
    kv_cache_free(c);
    return b;
}

/* A shard's first bucket array; each later one doubles it, so every bucket
 * charge is a multiple of it. */
#define FIRST_BUCKET_BYTES (64u * sizeof(void *))
/* Charged per record besides its bytes; learnt in test_basics. */
static uint64_t entry_overhead;

/* Puts a record of a fresh location and tells whether the cache kept it. */
static int keeps(uint64_t budget, uint32_t len)
{
    kv_cache *c = kv_cache_new(budget);
    content(7, 4096, len, 0, want);
    kv_cache_put(c, 7, 4096, want, len);
    int kept = kv_cache_get(c, 7, 4096, len, buf) && memcmp(buf, want, len) == 0;
    CHECK(stats(c).records == (uint64_t)kept, "records after one put of %u bytes", len);
    kv_cache_free(c);
    return kept;
}

/* The largest record a cache of this budget keeps, found by bisection: every
 * length up to it is kept, none above. */
static uint32_t largest_kept(uint64_t budget)
{
    uint32_t lo = 0, hi = MAX_LEN; /* kept(lo) or lo == 0; !kept(hi) */
    CHECK(!keeps(budget, hi), "a %u-byte record is kept", hi);
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (keeps(budget, mid))
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* ---------------------------------------------------------------- tests */

static void test_null(void)
{
    CHECK(kv_cache_new(0) == NULL, "a zero budget is no cache");
    memset(buf, 0xA5, 16);
    CHECK(kv_cache_get(NULL, 1, 0, 16, buf) == 0, "get from no cache");
    CHECK(buf[0] == 0xA5 && buf[15] == 0xA5, "a miss writes nothing");
    CHECK(kv_cache_seen(NULL, 1, 0) == 0 && kv_cache_seen(NULL, 1, 0) == 0,
          "no cache never admits");
    kv_cache_put(NULL, 1, 0, buf, 16);
    kv_cache_stats st;
    memset(&st, 0xFF, sizeof st);
    kv_cache_stats_get(NULL, &st);
    CHECK(st.hits == 0 && st.misses == 0 && st.bytes == 0 && st.records == 0,
          "no cache has zero stats");
    kv_cache_free(NULL);
}

static void test_basics(void)
{
    const uint64_t budget = 4u << 20; /* room for all 200 records below in any one shard */
    kv_cache *c = kv_cache_new(budget);
    CHECK(c != NULL, "new");
    if (!c)
        exit(1);
    kv_cache_stats st = stats(c), st2;
    CHECK(st.records == 0 && st.hits == 0 && st.misses == 0, "an empty cache");
    CHECK(st.bytes <= budget / 64, "the doorkeeper charges %" PRIu64 " bytes", st.bytes);
    uint64_t empty = st.bytes;

    /* The per-record charge, then a second record costing exactly the same
     * plus its bytes (plus a bucket array if it opened another shard). */
    content(3, 100, 100, 0, want);
    kv_cache_put(c, 3, 100, want, 100);
    st = stats(c);
    entry_overhead = st.bytes - empty - 100 - FIRST_BUCKET_BYTES;
    CHECK(st.records == 1 && entry_overhead >= 32 && entry_overhead <= 128,
          "one record of 100 bytes charges %" PRIu64, st.bytes - empty);
    content(3, 200, 300, 0, want);
    kv_cache_put(c, 3, 200, want, 300);
    st2 = stats(c);
    CHECK(st2.bytes - st.bytes == entry_overhead + 300 ||
              st2.bytes - st.bytes == entry_overhead + 300 + FIRST_BUCKET_BYTES,
          "a record of 300 bytes charges %" PRIu64, st2.bytes - st.bytes);
    kv_cache_free(c);

    enum { N = 200 };
    struct { uint64_t seg, off; uint32_t len; } locs[N];
    c = kv_cache_new(budget);
    for (uint32_t i = 0; i < N; i++) {
        locs[i].seg = 1 + below(5);
        locs[i].off = (uint64_t)i * 8192 + below(4096);
        locs[i].len = 1 + below(4096);
        content(locs[i].seg, locs[i].off, locs[i].len, 0, want);
        kv_cache_put(c, locs[i].seg, locs[i].off, want, locs[i].len);
    }
    CHECK(stats(c).records == N, "%" PRIu64 " records of %u", stats(c).records, N);
    for (uint32_t i = 0; i < N; i++) {
        uint64_t seg = locs[i].seg, off = locs[i].off;
        uint32_t len = locs[i].len;
        memset(buf, 0, len);
        CHECK(kv_cache_get(c, seg, off, len, buf) && content_ok(seg, off, len, buf, want),
              "record %u comes back as put", i);
        /* A location is the whole key, and a length that disagrees with the
         * cached one is a different (corrupt) request, never a truncated copy. */
        memset(buf, 0x5A, len + 1);
        CHECK(!kv_cache_get(c, seg, off, len + 1, buf) && buf[0] == 0x5A, "longer length hits");
        CHECK(!kv_cache_get(c, seg, off, len - 1, buf), "shorter length hits");
        CHECK(!kv_cache_get(c, seg, off + 1, len, buf), "neighbouring offset hits");
        CHECK(!kv_cache_get(c, seg + 100, off, len, buf), "same offset in another segment hits");
        CHECK(buf[0] == 0x5A && buf[len] == 0x5A, "a miss wrote into dst");
    }
    /* A second put of a location (a racing reader) keeps the first copy. */
    st = stats(c);
    for (uint32_t i = 0; i < N; i++) {
        content(locs[i].seg, locs[i].off, locs[i].len, 1, buf);
        kv_cache_put(c, locs[i].seg, locs[i].off, buf, locs[i].len);
        kv_cache_put(c, locs[i].seg, locs[i].off, buf, locs[i].len / 2 + 1);
    }
    st2 = stats(c);
    CHECK(st2.records == st.records && st2.bytes == st.bytes, "second puts added records");
    for (uint32_t i = 0; i < N; i++) {
        uint32_t len = locs[i].len;
        CHECK(kv_cache_get(c, locs[i].seg, locs[i].off, len, buf) &&
                  content_ok(locs[i].seg, locs[i].off, len, buf, want),
              "record %u lost its first copy", i);
    }
    kv_cache_free(c);
}

/* Exact counters for a scripted sequence: a put counts nothing, a first read
 * through the doorkeeper counts a miss, an admitted one nothing until its get. */
static void test_counters(void)
{
    kv_cache *c = kv_cache_new(1u << 20);
    uint64_t h = 0, m = 0;
#define COUNTS(what)                                                              \
    do {                                                                          \
        kv_cache_stats st_ = stats(c);                                            \
        CHECK(st_.hits == h && st_.misses == m,                                   \
              "%s: hits %" PRIu64 " misses %" PRIu64 ", expected %" PRIu64 " %" PRIu64, \
              what, st_.hits, st_.misses, h, m);                                  \
    } while (0)
    content(9, 64, 500, 0, want);
    COUNTS("new");
    CHECK(!kv_cache_get(c, 9, 64, 500, buf), "get before put");
    m++;
    COUNTS("miss on an absent location");
    kv_cache_put(c, 9, 64, want, 500);
    COUNTS("put");
    CHECK(kv_cache_get(c, 9, 64, 500, buf), "get after put");
    h++;
    COUNTS("hit");
    CHECK(kv_cache_get(c, 9, 64, 500, buf), "second get");
    h++;
    COUNTS("second hit");
    CHECK(!kv_cache_get(c, 9, 64, 499, buf), "wrong length");
    m++;
    COUNTS("wrong length");
    CHECK(!kv_cache_get(c, 9, 72, 500, buf) && !kv_cache_get(c, 10, 64, 500, buf), "absent");
    m += 2;
    COUNTS("two absent locations");
    kv_cache_put(c, 9, 64, want, 500);
    kv_cache_put(c, 9, 128, want, 70000);
    COUNTS("a duplicate and an oversize put");
    CHECK(!kv_cache_get(c, 9, 128, 70000, buf), "oversize get");
    m++;
    COUNTS("oversize miss");
    CHECK(kv_cache_seen(c, 11, 0) == 0, "first read of a location");
    m++;
    COUNTS("first read");
    CHECK(kv_cache_seen(c, 11, 0) == 1 && kv_cache_seen(c, 11, 0) == 1, "second read");
    COUNTS("later reads are counted by their get");
    CHECK(kv_cache_seen(c, 9, 64) == 0, "first read of a cached record");
    m++;
    CHECK(kv_cache_seen(c, 9, 64) == 1 && kv_cache_get(c, 9, 64, 500, buf), "admitted hit");
    h++;
    COUNTS("read path");
    CHECK(stats(c).records == 1, "records %" PRIu64, stats(c).records);
#undef COUNTS
    kv_cache_free(c);
}

/* Records longer than 64 KiB or a quarter of a shard's share are not kept. */
static void test_oversize(void)
{
    static const uint64_t budgets[] = {64u << 10, 100003, 256u << 10, 1u << 20, 64u << 20};
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        uint64_t b = budgets[i];
        uint64_t bound = b / 16 / 4 < (64u << 10) ? b / 16 / 4 : (64u << 10);
        /* The doorkeeper's bits come off the shards' budget first. */
        uint64_t shards = b - empty_bytes(b);
        uint64_t floor = shards / 16 / 4 < (64u << 10) ? shards / 16 / 4 : (64u << 10);
        uint32_t largest = largest_kept(b);
        CHECK(largest <= bound && largest >= floor,
              "budget %" PRIu64 ": records up to %u bytes kept, expected %" PRIu64 "..%" PRIu64,
              b, largest, floor, bound);
    }
    /* A cache too small for a bucket array keeps nothing, within its budget. */
    kv_cache *c = kv_cache_new(4096);
    content(1, 1, 40, 0, want);
    kv_cache_put(c, 1, 1, want, 40);
    CHECK(stats(c).bytes <= 4096 && !kv_cache_get(c, 1, 1, 40, buf), "tiny cache");
    kv_cache_free(c);
}

/* Sums the charges of what the cache holds, learnt by looking every put
 * location up (which costs the lookups' counts and bits: only at the end). */
typedef struct mloc {
    uint64_t seg, off;
    uint32_t len; /* 0: never put */
} mloc;

static void check_accounting(kv_cache *c, uint64_t budget, const mloc *locs, uint32_t n,
                             const char *where)
{
    kv_cache_stats st = stats(c);
    uint64_t held = 0, charged = empty_bytes(budget);
    for (uint32_t i = 0; i < n; i++)
        if (locs[i].len && kv_cache_get(c, locs[i].seg, locs[i].off, locs[i].len, buf)) {
            CHECK(content_ok(locs[i].seg, locs[i].off, locs[i].len, buf, want), "%s", where);
            held++;
            charged += entry_overhead + locs[i].len;
        }
    CHECK(held == st.records, "%s: %" PRIu64 " records found, %" PRIu64 " counted", where, held,
          st.records);
    /* What is left is bucket arrays: whole multiples of the first one. */
    CHECK(st.bytes >= charged && (st.bytes - charged) % FIRST_BUCKET_BYTES == 0,
          "%s: %" PRIu64 " bytes charged for %" PRIu64 " bytes of records", where, st.bytes,
          charged);
}

static uint32_t pick_len(uint32_t largest)
{
    uint32_t r = below(100);
    if (r < 60)
        return 1 + below(256);
    if (r < 90)
        return 1 + below(4096);
    if (r < 98) /* around the largest kept */
        return 1 + below(largest + largest / 8 + 2);
    return 1 + below(70000);
}

/* Random puts, gets and read-path reads of random sizes: never over budget
 * after any operation, every hit exactly the bytes put there. */
static void test_budget(uint64_t budget, uint32_t ops)
{
    enum { NLOC = 4096, PER_SEG = 512 };
    static mloc locs[NLOC];
    char where[96];
    uint32_t largest = largest_kept(budget);
    uint64_t seg0 = 1 + rnd() % 1000000;
    for (uint32_t i = 0; i < NLOC; i++) {
        locs[i].seg = seg0 + i / PER_SEG;
        locs[i].off = (uint64_t)(i % PER_SEG) * 65536 + 24;
        locs[i].len = 0;
    }
    kv_cache *c = kv_cache_new(budget);
    uint64_t hits = 0, misses = 0;
    for (uint32_t op = 1; op <= ops; op++) {
        /* a quarter of the traffic on 64 locations, so that some stay */
        mloc *l = &locs[below(4) ? below(NLOC) : below(64)];
        uint32_t r = below(100);
        if (r < 50) { /* a read: through the doorkeeper, or a plain get; put on a miss */
            if (!l->len)
                l->len = pick_len(largest);
            int looked = r < 30 ? kv_cache_seen(c, l->seg, l->off) : 1;
            int got = looked && kv_cache_get(c, l->seg, l->off, l->len, buf);
            hits += got;
            misses += !got; /* a first read counts once, without a lookup */
            if (got) {
                CHECK(l->len <= largest, "op %u: a %u-byte record was kept", op, l->len);
                CHECK(content_ok(l->seg, l->off, l->len, buf, want), "op %u: wrong bytes", op);
            } else if (looked) {
                content(l->seg, l->off, l->len, 0, want);
                kv_cache_put(c, l->seg, l->off, want, l->len);
            }
        } else if (r < 80) { /* a length the location never had, or a location never put */
            uint32_t bad = l->len ? l->len + 1 + below(100) : 1 + below(4096);
            CHECK(!kv_cache_get(c, l->seg, l->off, bad, buf), "op %u: get of %u bytes hit", op,
                  bad);
            misses++;
        } else if (r < 90) {
            misses += !kv_cache_seen(c, l->seg, l->off);
        } else {
            if (!l->len)
                l->len = pick_len(largest);
            content(l->seg, l->off, l->len, 0, want);
            kv_cache_put(c, l->seg, l->off, want, l->len);
        }
        kv_cache_stats st = stats(c);
        if (st.bytes > budget) {
            CHECK(0, "budget %" PRIu64 ", op %u: %" PRIu64 " bytes", budget, op, st.bytes);
            break;
        }
        if (st.hits != hits || st.misses != misses) {
            CHECK(0, "op %u: hits %" PRIu64 " misses %" PRIu64 ", expected %" PRIu64 " %" PRIu64,
                  op, st.hits, st.misses, hits, misses);
            break;
        }
    }
    kv_cache_stats st = stats(c);
    printf("cache: budget %" PRIu64 ", %u ops: %.0f%% hits, %" PRIu64 " records, %" PRIu64
           " bytes, largest kept %u\n",
           budget, ops, 100.0 * st.hits / (st.hits + st.misses + 1), st.records, st.bytes,
           largest);
    /* A cache that keeps little, or evicts far more than it must, is broken
     * too; a short run may not have filled it. */
    CHECK(ops < 20000 || st.bytes >= budget / 2, "budget %" PRIu64 ": only %" PRIu64 " bytes used",
          budget, st.bytes);
    CHECK(ops < 20000 || st.hits > (st.hits + st.misses) / 40,
          "budget %" PRIu64 ": %" PRIu64 " hits", budget, st.hits);
    snprintf(where, sizeof where, "budget %" PRIu64, budget);
    check_accounting(c, budget, locs, NLOC, where);
    kv_cache_free(c);
}

/* The budget that leaves each shard exactly `share` bytes once the doorkeeper,
 * which grows with the budget, has taken its part. */
static uint64_t budget_with_share(uint64_t share)
{
    uint64_t e = empty_bytes(16 * share), e2;
    while ((e2 = empty_bytes(16 * share + e)) != e)
        e = e2;
    uint64_t b = 16 * share + e;
    CHECK((b - empty_bytes(b)) / 16 == share, "sizing a shard of %" PRIu64 " bytes", share);
    return b;
}

/* A budget that holds exactly `per_shard` records of len bytes in every shard. */
static uint64_t budget_for(uint32_t per_shard, uint32_t len)
{
    return budget_with_share(per_shard * (entry_overhead + len) + FIRST_BUCKET_BYTES);
}

/* Locations that share one shard, found from outside: in a cache that holds
 * one record per shard, a put evicts the record already there only when both
 * fall in the same shard. */
static uint32_t same_shard(uint64_t seg, uint64_t *offs, uint32_t n)
{
    const uint32_t len = 100;
    kv_cache *c = kv_cache_new(budget_for(1, len));
    uint32_t found = 0;
    content(seg, 0, len, 0, want);
    kv_cache_put(c, seg, 0, want, len);
    for (uint64_t off = 8; found < n && off < 8 * 64 * (uint64_t)n; off += 8) {
        kv_cache_put(c, seg, off, want, len);
        if (!kv_cache_get(c, seg, 0, len, buf)) {
            offs[found++] = off;
            kv_cache_put(c, seg, 0, want, len);
        }
    }
    CHECK(found == n, "found %u of %u locations in one shard", found, n);
    kv_cache_free(c);
    return found;
}

/* A shard's share of the budget, checked after every operation: one shard
 * over and the others under by as much would pass a check of the total. */
typedef struct one_shard {
    kv_cache *c;
    uint64_t  budget, empty, share, peak;
} one_shard;

static void one_shard_open(one_shard *o, uint64_t budget)
{
    o->c = kv_cache_new(budget);
    o->budget = budget;
    o->empty = stats(o->c).bytes;
    o->share = (budget - o->empty) / 16;
    o->peak = 0;
}

static int one_shard_ok(one_shard *o, const char *what, uint32_t op)
{
    uint64_t used = stats(o->c).bytes - o->empty;
    o->peak = used > o->peak ? used : o->peak;
    if (used <= o->share)
        return 1;
    CHECK(0, "%s, op %u: a shard holds %" PRIu64 " bytes, its share is %" PRIu64, what, op, used,
          o->share);
    return 0;
}

/* One shard filled with equal records to just past the point where its
 * bucket array would double from 128 to 256: the room left then sweeps
 * through less than a record, less than the doubling, and the doubling plus
 * less than a record.  The bucket array may take the room only if it fits. */
static void test_shard_edges(const uint64_t *offs, uint64_t seg)
{
    const uint32_t len = 200, n = 160;
    const uint64_t rec = entry_overhead + len, grown = 256 * sizeof(void *); /* the doubled array */
    for (uint64_t extra = 0; extra < grown + 2 * rec; extra += 37) {
        one_shard o;
        uint64_t share = FIRST_BUCKET_BYTES * 2 + 128 * rec + extra;
        one_shard_open(&o, budget_with_share(share));
        char what[64];
        snprintf(what, sizeof what, "equal records, %" PRIu64 " bytes spare", extra);
        for (uint32_t i = 0; i < n; i++) {
            content(seg, offs[i], len, 0, want);
            kv_cache_put(o.c, seg, offs[i], want, len);
            if (!one_shard_ok(&o, what, i))
                break;
        }
        /* It filled up: whatever the spare bytes, at most one record's worth
         * plus a bucket array is left unused. */
        CHECK(o.peak + rec + grown > o.share, "%s: only %" PRIu64 " of %" PRIu64 " used", what,
              o.peak, o.share);
        kv_cache_free(o.c);
    }
}

/* A shard holding more records than buckets, because the doubled array did
 * not fit, and one big record first under the hand.  A put as big evicts the
 * big record and must be kept in its room: doubling the array after the
 * eviction would take that room and turn the new record away. */
static void test_shard_full_put(const uint64_t *offs, uint64_t seg)
{
    const uint32_t big = 2000, small = 64, nsmall = 65;
    const uint64_t cb = entry_overhead + big, cs = entry_overhead + small;
    for (uint64_t spare = 0; spare < cs; spare += 7) {
        one_shard o;
        one_shard_open(&o, budget_with_share(FIRST_BUCKET_BYTES + cb + nsmall * cs + spare));
        content(seg, offs[0], big, 0, want);
        kv_cache_put(o.c, seg, offs[0], want, big);
        for (uint32_t i = 1; i <= nsmall; i++) {
            content(seg, offs[i], small, 0, want);
            kv_cache_put(o.c, seg, offs[i], want, small);
        }
        CHECK(stats(o.c).records == 1 + nsmall, "%" PRIu64 " bytes spare: %" PRIu64 " records",
              spare, stats(o.c).records);
        content(seg, offs[nsmall + 1], big, 0, want);
        kv_cache_put(o.c, seg, offs[nsmall + 1], want, big);
        one_shard_ok(&o, "full put", 0);
        CHECK(kv_cache_get(o.c, seg, offs[nsmall + 1], big, buf) &&
                  content_ok(seg, offs[nsmall + 1], big, buf, want),
              "%" PRIu64 " bytes spare: a record put in a full shard was not kept", spare);
        CHECK(!kv_cache_get(o.c, seg, offs[0], big, buf), "the big record was not evicted");
        kv_cache_free(o.c);
    }
}

/* One shard under random sizes, small ones enough to double its buckets. */
static void test_shard_random(const uint64_t *offs, uint32_t noffs, uint64_t seg, uint32_t ops)
{
    static const uint64_t budgets[] = {64u << 10, 200000, 256u << 10, 1u << 20};
    for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
        one_shard o;
        one_shard_open(&o, budgets[b]);
        uint32_t largest = (uint32_t)(o.share / 4), hits = 0;
        char what[64];
        snprintf(what, sizeof what, "budget %" PRIu64 ", one shard", budgets[b]);
        for (uint32_t op = 0; op < ops; op++) {
            uint32_t i = below(noffs);
            /* the length is a function of the location, as a record's is */
            uint32_t len = 1 + (uint32_t)(scramble(offs[i] ^ budgets[b]) %
                                          (scramble(offs[i]) % 4 ? 96 : largest + 16));
            if (kv_cache_get(o.c, seg, offs[i], len, buf)) {
                hits++;
                CHECK(len <= largest && content_ok(seg, offs[i], len, buf, want),
                      "%s: wrong bytes", what);
            } else {
                content(seg, offs[i], len, 0, want);
                kv_cache_put(o.c, seg, offs[i], want, len);
            }
            if (!one_shard_ok(&o, what, op))
                break;
        }
        CHECK(ops < 5000 || (hits > 0 && o.peak > o.share / 2), "%s: %u hits, peak %" PRIu64,
              what, hits, o.peak);
        kv_cache_free(o.c);
    }
}

static void test_one_shard(uint32_t ops)
{
    enum { NOFF = 600 };
    static uint64_t offs[NOFF];
    uint64_t seg = 1 + rnd() % 1000000;
    if (same_shard(seg, offs, NOFF) == NOFF) {
        test_shard_edges(offs, seg);
        test_shard_full_put(offs, seg);
        test_shard_random(offs, NOFF, seg, ops);
    }
}

enum { C_PER_SHARD = 64, SMALL = 64 };

/* Get, and put on a miss: how the cache is used, minus the doorkeeper that
 * would keep the cold records out of the shards this test is about. */
static int read_through(kv_cache *c, uint64_t seg, uint64_t off)
{
    if (kv_cache_get(c, seg, off, SMALL, buf)) {
        CHECK(content_ok(seg, off, SMALL, buf, want), "wrong bytes at %" PRIu64, off);
        return 1;
    }
    content(seg, off, SMALL, 0, want);
    kv_cache_put(c, seg, off, want, SMALL);
    return 0;
}

/* Hot records read once per 512 cold insertions.  A shard holds 64 records
 * and sees about 32 of those insertions (sd 6) plus its ~4 hot ones between
 * two reads of a hot record.  CLOCK evicts a record only after the hand has
 * passed it twice without a read in between, which takes as many evictions
 * as there are other unreferenced records (about 60): hot records stay, rate
 * near 1.  Random eviction keeps one with (63/64)^32, about 0.6; without the
 * bit set on a hit (FIFO) a record lives about two rounds, rate 0.5-0.7. */
static void test_clock_hot(void)
{
    enum { HOT = 64, PERIOD = 8, ROUNDS = 40, WARM = 8 };
    uint64_t budget = budget_for(C_PER_SHARD, SMALL);
    kv_cache *c = kv_cache_new(budget);
    uint64_t hot_seg = 1 + rnd() % 1000000, cold_seg = hot_seg + 1 + below(1000);
    uint64_t cold = 0, cold_hits = 0, hot_hits = 0, hot_reads = 0;
    for (uint32_t round = 0; round < ROUNDS; round++)
        for (uint32_t k = 0; k < HOT; k++) {
            for (uint32_t p = 0; p < PERIOD; p++)
                cold_hits += read_through(c, cold_seg, 4096 * cold++);
            int hit = read_through(c, hot_seg, 4096 * k);
            if (round >= WARM) {
                hot_reads++;
                hot_hits += hit;
            }
        }
    kv_cache_stats st = stats(c);
    double rate = (double)hot_hits / hot_reads;
    printf("cache: CLOCK keeps the hot records: %.3f hot hit rate, %" PRIu64 " records\n", rate,
           st.records);
    CHECK(cold_hits == 0, "records read once hit %" PRIu64 " times", cold_hits);
    CHECK(rate > 0.9, "hot hit rate %.3f", rate);
    CHECK(st.records >= 15 * C_PER_SHARD && st.records <= 16 * C_PER_SHARD,
          "%" PRIu64 " records: the cache is not full, so nothing was evicted", st.records);
    CHECK(st.bytes <= budget, "%" PRIu64 " bytes", st.bytes);
    /* The earliest cold records have all left. */
    uint64_t early = 0;
    for (uint64_t i = 0; i < 1024; i++)
        early += kv_cache_get(c, cold_seg, 4096 * i, SMALL, buf);
    CHECK(early == 0, "%" PRIu64 " of the first cold records are still cached", early);
    kv_cache_free(c);
}

/* Records read twice survive a scan of records read once.  About 8 warm
 * records and 80 scanned ones (sd 9) per 64-record shard: the scan evicts
 * about 24.  The hand's first eviction clears the warm bits, and it reaches
 * the warm records again only after evicting the 56 scanned records ahead of
 * them.  Random eviction keeps a warm record with (63/64)^24, about 0.7; FIFO
 * or new entries born with the bit set evict the oldest, the warm ones, first. */
static void test_clock_scan(void)
{
    enum { W = 128, SCAN = 1280 };
    uint64_t budget = budget_for(C_PER_SHARD, SMALL);
    kv_cache *c = kv_cache_new(budget);
    uint64_t warm_seg = 1 + rnd() % 1000000, scan_seg = warm_seg + 1 + below(1000);
    for (uint32_t i = 0; i < W; i++)
        read_through(c, warm_seg, 512 * i);
    uint32_t warm = 0;
    for (uint32_t i = 0; i < W; i++)
        warm += read_through(c, warm_seg, 512 * i);
    CHECK(warm == W, "%u of %u warm records cached", warm, W);
    uint64_t scan_hits = 0;
    for (uint32_t i = 0; i < SCAN; i++)
        scan_hits += read_through(c, scan_seg, 512 * i);
    kv_cache_stats st = stats(c);
    CHECK(scan_hits == 0 && st.records >= 15 * C_PER_SHARD, "scan: %" PRIu64 " hits, %" PRIu64
          " records", scan_hits, st.records);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < W; i++)
        kept += kv_cache_get(c, warm_seg, 512 * i, SMALL, buf);
    printf("cache: a scan of %u leaves %u of %u warm records\n", SCAN, kept, W);
    CHECK(kept >= W * 95 / 100, "a scan pushed out %u of %u warm records", W - kept, W);
    kv_cache_free(c);
}

/* Reads a location through the doorkeeper as kv_read.c does; 1 when served. */
static int read_path(kv_cache *c, uint64_t seg, uint64_t off, uint32_t len, uint64_t *admitted)
{
    if (!kv_cache_seen(c, seg, off))
        return 0;
    ++*admitted;
    if (kv_cache_get(c, seg, off, len, buf))
        return 1;
    content(seg, off, len, 0, want);
    kv_cache_put(c, seg, off, want, len);
    return 0;
}

/* The doorkeeper keeps a record from its second read.  Its one bit per
 * hashed location also admits a first read whose bit another location set.
 * Every first read sets a clear bit, and all are cleared when an eighth are
 * set: a first read meets a table k/bits full after k of them, so a long pass
 * admits about 1/16 of its reads (5 to 7% measured here, by the phase of the
 * clearing and the hash), and a pass short next to the table under 1%.
 * Never clearing, or admitting everything, would approach 100%. */
static void test_doorkeeper(void)
{
    const uint64_t budget = 1u << 20;
    kv_cache *c = kv_cache_new(budget);
    uint64_t seg = 1 + rnd() % 1000000, admitted = 0;
    enum { HOT = 256, SHORT = 1024, LONG = 20000 };
    uint32_t served[3] = {0, 0, 0};
    for (int pass = 0; pass < 3; pass++)
        for (uint32_t i = 0; i < HOT; i++)
            served[pass] += read_path(c, seg, 1000 * i, 100, &admitted);
    /* A shared bit only admits a record one read early. */
    CHECK(served[0] == 0 && served[1] < HOT / 10 && served[2] == HOT,
          "served %u, %u, %u of %u on three reads", served[0], served[1], served[2], HOT);
    CHECK(stats(c).records == HOT, "%" PRIu64 " records", stats(c).records);

    for (int pass = 0; pass < 2; pass++) {
        uint32_t n = pass ? LONG : SHORT;
        uint64_t base = 1000 * (HOT + SHORT * pass);
        kv_cache_stats before = stats(c);
        uint64_t served_cold = 0;
        admitted = 0;
        for (uint32_t i = 0; i < n; i++)
            served_cold += read_path(c, seg, base + 1000 * (uint64_t)i, 100, &admitted);
        kv_cache_stats st = stats(c);
        printf("cache: a pass of %u records read once admits %" PRIu64 " (%.1f%%)\n", n, admitted,
               100.0 * admitted / n);
        CHECK(served_cold == 0 && st.hits == before.hits && st.misses - before.misses == n,
              "a cold pass: %" PRIu64 " hits, %" PRIu64 " misses of %u reads",
              st.hits - before.hits, st.misses - before.misses, n);
        CHECK(admitted < (pass ? n / 10 : n / 50), "a pass of %u admitted %" PRIu64, n,
              admitted);
        CHECK(st.records <= before.records + admitted, "records not admitted were kept");
    }
    /* The passes fill the cache about to its budget; the hot records, their
     * bits set by their last reads, outlast the cold ones. */
    uint32_t hot_kept = 0;
    for (uint32_t i = 0; i < HOT; i++)
        hot_kept += kv_cache_get(c, seg, 1000 * i, 100, buf);
    CHECK(hot_kept == HOT, "cold passes pushed out %u hot records", HOT - hot_kept);
    kv_cache_free(c);

    /* A mark set on a first read lasts many first reads, but not for ever
     * (stale marks would admit everything). */
    c = kv_cache_new(budget);
    CHECK(kv_cache_seen(c, seg, 0) == 0 && kv_cache_seen(c, seg, 0) == 1, "marked");
    uint32_t n = 0;
    while (n < budget / 16 && kv_cache_seen(c, seg, 0)) {
        n++;
        kv_cache_seen(c, seg + 1, 8 * (uint64_t)n);
    }
    CHECK(n >= budget / 256 && n < budget / 16, "a mark cleared after %u first reads", n);
    kv_cache_free(c);
}

/* ---------------------------------------------------------------- threads */

enum { T_LOCS = 1024, T_THREADS = 4 };
static const uint64_t t_budget = 128u << 10;

typedef struct worker {
    kv_cache *c;
    uint64_t  rng;
    uint32_t  ops;
    uint64_t  hits, misses, bad;
    uint8_t   got[MAX_LEN + 8], scratch[MAX_LEN + 8];
} worker;

/* Fixed per location, as a record's length is; one in 16 too big to keep. */
static uint32_t t_len(uint32_t i)
{
    uint64_t h = scramble(i);
    return h % 16 == 0 ? 3000 + (uint32_t)(h >> 8) % 5000 : 1 + (uint32_t)(h >> 8) % 1500;
}

static void report(worker *w, const char *what, uint32_t op, uint32_t i)
{
    if (w->bad++ < 5)
        fprintf(stderr, "thread: %s at op %u, location %u\n", what, op, i);
}

static void *work(void *arg)
{
    worker *w = arg;
    for (uint32_t op = 0; op < w->ops; op++) {
        uint64_t r = xs(&w->rng);
        uint32_t i = (uint32_t)(r >> 32) % T_LOCS, len = t_len(i), kind = (uint32_t)r % 100;
        uint64_t seg = 1 + i % 3, off = (uint64_t)i * 65536;
        if (kind < 60) { /* the read path */
            if (!kv_cache_seen(w->c, seg, off)) {
                w->misses++;
                continue;
            }
            if (kv_cache_get(w->c, seg, off, len, w->got)) {
                w->hits++;
                if (!content_ok(seg, off, len, w->got, w->scratch))
                    report(w, "wrong bytes", op, i);
                if (len >= 3000)
                    report(w, "an oversize record was kept", op, i);
            } else {
                w->misses++;
                content(seg, off, len, 0, w->scratch);
                kv_cache_put(w->c, seg, off, w->scratch, len);
            }
        } else if (kind < 75) {
            content(seg, off, len, 0, w->scratch);
            kv_cache_put(w->c, seg, off, w->scratch, len);
        } else if (kind < 95) {
            if (kv_cache_get(w->c, seg, off, len + 1, w->got))
                report(w, "a wrong length hit", op, i);
            w->misses++;
        } else {
            kv_cache_stats st;
            kv_cache_stats_get(w->c, &st);
            if (st.bytes > t_budget)
                report(w, "over budget", op, i);
        }
    }
    return NULL;
}

static void test_threads(uint32_t ops)
{
    kv_cache *c = kv_cache_new(t_budget);
    worker *w = calloc(T_THREADS, sizeof *w);
    pthread_t tid[T_THREADS];
    for (uint32_t t = 0; t < T_THREADS; t++) {
        w[t].c = c;
        w[t].rng = rnd() | 1;
        w[t].ops = ops;
        CHECK(pthread_create(&tid[t], NULL, work, &w[t]) == 0, "pthread_create");
    }
    uint64_t hits = 0, misses = 0, bad = 0;
    for (uint32_t t = 0; t < T_THREADS; t++) {
        pthread_join(tid[t], NULL);
        hits += w[t].hits;
        misses += w[t].misses;
        bad += w[t].bad;
    }
    kv_cache_stats st = stats(c);
    printf("cache: %u threads x %u ops: %" PRIu64 " hits, %" PRIu64 " records, %" PRIu64
           " bytes\n",
           T_THREADS, ops, hits, st.records, st.bytes);
    CHECK(bad == 0, "%" PRIu64 " bad results in the threads", bad);
    CHECK(st.hits == hits && st.misses == misses,
          "counters: hits %" PRIu64 " misses %" PRIu64 ", threads saw %" PRIu64 " %" PRIu64,
          st.hits, st.misses, hits, misses);
    CHECK(st.bytes <= t_budget, "%" PRIu64 " bytes", st.bytes);
    CHECK(ops < 20000 || (st.bytes >= t_budget / 2 && hits > 0), "%" PRIu64 " bytes, no hits",
          st.bytes);
    mloc locs[T_LOCS];
    for (uint32_t i = 0; i < T_LOCS; i++) {
        locs[i].seg = 1 + i % 3;
        locs[i].off = (uint64_t)i * 65536;
        locs[i].len = t_len(i);
    }
    check_accounting(c, t_budget, locs, T_LOCS, "after the threads");
    kv_cache_free(c);
    free(w);
}

int main(int argc, char **argv)
{
    uint32_t ops = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 200000u;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1u;
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;

    test_null();
    test_basics();
    test_counters();
    test_oversize();
    test_budget(64u << 10, ops / 4);
    test_budget(256u << 10, ops / 4);
    test_budget(1u << 20, ops / 4);
    test_budget(100003, ops / 8); /* not a multiple of the shard count */
    test_one_shard(ops / 10);
    test_clock_hot();
    test_clock_scan();
    test_doorkeeper();
    test_threads(ops * 2); /* per thread: about a second under ASan on two cores */
    if (failures) {
        fprintf(stderr, "test_cache: %d failures (seed %" PRIu64 ")\n", failures, seed);
        return 1;
    }
    printf("test_cache: ok (%u ops, seed %" PRIu64 ")\n", ops, seed);
    return 0;
}

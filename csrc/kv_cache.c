/*
 * kv_cache.c -- the record cache (kv_cache.h).
 *
 * Sixteen shards, chosen by a hash of the location, each with its own mutex,
 * so readers on different threads rarely wait for each other.  A shard is a
 * chained hash table plus a ring of its entries for eviction by CLOCK (second
 * chance): a hit only sets the entry's bit and never relinks anything, and the
 * hand evicts the first entry whose bit is clear, clearing bits as it passes.
 * A new entry starts with its bit clear, so records read once more leave
 * before records read often.
 *
 * In front of the shards sits a doorkeeper: one bit per hashed location,
 * set on a record's first read.  Only a record whose bit was already set is
 * looked up or kept, so a cold read mostly costs one bit test, with no lock,
 * no allocation and no eviction.  A first read whose bit another location set
 * is admitted too: the table holds a bit per 16 bytes of budget and is cleared
 * when an eighth of it has been set, so it is at most an eighth full and a
 * long pass of records read once admits about 6% of them (1/16 on average,
 * measured 6-7% in csrc/tests/test_cache.c).  Clearing also keeps stale marks
 * from admitting everything; a mark lasts bits/8 first reads, about as many
 * records as the budget holds at 128 bytes each.
 */
#include "kv_cache.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 16u
#define FIRST_BUCKETS 64u
/* Largest record cached.  Beyond this a pread costs little next to the copy,
 * and one record would push out hundreds of small ones. */
#define MAX_RECORD ((uint32_t)64 << 10)
/* What malloc keeps beside each block, charged to the budget with it. */
#define MALLOC_OVERHEAD 16u
#define MIN_MARK_BITS ((uint64_t)64)
#define MAX_MARK_BITS ((uint64_t)1 << 33)

typedef struct entry {
    struct entry *chain;                 /* next in the bucket */
    struct entry *next, *prev;           /* the shard's ring */
    uint64_t      seg_id;
    uint64_t      off;
    uint32_t      len;
    uint32_t      ref;                   /* read since the hand last passed */
    uint8_t       data[];
} entry;

typedef struct shard {
    alignas(64) pthread_mutex_t lock;
    entry   **buckets;                   /* nbuckets chains, a power of two */
    uint32_t  nbuckets;
    uint32_t  count;
    uint64_t  bytes;
    entry    *hand;                      /* next entry the hand looks at; NULL when empty */
    uint64_t  hits, misses;
} shard;

struct kv_cache {
    shard     shards[SHARDS];
    uint64_t  shard_budget;
    uint32_t  max_record;
    uint64_t *marks;        /* the doorkeeper's bits */
    uint64_t  mark_mask;    /* bits - 1, a power of two minus one */
    uint64_t  first_reads;  /* reads that set a mark (atomic) */
};

static uint64_t mix(uint64_t seg_id, uint64_t off)
{
    uint64_t h = seg_id * 0x9E3779B97F4A7C15ull ^ off;
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
}

static uint64_t cost(uint32_t len)
{
    return sizeof(entry) + len + MALLOC_OVERHEAD;
}

/* The largest power of two at most budget / 16: the marks take at most 1/128
 * of the budget. */
static uint64_t mark_bits(uint64_t budget)
{
    uint64_t bits = MIN_MARK_BITS;
    while (bits < MAX_MARK_BITS && bits * 2 <= budget / 16)
        bits *= 2;
    return bits;
}

kv_cache *kv_cache_new(uint64_t budget)
{
    if (budget < KV_CACHE_MIN_BUDGET)
        return NULL;
    kv_cache *c = aligned_alloc(alignof(kv_cache), (sizeof *c + 63) & ~(size_t)63);
    if (!c)
        return NULL;
    memset(c, 0, sizeof *c);
    uint64_t bits = mark_bits(budget);
    c->marks = calloc(bits / 64, sizeof *c->marks);
    if (!c->marks) {
        free(c);
        return NULL;
    }
    c->mark_mask = bits - 1;
    budget = budget > bits / 8 ? budget - bits / 8 : 0;
    c->shard_budget = budget / SHARDS;
    c->max_record = c->shard_budget / 4 < MAX_RECORD ? (uint32_t)(c->shard_budget / 4) : MAX_RECORD;
    for (uint32_t i = 0; i < SHARDS; i++)
        pthread_mutex_init(&c->shards[i].lock, NULL);
    return c;
}

void kv_cache_free(kv_cache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < SHARDS; i++) {
        shard *s = &c->shards[i];
        for (uint32_t b = 0; b < s->nbuckets; b++)
            for (entry *e = s->buckets[b], *n; e; e = n) {
                n = e->chain;
                free(e);
            }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(c->marks);
    free(c);
}

int kv_cache_seen(kv_cache *c, uint64_t seg_id, uint64_t off)
{
    if (!c)
        return 0;
    /* Bits of the hash that neither the shard (top 4) nor a small bucket
     * array (lowest) uses. */
    uint64_t bit = (mix(seg_id, off) >> 24) & c->mark_mask;
    uint64_t *word = &c->marks[bit / 64], m = (uint64_t)1 << (bit % 64);
    if (__atomic_load_n(word, __ATOMIC_RELAXED) & m)
        return 1;
    __atomic_fetch_or(word, m, __ATOMIC_RELAXED);
    uint64_t n = __atomic_add_fetch(&c->first_reads, 1, __ATOMIC_RELAXED);
    /* Racing readers may set a bit while this clears: a lost mark costs one
     * more read from disk, nothing else. */
    if (n % ((c->mark_mask + 1) / 8) == 0)
        for (uint64_t i = 0; i <= c->mark_mask / 64; i++)
            __atomic_store_n(&c->marks[i], 0, __ATOMIC_RELAXED);
    return 0;
}

static entry **chain_of(shard *s, uint64_t h)
{
    return &s->buckets[h & (s->nbuckets - 1)];
}

static entry *find(shard *s, uint64_t h, uint64_t seg_id, uint64_t off)
{
    if (!s->buckets)
        return NULL;
    entry *e = *chain_of(s, h);
    while (e && (e->off != off || e->seg_id != seg_id))
        e = e->chain;
    return e;
}

int kv_cache_get(kv_cache *c, uint64_t seg_id, uint64_t off, uint32_t len, uint8_t *dst)
{
    if (!c)
        return 0;
    uint64_t h = mix(seg_id, off);
    shard *s = &c->shards[h >> 60];
    int hit = 0;
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, h, seg_id, off);
    if (e && e->len == len) {
        memcpy(dst, e->data, len);
        e->ref = 1;
        hit = 1;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->lock);
    return hit;
}

static void evict(shard *s, entry *e)
{
    entry **p = chain_of(s, mix(e->seg_id, e->off));
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    if (e->next == e) {
        s->hand = NULL;
    } else {
        e->prev->next = e->next;
        e->next->prev = e->prev;
        if (s->hand == e)
            s->hand = e->next;
    }
    s->bytes -= cost(e->len);
    s->count--;
    free(e);
}

/* Frees room for `need` more bytes.  Terminates: one lap of the hand clears
 * every bit, and the next lap evicts. */
static void make_room(shard *s, uint64_t budget, uint64_t need)
{
    while (s->hand && s->bytes + need > budget) {
        entry *e = s->hand;
        if (e->ref) {
            e->ref = 0;
            s->hand = e->next;
        } else {
            evict(s, e);
        }
    }
}

/* Doubles the bucket array when entries outnumber buckets; on failure the
 * chains just grow longer. */
static void grow_buckets(shard *s, uint64_t budget)
{
    if (s->buckets && s->count < s->nbuckets)
        return;
    uint32_t n = s->buckets ? s->nbuckets * 2 : FIRST_BUCKETS;
    uint64_t added = (uint64_t)(n - s->nbuckets) * sizeof(entry *);
    if (s->bytes + added > budget)
        return;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (uint32_t i = 0; i < s->nbuckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->chain;
            entry **head = &b[mix(e->seg_id, e->off) & (n - 1)];
            e->chain = *head;
            *head = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    s->bytes += added;
}

void kv_cache_put(kv_cache *c, uint64_t seg_id, uint64_t off, const uint8_t *rec, uint32_t len)
{
    if (!c || len > c->max_record)
        return;
    entry *n = malloc(sizeof *n + len);
    if (!n)
        return;
    memcpy(n->data, rec, len);
    n->seg_id = seg_id;
    n->off = off;
    n->len = len;
    n->ref = 0;
    uint64_t h = mix(seg_id, off);
    shard *s = &c->shards[h >> 60];
    pthread_mutex_lock(&s->lock);
    if (find(s, h, seg_id, off)) { /* another reader cached it meanwhile */
        pthread_mutex_unlock(&s->lock);
        free(n);
        return;
    }
    /* Grow first: bucket room taken after eviction would undo the eviction
     * and turn the record away. */
    grow_buckets(s, c->shard_budget);
    make_room(s, c->shard_budget, cost(len));
    if (!s->buckets || s->bytes + cost(len) > c->shard_budget) {
        pthread_mutex_unlock(&s->lock);
        free(n);
        return;
    }
    entry **head = chain_of(s, h);
    n->chain = *head;
    *head = n;
    if (s->hand) { /* just behind the hand: the last the hand will reach */
        n->next = s->hand;
        n->prev = s->hand->prev;
        n->prev->next = n;
        s->hand->prev = n;
    } else {
        n->next = n->prev = n;
        s->hand = n;
    }
    s->bytes += cost(len);
    s->count++;
    pthread_mutex_unlock(&s->lock);
}

void kv_cache_stats_get(kv_cache *c, kv_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->misses = __atomic_load_n(&c->first_reads, __ATOMIC_RELAXED);
    out->bytes = (c->mark_mask + 1) / 8;
    for (uint32_t i = 0; i < SHARDS; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        out->hits += s->hits;
        out->misses += s->misses;
        out->bytes += s->bytes;
        out->records += s->count;
        pthread_mutex_unlock(&s->lock);
    }
}

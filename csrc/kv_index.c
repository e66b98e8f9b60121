/*
 * kv_index.c -- the keydir: every live key, where its newest record lives, and
 * the keys in sorted order.
 *
 * WHAT IT OWNS
 *   entries   one 24-byte ix_entry per live key, addressed by a u32 entry id.
 *             The id is what everything else stores; it is stable from insert
 *             to delete (an overwrite rewrites the entry in place).
 *   key arena the key bytes, 4-byte aligned, addressed by a u32 offset in
 *             4-byte words (16 GiB addressable).  Freed key slots go to one of
 *             512 exact-size free lists (size class = words); the list link is
 *             kept inside the freed slot, so a free slot costs nothing extra.
 *   hash      open addressing, linear probing over u32 slots.  A slot holds
 *             (entry id + 1) in its low `idbits` bits and the top bits of the
 *             key's 32-bit hash in the remaining high bits (a "tag").  The
 *             tag lets a probe skip nearly every non-matching slot without
 *             touching the entry (a cache miss); on a tag match the entry's
 *             full 32-bit hash and then the key bytes are compared.  The
 *             capacity is any number of slots, not a power of two: the home
 *             slot is a multiply-shift of the hash's non-tag bits (ht_home),
 *             so growth can take steps smaller than x2.
 *   tree      a B+tree of entry ids in key order (memcmp order, shorter key
 *             first on a common prefix).  512-byte nodes in an arena
 *             addressed by u32: leaves hold up to 126 ids and are linked left
 *             to right; inner nodes hold up to 63 children and 62 separators.
 *
 *   No pointer is stored anywhere inside these arrays: only indices.
 *
 * GROWTH WITHOUT STALLS
 *   The entry, key and node arrays are two-level: a small directory of
 *   pointers to fixed chunks (4 Ki entries = 96 KiB, 16 Ki words = 64 KiB,
 *   128 nodes = 64 KiB: small, so that the last, partly used chunk costs
 *   little even at 100k keys).  Only chunk 0 grows by realloc (doubling from
 *   a few KiB up to the chunk size) so a tiny index stays tiny; after that
 *   growth appends a chunk and never copies.  Worst single copy: 96 KiB,
 *   once in the life of an index, and the pointer directory (8 bytes per
 *   chunk: 32 KiB for the key arena of 10M 18-byte keys) when it doubles.
 *   The hash table grows (x1.5 at load 0.8, so its load stays in 0.53..0.8)
 *   or shrinks (to load 1/2 below load 1/8) INCREMENTALLY: the new table
 *   becomes `cur`, the old one stays as `old` and every put/del migrates
 *   `mig_step` (>= 16) slots of it, computed so the migration finishes long
 *   before `cur` could reach load 0.8 (after growth: within old capacity/16
 *   puts, by load 0.58).  Lookups probe `cur` then `old`.  The part of `old`
 *   already drained is given back to the system as the migration proceeds
 *   (ht_release_migrated).  A key leaving `old` (migrated or deleted)
 *   leaves a tombstone there, so the probe chains of keys still in `old`
 *   stay intact; `cur` never holds tombstones (backward-shift deletion).
 *   Readers never migrate: kv_index_get is truly const, so concurrent
 *   readers under a read lock are safe.
 *
 * INVARIANTS (kv_index__check verifies all of them)
 *   - An entry is free iff key_off == IX_FREE_KEY; free entries form a list
 *     through rec_off.  live + free == id_limit.
 *   - Every live entry is referenced by exactly one hash slot (in cur or
 *     old) and exactly one leaf slot.  count == live entries.
 *   - A table has IX_HT_MIN..IX_HT_MAX slots and at least bitlen(cap - 1) + 1
 *     id bits (ht_home's rotation is 32 - id bits).  old's slots before
 *     mig_pos are migrated, never read again, and in tables of 256 KiB and
 *     more given back to the system; every key still in old is reachable
 *     from max(home, mig_pos), wrapping around to mig_pos.
 *   - Key slots and free slots never overlap and never straddle a chunk.
 *   - Separator invariant: separator i of an inner node is the id of the
 *     SMALLEST key of child i+1's subtree.  So every separator names a live
 *     key: when that key is deleted it sat at position 0 of the leftmost
 *     leaf of that subtree, and the one ancestor holding it (the deepest
 *     one on the path reached through a child index > 0) is rewritten with
 *     the successor key before any rebalancing.  Borrow and merge rotations
 *     preserve the invariant by construction.  A dangling separator id
 *     (whose entry slot could be reused by an unrelated key) cannot occur.
 *   - Fill: non-root inner nodes have >= 32 children; non-root leaves have
 *     >= 63 ids, except the rightmost leaf, which may hold fewer (>= 1)
 *     because appends at the right end split 126/1 (sequential inserts fill
 *     leaves 100%).  The root is a leaf (possibly empty) or has >= 2 children.
 *     (Not an invariant but the usual state: a full leaf first spills into a
 *     sibling with room, so scattered inserts leave leaves ~87% full.)
 *
 * COMPLEXITY
 *   get / replace_if: O(1) expected.  put of a new key, del: O(1) hash +
 *   O(log n) tree (about log2 n key comparisons; an append beyond the
 *   current maximum costs one comparison).  seek O(log n), next O(1)
 *   amortised.  An overwrite never touches the tree.
 *
 * MEMORY PER LIVE KEY (besides the key bytes rounded up to 4)
 *   entry 24 + hash 4/load (5..7.5 at load 0.8..0.53; 6 after a bulk load,
 *   which kv_index_reserve sizes to load 2/3) + leaves 4/fill (4.1 sequential,
 *   ~4.7 scattered, 8.2 worst) + inner nodes ~0.1 + the last chunk of each
 *   array (<= 224 KiB: 2.3 at 100k keys, 0.2 at 1M) => 34..37 bytes from 1M
 *   keys up, 35..39 at 100k (tools/index_profile.sh: 18-byte keys, 20 bytes
 *   in the arena, take 36.4 at 1M bulk-loaded, 37.0 at 10M put one by one).
 *   While the hash table migrates, the old table adds up to 5 more at the
 *   start, falling to nothing as the migration proceeds (ht_release_migrated).
 *   After mass deletes: tree nodes and hash table shrink; entry and key
 *   chunks are kept and reused by later inserts (ids are stable, so the
 *   entry array cannot be compacted).
 *
 * FAILURE
 *   put reserves everything it may need (entry, key words, height+1 tree
 *   nodes, hash capacity) before changing anything, so KV_ENOMEM leaves
 *   the index logically unchanged.  del never allocates except for an
 *   optional hash shrink whose failure is ignored.
 */
#define _GNU_SOURCE /* madvise */
#include "kv_index.h"
#include "kv_index_hooks.h"
#include "kv_hash.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdio.h>

#define IX_NONE      UINT32_MAX
#define IX_FREE_KEY  UINT32_MAX              /* key_off of a free entry */

#define IX_KLEN_MASK 0x07ffu
#define IX_FLAG_SHIFT 11

/* ---------------------------------------------------------------- structs */

typedef struct ix_entry {
    uint32_t hash;        /* low 32 bits of XXH64(key); saves rehashing on migration and
                             a key compare on most hash collisions */
    uint32_t key_off;     /* key position in the arena, in 4-byte words; IX_FREE_KEY if free */
    uint32_t rec_off;     /* kv_loc.rec_off; for a free entry: next free id */
    uint32_t rec_len;     /* kv_loc.rec_len */
    uint32_t expiration;  /* kv_loc.expiration */
    uint16_t seg;         /* kv_loc.seg */
    uint16_t klen_flags;  /* key length (11 low bits) | kv_loc.flags << 11 */
} ix_entry;

_Static_assert(sizeof(ix_entry) == 24, "entry must stay 24 bytes");

#define IX_NODE_WORDS   126                     /* payload words in a 512-byte node */
#define IX_LEAF_MAX     126                     /* ids per leaf */
#define IX_LEAF_MIN     63                      /* non-root, non-rightmost leaf minimum */
#define IX_INNER_CHILD  63                      /* max children of an inner node */
#define IX_INNER_MAX    62                      /* max separators */
#define IX_INNER_MIN    31                      /* min separators of a non-root inner node */
#define IX_SEP0         IX_INNER_CHILD          /* separators start at w[63] */
#define IX_MAX_DEPTH    24                      /* >= 2^32 keys need < 8 levels */

enum { NODE_FREE = 0, NODE_LEAF = 1, NODE_INNER = 2 };

typedef struct ix_node {
    uint16_t n;                   /* leaf: ids held; inner: separators held (children = n + 1) */
    uint8_t  kind;                /* NODE_FREE, NODE_LEAF or NODE_INNER */
    uint8_t  pad;                 /* keeps w[] 4-aligned; always 0 */
    uint32_t next;                /* leaf: right neighbour or IX_NONE; free node: next free node */
    uint32_t w[IX_NODE_WORDS];    /* leaf: ids; inner: children w[0..62], separators w[63..124] */
} ix_node;

_Static_assert(sizeof(ix_node) == 512, "node must stay 512 bytes");

/* Two-level array: dir[i] points to chunk i.  Chunk 0 starts small and doubles
 * by realloc up to the full chunk size; later chunks are allocated full size. */
typedef struct ix_chunks {
    void   **dir;         /* chunk pointers */
    uint32_t n;           /* chunks allocated */
    uint32_t dircap;      /* capacity of dir */
    uint64_t cap;         /* elements addressable: sum of chunk capacities */
} ix_chunks;

#define IX_ENT_SHIFT   12          /* 4 Ki entries (96 KiB) per chunk */
#define IX_ENT_FIRST   256
#define IX_ENT_MAX     (1ull << 31)
#define IX_AR_SHIFT    14          /* 16 Ki words (64 KiB) per chunk */
#define IX_AR_FIRST    256
#define IX_AR_MAX      ((1ull << 32) - (1ull << IX_AR_SHIFT))  /* keeps IX_FREE_KEY unreachable */
#define IX_ND_SHIFT    7           /* 128 nodes (64 KiB) per chunk */
#define IX_ND_FIRST    8
#define IX_ND_MAX      (1ull << 31)

#define IX_CLASSES     ((KV_INDEX_MAX_KEY + 3) / 4)   /* 512 size classes, 1..512 words */
#define IX_FMASK_WORDS ((IX_CLASSES + 64) / 64)

typedef struct ix_table {
    uint32_t *slots;      /* (tag | id + 1); 0 = empty; id bits all ones = tombstone */
    uint32_t  cap;        /* slots, any number from IX_HT_MIN to IX_HT_MAX */
    uint32_t  idmask;     /* low bits holding id + 1; ~idmask are tag bits of the hash */
    uint32_t  rot;        /* 32 - id bits: see ht_home */
    uint32_t  used;       /* live slots (neither empty nor tombstone) */
} ix_table;

#define IX_HT_MIN      16u
#define IX_HT_MAX      (1u << 31)

struct kv_index {
    ix_chunks ents;                    /* ix_entry */
    uint32_t  id_limit;                /* ids ever handed out: all ids < id_limit */
    uint32_t  free_id;                 /* head of the free entry list, IX_NONE if empty */
    uint32_t  count;                   /* live keys */

    ix_chunks arena;                   /* uint32_t words of key bytes */
    uint64_t  atop;                    /* bump pointer (words), always inside the last chunk */
    uint64_t  free_words;              /* words sitting in the free lists */
    uint32_t  fhead[IX_CLASSES + 1];   /* free list head per class (words), IX_NONE if empty */
    uint64_t  fmask[IX_FMASK_WORDS];   /* bit c set iff fhead[c] != IX_NONE */

    ix_table  cur;                     /* table receiving inserts */
    ix_table  old;                     /* table being drained, valid iff migrating */
    int       migrating;               /* 1 while old still holds keys */
    uint64_t  mig_pos;                 /* next old slot to migrate */
    size_t    mig_released;            /* bytes of old given back to the system */
    uint64_t  mig_step;                /* old slots migrated per put/del */

    ix_chunks nodes;                   /* ix_node */
    uint32_t  node_limit;              /* nodes ever handed out */
    uint32_t  free_node;               /* head of the free node list */
    uint32_t  free_nodes;              /* length of that list */
    uint32_t  nodes_live;              /* nodes in the tree */
    uint32_t  root;                    /* root node */
    uint32_t  height;                  /* levels, 1 = the root is a leaf */
    int       unordered;               /* 1 between kv_index_defer_order and
                                          kv_index_build_order: the tree stays empty */
};

typedef struct ix_path {
    uint32_t node[IX_MAX_DEPTH];   /* node at each level, 0 = root */
    uint32_t idx[IX_MAX_DEPTH];    /* inner: child index taken; leaf: position */
    uint32_t depth;                /* levels filled */
} ix_path;

/* ------------------------------------------------------ allocation wrapper */

/* Test hook (kv_index_hooks.h). */
long kv_index__alloc_fail_after = -1;

static int ix_alloc_allowed(void)
{
    if (kv_index__alloc_fail_after < 0)
        return 1;
    if (kv_index__alloc_fail_after == 0)
        return 0;
    kv_index__alloc_fail_after--;
    return 1;
}

static void *ix_malloc(size_t n)  { return ix_alloc_allowed() ? malloc(n) : NULL; }
static void *ix_calloc(size_t n, size_t sz) { return ix_alloc_allowed() ? calloc(n, sz) : NULL; }
static void *ix_realloc(void *p, size_t n) { return ix_alloc_allowed() ? realloc(p, n) : NULL; }

/* ------------------------------------------------------------ chunk arrays */

static int chunks_grow(ix_chunks *c, size_t elsize, unsigned shift, uint64_t first, uint64_t max)
{
    const uint64_t full = (uint64_t)1 << shift;
    if (c->n == 1 && c->cap < full) {
        uint64_t ncap = c->cap * 2 > full ? full : c->cap * 2;
        void *p = ix_realloc(c->dir[0], (size_t)(ncap * elsize));
        if (!p)
            return KV_ENOMEM;
        c->dir[0] = p;
        c->cap = ncap;
        return 0;
    }
    uint64_t add = c->n == 0 ? first : full;
    if (c->cap + add > max)
        return KV_ENOMEM;              /* format limit: u32 addressing exhausted */
    if (c->n == c->dircap) {
        uint32_t ndc = c->dircap ? c->dircap * 2 : 4;
        void **d = ix_realloc(c->dir, ndc * sizeof(void *));
        if (!d)
            return KV_ENOMEM;
        c->dir = d;
        c->dircap = ndc;
    }
    void *p = ix_malloc((size_t)(add * elsize));
    if (!p)
        return KV_ENOMEM;
    c->dir[c->n++] = p;
    c->cap += add;
    return 0;
}

static void chunks_free(ix_chunks *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        free(c->dir[i]);
    free(c->dir);
    memset(c, 0, sizeof *c);
}

static size_t chunks_mem(const ix_chunks *c, size_t elsize)
{
    return c->dircap * sizeof(void *) + (size_t)c->cap * elsize;
}

static inline ix_entry *ent(const kv_index *ix, uint32_t id)
{
    return (ix_entry *)ix->ents.dir[id >> IX_ENT_SHIFT] + (id & ((1u << IX_ENT_SHIFT) - 1));
}

static inline uint32_t *aword(const kv_index *ix, uint32_t off)
{
    return (uint32_t *)ix->arena.dir[off >> IX_AR_SHIFT] + (off & ((1u << IX_AR_SHIFT) - 1));
}

static inline ix_node *node(const kv_index *ix, uint32_t i)
{
    return (ix_node *)ix->nodes.dir[i >> IX_ND_SHIFT] + (i & ((1u << IX_ND_SHIFT) - 1));
}

static const uint8_t ix_empty_key[4];

static inline uint32_t eklen(const ix_entry *e) { return e->klen_flags & IX_KLEN_MASK; }

static inline const uint8_t *ekey(const kv_index *ix, const ix_entry *e)
{
    return eklen(e) ? (const uint8_t *)aword(ix, e->key_off) : ix_empty_key;
}

/* A pass over ids in key order (an ordered scan, the sort at open) reads each
 * id's entry and then its key, and both lie wherever the key was first
 * inserted: two cache misses per id, one after the other (kv_list of a
 * 1000-key page of a 1M-key store: 128 us, 46 us with these prefetches).
 * Asking for the entry PF_ENTRY ids ahead, and for the key of the id PF_KEY
 * ahead (its entry asked for earlier), lets the misses of many ids overlap.
 * A prefetch never faults; the loads made to compute its address are of a
 * live id's entry, and a free entry's key offset is not followed.
 *
 * always_inline: GCC drops a call to a function that only prefetches (it
 * counts as having no effect), so the prefetches must sit in the caller. */
#define PF_ENTRY 12u
#define PF_KEY   6u

static inline __attribute__((always_inline)) void prefetch_entry(const kv_index *ix, uint32_t id)
{
    __builtin_prefetch(ent(ix, id));
}

static inline __attribute__((always_inline)) void prefetch_key(const kv_index *ix, uint32_t id)
{
    const ix_entry *e = ent(ix, id);
    if (eklen(e) && e->key_off != IX_FREE_KEY)
        __builtin_prefetch(aword(ix, e->key_off));
}

static inline uint32_t key_words(uint32_t klen) { return (klen + 3) / 4; }

uint32_t kv_index__hash_mask = UINT32_MAX;

static inline uint32_t ix_hash(const void *key, uint32_t klen)
{
    return (uint32_t)kv_xxh64(key, klen, 0) & kv_index__hash_mask;
}

/* ------------------------------------------------------------------ entries */

static int ents_reserve(kv_index *ix)
{
    if (ix->free_id != IX_NONE || ix->id_limit < ix->ents.cap)
        return 0;
    return chunks_grow(&ix->ents, sizeof(ix_entry), IX_ENT_SHIFT, IX_ENT_FIRST, IX_ENT_MAX);
}

static inline uint32_t ents_peek(const kv_index *ix)
{
    return ix->free_id != IX_NONE ? ix->free_id : ix->id_limit;
}

static uint32_t ents_take(kv_index *ix)
{
    uint32_t id = ix->free_id;
    if (id != IX_NONE)
        ix->free_id = ent(ix, id)->rec_off;
    else
        id = ix->id_limit++;
    return id;
}

static void ents_free(kv_index *ix, uint32_t id)
{
    ix_entry *e = ent(ix, id);
    memset(e, 0, sizeof *e);
    e->key_off = IX_FREE_KEY;
    e->rec_off = ix->free_id;
    ix->free_id = id;
}

static void ent_set_loc(ix_entry *e, const kv_loc *loc)
{
    e->rec_off = loc->rec_off;
    e->rec_len = loc->rec_len;
    e->expiration = loc->expiration;
    e->seg = loc->seg;
    e->klen_flags = (uint16_t)((e->klen_flags & IX_KLEN_MASK) | (loc->flags << IX_FLAG_SHIFT));
}

static void ent_get_loc(const ix_entry *e, kv_loc *loc)
{
    loc->rec_off = e->rec_off;
    loc->rec_len = e->rec_len;
    loc->expiration = e->expiration;
    loc->seg = e->seg;
    loc->flags = (uint16_t)(e->klen_flags >> IX_FLAG_SHIFT);
}

/* -------------------------------------------------------------- key arena */

static void arena_push(kv_index *ix, uint32_t off, uint32_t words)
{
    *aword(ix, off) = ix->fhead[words];
    ix->fhead[words] = off;
    ix->fmask[words >> 6] |= 1ull << (words & 63);
    ix->free_words += words;
}

static uint32_t arena_pop(kv_index *ix, uint32_t words)
{
    uint32_t off = ix->fhead[words];
    ix->fhead[words] = *aword(ix, off);
    if (ix->fhead[words] == IX_NONE)
        ix->fmask[words >> 6] &= ~(1ull << (words & 63));
    ix->free_words -= words;
    return off;
}

/* Smallest non-empty class strictly above `words`, 0 if none. */
static uint32_t arena_class_above(const kv_index *ix, uint32_t words)
{
    uint32_t c = words + 1;
    if (c > IX_CLASSES)
        return 0;
    uint32_t wi = c >> 6;
    uint64_t m = ix->fmask[wi] & (~0ull << (c & 63));
    for (;;) {
        if (m)
            return wi * 64 + (uint32_t)__builtin_ctzll(m);
        if (++wi >= IX_FMASK_WORDS)
            return 0;
        m = ix->fmask[wi];
    }
}

/* Make sure arena_take(words) will succeed without allocating. */
static int arena_reserve(kv_index *ix, uint32_t words)
{
    if (words == 0 || ix->fhead[words] != IX_NONE || arena_class_above(ix, words))
        return 0;
    while (ix->arena.cap - ix->atop < words) {
        uint64_t oldcap = ix->arena.cap;
        uint32_t oldn = ix->arena.n;
        int rc = chunks_grow(&ix->arena, 4, IX_AR_SHIFT, IX_AR_FIRST, IX_AR_MAX);
        if (rc)
            return rc;
        if (ix->arena.n != oldn) {
            /* A key never straddles chunks: the unused tail of the old last
             * chunk (< words <= 512) becomes a free slot. */
            uint32_t tail = (uint32_t)(oldcap - ix->atop);
            if (tail)
                arena_push(ix, (uint32_t)ix->atop, tail);
            ix->atop = oldcap;
        }
    }
    return 0;
}

/* Exact fit first (no fragmentation), then split the best larger free slot
 * (reuse before growth), then the bump pointer. */
static uint32_t arena_take(kv_index *ix, uint32_t words)
{
    if (words == 0)
        return 0;
    if (ix->fhead[words] != IX_NONE)
        return arena_pop(ix, words);
    uint32_t c = arena_class_above(ix, words);
    if (c) {
        uint32_t off = arena_pop(ix, c);
        arena_push(ix, off + words, c - words);
        return off;
    }
    uint32_t off = (uint32_t)ix->atop;
    ix->atop += words;
    return off;
}

/* ------------------------------------------------------------ tree nodes */

static int nodes_reserve(kv_index *ix, uint32_t k)
{
    while ((uint64_t)ix->free_nodes + (ix->nodes.cap - ix->node_limit) < k) {
        int rc = chunks_grow(&ix->nodes, sizeof(ix_node), IX_ND_SHIFT, IX_ND_FIRST, IX_ND_MAX);
        if (rc)
            return rc;
    }
    return 0;
}

static uint32_t node_take(kv_index *ix, int kind)
{
    uint32_t i = ix->free_node;
    if (i != IX_NONE) {
        ix->free_node = node(ix, i)->next;
        ix->free_nodes--;
    } else {
        i = ix->node_limit++;
    }
    ix_node *nd = node(ix, i);
    nd->n = 0;
    nd->kind = (uint8_t)kind;
    nd->pad = 0;
    nd->next = IX_NONE;
    ix->nodes_live++;
    return i;
}

static void node_free(kv_index *ix, uint32_t i)
{
    ix_node *nd = node(ix, i);
    nd->kind = NODE_FREE;
    nd->n = 0;
    nd->next = ix->free_node;
    ix->free_node = i;
    ix->free_nodes++;
    ix->nodes_live--;
}

/* ------------------------------------------------------------ hash table */

static inline uint64_t ht_maxload(const ix_table *t)   /* 0.8: where growth starts */
{
    return (uint64_t)t->cap - t->cap / 5;
}

static inline uint64_t ht_hardload(const ix_table *t)  /* ~0.94: only if growth is impossible */
{
    return (uint64_t)t->cap - t->cap / 16;
}

static inline int ht_fits(const ix_table *t, uint32_t id)
{
    return (uint64_t)id + 1 < t->idmask;     /* idmask itself is the tombstone */
}

/* Home slot of hash h.  Multiply-shift maps 32 bits onto [0, cap) for any
 * capacity, led by the high-order bits of its input; the hash is rotated first
 * so that those are the bits below the tag.  The tag then stays independent of
 * the home slot and still tells apart the keys of one probe run. */
static inline uint32_t ht_home(const ix_table *t, uint32_t h)
{
    uint32_t x = (h << t->rot) | (h >> ((32 - t->rot) & 31));
    return (uint32_t)(((uint64_t)x * t->cap) >> 32);
}

static inline uint32_t ht_next(const ix_table *t, uint32_t i)
{
    return i + 1 == t->cap ? 0 : i + 1;
}

/* Slots from a forward to b, wrapping at the end of the table. */
static inline uint32_t ht_dist(const ix_table *t, uint32_t a, uint32_t b)
{
    return b >= a ? b - a : b + t->cap - a;
}

static unsigned bitlen32(uint64_t x) { return x ? 64u - (unsigned)__builtin_clzll(x) : 0; }

/* A big hash table is probed at random: transparent huge pages spare most of
 * the TLB misses (advice only; ignored where unsupported). */
static void advise_huge(void *p, size_t n)
{
    const uintptr_t page = 4096, huge = (uintptr_t)2 << 20;
    if (n < 2 * huge)
        return;
    uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)p + n) & ~(page - 1);
    (void)madvise((void *)from, to - from, MADV_HUGEPAGE);
}

static int tbl_alloc(const kv_index *ix, ix_table *t, uint32_t cap)
{
    uint32_t *s = ix_calloc(cap, sizeof(uint32_t));
    if (!s)
        return KV_ENOMEM;
    advise_huge(s, (size_t)cap * sizeof(uint32_t));
    /* Room for ids up to twice the capacity (ids stay below that while load <=
     * 0.8 unless deletes left holes) and twice the id space already handed out;
     * the rest of the word is tag. */
    unsigned bits = bitlen32(cap - 1) + 1, b2 = bitlen32((uint64_t)ix->id_limit + 1) + 1;
    if (b2 > bits)
        bits = b2;
    if (bits > 32)
        bits = 32;
    t->slots = s;
    t->cap = cap;
    t->idmask = bits == 32 ? UINT32_MAX : (1u << bits) - 1;
    t->rot = 32 - bits;
    t->used = 0;
    return 0;
}

static void tbl_insert(const kv_index *ix, ix_table *t, uint32_t h, uint32_t id)
{
    (void)ix;
    uint32_t i = ht_home(t, h);
    while (t->slots[i] & t->idmask)      /* cur holds no tombstones */
        i = ht_next(t, i);
    t->slots[i] = (h & ~t->idmask) | (id + 1);
    t->used++;
}

/* 1 with *slot and *id when found.  Probing is bounded by the capacity so that
 * even a damaged table cannot loop forever.  Slots below `floor` are not read:
 * in old they are migrated (tombstones or empty) and possibly given back to
 * the system (reading as empty), so a probe starts at floor at the earliest
 * and wraps around to it. */
static int tbl_find(const kv_index *ix, const ix_table *t, uint32_t floor, uint32_t h,
                    const void *key, uint32_t klen, int exact, uint32_t *slot, uint32_t *id)
{
    const uint32_t idm = t->idmask, tag = h & ~idm;
    uint32_t i = ht_home(t, h);
    if (i < floor)
        i = floor;
    for (uint32_t n = t->cap; n; n--, i = i + 1 == t->cap ? floor : i + 1) {
        uint32_t s = t->slots[i], v = s & idm;
        if (v == 0)
            return 0;
        if ((s & ~idm) != tag || v == idm)
            continue;
        const ix_entry *e = ent(ix, v - 1);
        if (e->hash == h && eklen(e) == klen &&
            (!exact || klen == 0 || memcmp(aword(ix, e->key_off), key, klen) == 0)) {
            *slot = i;
            *id = v - 1;
            return 1;
        }
    }
    return 0;
}

/* Backward-shift deletion for the table without tombstones. */
static void tbl_delete_shift(const kv_index *ix, ix_table *t, uint32_t i)
{
    const uint32_t idm = t->idmask;
    uint32_t j = i;
    for (;;) {
        j = ht_next(t, j);
        uint32_t s = t->slots[j];
        if ((s & idm) == 0)
            break;
        uint32_t home = ht_home(t, ent(ix, (s & idm) - 1)->hash);
        /* s may fill the hole at i unless its home lies cyclically in (i, j]. */
        if (ht_dist(t, home, j) >= ht_dist(t, i, j)) {
            t->slots[i] = s;
            i = j;
        }
    }
    t->slots[i] = 0;
    t->used--;
}

/* Test hook (kv_index_hooks.h): the release unit below. */
size_t kv_index__release_unit = (size_t)64 << 10;

/* Give the pages of old that the migration has passed back to the system, 64
 * KiB at a time (2 MiB, a whole huge page, in the tables advise_huge covers):
 * the memory of a migration then falls from the old table's size to nothing
 * as it proceeds, instead of all at its end.  Nothing reads those slots again
 * (tbl_find's floor); were they read, they would read as empty.  Tables under
 * four units are left alone. */
static void ht_release_migrated(kv_index *ix)
{
    const ix_table *o = &ix->old;
    const size_t bytes = (size_t)o->cap * sizeof(uint32_t);
    const uintptr_t page = 4096, huge = (uintptr_t)2 << 20;
    const uintptr_t unit = bytes >= 2 * huge ? huge : kv_index__release_unit;
    if (bytes < 4 * unit)
        return;
    uintptr_t base = (uintptr_t)o->slots;
    uintptr_t from = (base + page - 1) & ~(page - 1);
    uintptr_t to = (base + (uintptr_t)ix->mig_pos * sizeof(uint32_t)) & ~(page - 1);
    from += ix->mig_released;
    if (to < from + unit)
        return;
    if (madvise((void *)from, to - from, MADV_DONTNEED) == 0)
        ix->mig_released += to - from;
}

static void ht_migrate(kv_index *ix, uint64_t nslots)
{
    if (!ix->migrating)
        return;
    ix_table *o = &ix->old;
    const uint32_t idm = o->idmask;
    while (nslots && o->used && ix->mig_pos < o->cap) {
        uint32_t s = o->slots[ix->mig_pos], v = s & idm;
        if (v != 0 && v != idm) {
            tbl_insert(ix, &ix->cur, ent(ix, v - 1)->hash, v - 1);
            o->slots[ix->mig_pos] = idm;      /* tombstone keeps old probe chains intact */
            o->used--;
        }
        ix->mig_pos++;
        nslots--;
    }
    if (o->used == 0 || ix->mig_pos >= o->cap) {
        free(o->slots);
        memset(o, 0, sizeof *o);
        ix->migrating = 0;
        ix->mig_released = 0;
        return;
    }
    ht_release_migrated(ix);
}

/* Start moving everything into a new table of cap slots. */
static int ht_start_resize(kv_index *ix, uint32_t cap)
{
    ix_table t;
    if (ix->migrating)
        ht_migrate(ix, UINT64_MAX);
    int rc = tbl_alloc(ix, &t, cap);
    if (rc)
        return rc;
    ix->old = ix->cur;
    ix->cur = t;
    ix->migrating = 1;
    ix->mig_pos = 0;
    ix->mig_released = 0;
    /* Finish within half of the inserts that cur can take before load 0.8. */
    uint64_t maxl = ht_maxload(&t);
    uint64_t ops = maxl > ix->count ? (maxl - ix->count) / 2 : 1;
    if (ops == 0)
        ops = 1;
    ix->mig_step = (ix->old.cap + ops - 1) / ops;
    /* At least 16: after growth the old table drains within cap/16 puts, the
     * same share (about 1/6) of the puts between two growths as 8 slots per put
     * had with doubling.  Migration is short, and so is the time when it costs
     * memory and makes every miss probe two tables. */
    if (ix->mig_step < 16)
        ix->mig_step = 16;
    ht_migrate(ix, 0);                         /* frees old at once if it was empty */
    return 0;
}

/* Capacity after growth: x1.5, so a table right after growing is at load 0.53
 * (7.5 bytes per key) instead of 0.4 (10 bytes) with doubling. */
static uint32_t ht_grown_cap(uint32_t cap)
{
    uint64_t c = (uint64_t)cap + cap / 2;
    return c > IX_HT_MAX ? IX_HT_MAX : (uint32_t)c;
}

/* Make sure a new key with entry id `id` can go into cur. */
static int ht_reserve(kv_index *ix, uint32_t id)
{
    /* By construction migration ends before these trigger; finishing it
     * synchronously is only a safety net. */
    if (ix->migrating && ((uint64_t)ix->count + 1 > ht_maxload(&ix->cur) || !ht_fits(&ix->cur, id)))
        ht_migrate(ix, UINT64_MAX);
    if (ix->migrating)
        return 0;
    if ((uint64_t)ix->count + 1 > ht_maxload(&ix->cur)) {
        int rc = ix->cur.cap < IX_HT_MAX ? ht_start_resize(ix, ht_grown_cap(ix->cur.cap)) : KV_ENOMEM;
        if (rc == 0)
            return 0;
        /* Could not grow: keep going in the current table up to its hard load. */
        if ((uint64_t)ix->count + 1 > ht_hardload(&ix->cur))
            return KV_ENOMEM;
    }
    if (!ht_fits(&ix->cur, id))
        return ht_start_resize(ix, ix->cur.cap);   /* same size, wider id field */
    return 0;
}

void kv_index_prefetch(const kv_index *ix, const void *key, uint32_t klen)
{
    if (klen > KV_INDEX_MAX_KEY)
        return;
    uint32_t h = ix_hash(key, klen);
    __builtin_prefetch(&ix->cur.slots[ht_home(&ix->cur, h)], 1);
}

int kv_index_reserve(kv_index *ix, uint64_t n)
{
    if (!ix)
        return KV_EINVAL;
    /* Load 2/3 with n keys (n is an upper bound: hints may announce keys
     * overwritten since): the middle of the 0.53..0.8 range that growth
     * keeps, 6 bytes per key, with room for 20% more keys before growing. */
    uint64_t cap = n + n / 2 + 1;
    if (cap > IX_HT_MAX)
        cap = IX_HT_MAX;
    if (cap <= ix->cur.cap)
        return 0;
    int rc = ht_start_resize(ix, (uint32_t)cap);
    if (rc == 0)
        ht_migrate(ix, UINT64_MAX);
    return rc;
}

/* Below load 1/8, shrink to load 1/2 (cheap to drain, far from both triggers). */
static void ht_maybe_shrink(kv_index *ix)
{
    if (ix->migrating || ix->cur.cap <= IX_HT_MIN || ix->count >= ix->cur.cap / 8)
        return;
    uint32_t cap = ix->count * 2 < IX_HT_MIN ? IX_HT_MIN : ix->count * 2;
    (void)ht_start_resize(ix, cap);              /* failure: keep the big table */
}

typedef struct ix_where {
    uint32_t id;          /* entry id */
    uint32_t slot;        /* slot in the table */
    int      in_old;      /* 1 if the slot is in old */
} ix_where;

/* The slot of key; with exact = 0 the first one whose entry has key's hash and
 * length, its bytes not compared (kv_index_get_unchecked). */
static int ix_find(const kv_index *ix, uint32_t h, const void *key, uint32_t klen, int exact,
                   ix_where *w)
{
    w->in_old = 0;
    if (tbl_find(ix, &ix->cur, 0, h, key, klen, exact, &w->slot, &w->id))
        return 1;
    if (ix->migrating &&
        tbl_find(ix, &ix->old, (uint32_t)ix->mig_pos, h, key, klen, exact, &w->slot, &w->id)) {
        w->in_old = 1;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------- tree */

static inline int cmp_key(const void *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

static inline int cmp_id(const kv_index *ix, const void *key, uint32_t klen, uint32_t id)
{
    const ix_entry *e = ent(ix, id);
    return cmp_key(key, klen, ekey(ix, e), eklen(e));
}

/* A binary search over the ids a[lo..hi) of one node compares the key of
 * a[mid] at the cost of two dependent cache misses (its entry, then its key
 * bytes): in a tree larger than the CPU cache nearly every comparison of a
 * descent pays both, and the descents of new keys were 73% of the keydir's
 * time in a fill of 1M keys.  The next comparison is at one of two ids and
 * the one after at one of four: each step asks for the two keys one step
 * ahead (their entries were asked for a step earlier) and the four entries two
 * steps ahead, so a step's misses overlap the comparison before it.  Only ids
 * inside [lo, hi) are touched. */
static inline __attribute__((always_inline)) void prefetch_search(const kv_index *ix,
                                                                   const uint32_t *a,
                                                                   uint32_t lo, uint32_t mid,
                                                                   uint32_t hi)
{
    uint32_t ml = (lo + mid) / 2, mr = (mid + 1 + hi) / 2; /* of [lo, mid) and [mid + 1, hi) */
    if (lo < mid) {
        prefetch_key(ix, a[ml]);
        prefetch_entry(ix, a[(lo + ml) / 2]);
        if (ml + 1 < mid)
            prefetch_entry(ix, a[(ml + 1 + mid) / 2]);
    }
    if (mid + 1 < hi) {
        prefetch_key(ix, a[mr]);
        prefetch_entry(ix, a[(mid + 1 + mr) / 2]);
        if (mr + 1 < hi)
            prefetch_entry(ix, a[(mr + 1 + hi) / 2]);
    }
}

/* Descend to the leaf for key.  Inner nodes: go right on equality (a separator
 * is the smallest key of its right subtree).  Leaf: first position with key >=
 * (upper = 0) or > (upper = 1) the search key. */
static void tree_descend(const kv_index *ix, const void *key, uint32_t klen, int upper, ix_path *p)
{
    uint32_t d = 0, nid = ix->root;
    for (;;) {
        const ix_node *nd = node(ix, nid);
        uint32_t lo = 0, hi = nd->n;
        p->node[d] = nid;
        if (nd->kind == NODE_INNER && d + 1 < IX_MAX_DEPTH) {
            const uint32_t *sep = nd->w + IX_SEP0;
            while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                prefetch_search(ix, sep, lo, mid, hi);
                if (cmp_id(ix, key, klen, sep[mid]) >= 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            p->idx[d++] = lo;
            nid = nd->w[lo];
        } else {
            while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                prefetch_search(ix, nd->w, lo, mid, hi);
                int c = cmp_id(ix, key, klen, nd->w[mid]);
                if (c > 0 || (upper && c == 0))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            p->idx[d++] = lo;
            p->depth = d;
            return;
        }
    }
}

/* Insert position for a new key.  Appending past the current maximum (the
 * sequential-load case) is recognised with a single comparison. */
static void tree_find_insert(const kv_index *ix, const void *key, uint32_t klen, ix_path *p)
{
    uint32_t d = 0, nid = ix->root;
    const ix_node *nd = node(ix, nid);
    while (nd->kind == NODE_INNER && d + 1 < IX_MAX_DEPTH) {
        p->node[d] = nid;
        p->idx[d++] = nd->n;
        nid = nd->w[nd->n];
        nd = node(ix, nid);
    }
    if (nd->n == 0 || cmp_id(ix, key, klen, nd->w[nd->n - 1]) > 0) {
        p->node[d] = nid;
        p->idx[d] = nd->n;
        p->depth = d + 1;
        return;
    }
    tree_descend(ix, key, klen, 0, p);
}

static void inner_insert(ix_node *nd, uint32_t ci, uint32_t sep, uint32_t child)
{
    uint32_t *ch = nd->w, *sp = nd->w + IX_SEP0;
    memmove(sp + ci + 1, sp + ci, (nd->n - ci) * sizeof(uint32_t));
    memmove(ch + ci + 2, ch + ci + 1, (nd->n - ci) * sizeof(uint32_t));
    sp[ci] = sep;
    ch[ci + 1] = child;
    nd->n++;
}

/* Remove separator j and child j + 1. */
static void inner_remove(ix_node *nd, uint32_t j)
{
    uint32_t *ch = nd->w, *sp = nd->w + IX_SEP0;
    memmove(sp + j, sp + j + 1, (nd->n - j - 1) * sizeof(uint32_t));
    memmove(ch + j + 1, ch + j + 2, (nd->n - j - 1) * sizeof(uint32_t));
    nd->n--;
}

/* A full leaf whose sibling under the same parent has room moves ids over
 * instead of splitting (as a B*-tree does): half of the sibling's room, so the
 * sibling keeps room for its own inserts.  Splits alone leave leaves ~70% full
 * under scattered inserts, and at times near 50% (the leaves of a growing tree
 * fill and split in waves); spilling keeps them around 80%.  tmp holds the
 * leaf's IX_LEAF_MAX ids and the new one in order.  Only the parent's
 * separators change: the leaf and its sibling are children 1.. or ..n of the
 * same parent, so no ancestor holds their smallest key, except the leaf's
 * when it is child 0, whose smallest key stays where it is. */
static int leaf_spill(kv_index *ix, const ix_path *p, const uint32_t *tmp)
{
    const uint32_t lv = p->depth - 1, ci = p->idx[lv - 1], total = IX_LEAF_MAX + 1;
    ix_node *lf = node(ix, p->node[lv]), *par = node(ix, p->node[lv - 1]);
    uint32_t *ps = par->w + IX_SEP0;
    if (ci > 0) {
        ix_node *l = node(ix, par->w[ci - 1]);
        uint32_t m = (IX_LEAF_MAX - l->n + 1) / 2;
        if (m) {
            memcpy(l->w + l->n, tmp, m * sizeof(uint32_t));
            l->n = (uint16_t)(l->n + m);
            memcpy(lf->w, tmp + m, (total - m) * sizeof(uint32_t));
            lf->n = (uint16_t)(total - m);
            ps[ci - 1] = lf->w[0];
            return 1;
        }
    }
    if (ci < par->n) {
        ix_node *r = node(ix, par->w[ci + 1]);
        uint32_t m = (IX_LEAF_MAX - r->n + 1) / 2;
        if (m) {
            memmove(r->w + m, r->w, r->n * sizeof(uint32_t));
            memcpy(r->w, tmp + total - m, m * sizeof(uint32_t));
            r->n = (uint16_t)(r->n + m);
            memcpy(lf->w, tmp, (total - m) * sizeof(uint32_t));
            lf->n = (uint16_t)(total - m);
            ps[ci] = r->w[0];
            return 1;
        }
    }
    return 0;
}

/* Needs height + 1 reserved nodes (one split per level and a new root). */
static void tree_insert(kv_index *ix, const ix_path *p, uint32_t id)
{
    uint32_t lv = p->depth - 1, lid = p->node[lv], pos = p->idx[lv];
    ix_node *lf = node(ix, lid);
    if (lf->n < IX_LEAF_MAX) {
        memmove(lf->w + pos + 1, lf->w + pos, (lf->n - pos) * sizeof(uint32_t));
        lf->w[pos] = id;
        lf->n++;
        return;
    }
    uint32_t tmp[IX_LEAF_MAX + 1];
    memcpy(tmp, lf->w, pos * sizeof(uint32_t));
    tmp[pos] = id;
    memcpy(tmp + pos + 1, lf->w + pos, (IX_LEAF_MAX - pos) * sizeof(uint32_t));
    const int append = pos == IX_LEAF_MAX && lf->next == IX_NONE;
    if (!append && lv > 0 && leaf_spill(ix, p, tmp))
        return;
    /* Appending at the right end keeps the left leaf full (sequential loads
     * give 100% full leaves); otherwise split evenly. */
    uint32_t left = append ? IX_LEAF_MAX : (IX_LEAF_MAX + 1) / 2;
    uint32_t rid = node_take(ix, NODE_LEAF);
    ix_node *r = node(ix, rid);
    memcpy(lf->w, tmp, left * sizeof(uint32_t));
    lf->n = (uint16_t)left;
    r->n = (uint16_t)(IX_LEAF_MAX + 1 - left);
    memcpy(r->w, tmp + left, r->n * sizeof(uint32_t));
    r->next = lf->next;
    lf->next = rid;
    uint32_t sep = r->w[0], child = rid;

    while (lv-- > 0) {
        uint32_t nid = p->node[lv], ci = p->idx[lv];
        ix_node *nd = node(ix, nid);
        if (nd->n < IX_INNER_MAX) {
            inner_insert(nd, ci, sep, child);
            return;
        }
        /* Split a full inner node evenly: 64 children -> 32 + 32, the middle
         * separator moves up.  (Inner nodes are ~1/40 of the tree, so an
         * append-friendly split here would save little and would create
         * one-child nodes whose children could not rebalance.) */
        uint32_t tc[IX_INNER_CHILD + 1], ts[IX_INNER_MAX + 1];
        const uint32_t *ch = nd->w, *sp = nd->w + IX_SEP0;
        memcpy(tc, ch, (ci + 1) * sizeof(uint32_t));
        tc[ci + 1] = child;
        memcpy(tc + ci + 2, ch + ci + 1, (IX_INNER_MAX - ci) * sizeof(uint32_t));
        memcpy(ts, sp, ci * sizeof(uint32_t));
        ts[ci] = sep;
        memcpy(ts + ci + 1, sp + ci, (IX_INNER_MAX - ci) * sizeof(uint32_t));
        const uint32_t lc = (IX_INNER_CHILD + 1) / 2;          /* children kept left */
        uint32_t nrid = node_take(ix, NODE_INNER);
        ix_node *nr = node(ix, nrid);
        memcpy(nd->w, tc, lc * sizeof(uint32_t));
        memcpy(nd->w + IX_SEP0, ts, (lc - 1) * sizeof(uint32_t));
        nd->n = (uint16_t)(lc - 1);
        memcpy(nr->w, tc + lc, (IX_INNER_CHILD + 1 - lc) * sizeof(uint32_t));
        memcpy(nr->w + IX_SEP0, ts + lc, (IX_INNER_MAX - lc + 1) * sizeof(uint32_t));
        nr->n = (uint16_t)(IX_INNER_MAX + 1 - lc);
        sep = ts[lc - 1];
        child = nrid;
    }
    uint32_t nroot = node_take(ix, NODE_INNER);
    ix_node *rt = node(ix, nroot);
    rt->n = 1;
    rt->w[0] = ix->root;
    rt->w[1] = child;
    rt->w[IX_SEP0] = sep;
    ix->root = nroot;
    ix->height++;
}

/* Bottom-up underflow repair along the path of a delete. */
static void tree_rebalance(kv_index *ix, const ix_path *p)
{
    for (uint32_t lv = p->depth - 1; lv > 0; lv--) {
        uint32_t xid = p->node[lv];
        ix_node *x = node(ix, xid);
        const int leaf = x->kind == NODE_LEAF;
        const uint32_t min = leaf ? IX_LEAF_MIN : IX_INNER_MIN;
        if (x->n >= min)
            return;
        ix_node *par = node(ix, p->node[lv - 1]);
        uint32_t ci = p->idx[lv - 1];
        uint32_t *pc = par->w, *ps = par->w + IX_SEP0;
        /* Prefer the left sibling: when the rightmost leaf empties, the
         * separator naming its deleted key is ps[ci - 1], which this either
         * rewrites (borrow) or removes (merge). */
        uint32_t lid = ci > 0 ? pc[ci - 1] : xid, rid = ci > 0 ? xid : pc[1];
        uint32_t j = ci > 0 ? ci - 1 : 0;                 /* separator between l and r */
        ix_node *l = node(ix, lid), *r = node(ix, rid);
        ix_node *sib = ci > 0 ? l : r;
        if (sib->n > min) {
            if (leaf && ci > 0) {                          /* l's last id -> front of x */
                memmove(x->w + 1, x->w, x->n * sizeof(uint32_t));
                x->w[0] = l->w[--l->n];
                x->n++;
                ps[j] = x->w[0];
            } else if (leaf) {                             /* r's first id -> end of x */
                x->w[x->n++] = r->w[0];
                memmove(r->w, r->w + 1, (r->n - 1) * sizeof(uint32_t));
                r->n--;
                ps[j] = r->w[0];
            } else if (ci > 0) {                           /* rotate right through parent */
                uint32_t *xc = x->w, *xs = x->w + IX_SEP0;
                memmove(xc + 1, xc, (x->n + 1) * sizeof(uint32_t));
                memmove(xs + 1, xs, x->n * sizeof(uint32_t));
                xc[0] = l->w[l->n];
                xs[0] = ps[j];
                ps[j] = l->w[IX_SEP0 + l->n - 1];
                l->n--;
                x->n++;
            } else {                                       /* rotate left through parent */
                uint32_t *rc = r->w, *rs = r->w + IX_SEP0;
                x->w[x->n + 1] = rc[0];
                x->w[IX_SEP0 + x->n] = ps[j];
                ps[j] = rs[0];
                memmove(rc, rc + 1, r->n * sizeof(uint32_t));
                memmove(rs, rs + 1, (r->n - 1) * sizeof(uint32_t));
                r->n--;
                x->n++;
            }
            return;
        }
        /* Merge r into l (fits: one side is below min, the other at most min). */
        if (leaf) {
            memcpy(l->w + l->n, r->w, r->n * sizeof(uint32_t));
            l->n = (uint16_t)(l->n + r->n);
            l->next = r->next;
        } else {
            l->w[IX_SEP0 + l->n] = ps[j];
            memcpy(l->w + IX_SEP0 + l->n + 1, r->w + IX_SEP0, r->n * sizeof(uint32_t));
            memcpy(l->w + l->n + 1, r->w, (r->n + 1) * sizeof(uint32_t));
            l->n = (uint16_t)(l->n + r->n + 1);
        }
        inner_remove(par, j);
        node_free(ix, rid);
    }
    ix_node *rt = node(ix, ix->root);
    if (rt->kind == NODE_INNER && rt->n == 0) {
        uint32_t old = ix->root;
        ix->root = rt->w[0];
        node_free(ix, old);
        ix->height--;
    }
}

static void tree_delete(kv_index *ix, const void *key, uint32_t klen, uint32_t id)
{
    ix_path p;
    tree_descend(ix, key, klen, 0, &p);
    uint32_t lv = p.depth - 1, pos = p.idx[lv];
    ix_node *lf = node(ix, p.node[lv]);
    if (pos >= lf->n || lf->w[pos] != id)
        return;                                   /* cannot happen: the index is consistent */
    memmove(lf->w + pos, lf->w + pos + 1, (lf->n - pos - 1) * sizeof(uint32_t));
    lf->n--;
    if (pos == 0 && lv > 0) {
        /* The deleted key was the minimum of every subtree whose leftmost leaf
         * is this one; the deepest ancestor entered through a child index > 0
         * holds it as a separator.  Replace it by the successor. */
        uint32_t a = lv;
        while (a > 0 && p.idx[a - 1] == 0)
            a--;
        if (a > 0) {
            uint32_t succ = lf->n ? lf->w[0] : lf->next != IX_NONE ? node(ix, lf->next)->w[0] : IX_NONE;
            /* IX_NONE only when the rightmost leaf emptied: then a == lv and
             * the rebalance below rewrites or removes that separator. */
            if (succ != IX_NONE)
                node(ix, p.node[a - 1])->w[IX_SEP0 + p.idx[a - 1] - 1] = succ;
        }
    }
    tree_rebalance(ix, &p);
}

/* ------------------------------------------------- ordered view, in bulk */

/* A bulk load (open) inserts keys in hint-file order, which is write order:
 * random in key order for most workloads.  A random insert into the B+tree
 * misses the cache at every level once the index outgrows it (11x slower
 * than sorted inserts at 1M keys), so a bulk load fills the hash table alone
 * and builds the tree afterwards from the sorted ids, bottom up.
 *
 * The sort is an MSD radix sort on 4-byte windows of the keys.  An item is
 * one u64: the 4 key bytes at offset off (big-endian, zero past the key's
 * end) above the entry id.  A level sorts a run of items by window (an LSD
 * radix sort over the window's bytes, stable), then, inside each run of
 * equal windows, puts the keys that end within the window first, shortest
 * first (equal windows and lengths would be equal keys), and sorts the rest
 * again at off + 4.  Being stable, a run keeps the id order of its keys, so
 * reading their bytes walks the key arena mostly forward.  Memory: two
 * 8-byte items per live key while the build runs. */

#define SORT_ID(x) ((uint32_t)(x))

static uint64_t window_at(const kv_index *ix, uint32_t id, uint32_t off)
{
    const ix_entry *e = ent(ix, id);
    uint32_t kl = eklen(e);
    uint32_t have = kl > off ? kl - off : 0;
    if (have > 4)
        have = 4;
    const uint8_t *k = ekey(ix, e) + off;
    uint64_t w = 0;
    for (uint32_t i = 0; i < have; i++)
        w |= (uint64_t)k[i] << (56 - 8 * i);
    return w | id;
}

/* Sorts a[0..n) by window (the high 32 bits), stably; tmp has room for n items. */
static void sort_windows(uint64_t *a, uint64_t *tmp, uint32_t n)
{
    if (n < 64) {
        for (uint32_t i = 1; i < n; i++) {
            uint64_t x = a[i];
            uint32_t j = i;
            for (; j > 0 && (x >> 32) < (a[j - 1] >> 32); j--)
                a[j] = a[j - 1];
            a[j] = x;
        }
        return;
    }
    uint64_t *src = a, *dst = tmp;
    for (int shift = 32; shift < 64; shift += 8) {
        uint32_t count[257] = {0};
        for (uint32_t i = 0; i < n; i++)
            count[((src[i] >> shift) & 0xffu) + 1]++;
        if (count[((src[0] >> shift) & 0xffu) + 1] == n)
            continue;                      /* a byte every key shares: nothing to move */
        for (int v = 0; v < 256; v++)
            count[v + 1] += count[v];
        for (uint32_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 0xffu]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof *a);
}

/* Moves the keys of a run of equal windows at off that end within the window
 * to its front, shortest first; returns how many there are. */
static uint32_t run_enders_first(const kv_index *ix, uint64_t *a, uint32_t n, uint32_t off)
{
    uint32_t enders = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kl = eklen(ent(ix, SORT_ID(a[i])));
        if (kl >= off + 4)
            continue;
        /* At most one key per length below off + 4: insert it among the
         * enders found so far, by length. */
        uint64_t x = a[i];
        uint32_t j = i;
        for (; j > enders; j--)
            a[j] = a[j - 1];
        for (; j > 0 && eklen(ent(ix, SORT_ID(a[j - 1]))) > kl; j--)
            a[j] = a[j - 1];
        a[j] = x;
        enders++;
    }
    return enders;
}

/* Sorts the ids of a[0..n) by key, given that they all share their first off bytes. */
static void sort_keys(const kv_index *ix, uint64_t *a, uint64_t *tmp, uint32_t n, uint32_t off)
{
    while (n > 1) {
        /* The ids lie in key order of the level above, not in memory order. */
        int enders = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (i + PF_ENTRY < n)
                prefetch_entry(ix, SORT_ID(a[i + PF_ENTRY]));
            if (i + PF_KEY < n)
                prefetch_key(ix, SORT_ID(a[i + PF_KEY]));
            uint32_t id = SORT_ID(a[i]);
            enders |= eklen(ent(ix, id)) < off + 4;
            a[i] = window_at(ix, id, off);
        }
        sort_windows(a, tmp, n);
        /* Each run of equal windows goes on at off + 4, past the keys that end
         * in it; the last one loops here rather than recursing, so a long
         * shared prefix costs no stack. */
        uint32_t i = 0, last_start = 0, last_len = 0;
        while (i < n) {
            uint32_t j = i + 1;
            while (j < n && (a[j] >> 32) == (a[i] >> 32))
                j++;
            if (j - i > 1) {
                /* No key ends within this window: no run has a key to move. */
                uint32_t e = enders ? run_enders_first(ix, a + i, j - i, off) : 0;
                if (last_len > 1)
                    sort_keys(ix, a + last_start, tmp, last_len, off + 4);
                last_start = i + e;
                last_len = j - i - e;
            }
            i = j;
        }
        a += last_start;
        n = last_len;
        off += 4;
    }
}

int kv_index_defer_order(kv_index *ix)
{
    if (!ix || ix->count != 0 || ix->unordered)
        return KV_EINVAL;
    ix->unordered = 1;
    return 0;
}

/* Tree nodes needed for n ids built bottom up (every level split evenly). */
static uint64_t bulk_nodes(uint64_t n)
{
    uint64_t total = 0, level = (n + IX_LEAF_MAX - 1) / IX_LEAF_MAX;
    if (level == 0)
        return 1;
    total += level;
    while (level > 1) {
        level = (level + IX_INNER_CHILD - 1) / IX_INNER_CHILD;
        total += level;
    }
    return total;
}

/* Builds the tree over ids[0..n) (sorted by key) into freshly taken nodes;
 * the caller reserved bulk_nodes(n) of them.  ids is reused for the node
 * numbers of each level, mins for each node's smallest id. */
static void bulk_build(kv_index *ix, uint32_t *ids, uint32_t *mins, uint32_t n)
{
    uint32_t leaves = (n + IX_LEAF_MAX - 1) / IX_LEAF_MAX;
    uint32_t prev = IX_NONE, at = 0;
    for (uint32_t g = 0; g < leaves; g++) {
        /* Even split: every leaf gets floor or ceil of n / groups, at least 63. */
        uint32_t take = n / leaves + (g < n % leaves);
        uint32_t leaf = node_take(ix, NODE_LEAF);
        ix_node *nd = node(ix, leaf);
        memcpy(nd->w, ids + at, (size_t)take * sizeof(uint32_t));
        nd->n = (uint16_t)take;
        if (prev != IX_NONE)
            node(ix, prev)->next = leaf;
        prev = leaf;
        mins[g] = ids[at];
        ids[g] = leaf;                 /* at >= g: the ids read above are behind us */
        at += take;
    }
    uint32_t level = leaves, height = 1;
    while (level > 1) {
        uint32_t groups = (level + IX_INNER_CHILD - 1) / IX_INNER_CHILD;
        at = 0;
        for (uint32_t g = 0; g < groups; g++) {
            uint32_t take = level / groups + (g < level % groups);
            uint32_t inner = node_take(ix, NODE_INNER);
            ix_node *nd = node(ix, inner);
            for (uint32_t c = 0; c < take; c++) {
                nd->w[c] = ids[at + c];
                if (c > 0)
                    nd->w[IX_SEP0 + c - 1] = mins[at + c];
            }
            nd->n = (uint16_t)(take - 1);
            uint32_t m = mins[at];
            ids[g] = inner;
            mins[g] = m;
            at += take;
        }
        level = groups;
        height++;
    }
    ix->root = ids[0];
    ix->height = height;
}

int kv_index_build_order(kv_index *ix)
{
    if (!ix || !ix->unordered)
        return KV_EINVAL;
    uint32_t n = ix->count;
    if (n == 0) {
        ix->unordered = 0;
        return 0;
    }
    uint64_t *a = ix_malloc((size_t)n * sizeof *a);
    uint64_t *tmp = ix_malloc((size_t)n * sizeof *tmp);
    int rc = (a && tmp) ? nodes_reserve(ix, (uint32_t)bulk_nodes(n)) : KV_ENOMEM;
    if (rc) {
        free(a);
        free(tmp);
        return rc;                     /* still unordered: the caller may retry or give up */
    }
    uint32_t k = 0;
    for (uint32_t id = 0; id < ix->id_limit; id++)
        if (ent(ix, id)->key_off != IX_FREE_KEY)
            a[k++] = id;
    sort_keys(ix, a, tmp, n, 0);
    /* tmp's memory holds the build's two columns: the sorted ids and each
     * node's smallest id. */
    uint32_t *ids = (uint32_t *)tmp, *mins = ids + n;
    for (uint32_t i = 0; i < n; i++)
        ids[i] = SORT_ID(a[i]);
    free(a);
    node_free(ix, ix->root);           /* the empty root leaf of the unordered index */
    bulk_build(ix, ids, mins, n);
    free(tmp);
    ix->unordered = 0;
    return 0;
}

/* -------------------------------------------------------------------- API */

int kv_index_new(kv_index **out)
{
    if (!out)
        return KV_EINVAL;
    *out = NULL;
    kv_index *ix = ix_calloc(1, sizeof *ix);
    if (!ix)
        return KV_ENOMEM;
    ix->free_id = IX_NONE;
    ix->free_node = IX_NONE;
    for (uint32_t c = 0; c <= IX_CLASSES; c++)
        ix->fhead[c] = IX_NONE;
    if (tbl_alloc(ix, &ix->cur, IX_HT_MIN) || nodes_reserve(ix, 1)) {
        kv_index_free(ix);
        return KV_ENOMEM;
    }
    ix->root = node_take(ix, NODE_LEAF);
    ix->height = 1;
    *out = ix;
    return 0;
}

void kv_index_free(kv_index *ix)
{
    if (!ix)
        return;
    chunks_free(&ix->ents);
    chunks_free(&ix->arena);
    chunks_free(&ix->nodes);
    free(ix->cur.slots);
    free(ix->old.slots);
    free(ix);
}

uint32_t kv_index_count(const kv_index *ix)
{
    return ix ? ix->count : 0;
}

size_t kv_index_memory(const kv_index *ix)
{
    if (!ix)
        return 0;
    size_t m = sizeof *ix;
    m += chunks_mem(&ix->ents, sizeof(ix_entry));
    m += chunks_mem(&ix->arena, sizeof(uint32_t));
    m += chunks_mem(&ix->nodes, sizeof(ix_node));
    m += (size_t)ix->cur.cap * sizeof(uint32_t);
    if (ix->migrating)
        m += (size_t)ix->old.cap * sizeof(uint32_t) - ix->mig_released;
    return m;
}

static int key_ok(const void *key, uint32_t klen)
{
    return klen <= KV_INDEX_MAX_KEY && (key || klen == 0);
}

static int index_get(const kv_index *ix, const void *key, uint32_t klen, int exact, kv_loc *loc)
{
    ix_where w;
    /* A key the index cannot hold is absent: callers test the result as a boolean. */
    if (!ix || !key_ok(key, klen))
        return 0;
    if (!ix_find(ix, ix_hash(key, klen), key, klen, exact, &w))
        return 0;
    if (loc)
        ent_get_loc(ent(ix, w.id), loc);
    return 1;
}

int kv_index_get(const kv_index *ix, const void *key, uint32_t klen, kv_loc *loc)
{
    return index_get(ix, key, klen, 1, loc);
}

int kv_index_get_unchecked(const kv_index *ix, const void *key, uint32_t klen, kv_loc *loc)
{
    return index_get(ix, key, klen, 0, loc);
}

int kv_index_put(kv_index *ix, const void *key, uint32_t klen, const kv_loc *loc,
                 kv_loc *old, int *had_old, uint32_t *id_out)
{
    if (!ix || !loc || !key_ok(key, klen) || (loc->flags & ~KV_LOC_FLAG_MASK))
        return KV_EINVAL;
    const uint32_t h = ix_hash(key, klen);
    ix_where w;
    ht_migrate(ix, ix->mig_step);
    if (ix_find(ix, h, key, klen, 1, &w)) {
        ix_entry *e = ent(ix, w.id);
        if (old)
            ent_get_loc(e, old);
        ent_set_loc(e, loc);
        if (had_old)
            *had_old = 1;
        if (id_out)
            *id_out = w.id;
        return 0;
    }

    /* The key may point into our own arena (a prefix of a stored key); chunk 0
     * can move when it grows, so take a copy first. */
    uint8_t kcopy[KV_INDEX_MAX_KEY];
    if (klen && ix->arena.n) {
        uintptr_t k = (uintptr_t)key, b = (uintptr_t)ix->arena.dir[0];
        if (k >= b && k < b + (uintptr_t)(ix->arena.n == 1 ? ix->arena.cap : (1u << IX_AR_SHIFT)) * 4) {
            memcpy(kcopy, key, klen);
            key = kcopy;
        }
    }

    /* Reserve everything, then commit without any possible failure. */
    const uint32_t words = key_words(klen);
    int rc;
    if ((rc = ents_reserve(ix)) || (rc = arena_reserve(ix, words)) ||
        (!ix->unordered && (rc = nodes_reserve(ix, ix->height + 1))) ||
        (rc = ht_reserve(ix, ents_peek(ix))))
        return rc;

    uint32_t id = ents_take(ix);
    ix_entry *e = ent(ix, id);
    e->hash = h;
    e->key_off = arena_take(ix, words);
    e->klen_flags = (uint16_t)klen;
    ent_set_loc(e, loc);
    if (words) {
        uint32_t *kw = aword(ix, e->key_off);
        kw[words - 1] = 0;                      /* deterministic padding */
        memcpy(kw, key, klen);
    }
    tbl_insert(ix, &ix->cur, h, id);
    if (!ix->unordered) {
        ix_path p;
        tree_find_insert(ix, key, klen, &p);
        tree_insert(ix, &p, id);
    }
    ix->count++;
    if (had_old)
        *had_old = 0;
    if (id_out)
        *id_out = id;
    return 0;
}

int kv_index_replace_if(kv_index *ix, const void *key, uint32_t klen,
                        uint16_t expect_seg, uint32_t expect_off, const kv_loc *loc)
{
    ix_where w;
    if (!ix || !loc || !key_ok(key, klen) || (loc->flags & ~KV_LOC_FLAG_MASK))
        return KV_EINVAL;
    if (!ix_find(ix, ix_hash(key, klen), key, klen, 1, &w))
        return 0;
    ix_entry *e = ent(ix, w.id);
    if (e->seg != expect_seg || e->rec_off != expect_off)
        return 0;
    ent_set_loc(e, loc);
    return 1;
}

int kv_index_del(kv_index *ix, const void *key, uint32_t klen, kv_loc *old)
{
    ix_where w;
    if (!ix || !key_ok(key, klen))
        return 0;
    const uint32_t h = ix_hash(key, klen);
    ht_migrate(ix, ix->mig_step);
    if (!ix_find(ix, h, key, klen, 1, &w))
        return 0;
    ix_entry *e = ent(ix, w.id);
    if (old)
        ent_get_loc(e, old);
    if (!ix->unordered)
        tree_delete(ix, key, klen, w.id);    /* before the key bytes are freed */
    if (w.in_old) {
        ix->old.slots[w.slot] = ix->old.idmask;   /* tombstone */
        ix->old.used--;
        ht_migrate(ix, 0);                         /* drop old if now empty */
    } else {
        tbl_delete_shift(ix, &ix->cur, w.slot);
    }
    uint32_t words = key_words(eklen(e));
    if (words)
        arena_push(ix, e->key_off, words);
    ents_free(ix, w.id);
    ix->count--;
    ht_maybe_shrink(ix);
    return 1;
}

uint32_t kv_index_id_limit(const kv_index *ix)
{
    return ix ? ix->id_limit : 0;
}

static void fill_out(const kv_index *ix, uint32_t id, const uint8_t **key, uint32_t *klen, kv_loc *loc)
{
    const ix_entry *e = ent(ix, id);
    if (key)
        *key = ekey(ix, e);
    if (klen)
        *klen = eklen(e);
    if (loc)
        ent_get_loc(e, loc);
}

int kv_index_entry(const kv_index *ix, uint32_t id, const uint8_t **key, uint32_t *klen, kv_loc *loc)
{
    if (!ix || id >= ix->id_limit || ent(ix, id)->key_off == IX_FREE_KEY)
        return 0;
    fill_out(ix, id, key, klen, loc);
    return 1;
}

void kv_index_seek(const kv_index *ix, const void *start, uint32_t slen, int inclusive,
                   kv_index_cursor *cur)
{
    if (!cur)
        return;
    cur->node = IX_NONE;
    cur->pos = 0;
    if (!ix || (!start && slen))
        return;
    ix_path p;
    tree_descend(ix, start, slen, !inclusive, &p);
    cur->node = p.node[p.depth - 1];
    cur->pos = p.idx[p.depth - 1];
}

/* An ordered scan's prefetches (PF_ENTRY above), and at a leaf's start its
 * first entries and the next leaf. */
static inline __attribute__((always_inline)) void prefetch_ahead(const kv_index *ix,
                                                                 const ix_node *nd, uint32_t pos)
{
    if (pos == 0) {
        for (uint32_t i = 0; i < PF_ENTRY && i < nd->n; i++)
            prefetch_entry(ix, nd->w[i]);
        if (nd->next != IX_NONE && nd->next < ix->node_limit)
            for (uint32_t b = 0; b < sizeof(ix_node); b += 64)
                __builtin_prefetch((const char *)node(ix, nd->next) + b);
    }
    if (pos + PF_ENTRY < nd->n)
        prefetch_entry(ix, nd->w[pos + PF_ENTRY]);
    if (pos + PF_KEY < nd->n)
        prefetch_key(ix, nd->w[pos + PF_KEY]);
}

int kv_index_next(const kv_index *ix, kv_index_cursor *cur, const uint8_t **key,
                  uint32_t *klen, kv_loc *loc)
{
    if (!ix || !cur)
        return 0;
    while (cur->node != IX_NONE) {
        /* A stale cursor (used after a modification) ends instead of crashing. */
        if (cur->node >= ix->node_limit || node(ix, cur->node)->kind != NODE_LEAF) {
            cur->node = IX_NONE;
            break;
        }
        const ix_node *nd = node(ix, cur->node);
        if (cur->pos < nd->n) {
            prefetch_ahead(ix, nd, cur->pos);
            fill_out(ix, nd->w[cur->pos++], key, klen, loc);
            return 1;
        }
        cur->node = nd->next;
        cur->pos = 0;
    }
    return 0;
}

/* ------------------------------------------------------- test/debug hooks */
/* Not part of the API: declared in kv_index_hooks.h for the C tests and tools. */

void kv_index__get_stats(const kv_index *ix, kv_index__stats *st)
{
    st->nodes_live = ix->nodes_live;
    st->height = ix->height;
    st->table_cap = ix->cur.cap;
    st->migrating = (uint32_t)ix->migrating;
    st->arena_words = ix->arena.cap;
    st->arena_free = ix->free_words;
}

void kv_index__get_profile(const kv_index *ix, kv_index__profile *pr)
{
    memset(pr, 0, sizeof *pr);
    pr->fixed = sizeof *ix;
    pr->entries = chunks_mem(&ix->ents, sizeof(ix_entry));
    pr->keys = chunks_mem(&ix->arena, sizeof(uint32_t));
    pr->nodes = chunks_mem(&ix->nodes, sizeof(ix_node));
    pr->table = (size_t)ix->cur.cap * sizeof(uint32_t);
    pr->old_table = ix->migrating ? (size_t)ix->old.cap * sizeof(uint32_t) - ix->mig_released : 0;
    pr->table_cap = ix->cur.cap;
    for (uint32_t id = 0; id < ix->id_limit; id++)
        if (ent(ix, id)->key_off != IX_FREE_KEY)
            pr->key_bytes += eklen(ent(ix, id));
    for (uint32_t i = 0; i < ix->node_limit; i++)
        pr->leaves += node(ix, i)->kind == NODE_LEAF;

    const ix_table *t = &ix->cur;
    uint64_t hits = 0, hit_sum = 0, miss_sum = 0, empty = t->cap;
    for (uint32_t i = 0; i < t->cap; i++) {
        uint32_t v = t->slots[i] & t->idmask;
        if (v == 0) {
            empty = i;
            continue;
        }
        uint32_t len = ht_dist(t, ht_home(t, ent(ix, v - 1)->hash), i) + 1;
        hits++;
        hit_sum += len;
        if (len > pr->hit_max)
            pr->hit_max = len;
    }
    if (empty < t->cap) {
        /* A miss from home slot i reads up to and including the first empty
         * slot: walk backwards from an empty slot, counting the run. */
        uint32_t run = 0, i = (uint32_t)empty;
        for (uint32_t n = 0; n < t->cap; n++) {
            run = (t->slots[i] & t->idmask) ? run + 1 : 1;
            miss_sum += run;
            if (run > pr->miss_max)
                pr->miss_max = run;
            i = i == 0 ? t->cap - 1 : i - 1;
        }
    }
    pr->hit_mean = hits ? (double)hit_sum / (double)hits : 0;
    pr->miss_mean = (double)miss_sum / t->cap;
}

typedef struct ix_chk {
    const kv_index *ix;
    char     *msg;
    size_t    msglen;
    uint8_t  *seen;           /* per id: seen in the tree */
    uint32_t  leaf_depth;
    uint32_t  prev_leaf;      /* previous leaf in DFS order */
    uint32_t  prev_id;        /* previous id in key order */
    uint64_t  ids;
    uint32_t  nodes;
    uint32_t  rightmost_leaf;
} ix_chk;

#define CHK_FAIL(c, ...) do { snprintf((c)->msg, (c)->msglen, __VA_ARGS__); return 1; } while (0)

static int chk_live(const kv_index *ix, uint32_t id)
{
    return id < ix->id_limit && ent(ix, id)->key_off != IX_FREE_KEY;
}

/* *min = smallest id of the subtree */
static int chk_node(ix_chk *c, uint32_t nid, uint32_t depth, int is_root, uint32_t *min)
{
    const kv_index *ix = c->ix;
    if (nid >= ix->node_limit)
        CHK_FAIL(c, "node %u out of range", nid);
    if (depth >= IX_MAX_DEPTH)
        CHK_FAIL(c, "tree too deep");
    const ix_node *nd = node(ix, nid);
    c->nodes++;
    if (nd->kind == NODE_LEAF) {
        if (c->leaf_depth == 0)
            c->leaf_depth = depth;
        else if (c->leaf_depth != depth)
            CHK_FAIL(c, "leaves at depths %u and %u", c->leaf_depth, depth);
        if (nd->n > IX_LEAF_MAX)
            CHK_FAIL(c, "leaf %u overfull", nid);
        if (!is_root && nd->n < IX_LEAF_MIN && nid != c->rightmost_leaf)
            CHK_FAIL(c, "leaf %u underfull (%u)", nid, nd->n);
        if (!is_root && nd->n == 0)
            CHK_FAIL(c, "empty non-root leaf %u", nid);
        if (c->prev_leaf != IX_NONE && node(ix, c->prev_leaf)->next != nid)
            CHK_FAIL(c, "leaf chain broken before %u", nid);
        c->prev_leaf = nid;
        for (uint32_t i = 0; i < nd->n; i++) {
            uint32_t id = nd->w[i];
            if (!chk_live(ix, id))
                CHK_FAIL(c, "leaf %u holds dead id %u", nid, id);
            if (c->seen[id])
                CHK_FAIL(c, "id %u twice in tree", id);
            c->seen[id] = 1;
            if (c->prev_id != IX_NONE) {
                const ix_entry *e = ent(ix, id);
                if (cmp_id(ix, ekey(ix, e), eklen(e), c->prev_id) <= 0)
                    CHK_FAIL(c, "keys out of order at id %u", id);
            }
            c->prev_id = id;
            c->ids++;
        }
        *min = nd->n ? nd->w[0] : IX_NONE;
        return 0;
    }
    if (nd->kind != NODE_INNER)
        CHK_FAIL(c, "node %u of kind %u in tree", nid, nd->kind);
    if (nd->n > IX_INNER_MAX || nd->n < (is_root ? 1 : IX_INNER_MIN))
        CHK_FAIL(c, "inner %u has %u separators", nid, nd->n);
    for (uint32_t i = 0; i <= nd->n; i++) {
        uint32_t m;
        if (chk_node(c, nd->w[i], depth + 1, 0, &m))
            return 1;
        if (i == 0)
            *min = m;
        else if (nd->w[IX_SEP0 + i - 1] != m)
            CHK_FAIL(c, "inner %u separator %u is id %u, subtree minimum is %u",
                     nid, i - 1, nd->w[IX_SEP0 + i - 1], m);
    }
    return 0;
}

int kv_index__check(const kv_index *ix, char *msg, size_t msglen)
{
    ix_chk c = { ix, msg, msglen, NULL, 0, IX_NONE, IX_NONE, 0, 0, IX_NONE };
    int rc = 1;
    uint8_t *inhash = NULL, *amap = NULL;
    c.seen = calloc((size_t)ix->id_limit + 1, 1);
    inhash = calloc((size_t)ix->id_limit + 1, 1);
    amap = calloc((size_t)ix->arena.cap + 1, 1);
    if (!c.seen || !inhash || !amap) {
        snprintf(msg, msglen, "check: out of memory");
        goto out;
    }
    /* entries, key words, free entry list */
    uint64_t live = 0;
    for (uint32_t id = 0; id < ix->id_limit; id++) {
        const ix_entry *e = ent(ix, id);
        if (e->key_off == IX_FREE_KEY)
            continue;
        live++;
        uint32_t kl = eklen(e), w = key_words(kl);
        if (e->hash != ix_hash(ekey(ix, e), kl)) {
            snprintf(msg, msglen, "entry %u: stored hash wrong", id);
            goto out;
        }
        if (w) {
            if ((uint64_t)e->key_off + w > ix->atop ||
                (e->key_off >> IX_AR_SHIFT) != ((e->key_off + w - 1) >> IX_AR_SHIFT)) {
                snprintf(msg, msglen, "entry %u: key slot out of bounds", id);
                goto out;
            }
            for (uint32_t i = 0; i < w; i++) {
                if (amap[e->key_off + i]++) {
                    snprintf(msg, msglen, "entry %u: key words overlap", id);
                    goto out;
                }
            }
        }
    }
    if (live != ix->count) {
        snprintf(msg, msglen, "count %u but %llu live entries", ix->count, (unsigned long long)live);
        goto out;
    }
    uint64_t nfree = 0;
    for (uint32_t id = ix->free_id; id != IX_NONE; id = ent(ix, id)->rec_off) {
        if (id >= ix->id_limit || ent(ix, id)->key_off != IX_FREE_KEY || ++nfree > ix->id_limit) {
            snprintf(msg, msglen, "free entry list broken at %u", id);
            goto out;
        }
    }
    if (nfree + live != ix->id_limit) {
        snprintf(msg, msglen, "free %llu + live %llu != id_limit %u", (unsigned long long)nfree,
                 (unsigned long long)live, ix->id_limit);
        goto out;
    }
    /* key free lists */
    uint64_t fw = 0;
    for (uint32_t cl = 1; cl <= IX_CLASSES; cl++) {
        int bit = (ix->fmask[cl >> 6] >> (cl & 63)) & 1;
        if (bit != (ix->fhead[cl] != IX_NONE)) {
            snprintf(msg, msglen, "class %u mask bit wrong", cl);
            goto out;
        }
        for (uint32_t off = ix->fhead[cl]; off != IX_NONE; off = *aword(ix, off)) {
            if ((uint64_t)off + cl > ix->atop || (off >> IX_AR_SHIFT) != ((off + cl - 1) >> IX_AR_SHIFT)) {
                snprintf(msg, msglen, "free slot %u (class %u) out of bounds", off, cl);
                goto out;
            }
            for (uint32_t i = 0; i < cl; i++) {
                if (amap[off + i]++) {
                    snprintf(msg, msglen, "free slot %u (class %u) overlaps", off, cl);
                    goto out;
                }
            }
            fw += cl;
        }
    }
    if (fw != ix->free_words) {
        snprintf(msg, msglen, "free words %llu, counted %llu", (unsigned long long)ix->free_words,
                 (unsigned long long)fw);
        goto out;
    }
    /* hash tables */
    uint64_t inslots = 0;
    for (int t = 0; t < 1 + ix->migrating; t++) {
        const ix_table *tb = t ? &ix->old : &ix->cur;
        uint64_t used = 0;
        unsigned bits = (unsigned)__builtin_popcount(tb->idmask);
        if (tb->cap < IX_HT_MIN || tb->cap > IX_HT_MAX || bits < bitlen32(tb->cap - 1) + 1 ||
            tb->idmask != (bits == 32 ? UINT32_MAX : (1u << bits) - 1) || tb->rot != 32 - bits) {
            snprintf(msg, msglen, "table %d: capacity %u, id mask %#x, rotation %u", t, tb->cap,
                     tb->idmask, tb->rot);
            goto out;
        }
        if (t && ix->mig_pos >= tb->cap) {
            snprintf(msg, msglen, "old table migrated to %llu of %u slots",
                     (unsigned long long)ix->mig_pos, tb->cap);
            goto out;
        }
        const uint32_t floor = t ? (uint32_t)ix->mig_pos : 0;
        for (uint32_t i = floor; i < tb->cap; i++) {
            uint32_t s = tb->slots[i], v = s & tb->idmask;
            if (v == 0)
                continue;
            if (v == tb->idmask) {
                if (!t) {
                    snprintf(msg, msglen, "tombstone in cur");
                    goto out;
                }
                continue;
            }
            uint32_t id = v - 1;
            if (!chk_live(ix, id) || inhash[id]++) {
                snprintf(msg, msglen, "table %d slot %u: dead or duplicate id %u", t,
                         i, id);
                goto out;
            }
            const ix_entry *e = ent(ix, id);
            if ((s & ~tb->idmask) != (e->hash & ~tb->idmask)) {
                snprintf(msg, msglen, "table %d slot %u: tag mismatch", t, i);
                goto out;
            }
            uint32_t j = ht_home(tb, e->hash);
            for (j = j < floor ? floor : j; j != i; j = j + 1 == tb->cap ? floor : j + 1) {
                if ((tb->slots[j] & tb->idmask) == 0) {
                    snprintf(msg, msglen, "table %d slot %u unreachable", t, i);
                    goto out;
                }
            }
            used++;
        }
        if (used != tb->used) {
            snprintf(msg, msglen, "table %d used %u, counted %llu", t, tb->used, (unsigned long long)used);
            goto out;
        }
        inslots += used;
    }
    /* and the lookup itself finds every key where it is */
    for (uint32_t id = 0; id < ix->id_limit; id++) {
        const ix_entry *e = ent(ix, id);
        ix_where w;
        if (e->key_off != IX_FREE_KEY &&
            !(ix_find(ix, e->hash, ekey(ix, e), eklen(e), 1, &w) && w.id == id)) {
            snprintf(msg, msglen, "entry %u: a lookup of its key fails", id);
            goto out;
        }
    }
    if (inslots != ix->count) {
        snprintf(msg, msglen, "hash holds %llu ids, count %u", (unsigned long long)inslots, ix->count);
        goto out;
    }
    if ((uint64_t)ix->count > ht_hardload(&ix->cur)) {
        snprintf(msg, msglen, "cur table overfull");
        goto out;
    }
    /* tree */
    {
        uint32_t nid = ix->root;
        for (uint32_t d = 0; d < IX_MAX_DEPTH && nid < ix->node_limit && node(ix, nid)->kind == NODE_INNER; d++)
            nid = node(ix, nid)->w[node(ix, nid)->n];
        c.rightmost_leaf = nid;
        uint32_t m;
        if (chk_node(&c, ix->root, 1, 1, &m))
            goto out;
        if (c.leaf_depth != ix->height) {
            snprintf(msg, msglen, "height %u, leaves at %u", ix->height, c.leaf_depth);
            goto out;
        }
        if (c.prev_leaf != IX_NONE && node(ix, c.prev_leaf)->next != IX_NONE) {
            snprintf(msg, msglen, "last leaf has a next");
            goto out;
        }
        if (c.ids != (ix->unordered ? 0 : ix->count)) {
            snprintf(msg, msglen, "tree holds %llu ids, count %u%s", (unsigned long long)c.ids,
                     ix->count, ix->unordered ? " (unordered: none expected)" : "");
            goto out;
        }
        if (c.nodes != ix->nodes_live) {
            snprintf(msg, msglen, "tree has %u nodes, nodes_live %u", c.nodes, ix->nodes_live);
            goto out;
        }
        uint64_t fn = 0;
        for (uint32_t i = ix->free_node; i != IX_NONE; i = node(ix, i)->next) {
            if (i >= ix->node_limit || node(ix, i)->kind != NODE_FREE || ++fn > ix->node_limit) {
                snprintf(msg, msglen, "free node list broken at %u", i);
                goto out;
            }
        }
        if (fn != ix->free_nodes || fn + ix->nodes_live != ix->node_limit) {
            snprintf(msg, msglen, "node accounting: free %llu/%u live %u limit %u",
                     (unsigned long long)fn, ix->free_nodes, ix->nodes_live, ix->node_limit);
            goto out;
        }
    }
    rc = 0;
out:
    free(c.seen);
    free(inhash);
    free(amap);
    return rc;
}

/*
 * test_hash_vectors.c -- known-answer and streaming checks for kv_hash.c.
 *
 * The expected values were produced by Python's xxhash package
 * (xxhash.xxh64(data, seed).intdigest()), the reference the on-disk format
 * promises to match.  Inputs are generated from a formula rather than stored,
 * so the same bytes can be regenerated in Python to extend the table:
 *
 *     bytes(((i*131 + 7) ^ (i >> 3)) & 0xff for i in range(n))
 *
 * Build and run:
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror -fsanitize=address,undefined \
 *       -Icsrc csrc/kv_hash.c csrc/tests/test_hash_vectors.c -o /tmp/thv && /tmp/thv
 */
#include "kv_hash.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXLEN 4096

struct vector {
    size_t   len;
    uint64_t seed;
    uint64_t expect;
};

/* Every length 0..40 covers each tail path (bytes, 4-byte, 8-byte) on both
 * sides of the 32-byte stripe boundary; seed 0x9E37...8D is >= 2^63 and
 * 2^64-1 makes every seed addition in lane setup wrap. */
static const struct vector vectors[] = {
    {    0, 0x0000000000000000ULL, 0xEF46DB3751D8E999ULL },
    {    1, 0x0000000000000000ULL, 0xA96C7F0CE858BBB7ULL },
    {    2, 0x0000000000000000ULL, 0xC22C6A70AD56BBA6ULL },
    {    3, 0x0000000000000000ULL, 0xBED43740EE6332BBULL },
    {    4, 0x0000000000000000ULL, 0xFA212AE44B3BB23DULL },
    {    5, 0x0000000000000000ULL, 0xD339DCC9AC8E6776ULL },
    {    6, 0x0000000000000000ULL, 0x71CABDC85DA7FFA0ULL },
    {    7, 0x0000000000000000ULL, 0x2744460DD675D2C0ULL },
    {    8, 0x0000000000000000ULL, 0x994B676B71CE94DDULL },
    {    9, 0x0000000000000000ULL, 0xCFEC6CB22510745AULL },
    {   10, 0x0000000000000000ULL, 0xBEF6893DC05F4243ULL },
    {   11, 0x0000000000000000ULL, 0x616B4B7EEEAD4E9EULL },
    {   12, 0x0000000000000000ULL, 0xB88349A0C6220DCAULL },
    {   13, 0x0000000000000000ULL, 0x3D369A1F55DA45AAULL },
    {   14, 0x0000000000000000ULL, 0x454C62699F96CA21ULL },
    {   15, 0x0000000000000000ULL, 0xE34E2E0B41D24325ULL },
    {   16, 0x0000000000000000ULL, 0xA8884441F90DFD9AULL },
    {   17, 0x0000000000000000ULL, 0x79E672187287DF64ULL },
    {   18, 0x0000000000000000ULL, 0x3298F6D72930777BULL },
    {   19, 0x0000000000000000ULL, 0x3DE93204FDC87F27ULL },
    {   20, 0x0000000000000000ULL, 0xB99CB9C18522745BULL },
    {   21, 0x0000000000000000ULL, 0x7E1958E023C2F923ULL },
    {   22, 0x0000000000000000ULL, 0xA77E52A9F09F2B95ULL },
    {   23, 0x0000000000000000ULL, 0xA5B3AB8000B0BD38ULL },
    {   24, 0x0000000000000000ULL, 0x290A118A1136ADCAULL },
    {   25, 0x0000000000000000ULL, 0x5615F6B4C9AF4EC4ULL },
    {   26, 0x0000000000000000ULL, 0x43E09BDBAF9D166AULL },
    {   27, 0x0000000000000000ULL, 0x3D401AF9B496E424ULL },
    {   28, 0x0000000000000000ULL, 0x891EB80A017CA986ULL },
    {   29, 0x0000000000000000ULL, 0xE77B32242D00B651ULL },
    {   30, 0x0000000000000000ULL, 0x0E3BA5690BD817DDULL },
    {   31, 0x0000000000000000ULL, 0x81A3AE781A05B0DBULL },
    {   32, 0x0000000000000000ULL, 0xAA0BD4B60F1FDA14ULL },
    {   33, 0x0000000000000000ULL, 0x617624AC112BE148ULL },
    {   34, 0x0000000000000000ULL, 0xD3B44DC334EC6381ULL },
    {   35, 0x0000000000000000ULL, 0x4C99F643C4CBF4A9ULL },
    {   36, 0x0000000000000000ULL, 0x76A5BD5556FD8259ULL },
    {   37, 0x0000000000000000ULL, 0x9BBBFD2347BFECFDULL },
    {   38, 0x0000000000000000ULL, 0x0240A61171725BA8ULL },
    {   39, 0x0000000000000000ULL, 0x8EFC40E0E7EA51E6ULL },
    {   40, 0x0000000000000000ULL, 0x5A1595D9CB69776AULL },
    {   63, 0x0000000000000000ULL, 0xB4D09249312E18F9ULL },
    {   64, 0x0000000000000000ULL, 0xA5E01CC99D8C4C3FULL },
    {   65, 0x0000000000000000ULL, 0x1BDC744E4F186F5BULL },
    {   96, 0x0000000000000000ULL, 0x3CDC7E2C41DC6A91ULL },
    {  100, 0x0000000000000000ULL, 0x58AE6D3682D42CE5ULL },
    { 1000, 0x0000000000000000ULL, 0x9F91FF9C78545E83ULL },
    {    0, 0x9E3779B185EBCA8DULL, 0x0B303D920EC349DFULL },
    {    1, 0x9E3779B185EBCA8DULL, 0x76349A430E97F416ULL },
    {    2, 0x9E3779B185EBCA8DULL, 0xD68D54A8368627E9ULL },
    {    3, 0x9E3779B185EBCA8DULL, 0x5BDE7CC0C6B9FDA0ULL },
    {    4, 0x9E3779B185EBCA8DULL, 0xBEAA34E32EEE8B3DULL },
    {    5, 0x9E3779B185EBCA8DULL, 0x90C44C086D9CDC99ULL },
    {    6, 0x9E3779B185EBCA8DULL, 0x702937F06B646B46ULL },
    {    7, 0x9E3779B185EBCA8DULL, 0xA6F6B8935B53ADEEULL },
    {    8, 0x9E3779B185EBCA8DULL, 0xA2F8D42E3C57A4FFULL },
    {    9, 0x9E3779B185EBCA8DULL, 0x5FCCFB60238C1844ULL },
    {   10, 0x9E3779B185EBCA8DULL, 0xD4DFB19BB1D27BFFULL },
    {   11, 0x9E3779B185EBCA8DULL, 0x43280751514B1B1EULL },
    {   12, 0x9E3779B185EBCA8DULL, 0x6DB675C201A4F51BULL },
    {   13, 0x9E3779B185EBCA8DULL, 0xED95FA74D9A28E7AULL },
    {   14, 0x9E3779B185EBCA8DULL, 0x65FF56DE07D8DD92ULL },
    {   15, 0x9E3779B185EBCA8DULL, 0xA41862AC83CEE7DBULL },
    {   16, 0x9E3779B185EBCA8DULL, 0xED2E4DDF153E5245ULL },
    {   17, 0x9E3779B185EBCA8DULL, 0xF231FF960EA3FE33ULL },
    {   18, 0x9E3779B185EBCA8DULL, 0x37AF17BE7F43D71AULL },
    {   19, 0x9E3779B185EBCA8DULL, 0xFA292647898FB3B2ULL },
    {   20, 0x9E3779B185EBCA8DULL, 0xEE12410D78CD5B16ULL },
    {   21, 0x9E3779B185EBCA8DULL, 0x7B0005C635A6D9AFULL },
    {   22, 0x9E3779B185EBCA8DULL, 0x90A09DAE88D4C2B2ULL },
    {   23, 0x9E3779B185EBCA8DULL, 0xDCCECEF90F633FDDULL },
    {   24, 0x9E3779B185EBCA8DULL, 0x0DA499EF3F00DD8CULL },
    {   25, 0x9E3779B185EBCA8DULL, 0x7496B147C4D4933CULL },
    {   26, 0x9E3779B185EBCA8DULL, 0x6CA703C0BA12834BULL },
    {   27, 0x9E3779B185EBCA8DULL, 0xBEF6B9B28D230048ULL },
    {   28, 0x9E3779B185EBCA8DULL, 0x2D9CFA8CA64FD208ULL },
    {   29, 0x9E3779B185EBCA8DULL, 0x511E5C4A6E9FDD0AULL },
    {   30, 0x9E3779B185EBCA8DULL, 0xF406A50106D60A33ULL },
    {   31, 0x9E3779B185EBCA8DULL, 0xFF7C7C8E7B4D7577ULL },
    {   32, 0x9E3779B185EBCA8DULL, 0x62F435B38039D6C1ULL },
    {   33, 0x9E3779B185EBCA8DULL, 0x44C735DFE90DE797ULL },
    {   34, 0x9E3779B185EBCA8DULL, 0x5E70F93400DE4827ULL },
    {   35, 0x9E3779B185EBCA8DULL, 0x655964DEA16428EEULL },
    {   36, 0x9E3779B185EBCA8DULL, 0x283F12B4885CBF9AULL },
    {   37, 0x9E3779B185EBCA8DULL, 0x74E22C54D05889BDULL },
    {   38, 0x9E3779B185EBCA8DULL, 0xE6507B794C30AAB0ULL },
    {   39, 0x9E3779B185EBCA8DULL, 0x01C71C4ED2DE7B38ULL },
    {   40, 0x9E3779B185EBCA8DULL, 0x7009C37313B42B85ULL },
    {   63, 0x9E3779B185EBCA8DULL, 0x6AEE59F199F30B95ULL },
    {   64, 0x9E3779B185EBCA8DULL, 0x944E2FFF40245C4EULL },
    {   65, 0x9E3779B185EBCA8DULL, 0x2C9F724D626E6EDCULL },
    {   96, 0x9E3779B185EBCA8DULL, 0x753704568B7FDA3DULL },
    {  100, 0x9E3779B185EBCA8DULL, 0x3A8B1AD3BF460591ULL },
    { 1000, 0x9E3779B185EBCA8DULL, 0x249EA5356FE7DBCCULL },
    {    0, 0xFFFFFFFFFFFFFFFFULL, 0x298F4C84B24F5380ULL },
    {    1, 0xFFFFFFFFFFFFFFFFULL, 0xD7F46261BA7C5B95ULL },
    {    4, 0xFFFFFFFFFFFFFFFFULL, 0x7EBCE9BBE6F6EEBDULL },
    {    8, 0xFFFFFFFFFFFFFFFFULL, 0x23470C129CFB3DC4ULL },
    {   31, 0xFFFFFFFFFFFFFFFFULL, 0x2DB78C499D258A31ULL },
    {   32, 0xFFFFFFFFFFFFFFFFULL, 0x8E2438D2215ECCEAULL },
    {   33, 0xFFFFFFFFFFFFFFFFULL, 0x577301F4BCED4328ULL },
    {   40, 0xFFFFFFFFFFFFFFFFULL, 0x025810F016FF71E5ULL },
    { 1000, 0xFFFFFFFFFFFFFFFFULL, 0xDA1CD084D01552AFULL },
};

static int failures;

static void fill(uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(((i * 131 + 7) ^ (i >> 3)) & 0xff);
}

static void check(const char *what, size_t len, uint64_t seed,
                  uint64_t got, uint64_t expect)
{
    if (got != expect) {
        failures++;
        printf("MISMATCH %s len=%zu seed=0x%016" PRIX64
               ": got 0x%016" PRIX64 " want 0x%016" PRIX64 "\n",
               what, len, seed, got, expect);
    }
}

/* xorshift64*: deterministic across platforms, unlike rand(). */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t streamed(const uint8_t *buf, size_t len, uint64_t seed)
{
    kv_xxh64_state st;
    size_t off = 0;

    kv_xxh64_reset(&st, seed);
    while (off < len) {
        /* Mostly short chunks so the 32-byte buffer is crossed often,
         * sometimes long ones so the direct stripe path runs too. */
        size_t chunk = (rng() % 4 == 0) ? (size_t)(rng() % 200)
                                        : (size_t)(rng() % 40);
        if (chunk > len - off)
            chunk = len - off;
        kv_xxh64_update(&st, buf + off, chunk);
        off += chunk;
    }
    uint64_t h = kv_xxh64_digest(&st);
    /* digest must not consume the state */
    if (kv_xxh64_digest(&st) != h) {
        failures++;
        printf("MISMATCH digest is not repeatable, len=%zu\n", len);
    }
    return h;
}

int main(void)
{
    static uint8_t buf[MAXLEN + 8];
    size_t nvec = sizeof vectors / sizeof vectors[0];

    fill(buf, sizeof buf);

    for (size_t i = 0; i < nvec; i++) {
        const struct vector *v = &vectors[i];
        check("oneshot", v->len, v->seed,
              kv_xxh64(buf, v->len, v->seed), v->expect);
        check("stream", v->len, v->seed,
              streamed(buf, v->len, v->seed), v->expect);
    }

    /* NULL is allowed for empty input, in both APIs. */
    {
        kv_xxh64_state st;
        kv_xxh64_reset(&st, 0);
        kv_xxh64_update(&st, NULL, 0);
        check("oneshot NULL", 0, 0, kv_xxh64(NULL, 0, 0), 0xEF46DB3751D8E999ULL);
        check("stream NULL", 0, 0, kv_xxh64_digest(&st), 0xEF46DB3751D8E999ULL);
    }

    /* Streaming with random splits, and at odd addresses so unaligned loads
     * are exercised, must equal one-shot for every length and seed. */
    for (int trial = 0; trial < 3000; trial++) {
        size_t len = (size_t)(rng() % (MAXLEN + 1));
        size_t off = (size_t)(rng() % 8);
        uint64_t seed = (trial % 3 == 0) ? 0 : rng();
        for (size_t i = 0; i < len; i++)
            buf[off + i] = (uint8_t)rng();
        check("split", len, seed, streamed(buf + off, len, seed),
              kv_xxh64(buf + off, len, seed));
    }

    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("ok: %zu vectors, 3000 random splits\n", nvec);
    return 0;
}

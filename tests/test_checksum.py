"""Bit-exactness of the C XXH64 (csrc/kv_hash.c) against the xxhash package.

The record checksum is part of the on-disk format and tools verify files with
Python's xxhash, so the native hash must agree with xxhash.xxh64() for every
length, every 64-bit seed, every input alignment and however a streamed input
is split.  Every random input comes from a seeded random.Random, so a failure
reproduces exactly.
"""

import random

import pytest
import xxhash

from engine._ffi import ffi, lib

U64_MAX = 2**64 - 1
# 0 and 1 are the common seeds; 2**63 and U64_MAX have the top bit set, and
# U64_MAX makes every seed addition in the lane setup wrap around.
SEEDS = [0, 1, 2**63, 0x9E3779B185EBCA8D, U64_MAX]
MAXLEN = 4096


def ref(data, seed):
    return xxhash.xxh64(data, seed).intdigest()


def streamed(ptr, length, seed, rng, max_chunk):
    """Feed ptr[0:length] to the streaming API in random-sized chunks."""
    st = ffi.new("kv_xxh64_state *")
    lib.kv_xxh64_reset(st, seed)
    off = 0
    while off < length:
        # Zero-length chunks are legal and must be no-ops.
        n = min(rng.randint(0, max_chunk), length - off)
        lib.kv_xxh64_update(st, ptr + off, n)
        off += n
    return lib.kv_xxh64_digest(st)


def first_mismatches(pairs, limit=5):
    return [p for p in pairs if p[1] != p[2]][:limit]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_length_0_to_4096(seed):
    # One buffer, hashed as a prefix of every length and again at an odd
    # start address so unaligned 8- and 4-byte loads are covered too.
    buf = random.Random(seed).randbytes(MAXLEN + 8)
    cbuf = ffi.from_buffer(buf)
    mv = memoryview(buf)
    results = []
    for n in range(MAXLEN + 1):
        results.append((("aligned", n), lib.kv_xxh64(cbuf, n, seed), ref(mv[:n], seed)))
        off = 1 + n % 7
        results.append(
            (("offset", off, n), lib.kv_xxh64(cbuf + off, n, seed), ref(mv[off : off + n], seed))
        )
    assert first_mismatches(results) == []


@pytest.mark.parametrize("size", [2**20, 25 * 2**20 + 7])
@pytest.mark.parametrize("seed", [0, U64_MAX])
def test_large_inputs(size, seed):
    data = random.Random(size ^ seed).randbytes(size)
    expect = ref(data, seed)
    assert lib.kv_xxh64(data, len(data), seed) == expect  # bytes directly
    assert lib.kv_xxh64(ffi.from_buffer(data), len(data), seed) == expect
    rng = random.Random(seed)
    assert streamed(ffi.from_buffer(data), size, seed, rng, max_chunk=200_000) == expect


@pytest.mark.parametrize("seed", SEEDS)
def test_streaming_random_splits_equal_oneshot(seed):
    rng = random.Random(1000 + seed % 997)
    buf = rng.randbytes(MAXLEN + 8)
    cbuf = ffi.from_buffer(buf)
    mv = memoryview(buf)
    results = []
    for _ in range(150):
        n = rng.randint(0, MAXLEN)
        off = rng.randint(0, 7)
        # Mostly chunks below the 32-byte stripe so the internal buffer is
        # filled and drained across calls; sometimes long ones so whole
        # stripes are consumed straight from the caller's memory.
        max_chunk = rng.choice([3, 7, 31, 33, 100, 1000])
        got = streamed(cbuf + off, n, seed, rng, max_chunk)
        results.append(((n, off, max_chunk), got, lib.kv_xxh64(cbuf + off, n, seed)))
        results.append(((n, off, "ref"), got, ref(mv[off : off + n], seed)))
    assert first_mismatches(results) == []


@pytest.mark.parametrize("seed", SEEDS)
def test_bytes_passed_directly(seed):
    rng = random.Random(seed)
    for n in [*list(range(0, 70)), 255, 256, 1000, 4096]:
        data = rng.randbytes(n)
        assert lib.kv_xxh64(data, n, seed) == ref(data, seed), n
        st = ffi.new("kv_xxh64_state *")
        lib.kv_xxh64_reset(st, seed)
        lib.kv_xxh64_update(st, data[: n // 3], n // 3)
        lib.kv_xxh64_update(st, data[n // 3 :], n - n // 3)
        assert lib.kv_xxh64_digest(st) == ref(data, seed), n


@pytest.mark.parametrize("seed", SEEDS)
def test_empty_input_and_null(seed):
    expect = ref(b"", seed)
    assert lib.kv_xxh64(ffi.NULL, 0, seed) == expect
    assert lib.kv_xxh64(b"", 0, seed) == expect
    st = ffi.new("kv_xxh64_state *")
    lib.kv_xxh64_reset(st, seed)
    assert lib.kv_xxh64_digest(st) == expect
    lib.kv_xxh64_update(st, ffi.NULL, 0)
    assert lib.kv_xxh64_digest(st) == expect


def test_digest_does_not_consume_state_and_reset_reuses_it():
    rng = random.Random(7)
    data = rng.randbytes(200)
    st = ffi.new("kv_xxh64_state *")
    # A state reused after reset must not remember its previous input or seed.
    lib.kv_xxh64_reset(st, U64_MAX)
    lib.kv_xxh64_update(st, rng.randbytes(77), 77)
    lib.kv_xxh64_reset(st, 5)
    fed = b""
    for piece in (data[:10], data[10:45], data[45:46], data[46:]):
        lib.kv_xxh64_update(st, piece, len(piece))
        fed += piece
        # Digest in the middle of a stream, twice: both must be the hash of
        # the prefix so far, and the stream must carry on unaffected.
        assert lib.kv_xxh64_digest(st) == ref(fed, 5)
        assert lib.kv_xxh64_digest(st) == ref(fed, 5)
    assert fed == data

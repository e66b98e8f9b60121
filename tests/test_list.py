"""list(): byte order, prefixes, limits and cursors, also across deleted and expired keys."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kv_helpers import FakeClock

import engine
from engine import KeyInfo, KVError, ListResult


def names(result: ListResult) -> list[str]:
    return [k.name for k in result.keys]


def walk(kv: engine.Namespace, limit: int, prefix: str | None = None) -> list[ListResult]:
    """Every page of a listing, checking the cursor contract on the way."""
    pages = [kv.list(prefix=prefix, limit=limit)]
    while not pages[-1].list_complete:
        assert isinstance(pages[-1].cursor, str) and pages[-1].cursor
        assert len(pages[-1].keys) == limit, "a page before the last must be full"
        pages.append(kv.list(prefix=prefix, limit=limit, cursor=pages[-1].cursor))
        assert len(pages) < 10_000
    assert pages[-1].cursor is None
    assert len(pages[-1].keys) <= limit
    return pages


KEY_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


@settings(max_examples=40, deadline=None)
@given(keys=st.sets(st.text(KEY_CHARS, min_size=1, max_size=6), max_size=30))
def test_order_is_utf8_byte_order_for_any_text(
    tmp_path_factory: pytest.TempPathFactory, keys: set[str]
) -> None:
    keys -= {".", ".."}
    with engine.open(tmp_path_factory.mktemp("db")) as db:
        kv = db.namespace()
        for key in keys:
            kv.put(key, "v")
        assert names(kv.list()) == sorted(keys, key=str.encode)


def test_astral_characters_sort_after_the_bmp(kv: engine.Namespace) -> None:
    # UTF-16 order (JavaScript's <) would put U+1F600 before U+E000; UTF-8 order does not.
    for key in ["\U0001f600", "\ue000", "\uffff", "z", "\x7f", "\x80"]:
        kv.put(key, "v")
    assert names(kv.list()) == ["z", "\x7f", "\x80", "\ue000", "\uffff", "\U0001f600"]


def test_prefix_with_non_ascii_and_partial_characters(kv: engine.Namespace) -> None:
    for key in ["é", "éa", "e", "ê", "€"]:
        kv.put(key, "v")
    assert names(kv.list(prefix="é")) == ["é", "éa"]
    assert names(kv.list(prefix="€")) == ["€"]


def test_prefix_of_512_bytes_works_513_raises_414(kv: engine.Namespace) -> None:
    kv.put("p" * 512, "v")
    assert names(kv.list(prefix="p" * 512)) == ["p" * 512]
    with pytest.raises(KVError) as info:
        kv.list(prefix="€" * 171)
    assert info.value.status == 414
    assert str(info.value) == (
        "KV GET failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    )


def test_limit_1000_is_allowed_and_fractions_truncate(kv: engine.Namespace) -> None:
    kv.put_many([{"key": f"k{i:04}", "value": ""} for i in range(1200)])
    assert len(kv.list(limit=1000).keys) == 1000
    assert len(kv.list(limit=None).keys) == 1000
    assert len(kv.list(limit=2.9).keys) == 2
    assert len(kv.list(limit=0.5).keys) == 1000  # truncates to 0: the default


@pytest.mark.parametrize("limit", [1, 2, 7, 100, 1000])
def test_pages_cover_every_key_once_in_order(kv: engine.Namespace, limit: int) -> None:
    keys = sorted((f"k{i:05}" for i in range(1500)), key=str.encode)
    kv.put_many([{"key": k, "value": ""} for k in keys[:750]])
    kv.put_many([{"key": k, "value": ""} for k in keys[750:]])
    if limit == 1:
        keys = keys[:40]
        kv.delete_many(f"k{i:05}" for i in range(40, 1500))
    listed = [name for page in walk(kv, limit) for name in names(page)]
    assert listed == keys


def test_pages_stay_full_across_deleted_and_expired_keys(
    kv: engine.Namespace, clock: FakeClock
) -> None:
    rng = random.Random(7)
    keys = [f"key{i:05}" for i in range(3000)]
    expiring = set(rng.sample(keys, 1000))
    kv.put_many(
        [
            {"key": k, "value": "v", **({"expiration_ttl": 60} if k in expiring else {})}
            for k in keys
        ]
    )
    deleted = set(rng.sample(sorted(set(keys) - expiring), 1000))
    kv.delete_many(sorted(deleted))
    clock.advance(60)
    # Runs of dead keys longer than a page too.
    kv.delete_many(keys[100:1100])
    alive = [
        k for k in keys if k not in expiring and k not in deleted and not 100 <= int(k[3:]) < 1100
    ]
    for limit in (1, 10, 97, 1000):
        pages = walk(kv, limit)
        assert [n for page in pages for n in names(page)] == alive


def test_prefix_pages_with_cursor(kv: engine.Namespace) -> None:
    for i in range(25):
        kv.put(f"a/{i:02}", "v")
        kv.put(f"b/{i:02}", "v")
    pages = walk(kv, 10, prefix="b/")
    assert [n for p in pages for n in names(p)] == [f"b/{i:02}" for i in range(25)]
    assert [len(p.keys) for p in pages] == [10, 10, 5]


def test_exactly_limit_keys_ends_complete(kv: engine.Namespace) -> None:
    for key in "abc":
        kv.put(key, "v")
    assert kv.list(limit=3) == ListResult([KeyInfo("a"), KeyInfo("b"), KeyInfo("c")], True, None)


def test_cursor_when_only_expired_or_deleted_keys_follow(
    kv: engine.Namespace, clock: FakeClock
) -> None:
    kv.put("a", "v")
    kv.put("b", "v")
    kv.put("c", "v", expiration_ttl=60)
    kv.put("d", "v")
    first = kv.list(limit=2)
    assert not first.list_complete
    kv.delete("d")
    clock.advance(60)
    assert kv.list(limit=2, cursor=first.cursor) == ListResult([], True, None)


def test_cursor_continues_strictly_after_its_key_when_that_key_is_deleted(
    kv: engine.Namespace,
) -> None:
    for key in "abcd":
        kv.put(key, "v")
    first = kv.list(limit=2)
    kv.delete("b")
    kv.put("b0", "v")  # ahead of "b": appears
    kv.put("b", "v")  # the cursor's own key is behind it
    assert names(kv.list(cursor=first.cursor)) == ["b0", "c", "d"]


def test_cursor_is_opaque_but_stable(kv: engine.Namespace) -> None:
    for key in "abcd":
        kv.put(key, "v")
    assert kv.list(limit=2).cursor == kv.list(limit=2).cursor


@pytest.mark.parametrize("cursor", ["!!!", "a", "=" * 4])
def test_malformed_cursor_is_a_400(kv: engine.Namespace, cursor: str) -> None:
    with pytest.raises(KVError) as info:
        kv.list(cursor=cursor)
    assert info.value.status == 400
    assert str(info.value) == "KV GET failed: 400 Invalid cursor."


def test_listing_shows_the_newest_version(kv: engine.Namespace) -> None:
    kv.put("k", "v", metadata={"v": 1}, expiration_ttl=600)
    kv.put("k", "v", metadata={"v": 2})
    assert kv.list().keys == [KeyInfo("k", None, {"v": 2})]


def test_list_with_none_prefix_and_cursor_is_the_default(kv: engine.Namespace) -> None:
    kv.put("k", "v")
    assert kv.list(prefix=None, limit=None, cursor=None) == kv.list()


def test_cursor_from_another_prefix_is_a_position_in_key_order(kv: engine.Namespace) -> None:
    for key in ["a1", "a2", "b1", "b2", "c1"]:
        kv.put(key, "v")
    before_b = kv.list(prefix="a", limit=1).cursor  # after "a1"
    assert names(kv.list(prefix="b", cursor=before_b)) == ["b1", "b2"]
    assert names(kv.list(cursor=before_b)) == ["a2", "b1", "b2", "c1"]
    first_b = kv.list(prefix="b", limit=1).cursor
    assert names(kv.list(prefix="c", cursor=first_b)) == ["c1"]
    past_b = kv.list(limit=4).cursor  # after "b2"
    assert kv.list(prefix="b", cursor=past_b) == ListResult([], True, None)

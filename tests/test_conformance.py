"""Workers KV conformance: shared/workers-kv-spec.md section 9, item by item.

Each test is named after its checklist item (test_NN_...).  Where Workers KV
raises a JavaScript TypeError whose cause is a JavaScript artifact, the test
follows the spec's "Python mapping" section instead, and says so.
"""

from __future__ import annotations

import array
import json
import math
import re
from pathlib import Path

import pytest
from kv_helpers import START, FakeClock

import engine
from engine import KeyInfo, KVError, ListResult, ValueWithMetadata

NOW = math.floor(START)


@pytest.fixture
def kv(db: engine.Store) -> engine.Namespace:
    return db.namespace("conformance")


def kv_error(status: int, message: str) -> pytest.RaisesExc[KVError]:
    """Expects KVError with exactly this status and message."""
    return pytest.raises(KVError, match=f"^{re.escape(message)}$")


def check_status(info: pytest.ExceptionInfo[KVError], status: int) -> None:
    assert info.value.status == status


# -- 1-8: reads and value types ---------------------------------------------------------


def test_01_put_then_get_returns_text_by_default(kv: engine.Namespace) -> None:
    kv.put("k", "v")
    assert kv.get("k") == "v"
    assert kv.get("k", "text") == "v"


def test_02_get_missing_key_returns_none(kv: engine.Namespace) -> None:
    assert kv.get("missing") is None


def test_03_get_with_metadata_of_missing_key_is_all_none(kv: engine.Namespace) -> None:
    assert kv.get_with_metadata("missing") == ValueWithMetadata(None, None)


def test_04_array_buffer_returns_exact_bytes_including_invalid_utf8(
    kv: engine.Namespace,
) -> None:
    raw = bytes(range(256))
    kv.put("k", raw)
    assert kv.get("k", "arrayBuffer") == raw
    assert kv.get("k", "bytes") == raw


def test_05_stream_yields_exactly_the_stored_bytes(kv: engine.Namespace) -> None:
    raw = bytes(range(256)) * 10
    kv.put("k", raw)
    stream = kv.get("k", "stream")
    try:
        assert stream.read() == raw
    finally:
        stream.close()


def test_06_json_parses_and_non_json_raises(kv: engine.Namespace) -> None:
    kv.put("j", '{"a": [1, 2.5, "x", null, true]}')
    assert kv.get("j", "json") == {"a": [1, 2.5, "x", None, True]}
    kv.put("not-json", "{nope")
    with pytest.raises(json.JSONDecodeError):
        kv.get("not-json", "json")


def test_07_unknown_type_raises_also_for_missing_key(kv: engine.Namespace) -> None:
    # Python mapping: ValueError, checked before any lookup (a missing key raises too).
    text = 'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".'
    kv.put("k", "v")
    for key in ("k", "missing"):
        with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
            kv.get(key, "banana")
        with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
            kv.get_with_metadata(key, "banana")


def test_08_empty_value_reads_back_empty_not_none(kv: engine.Namespace) -> None:
    kv.put("k", "")
    assert kv.get("k") == ""
    assert kv.get("k", "bytes") == b""
    assert kv.get_with_metadata("k") == ValueWithMetadata("", None)
    assert kv.get_many(["k"]) == {"k": ""}


# -- 9-13: keys ---------------------------------------------------------------------------


def test_09_keys_are_case_sensitive(kv: engine.Namespace) -> None:
    kv.put("key", "lower")
    kv.put("KEY", "upper")
    assert kv.get("key") == "lower"
    assert kv.get("KEY") == "upper"


SINGLE_KEY_OPS = {
    "get": lambda kv, key: kv.get(key),
    "get_with_metadata": lambda kv, key: kv.get_with_metadata(key),
    "put": lambda kv, key: kv.put(key, "v"),
    "delete": lambda kv, key: kv.delete(key),
}


@pytest.mark.parametrize("op", sorted(SINGLE_KEY_OPS))
def test_10_empty_key_raises(kv: engine.Namespace, op: str) -> None:
    # Python mapping: ValueError with Workers' text.
    with pytest.raises(ValueError, match=r"^Key name cannot be empty\.$"):
        SINGLE_KEY_OPS[op](kv, "")


@pytest.mark.parametrize("op", sorted(SINGLE_KEY_OPS))
@pytest.mark.parametrize("key", [".", ".."])
def test_11_dot_keys_raise(kv: engine.Namespace, op: str, key: str) -> None:
    with pytest.raises(ValueError, match=f'^"{re.escape(key)}" is not allowed as a key name\\.$'):
        SINGLE_KEY_OPS[op](kv, key)


@pytest.mark.parametrize(
    ("op", "verb"),
    [("get", "GET"), ("get_with_metadata", "GET"), ("put", "PUT"), ("delete", "DELETE")],
)
def test_12_key_of_512_bytes_works_513_raises_414(kv: engine.Namespace, op: str, verb: str) -> None:
    SINGLE_KEY_OPS[op](kv, "x" * 512)
    message = f"KV {verb} failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    with kv_error(414, message) as info:
        SINGLE_KEY_OPS[op](kv, "x" * 513)
    check_status(info, 414)


def test_12_key_of_512_bytes_round_trips(kv: engine.Namespace) -> None:
    kv.put("x" * 512, "v")
    assert kv.get("x" * 512) == "v"
    assert [k.name for k in kv.list().keys] == ["x" * 512]


def test_13_key_length_counts_utf8_bytes(kv: engine.Namespace) -> None:
    key = "€" * 171  # 3 bytes each: 513
    with kv_error(
        414, "KV PUT failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    ):
        kv.put(key, "v")
    kv.put("€" * 170 + "xx", "v")  # 512 bytes
    assert kv.get("€" * 170 + "xx") == "v"


# -- 14-17: value and metadata limits -----------------------------------------------------

MAX_VALUE = 26_214_400


def test_14_value_of_25_mib_accepted_one_more_byte_413(kv: engine.Namespace) -> None:
    kv.put("k", b"a" * MAX_VALUE)
    assert len(kv.get("k", "bytes")) == MAX_VALUE
    with kv_error(
        413, "KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400."
    ) as info:
        kv.put("k", b"b" * (MAX_VALUE + 1))
    check_status(info, 413)
    assert kv.get("k", "bytes") == b"a" * MAX_VALUE


def _metadata_of_json_length(n: int) -> dict[str, str]:
    meta = {"m": ""}
    meta["m"] = "x" * (n - len(json.dumps(meta, separators=(",", ":"))))
    return meta


def test_15_metadata_of_1024_bytes_accepted_1025_raises_413(kv: engine.Namespace) -> None:
    kv.put("k", "v", metadata=_metadata_of_json_length(1024))
    assert kv.get_with_metadata("k").metadata == _metadata_of_json_length(1024)
    with kv_error(413, "KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024."):
        kv.put("k", "v", metadata=_metadata_of_json_length(1025))


def test_15_metadata_length_is_compact_utf8_json(kv: engine.Namespace) -> None:
    # 341 x "€" = 1023 bytes inside quotes = 1025: counted in UTF-8, not code points.
    with kv_error(413, "KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024."):
        kv.put("k", "v", metadata="€" * 341)
    # compact separators: {"a": 1} counts as {"a":1}, 7 bytes
    kv.put("k", "v", metadata=["y" * 1018, 1])  # ["yyy…",1] = 1018 + 6 = 1024
    assert kv.get_with_metadata("k").metadata == ["y" * 1018, 1]


@pytest.mark.parametrize(
    "meta", [{"a": {"b": [1, 2, None]}, "ü": "ß"}, 42, -1.5, "a string", True, [1, "x"]]
)
def test_16_metadata_round_trips_through_get_and_list(kv: engine.Namespace, meta: object) -> None:
    kv.put("k", "v", metadata=meta)
    assert kv.get_with_metadata("k") == ValueWithMetadata("v", meta)
    assert kv.list().keys == [KeyInfo("k", None, meta)]


def test_17_no_metadata_stores_none(kv: engine.Namespace) -> None:
    kv.put("a", "v", metadata=None)
    kv.put("b", "v")
    assert kv.get_with_metadata("a").metadata is None
    assert kv.get_with_metadata("b").metadata is None
    assert kv.list().keys == [KeyInfo("a"), KeyInfo("b")]


# -- 18-27: expiration options -------------------------------------------------------------


def test_18_ttl_60_is_stored_as_floor_now_plus_60(kv: engine.Namespace) -> None:
    kv.put("k", "v", expiration_ttl=60)
    assert kv.list().keys == [KeyInfo("k", NOW + 60)]


def test_19_ttl_59_raises(kv: engine.Namespace) -> None:
    with kv_error(
        400, "KV PUT failed: 400 Invalid expiration_ttl of 59. Expiration TTL must be at least 60."
    ) as info:
        kv.put("k", "v", expiration_ttl=59)
    check_status(info, 400)
    assert kv.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1, -3600])
def test_20_ttl_zero_or_negative_raises(kv: engine.Namespace, ttl: int) -> None:
    with kv_error(
        400,
        f"KV PUT failed: 400 Invalid expiration_ttl of {ttl}. "
        "Please specify integer greater than 0.",
    ):
        kv.put("k", "v", expiration_ttl=ttl)


@pytest.mark.parametrize("ttl", ["120", "abc", True, [60]])
def test_20_ttl_non_numeric_raises_type_error(kv: engine.Namespace, ttl: object) -> None:
    # Python mapping: a non-number where a number is required is a TypeError
    # (JavaScript's ToNumber coercion is not copied).
    with pytest.raises(TypeError, match="expiration_ttl"):
        kv.put("k", "v", expiration_ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("exp", [NOW, NOW - 1, 0, -5])
def test_21_expiration_not_after_now_raises(kv: engine.Namespace, exp: int) -> None:
    with kv_error(
        400,
        f"KV PUT failed: 400 Invalid expiration of {exp}. Please specify integer greater than "
        "the current number of seconds since the UNIX epoch.",
    ):
        kv.put("k", "v", expiration=exp)


@pytest.mark.parametrize("ahead", [1, 30, 59])
def test_22_expiration_less_than_60_s_ahead_raises(kv: engine.Namespace, ahead: int) -> None:
    with kv_error(
        400,
        f"KV PUT failed: 400 Invalid expiration of {NOW + ahead}. Expiration times must be "
        "at least 60 seconds in the future.",
    ):
        kv.put("k", "v", expiration=NOW + ahead)


def test_23_expiration_exactly_now_plus_60_accepted(kv: engine.Namespace) -> None:
    kv.put("k", "v", expiration=NOW + 60)
    assert kv.list().keys == [KeyInfo("k", NOW + 60)]


@pytest.mark.parametrize("bad_expiration", [0, NOW, NOW + 1, "junk"])
def test_24_ttl_wins_and_expiration_is_not_validated(
    kv: engine.Namespace, bad_expiration: object
) -> None:
    kv.put("k", "v", expiration=bad_expiration, expiration_ttl=120)  # type: ignore[arg-type]
    assert kv.list().keys == [KeyInfo("k", NOW + 120)]


def test_25_fractions_truncate_toward_zero(kv: engine.Namespace) -> None:
    kv.put("a", "v", expiration_ttl=60.9)
    kv.put("b", "v", expiration=NOW + 60.9)
    assert kv.list().keys == [KeyInfo("a", NOW + 60), KeyInfo("b", NOW + 60)]
    with kv_error(
        400, "KV PUT failed: 400 Invalid expiration_ttl of 59. Expiration TTL must be at least 60."
    ):
        kv.put("c", "v", expiration_ttl=59.9)
    with kv_error(
        400,
        "KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer greater than 0.",
    ):
        kv.put("c", "v", expiration_ttl=-0.5)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_25_non_finite_numbers_raise_type_error(kv: engine.Namespace, bad: float) -> None:
    with pytest.raises(TypeError, match="expiration_ttl"):
        kv.put("k", "v", expiration_ttl=bad)


@pytest.mark.parametrize("option", ["expiration", "expiration_ttl"])
def test_26_numeric_strings_are_not_coerced(kv: engine.Namespace, option: str) -> None:
    # Python mapping: "120" is a str where a number is required -> TypeError.
    with pytest.raises(TypeError, match=option):
        kv.put("k", "v", **{option: str(NOW + 120)})


def test_27_expiration_after_2038_works(kv: engine.Namespace) -> None:
    # Python mapping: the binding's int32 range is a JavaScript artifact, not copied.
    kv.put("k", "v", expiration=2_147_483_648)
    kv.put("t", "v", expiration_ttl=2_000_000_000)
    kv.put("u", "v", expiration=2**32 - 1)
    assert kv.list().keys == [
        KeyInfo("k", 2_147_483_648),
        KeyInfo("t", NOW + 2_000_000_000),
        KeyInfo("u", 2**32 - 1),
    ]


@pytest.mark.parametrize(
    ("option", "number"),
    [
        ("expiration", 2**32),
        ("expiration", 2**64),
        ("expiration_ttl", 2**32 - NOW),
        ("expiration_ttl", 2**70),
    ],
)
def test_27_expiration_beyond_2106_is_refused(
    kv: engine.Namespace, option: str, number: int
) -> None:
    # The index holds 32-bit expirations; a later one would be listed and applied wrongly.
    with pytest.raises(TypeError, match=f"^{option} of {number} is out of range"):
        kv.put("k", "v", **{option: number})
    with pytest.raises(TypeError, match="out of range"):
        kv.put_many([{"key": "k", "value": "v", option: number}])
    assert kv.get("k") is None


# -- 28-33: expiry, overwrite, delete, cache_ttl ----------------------------------------------


def test_28_key_is_gone_from_the_expiration_instant(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("k", "v", expiration_ttl=60)
    clock.now = NOW + 59.999
    assert kv.get("k") == "v"
    clock.now = NOW + 60
    assert kv.get("k") is None


def test_29_expired_key_is_gone_everywhere(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("k", "v", expiration=NOW + 60, metadata={"m": 1})
    kv.put("other", "o")
    clock.now = NOW + 60
    assert kv.get_with_metadata("k") == ValueWithMetadata(None, None)
    assert kv.get_many(["k", "other"]) == {"k": None, "other": "o"}
    assert kv.get_many(["k"], with_metadata=True) == {"k": None}
    assert kv.list().keys == [KeyInfo("other")]


def test_30_overwrite_without_options_drops_expiration_and_metadata(
    kv: engine.Namespace, clock: FakeClock
) -> None:
    kv.put("k", "old", expiration_ttl=60, metadata={"m": 1})
    kv.put("k", "new")
    assert kv.get_with_metadata("k") == ValueWithMetadata("new", None)
    assert kv.list().keys == [KeyInfo("k")]
    clock.advance(3600)
    assert kv.get("k") == "new"


def test_31_delete_removes_and_missing_delete_is_fine(kv: engine.Namespace) -> None:
    kv.put("k", "v")
    kv.delete("k")
    assert kv.get("k") is None
    kv.delete("k")
    kv.delete("never-existed")


def test_32_cache_ttl_below_30_raises(kv: engine.Namespace) -> None:
    kv.put("k", "v")
    with kv_error(
        400, "KV GET failed: 400 Invalid cache_ttl of 29. Cache TTL must be at least 30."
    ) as info:
        kv.get("k", cache_ttl=29)
    check_status(info, 400)
    with kv_error(400, "KV GET failed: 400 Invalid cache_ttl of 0. Cache TTL must be at least 30."):
        kv.get_with_metadata("missing", cache_ttl=0)
    assert kv.get("k", cache_ttl=30) == "v"
    assert kv.get("k", cache_ttl=60) == "v"
    with pytest.raises(TypeError, match="cache_ttl"):
        kv.get("k", cache_ttl="60")  # type: ignore[arg-type]


def test_33_cache_ttl_has_no_caching_effect(kv: engine.Namespace) -> None:
    kv.put("k", "one")
    assert kv.get("k", cache_ttl=3600) == "one"
    kv.put("k", "two")
    assert kv.get("k", cache_ttl=3600) == "two"
    kv.delete("k")
    assert kv.get("k", cache_ttl=3600) is None


# -- 34-45: list ------------------------------------------------------------------------------


def test_34_list_of_empty_namespace(kv: engine.Namespace) -> None:
    assert kv.list() == ListResult([], True, None)


def test_35_list_orders_by_utf8_bytes(kv: engine.Namespace) -> None:
    names = [", ", "!", "\U0001f600", "\ufffd", "a", "\u00e9", "Z"]
    for name in names:
        kv.put(name, "v")
    listed = [k.name for k in kv.list().keys]
    assert listed == sorted(names, key=str.encode)
    assert listed.index("!") < listed.index(", ")
    assert listed.index("\ufffd") < listed.index("\U0001f600")


def test_36_prefix_is_literal_and_case_sensitive(kv: engine.Namespace) -> None:
    for name in ["a%b", "a_b", "a\\b", "axb", "A%b", "b"]:
        kv.put(name, "v")
    assert [k.name for k in kv.list(prefix="a%").keys] == ["a%b"]
    assert [k.name for k in kv.list(prefix="a_").keys] == ["a_b"]
    assert [k.name for k in kv.list(prefix="a\\").keys] == ["a\\b"]
    assert [k.name for k in kv.list(prefix="A").keys] == ["A%b"]
    assert len(kv.list(prefix="").keys) == 6
    assert kv.list(prefix="nothing") == ListResult([], True, None)


def test_37_list_returns_at_most_1000_by_default(kv: engine.Namespace) -> None:
    kv.put_many([{"key": f"k{i:04}", "value": ""} for i in range(1001)])
    page = kv.list()
    assert len(page.keys) == 1000
    assert not page.list_complete


def test_38_limit_above_1000_raises(kv: engine.Namespace) -> None:
    with kv_error(
        400,
        "KV GET failed: 400 Invalid key_count_limit of 1001. "
        "Please specify an integer less than 1000.",
    ) as info:
        kv.list(limit=1001)
    check_status(info, 400)


@pytest.mark.parametrize("limit", [0, -1, -1000])
def test_39_zero_or_negative_limit_means_1000(kv: engine.Namespace, limit: int) -> None:
    kv.put_many([{"key": f"k{i:04}", "value": ""} for i in range(1001)])
    assert len(kv.list(limit=limit).keys) == 1000


def test_40_cursor_present_exactly_until_the_last_page(kv: engine.Namespace) -> None:
    for name in "abcde":
        kv.put(name, "v")
    first = kv.list(limit=2)
    assert ([k.name for k in first.keys], first.list_complete) == (["a", "b"], False)
    assert isinstance(first.cursor, str)
    second = kv.list(limit=2, cursor=first.cursor)
    assert [k.name for k in second.keys] == ["c", "d"]
    last = kv.list(limit=2, cursor=second.cursor)
    assert last == ListResult([KeyInfo("e")], True, None)


def test_41_cursor_with_another_limit_continues_after_last_key(kv: engine.Namespace) -> None:
    for name in "abcdef":
        kv.put(name, "v")
    first = kv.list(limit=2)
    rest = kv.list(limit=3, cursor=first.cursor)
    assert [k.name for k in rest.keys] == ["c", "d", "e"]
    assert not rest.list_complete


def test_42_keys_inserted_ahead_appear_behind_do_not(kv: engine.Namespace) -> None:
    for name in ["b", "d", "f"]:
        kv.put(name, "v")
    first = kv.list(limit=2)
    assert [k.name for k in first.keys] == ["b", "d"]
    kv.put("a", "behind")
    kv.put("c", "behind")
    kv.put("e", "ahead")
    rest = kv.list(cursor=first.cursor)
    assert rest == ListResult([KeyInfo("e"), KeyInfo("f")], True, None)


def test_43_empty_cursor_means_from_the_start(kv: engine.Namespace) -> None:
    for name in "abc":
        kv.put(name, "v")
    assert kv.list(cursor="") == kv.list()
    assert kv.list(limit=1, cursor="") == kv.list(limit=1)


def test_44_list_entries_have_expiration_and_metadata_only_if_set(kv: engine.Namespace) -> None:
    kv.put("both", "v", expiration=NOW + 100, metadata={"x": 1})
    kv.put("exp", "v", expiration=NOW + 200)
    kv.put("meta", "v", metadata="m")
    kv.put("none", "v")
    assert kv.list().keys == [
        KeyInfo("both", NOW + 100, {"x": 1}),
        KeyInfo("exp", NOW + 200, None),
        KeyInfo("meta", None, "m"),
        KeyInfo("none", None, None),
    ]


def test_45_expired_keys_never_listed_even_inside_a_page(
    kv: engine.Namespace, clock: FakeClock
) -> None:
    # As Miniflare's test: expirations at +60/+120/+180, clock +130 s.
    kv.put("a", "v", expiration=NOW + 60)
    kv.put("b", "v", expiration=NOW + 120)
    kv.put("c", "v", expiration=NOW + 180)
    kv.put("b2", "v")
    first = kv.list(limit=1)
    clock.advance(130)
    assert kv.list() == ListResult([KeyInfo("b2"), KeyInfo("c", NOW + 180)], True, None)
    assert kv.list(cursor=first.cursor).keys == [KeyInfo("b2"), KeyInfo("c", NOW + 180)]


# -- 46-52: get_many --------------------------------------------------------------------------

NON_JSON = (
    "KV GET_BULK failed: 400 At least one of the requested keys corresponds to a non-json value"
)


def test_46_get_many_maps_every_key(kv: engine.Namespace) -> None:
    kv.put("a", "1")
    assert kv.get_many(["a", "b"]) == {"a": "1", "b": None}
    assert kv.get_many(["a", "b"], type="json") == {"a": 1, "b": None}


def test_47_get_many_key_count_limits(kv: engine.Namespace) -> None:
    keys = [f"k{i}" for i in range(101)]
    assert len(kv.get_many(keys[:100])) == 100
    with kv_error(400, "KV GET_BULK failed: 400 You can request a maximum of 100 keys"):
        kv.get_many(keys)
    with kv_error(400, "KV GET_BULK failed: 400 You must request a minimum of 1 key"):
        kv.get_many([])


@pytest.mark.parametrize("bad_type", ["arrayBuffer", "bytes", "stream", "invalid"])
def test_48_get_many_refuses_types_other_than_text_and_json(
    kv: engine.Namespace, bad_type: str
) -> None:
    with kv_error(
        400, f'KV GET_BULK failed: 400 "{bad_type}" is not a valid type. Use "json" or "text"'
    ):
        kv.get_many(["a"], type=bad_type)


def test_49_get_many_json_with_non_json_value_raises(kv: engine.Namespace) -> None:
    kv.put("ok", "[1]")
    kv.put("bad", "not json")
    with kv_error(400, NON_JSON):
        kv.get_many(["ok", "bad"], type="json")
    assert kv.get_many(["ok", "bad"]) == {"ok": "[1]", "bad": "not json"}


def test_50_get_many_with_metadata_wraps_falsy_values(kv: engine.Namespace) -> None:
    kv.put("empty", "", metadata={"m": 1})
    kv.put("empty-json", '""')
    kv.put("zero", "0", metadata=7)
    kv.put("false", "false")
    kv.put("null", "null", metadata="s")
    keys = ["empty-json", "zero", "false", "null", "missing"]
    got = kv.get_many(keys, "json", with_metadata=True)
    assert got["empty-json"] == ValueWithMetadata("", None)
    assert got["zero"] == ValueWithMetadata(0, 7)
    assert got["false"] == ValueWithMetadata(False, None)
    assert got["null"] == ValueWithMetadata(None, "s")
    assert got["missing"] is None
    text = kv.get_many(["empty", "zero"], with_metadata=True)
    assert text == {"empty": ValueWithMetadata("", {"m": 1}), "zero": ValueWithMetadata("0", 7)}


def test_50_get_many_json_of_empty_value_is_a_non_json_value(kv: engine.Namespace) -> None:
    kv.put("empty", "")
    with kv_error(400, NON_JSON):
        kv.get_many(["empty"], "json")


def test_51_get_many_over_25_mib_raises_413(kv: engine.Namespace) -> None:
    half = MAX_VALUE // 2
    kv.put("a", b"a" * half)
    kv.put("b", b"b" * half)
    kv.put("c", b"c")
    assert sum(len(v) for v in kv.get_many(["a", "b"]).values()) == MAX_VALUE
    with kv_error(413, "KV GET_BULK failed: 413 Total size of request exceeds the limit of 25MB"):
        kv.get_many(["a", "b", "c"])


def test_52_get_many_key_errors(kv: engine.Namespace) -> None:
    with kv_error(400, "KV GET_BULK failed: 400 Key names must not be empty"):
        kv.get_many(["a", ""])
    for dot in (".", ".."):
        with kv_error(
            400, f'KV GET_BULK failed: 400 Illegal key name "{dot}". Please use a different name.'
        ):
            kv.get_many([dot])
    with kv_error(
        414, "KV GET_BULK failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    ):
        kv.get_many(["x" * 513])
    with kv_error(
        400, "KV GET_BULK failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30."
    ):
        kv.get_many(["a"], cache_ttl=10)


# -- 53-54: value types -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"a": 1}, None, 42, 1.5, True, object()])
def test_53_unsupported_value_type_raises(kv: engine.Namespace, value: object) -> None:
    text = (
        "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, "
        "and ReadableStreams as values."
    )
    with pytest.raises(TypeError, match=f"^{re.escape(text)}$"):
        kv.put("k", value)
    assert kv.get("k") is None


def test_54_buffer_views_store_exactly_the_viewed_bytes(kv: engine.Namespace) -> None:
    data = bytearray(range(100))
    kv.put("slice", memoryview(data)[10:20])
    assert kv.get("slice", "bytes") == bytes(range(10, 20))
    kv.put("strided", memoryview(data)[::10])
    assert kv.get("strided", "bytes") == bytes(range(0, 100, 10))
    words = array.array("H", [1, 0x0102])
    kv.put("words", words)
    assert kv.get("words", "bytes") == words.tobytes()


# -- 55-56: namespaces and persistence --------------------------------------------------------


def test_55_namespaces_never_see_each_others_keys(db: engine.Store) -> None:
    one, two = db.namespace("one"), db.namespace("two")
    one.put("k", "1")
    two.put("k", "2")
    one.put("only-one", "x")
    assert (one.get("k"), two.get("k")) == ("1", "2")
    assert two.get("only-one") is None
    assert [k.name for k in two.list().keys] == ["k"]
    assert two.get_many(["only-one"]) == {"only-one": None}


def test_56_data_survives_reopen_and_stores_are_isolated(tmp_path: Path, clock: FakeClock) -> None:
    with engine.open(tmp_path / "a", clock=clock) as db:
        db.namespace("n").put("k", "v", metadata={"m": 1}, expiration=NOW + 100)
    with engine.open(tmp_path / "b", clock=clock) as other:
        assert other.namespace("n").get("k") is None
    with engine.open(tmp_path / "a", clock=clock) as db:
        assert db.namespace("n").get_with_metadata("k") == ValueWithMetadata("v", {"m": 1})
        assert db.namespace("n").list().keys == [KeyInfo("k", NOW + 100, {"m": 1})]


# -- 57-58: wrangler bulk formats -------------------------------------------------------------


def test_57_bulk_items_need_str_key_and_value(kv: engine.Namespace) -> None:
    with pytest.raises(TypeError):
        kv.put_many([{"key": "a"}])
    with pytest.raises(TypeError):
        kv.put_many([{"value": "a"}])
    with pytest.raises(TypeError):
        kv.put_many([{"key": 1, "value": "a"}])
    with pytest.raises(TypeError):
        kv.put_many([{"key": "a", "value": {"not": "a string"}}])
    assert kv.list().keys == []


def test_57_bulk_base64_stores_decoded_bytes_and_ttl_wins(kv: engine.Namespace) -> None:
    kv.put_many(
        [
            {"key": "bin", "value": "AP+AgQ==", "base64": True},
            {"key": "ttl", "value": "v", "expiration": NOW + 1000, "expiration_ttl": 300},
            {"key": "plain", "value": "AP+AgQ==", "metadata": {"m": 1}},
        ]
    )
    assert kv.get("bin", "bytes") == b"\x00\xff\x80\x81"
    assert kv.get("plain") == "AP+AgQ=="
    assert kv.list().keys == [
        KeyInfo("bin"),
        KeyInfo("plain", None, {"m": 1}),
        KeyInfo("ttl", NOW + 300),
    ]


def test_58_bulk_delete_accepts_names_and_name_objects(kv: engine.Namespace) -> None:
    for name in "abcd":
        kv.put(name, "v")
    kv.delete_many(["a", {"name": "b"}])
    assert [k.name for k in kv.list().keys] == ["c", "d"]
    # list() output can be fed back, as `wrangler kv key list` output can.
    kv.delete_many(kv.list().keys)
    assert kv.list().keys == []

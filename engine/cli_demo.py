"""The short, self-explaining KV session of ``python -m engine PATH``.

It shows the product doing its main job on a store in PATH: puts with
metadata and an expiring key, reads, a list page, an all-or-nothing bulk
write, a delete and the store's statistics; then it leaves the store there
for ``kvengine --db PATH ...`` commands.  Running it again on the same store
works: every write simply replaces the previous one.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable

import engine
from engine.cli_format import human_bytes

_SEGMENT_SUFFIX = ".seg"


def _is_foreign(path: str) -> bool:
    """A non-empty directory that holds no store: not ours to write into."""
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return bool(names) and not any(n == "LOCK" or n.endswith(_SEGMENT_SUFFIX) for n in names)


def run_session(path: str, say: Callable[[str], None]) -> None:
    """Runs the session on the store in path, narrating each step with say.

    Raises:
        ValueError: path is a non-empty directory that holds no kvengine store.
        StoreLockedError: another process has the store open for writing.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory")
    if _is_foreign(path):
        raise ValueError(
            f"{path} is not empty and holds no kvengine store; choose a new or empty directory"
        )
    say(f"kvengine {engine.__version__}: a KV session on the store in {path}")
    say("")
    with engine.open(path) as db:
        kv = db.namespace()  # the namespace "default"

        def step(code: str, *result: object) -> None:
            say(f">>> {code}")
            for value in result:
                say(f"    {value!r}")

        kv.put("greeting", "hello, world", metadata={"lang": "en"})
        step('kv.put("greeting", "hello, world", metadata={"lang": "en"})')
        kv.put("session:42", "token-123", expiration_ttl=600)
        step('kv.put("session:42", "token-123", expiration_ttl=600)   # expires in 10 minutes')
        step('kv.get("greeting")', kv.get("greeting"))
        found = kv.get_with_metadata("greeting")
        step('kv.get_with_metadata("greeting")', found)
        users = [
            {"key": f"user:{i}", "value": f'{{"name": "user {i}"}}', "metadata": {"n": i}}
            for i in (1, 2, 3)
        ]
        kv.put_many(users)
        step("kv.put_many([...3 users...])   # bulk write: all or nothing")
        step('kv.get("user:2", type="json")', kv.get("user:2", type="json"))
        page = kv.list(prefix="user:", limit=2)
        step('[k.name for k in kv.list(prefix="user:", limit=2).keys]', [k.name for k in page.keys])
        say(f"    list_complete={page.list_complete}; pass cursor=... for the next page")
        kv.delete("user:3")
        step('kv.delete("user:3")')
        step('kv.get("user:3")', kv.get("user:3"))
        session_exp = next(k for k in kv.list(prefix="session:").keys).expiration
        step('kv.list(prefix="session:").keys[0].expiration', session_exp)
        stats = db.stats()
        step("db.stats()")
        say(
            f"    {stats.keys} live keys, {human_bytes(stats.live_bytes)} live of "
            f"{human_bytes(stats.disk_bytes)} on disk in {len(stats.segments)} segment files"
        )
    db_arg = shlex.quote(path)
    say("")
    say(f"The store stays in {path}. Look at it with the kvengine command:")
    for command in (
        "get greeting --with-metadata",
        "list --json",
        "stats",
        "verify",
        "export --out ./kv-export",
    ):
        say(f"  kvengine --db {db_arg} {command}")

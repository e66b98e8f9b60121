"""``kvengine``: the command-line tool for a kvengine store.

Commands are shaped like wrangler's ``kv key`` / ``kv bulk`` commands and work
over the public API (engine.open), plus read-only format inspection
(engine/inspect.py) for ``segments``, ``inspect`` and ``verify``.  Commands
that only read open the store with ``readonly=True``, so they run beside a
writer.  A user error prints one clear line on stderr and exits 1; a usage
error exits 2; no traceback is shown for bad input or a damaged file.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, NoReturn

import click

import engine
from engine import cli_format as fmt
from engine.cli_bench import run_bench
from engine.cli_verify import summarize_store, verify_store
from engine.cli_wrangler import (
    BulkFileError,
    ExportWriter,
    export_item,
    read_delete_keys,
    read_pairs,
)
from engine.errors import EngineError, KVError, StoreLockedError
from engine.inspect import SegmentInspector, SegmentItem, segment_file_name
from engine.storage import LogStore

DEFAULT_DB = "./kvdata"
CATALOG_NS_ID = 0  # keys of namespace id 0 are the namespace catalog (FORMAT.md section 8)
_ENV_DB = "KVENGINE_DB"
_ENV_DEBUG = "KVENGINE_DEBUG"  # set: errors show their traceback


class UserError(click.ClickException):
    """A refused request: its message alone on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


def fail(message: str) -> NoReturn:
    raise UserError(message)


def error_line(exc: BaseException) -> str:
    """An exception as the one line a user error prints."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class KvGroup(click.Group):
    """Turns every error a command meets on bad input or a bad file into one line, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            raise  # the reader went away (`| head`): click exits quietly
        except StoreLockedError:
            raise UserError(
                f"the store {ctx.obj.db if ctx.obj else ''} is open for writing by another "
                "process; read-only commands (get, list, stats, segments, inspect, verify, "
                "export) still work beside it"
            ) from None
        except BulkFileError as exc:
            raise UserError(str(exc)) from None
        except (EngineError, OSError, ValueError, TypeError, UnicodeError) as exc:
            if os.environ.get(_ENV_DEBUG):
                raise  # the whole traceback, for a bug report
            raise UserError(error_line(exc)) from None


class Settings:
    """The global options, shared by every command through the click context."""

    def __init__(self, db: str, namespace: str) -> None:
        self.db = db
        self.namespace = namespace

    @contextmanager
    def store(self, *, readonly: bool) -> Iterator[engine.Store]:
        if readonly and not os.path.isdir(self.db):
            fail(f"no store at {self.db} (nothing has been written there yet)")
        with engine.open(self.db, readonly=readonly, auto_compact=False) as db:
            yield db

    @contextmanager
    def namespace_of(self, *, readonly: bool) -> Iterator[engine.Namespace]:
        with self.store(readonly=readonly) as db:
            yield db.namespace(self.namespace)


pass_settings = click.make_pass_decorator(Settings)


def _example(text: str) -> str:
    """A help text ending with an example; \b keeps click from rewrapping it."""
    body, _, example = text.partition("Example:")
    return f"{body.rstrip()}\n\n\b\nExample:\n  {example.strip()}"


@click.group(cls=KvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar=_ENV_DB,
    default=DEFAULT_DB,
    show_default=True,
    type=click.Path(file_okay=False),
    help=f"Store directory (or ${_ENV_DB}).",
)
@click.option("--namespace", "-n", default="default", show_default=True, help="KV namespace.")
@click.version_option(engine.__version__, prog_name="kvengine")
@click.pass_context
def cli(ctx: click.Context, db: str, namespace: str) -> None:
    """kvengine: an embedded key-value store with Cloudflare Workers KV semantics.

    \b
    Example:
      kvengine --db ./kvdata put greeting hello --ttl 600
      kvengine --db ./kvdata get greeting
    """
    ctx.obj = Settings(db, namespace)


# -- keys ------------------------------------------------------------------------------------
def _metadata_option(text: str | None) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        fail(f"--metadata must be valid JSON. Received: {text}")
    if not isinstance(value, dict):
        fail(f"--metadata must be a JSON object. Received: {text}")
    return value


@cli.command(
    help=_example("""Write a value to a key (wrangler kv key put).

The value is given as VALUE or read from the file --path (streamed, never held
whole in memory). --ttl wins over --expiration.

Example: kvengine put greeting "hello" --ttl 600 --metadata '{"lang": "en"}'""")
)
@click.argument("key")
@click.argument("value", required=False)
@click.option("--path", "path", type=click.Path(dir_okay=False), help="Read the value from FILE.")
@click.option("--ttl", type=int, help="Expire the key this many seconds from now (>= 60).")
@click.option("--expiration", type=int, help="Expire the key at this time (seconds since epoch).")
@click.option("--metadata", help="A JSON object stored with the key.")
@pass_settings
def put(
    s: Settings,
    key: str,
    value: str | None,
    path: str | None,
    ttl: int | None,
    expiration: int | None,
    metadata: str | None,
) -> None:
    if (value is None) == (path is None):
        raise click.UsageError(
            "Missing required option: exactly one of <value> and --path must be provided"
        )
    meta = _metadata_option(metadata)
    with s.namespace_of(readonly=False) as kv:
        opts: dict[str, Any] = {"expiration": expiration, "expiration_ttl": ttl, "metadata": meta}
        if path is not None:
            with open(path, "rb") as f:
                kv.put(key, f, **opts)
        else:
            kv.put(key, value, **opts)
    click.echo(f'Wrote key "{fmt.escape(key)}" to namespace {s.namespace}.')


@cli.command(
    help=_example("""Read the value of a key (wrangler kv key get).

Writes the raw bytes to stdout (binary-safe). --type text checks that the value
is UTF-8; --type json pretty-prints it. --with-metadata prints a JSON object with
the value (base64 when it is not UTF-8) and its metadata. A missing key prints
"Value not found" and exits 1.

Example: kvengine get greeting --with-metadata""")
)
@click.argument("key")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["bytes", "text", "json"]),
    default="bytes",
    show_default=True,
    help="How to print the value.",
)
@click.option("--text", is_flag=True, help="Same as --type text (as wrangler).")
@click.option("--with-metadata", is_flag=True, help="Print value and metadata as JSON.")
@pass_settings
def get(s: Settings, key: str, kind: str, text: bool, with_metadata: bool) -> None:
    if text:
        kind = "text"
    out = sys.stdout.buffer  # binary-safe; the text layer would translate
    with s.namespace_of(readonly=True) as kv:
        if with_metadata:
            found = kv.get_with_metadata(key, type="bytes")
            if found.value is None:
                fail("Value not found")
            click.echo(fmt.to_json(_value_json(found.value, kind, key, found.metadata)))
            return
        if kind == "bytes":
            stream = kv.get(key, type="stream")
            if stream is None:
                fail("Value not found")
            with stream:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
            out.flush()
            return
        data = kv.get(key, type="bytes")
    if data is None:
        fail("Value not found")
    if kind == "text":
        out.write(_utf8(data, key).encode())
        out.flush()
    else:
        click.echo(json.dumps(_parse_json(data, key), indent=2, ensure_ascii=False))


def _utf8(data: bytes, key: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f'the value of "{fmt.escape(key)}" is not UTF-8 text; use --type bytes')


def _parse_json(data: bytes, key: str) -> Any:
    try:
        return json.loads(_utf8(data, key))
    except ValueError as exc:
        fail(f'the value of "{fmt.escape(key)}" is not JSON: {exc}')


def _value_json(data: bytes, kind: str, key: str, metadata: Any) -> dict[str, Any]:
    if kind == "json":
        return {"value": _parse_json(data, key), "metadata": metadata}
    if kind == "text":
        return {"value": _utf8(data, key), "metadata": metadata}
    try:
        return {"value": data.decode("utf-8"), "metadata": metadata}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(data).decode(), "base64": True, "metadata": metadata}


@cli.command(
    help=_example("""Delete a key (wrangler kv key delete); a missing key is not an error.

Example: kvengine delete greeting""")
)
@click.argument("key")
@pass_settings
def delete(s: Settings, key: str) -> None:
    with s.namespace_of(readonly=False) as kv:
        kv.delete(key)
    click.echo(f'Deleted key "{fmt.escape(key)}" from namespace {s.namespace}.')


@cli.command(
    name="list",
    help=_example("""List keys in UTF-8 byte order (wrangler kv key list).

One page of at most --limit keys (1000) unless --all; when more keys follow,
the cursor for the next page is printed on stderr. --json prints wrangler's
array of {name, expiration?, metadata?}.

Example: kvengine list --prefix user: --json"""),
)
@click.option("--prefix", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--cursor", help="Continue after the page this cursor came from.")
@click.option("--all", "all_pages", is_flag=True, help="Follow cursors to the last key.")
@click.option("--json", "as_json", is_flag=True, help="Print wrangler's JSON array.")
@pass_settings
def list_keys(
    s: Settings,
    prefix: str | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    # Printed page by page: `--all` over millions of keys holds one page at a time.
    table = fmt.StreamTable([("EXPIRES", 20), ("NAME", 0)])
    listed = 0
    with s.namespace_of(readonly=True) as kv:
        while True:
            page = kv.list(prefix=prefix, limit=limit, cursor=cursor)
            for k in page.keys:
                if as_json:
                    lead = "[\n  " if listed == 0 else ",\n  "
                    click.echo(lead + json.dumps(_key_json(k)), nl=False)
                else:
                    if listed == 0:
                        click.echo(table.header())
                    expires = _when(k.expiration) if k.expiration else ""
                    click.echo(table.row([expires, _key_text(k)]))
                listed += 1
            cursor = page.cursor
            if page.list_complete or not all_pages:
                break
    if as_json:
        click.echo("[]" if listed == 0 else "\n]")
    if cursor:
        click.echo(f"More keys follow: --cursor {cursor}", err=True)


def _key_text(k: engine.KeyInfo) -> str:
    if k.metadata is None:
        return fmt.escape(k.name)
    return f"{fmt.escape(k.name)}  {fmt.escape(json.dumps(k.metadata))}"


def _key_json(k: engine.KeyInfo) -> dict[str, Any]:
    item: dict[str, Any] = {"name": k.name}
    if k.expiration is not None:
        item["expiration"] = k.expiration
    if k.metadata is not None:
        item["metadata"] = k.metadata
    return item


def _when(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


# -- bulk ------------------------------------------------------------------------------------
@cli.group(
    help=_example("""Write or delete many keys from wrangler's bulk JSON files.

Example: kvengine bulk put pairs.json""")
)
def bulk() -> None:
    pass


@contextmanager
def _refused_item(path: str, undone: str) -> Iterator[None]:
    """A refused bulk write as one line naming the file and the item's index."""
    try:
        yield
    except (KVError, ValueError, TypeError) as exc:
        index = getattr(exc, "index", None)
        where = f"the item at index {index}" if index is not None else "the file"
        fail(f"{path}: {where} was refused, nothing was {undone}: {error_line(exc)}")


def _put_file(kv: engine.Namespace, path: str, items: list[dict[str, Any]]) -> None:
    with _refused_item(path, "written"):
        kv.put_many(items)


@bulk.command(
    name="put",
    help=_example("""Write the pairs of a wrangler bulk file, all or nothing.

FILE is a JSON array of {key, value, expiration?, expiration_ttl?, metadata?,
base64?}; base64: true stores the decoded bytes. At most 10,000 pairs under
100 MB; when any item is invalid nothing is written.

Example: kvengine bulk put pairs.json"""),
)
@click.argument("file", type=click.Path(dir_okay=False))
@pass_settings
def bulk_put(s: Settings, file: str) -> None:
    items, warnings = read_pairs(file)
    for warning in warnings:
        click.echo(warning, err=True)
    with s.namespace_of(readonly=False) as kv:
        _put_file(kv, file, items)
    click.echo(f"Wrote {len(items)} pairs to namespace {s.namespace}.")


@bulk.command(
    name="delete",
    help=_example("""Delete the keys of a wrangler bulk delete file, all or nothing.

FILE is a JSON array of key strings or of {"name": ...} objects (the output
of `kvengine list --json`). Asks for confirmation unless --force.

Example: kvengine bulk delete keys.json --force"""),
)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def bulk_delete(s: Settings, file: str, force: bool) -> None:
    if not force and not click.confirm(
        f'Are you sure you want to delete all the keys read from "{file}" '
        f"from namespace {s.namespace}?"
    ):
        click.echo(f'Not deleting keys read from "{file}".')
        return
    keys = read_delete_keys(file)
    with s.namespace_of(readonly=False) as kv, _refused_item(file, "deleted"):
        kv.delete_many(keys)
    click.echo(f"Deleted {len(keys)} keys from namespace {s.namespace}.")


# -- export / import -------------------------------------------------------------------------
@cli.command(
    name="export",
    help=_example("""Write a namespace as wrangler bulk files, ready for `wrangler kv bulk put`.

Files <namespace>-0001.json, ... in --out hold at most 10,000 pairs and less
than 100 MB each; values that are not UTF-8 are base64 with "base64": true;
expirations are absolute; metadata is kept. File names never come from keys,
and existing files are never overwritten.

Example: kvengine --namespace MY_KV export --out ./dump"""),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="./kv-export",
    show_default=True,
    help="Directory for the files (created if missing).",
)
@pass_settings
def export_cmd(s: Settings, out: str) -> None:
    with s.store(readonly=True) as db:
        if s.namespace not in db.namespaces():
            fail(f"no namespace {s.namespace} in {s.db}")
        kv = db.namespace(s.namespace)
        os.makedirs(out, mode=0o700, exist_ok=True)
        writer = ExportWriter(out, s.namespace)
        odd_metadata = 0
        try:
            cursor = None
            while True:
                page = kv.list(cursor=cursor)
                for key in page.keys:
                    value = kv.get(key.name, type="bytes")
                    if value is None:  # expired since it was listed
                        continue
                    if key.metadata is not None and not isinstance(key.metadata, dict | list):
                        odd_metadata += 1
                    writer.add(export_item(key.name, value, key.expiration, key.metadata))
                if page.list_complete:
                    break
                cursor = page.cursor
        except FileExistsError as exc:
            fail(f"{exc.filename} exists; export into an empty directory")
        finally:
            files = writer.close()
    for path in files:
        click.echo(path)
    click.echo(
        f"Exported {writer.pairs} pairs of namespace {s.namespace} into {len(files)} files.",
        err=True,
    )
    if odd_metadata:
        click.echo(
            f"Note: {odd_metadata} keys have metadata that is not a JSON object; "
            "`wrangler kv bulk put` checks for objects and refuses them.",
            err=True,
        )


@cli.command(
    name="import",
    help=_example("""Write the pairs of wrangler bulk files (e.g. from `kvengine export`).

Each file lands all or nothing. Pairs whose absolute expiration is already
past, or less than 60 seconds ahead (Workers KV refuses such expirations),
are skipped and counted.

Example: kvengine --namespace MY_KV import ./dump/*.json"""),
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@pass_settings
def import_cmd(s: Settings, files: tuple[str, ...]) -> None:
    parsed = []
    for path in files:  # every file is checked before anything is written
        items, warnings = read_pairs(path)
        for warning in warnings:
            click.echo(warning, err=True)
        parsed.append((path, items))
    written = skipped = 0
    with s.namespace_of(readonly=False) as kv:
        for done, (path, items) in enumerate(parsed):
            soon = time.time() + 60
            keep = [
                i
                for i in items
                if "expiration_ttl" in i or "expiration" not in i or i["expiration"] >= soon
            ]
            skipped += len(items) - len(keep)
            try:
                _put_file(kv, path, keep)
            except UserError as exc:
                if not done:
                    raise
                raise UserError(f"{exc.message} ({done} files before it were imported)") from None
            written += len(keep)
    click.echo(f"Imported {written} pairs into namespace {s.namespace} from {len(files)} files.")
    if skipped:
        click.echo(f"Skipped {skipped} pairs that expire within 60 seconds.", err=True)


# -- namespaces ------------------------------------------------------------------------------
@cli.group(
    invoke_without_command=True,
    help=_example("""List namespaces; create or delete one.

Example: kvengine namespaces create MY_KV"""),
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def namespaces(ctx: click.Context, as_json: bool) -> None:
    if ctx.invoked_subcommand is not None:
        return
    s = ctx.find_object(Settings)
    assert s is not None
    with s.store(readonly=True) as db:
        names = db.namespaces()
    if as_json:
        click.echo(fmt.to_json(names))
    else:
        for name in names:
            click.echo(name)


@namespaces.command(
    name="create",
    help=_example("""Create a namespace (nothing happens if it exists).

Example: kvengine namespaces create MY_KV"""),
)
@click.argument("name")
@pass_settings
def namespace_create(s: Settings, name: str) -> None:
    with s.store(readonly=False) as db:
        existed = name in db.namespaces()
        db.namespace(name)
    click.echo(f"Namespace {name} {'exists' if existed else 'created'}.")


@namespaces.command(
    name="delete",
    help=_example("""Delete a namespace and every key in it.

Example: kvengine namespaces delete MY_KV --force"""),
)
@click.argument("name")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def namespace_delete(s: Settings, name: str, force: bool) -> None:
    with s.store(readonly=True) as db:
        if name not in db.namespaces():
            fail(f"no namespace {name}")
    # Asked before the writer opens: a pending question must not hold the store's lock.
    if not force and not click.confirm(f"Delete namespace {name} and every key in it?"):
        click.echo(f"Not deleting namespace {name}.")
        return
    with s.store(readonly=False) as db:
        db.delete_namespace(name)
    click.echo(f"Deleted namespace {name}.")


# -- what is on disk -------------------------------------------------------------------------
@cli.command(
    help=_example("""Keys and bytes per namespace, live / dead / expired bytes per segment.

Example: kvengine stats --json""")
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def stats(s: Settings, as_json: bool) -> None:
    with s.store(readonly=True) as db:
        st = db.stats()
    if as_json:
        data = asdict(st)
        data["reclaimable_bytes"] = st.reclaimable_bytes
        click.echo(fmt.to_json(data))
        return
    click.echo(
        f"{st.keys} live keys, {fmt.human_bytes(st.live_bytes)} live of "
        f"{fmt.human_bytes(st.disk_bytes)} on disk in {len(st.segments)} segments; "
        f"index memory {fmt.human_bytes(st.index_bytes)}"
    )
    click.echo(
        f"reclaimable {fmt.human_bytes(st.reclaimable_bytes)}: dead "
        f"{fmt.human_bytes(st.dead_bytes)} (tombstones {fmt.human_bytes(st.tombstone_bytes)}), "
        f"expired {fmt.human_bytes(st.expired_bytes)}"
    )
    click.echo()
    ns_rows = [(name, n.keys, n.bytes) for name, n in sorted(st.namespaces.items())]
    click.echo(fmt.table(["NAMESPACE", "KEYS", "BYTES"], ns_rows))
    click.echo()
    seg_rows = [
        (
            f"{seg.id:016x}",
            seg.size,
            seg.live_bytes - seg.expired_bytes,
            seg.dead_bytes,
            seg.expired_bytes,
            seg.tombstone_bytes,
            fmt.percent(seg.dead_bytes + seg.expired_bytes + seg.tombstone_bytes, seg.size),
            "active" if seg.active else "compacted" if seg.compacted else "",
        )
        for seg in st.segments
    ]
    headers = ["SEGMENT", "SIZE", "LIVE", "DEAD", "EXPIRED", "TOMBSTONE", "FRAGMENTED", ""]
    click.echo(fmt.table(headers, seg_rows))
    for d in st.damage:
        click.echo(f"damage: {d.path} offset {d.offset}: {d.kind} ({d.length} bytes)", err=True)


@cli.command(
    help=_example("""The segment files on disk: size, records by type, damage, hint.

Reads the files directly (no lock), so it works beside a running writer.

Example: kvengine segments --json""")
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def segments(s: Settings, as_json: bool) -> None:
    _require_store_dir(s.db)
    summaries = summarize_store(s.db)
    if as_json:
        click.echo(fmt.to_json([x.as_dict() for x in summaries]))
        return
    rows = [
        (
            os.path.basename(x.path),
            x.size,
            x.records["PUT"],
            x.records["DELETE"] + x.records["EXPIRE"],
            x.records["BATCH_COMMIT"],
            x.damaged_bytes,
            f"{x.min_seq}-{x.max_seq}" if x.max_seq else "-",
            ",".join(
                f
                for f, on in (
                    ("compacted", x.compacted),
                    ("hint", x.hint),
                    ("bad-header", not x.header_ok),
                )
                if on
            ),
        )
        for x in summaries
    ]
    headers = ["FILE", "SIZE", "PUTS", "TOMBSTONES", "BATCHES", "DAMAGED", "SEQ", "FLAGS"]
    click.echo(fmt.table(headers, rows))


def _require_store_dir(path: str) -> None:
    if not os.path.isdir(path):
        fail(f"no store at {path} (nothing has been written there yet)")


def _segment_path(db: str, segment: str) -> str:
    """SEGMENT as a file path: a path, or a file name or segment id (hex) in --db."""
    if os.sep in segment:
        return segment
    if segment.endswith(".seg"):  # a bare file name, as `kvengine segments` lists it
        return os.path.join(db, segment)
    try:
        seg_id = int(segment, 16)
    except ValueError:
        raise click.BadParameter(
            f"{segment!r} is neither a segment file nor a segment id", param_hint="SEGMENT"
        ) from None
    if not 0 <= seg_id < 1 << 64:
        raise click.BadParameter(f"segment id {segment} is out of range", param_hint="SEGMENT")
    return os.path.join(db, segment_file_name(seg_id))


@cli.command(
    help=_example("""Decode the records of one segment file, read-only.

SEGMENT is a segment file path, or a file name or segment id (hex) of a
segment in --db as `kvengine segments` lists them. Shows offset, record type,
sequence number, namespace id and key (escaped), sizes, expiration and checksum
status; damaged places too. --json prints the header, then one JSON object
per record or damaged place, one per line.

Example: kvengine inspect 0000000000000001 --limit 20""")
)
@click.argument("segment")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@pass_settings
def inspect(s: Settings, segment: str, limit: int | None, as_json: bool) -> None:
    path = _segment_path(s.db, segment)
    base = os.path.basename(path)
    if len(base) != 20 or not base.endswith(".seg"):
        fail(f"{path}: not a segment file name (16 hex digits and .seg)")
    with SegmentInspector(path) as seg:
        hdr = seg.header
        if as_json:
            click.echo(fmt.to_json(asdict(hdr), indent=None))
        else:
            click.echo(
                f"{path}: segment {hdr.id:016x}, {hdr.size} bytes, "
                + (
                    f"format {hdr.version}, seq floor {hdr.seq_floor}"
                    + (", compacted" if hdr.compacted else "")
                    if hdr.valid
                    else "INVALID HEADER"
                )
            )
        table = fmt.StreamTable(_INSPECT_COLUMNS)
        if not as_json:
            click.echo(table.header())
        for n, item in enumerate(seg):
            if limit is not None and n >= limit:
                break
            if as_json:
                click.echo(json.dumps(_item_json(item)))
            else:
                click.echo(table.row(_item_row(item)))


_INSPECT_COLUMNS = [
    ("OFFSET", 10),
    ("TYPE", 14),
    ("SEQ", 8),
    ("NS", 7),
    ("META", 5),
    ("VALUE", 8),
    ("EXPIRES", 20),
    ("CHECKSUM", 8),
    ("KEY", 0),
]


def _item_row(item: SegmentItem) -> tuple[Any, ...]:
    if item.kind in ("region", "tail"):
        what = "DAMAGED REGION" if item.kind == "region" else "INVALID TAIL"
        return (item.offset, what, "", "", "", item.size, "", "BAD", f"({item.size} bytes)")
    ns_id, key = _split_key(item.key)
    return (
        item.offset,
        f"{item.type}{' (batch)' if item.batch else ''}",
        item.seq,
        "catalog" if ns_id == CATALOG_NS_ID else ("" if ns_id is None else ns_id),
        len(item.meta),
        item.value_len,
        _when(item.expiration) if item.expiration else "",
        "ok" if item.checksum_ok else "BAD",
        fmt.escape(key),
    )


def _item_json(item: SegmentItem) -> dict[str, Any]:
    ns_id, key = _split_key(item.key)
    return {
        "offset": item.offset,
        "end": item.end,
        "kind": item.kind,
        "type": item.type,
        "batch": item.batch,
        "seq": item.seq,
        "namespace_id": ns_id,
        "key": fmt.escape(key),
        "key_len": len(item.key),
        "meta_len": len(item.meta),
        "value_len": item.value_len,
        "expiration": item.expiration,
        "checksum_ok": item.checksum_ok,
    }


def _split_key(stored: bytes) -> tuple[int | None, bytes]:
    """A stored key's namespace id (2 bytes big-endian, FORMAT.md section 8) and KV key."""
    if len(stored) < 2:
        return None, stored
    return int.from_bytes(stored[:2], "big"), stored[2:]


@cli.command(
    help=_example("""Check every record checksum of every segment and every hint file.

Reads the files directly (no lock), so it works beside a running writer.
Exits 1 and lists file and offset of each damaged place when it finds damage.
A torn tail of the newest segment (the last write, cut short, which the next
writer cuts off) is listed but is not damage.

Example: kvengine verify""")
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def verify(s: Settings, as_json: bool) -> None:
    _require_store_dir(s.db)
    report = verify_store(s.db)
    if as_json:
        click.echo(fmt.to_json(report.as_dict()))
    else:
        for p in report.problems:
            label = "DAMAGE" if p.fatal else "note"
            click.echo(f"{label}: {p.path} offset {p.offset}: {p.what}")
        hints = f"{report.hints_checked} hint files checked"
        if report.hints_unchecked:
            hints += f", {report.hints_unchecked} not (this build has no hint file support)"
        damaged = sum(p.fatal for p in report.problems)
        verdict = "OK" if report.ok else f"DAMAGED: {damaged} damaged places"
        click.echo(
            f"{verdict} ({len(report.segments)} segments, {report.records} records, "
            f"{fmt.human_bytes(report.bytes)}, {hints})"
        )
    if not report.ok:
        sys.exit(1)


# -- compaction ------------------------------------------------------------------------------
class _Progress:
    """A click progress bar on a terminal, created on the first report of the total."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(max(0, done - self._done))
        self._done = max(self._done, done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _compact_available() -> bool:
    return hasattr(LogStore, "compact")


@cli.command(
    help=_example("""Reclaim overwritten, deleted and expired records.

Shows a progress bar on a terminal, then the bytes reclaimed by reason.
--dry-run only predicts what a compaction would reclaim.

Example: kvengine compact --dry-run""")
)
@click.option("--dry-run", is_flag=True, help="Predict, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_settings
def compact(s: Settings, dry_run: bool, as_json: bool) -> None:
    if not _compact_available():
        fail("this build of kvengine has no compactor")
    _require_store_dir(s.db)
    progress = _Progress("predicting" if dry_run else "compacting")
    try:
        with s.store(readonly=False) as db:
            # The compactor's signature; typed loosely so this builds before it lands.
            run: Callable[..., engine.CompactionReport] = db.compact
            report = run(dry_run=dry_run, progress=progress)
    finally:
        progress.close()
    if as_json:
        data = asdict(report)
        data["bytes_reclaimed"] = report.bytes_reclaimed
        click.echo(fmt.to_json(data))
        return
    click.echo(_compaction_text(report))


def _compaction_text(report: engine.CompactionReport) -> str:
    verb = "would reclaim" if report.dry_run else "reclaimed"
    lines = [
        f"{verb} {fmt.human_bytes(report.bytes_reclaimed)} "
        f"({report.bytes_before} -> {report.bytes_after} bytes, "
        f"{report.segments_in} -> {report.segments_out} segments, {report.seconds:.2f} s)"
    ]
    reasons = sorted(set(report.bytes_dropped) | set(report.records_dropped))
    rows = [
        (reason, report.records_dropped.get(reason, 0), report.bytes_dropped.get(reason, 0))
        for reason in reasons
        if report.records_dropped.get(reason, 0) or report.bytes_dropped.get(reason, 0)
    ]
    if rows:
        lines += ["", fmt.table(["REASON", "RECORDS", "BYTES"], rows)]
    return "\n".join(lines)


# -- benchmark -------------------------------------------------------------------------------
@cli.command(
    help=_example("""Measure throughput on an embedded store and print a summary table.

Fills, reads, overwrites, lists and (where available) compacts a store in a
temporary directory, or in namespace "kvengine-bench" of the store given with
an explicit --db (removed afterwards). Reports ops/s, MB/s and index memory
per key. --quick takes a few seconds.

Example: kvengine bench --quick""")
)
@click.option("--quick", is_flag=True, help="A small run of a few seconds.")
@click.option(
    "--keys", type=click.IntRange(min=1), help="Keys to write (500000; 20000 with --quick)."
)
@click.option("--value-size", type=click.IntRange(0, 25 * 1024 * 1024), default=100)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def bench(
    ctx: click.Context, quick: bool, keys: int | None, value_size: int, as_json: bool
) -> None:
    s = ctx.find_object(Settings)
    assert s is not None
    source = ctx.parent.get_parameter_source("db") if ctx.parent else None
    explicit = source is click.core.ParameterSource.COMMANDLINE
    n = keys if keys is not None else 20_000 if quick else 500_000
    say: Callable[[str], None] = (lambda _m: None) if as_json else _say
    result = run_bench(db=s.db if explicit else None, keys=n, value_size=value_size, progress=say)
    if as_json:
        click.echo(fmt.to_json(result.as_dict()))
        return
    rows = [
        (p.name, p.ops, f"{p.seconds:.3f}", f"{p.ops_per_second:,.0f}", f"{p.mb_per_second:.1f}")
        for p in result.phases
    ]
    click.echo(fmt.table(["PHASE", "OPS", "SECONDS", "OPS/S", "MB/S"], rows))
    click.echo(
        f"index memory: {result.index_bytes_per_key:.1f} bytes per key "
        f"({result.keys} keys of {result.key_bytes} bytes, values of {result.value_size} bytes)"
    )
    if result.note:
        click.echo(result.note, err=True)


def _say(message: str) -> None:
    click.echo(message, err=True)


def main(argv: list[str] | None = None, prog_name: str = "kvengine") -> None:
    """The console script ``kvengine``."""
    cli.main(args=argv, prog_name=prog_name)


__all__ = ["UserError", "cli", "error_line", "main"]

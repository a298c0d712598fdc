"""Export and import: one tar.gz, written and read as a stream, in this member order:

    taskplaner.json      {"format": "taskplaner-export", "version": 2, "exported", "counts"}
    attachments.jsonl    one attachment row per line
    blobs/ab/<sha256>    every image and thumbnail the attachments reference, once each
    items.jsonl          one item per line, with its tag names

Neither side ever holds the whole library in memory: export spools rows from one SQLite
snapshot to temp files (and pins the blob store, so no blob is unlinked while it runs); import
reads a line or a blob at a time. The order lets import check each part as it arrives, before
anything changes: the manifest first, then every attachment row (so each blob member must be
one they reference, within the upload limit, matching its hash), then the items, inserted in
the one transaction that replaces all data. A bad archive changes nothing and leaves no file.

Version 1 archives (one ``taskplaner.json`` holding everything) are still read, up to
``V1_MAX_JSON_BYTES`` of JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import recurrence
from . import tags as tags_service
from .blobs import CHUNK, HASH_RE
from .db import now_iso
from .errors import AppError
from .items import STATUSES, TYPES
from .services import Services
from .validation import choice, clean_text, clock_time, int_range, iso_date, parse_json

FORMAT = "taskplaner-export"
VERSION = 2
MANIFEST = "taskplaner.json"
ATTACHMENTS = "attachments.jsonl"
ITEMS = "items.jsonl"
MAX_MANIFEST_BYTES = 64 * 1024
V1_MAX_JSON_BYTES = 16 * 1024 * 1024  # its longest string may take twice this to parse
MAX_ID = 2**62
MAX_THUMB_BYTES = 4 * 1024 * 1024  # a WebP of at most 4096 px a side
# Parse events one element of a version 1 list may take: an item is ~20 fields and 50 tags.
V1_MAX_ELEMENT_EVENTS = 1_000
MAX_LINE_CONTAINERS = 64  # an item line holds 2 (itself, its tags); an attachment line 1
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"')
_BLOB_MEMBER = re.compile(r"^blobs/([0-9a-f]{2})/([0-9a-f]{64})$")
_MIMES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_ATTACHMENT_FIELDS = ("id", "item_id", "hash", "thumb_hash", "filename", "mime", "size", "width",
                      "height", "created")


def _bad(message: str) -> AppError:
    return AppError(422, "bad_archive", message, "file")


# --- export -----------------------------------------------------------------------------------
class ChunkSink:
    """A write-only file whose written bytes are collected for a streaming response."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, b: bytes) -> int:
        self.chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data

    def flush(self) -> None:  # zipfile calls these; the chunks are taken by the response
        pass

    def close(self) -> None:
        pass


def _item_json(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    item["tags"] = item.pop("tags_text").split()
    return item


def _spool(rows: Iterable[dict[str, Any]], spool: IO[bytes]) -> int:
    """Write rows as JSON Lines and rewind; return how many."""
    count = 0
    for row in rows:
        spool.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        count += 1
    spool.seek(0)
    return count


def _add(tar: tarfile.TarFile, name: str, fh: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(time.time()), 0o600
    tar.addfile(info, fh)


def export_stream(services: Services) -> Iterator[bytes]:
    """The archive in chunks; blobs stay pinned until the generator finishes. A missing blob
    is a 409 here, before the response starts (see ``Attachments.require_present``)."""
    services.attachments.require_present()
    return _export_chunks(services)


def _export_chunks(services: Services) -> Iterator[bytes]:
    sink = ChunkSink()
    tmp = services.settings.tmp_dir
    with services.attachments.pinned(), tempfile.TemporaryFile(dir=tmp) as attachments, \
            tempfile.TemporaryFile(dir=tmp) as items:
        with services.db.snapshot() as conn:
            n_attachments = _spool(
                (dict(r) for r in conn.execute("SELECT * FROM attachments ORDER BY id")), attachments)
            n_items = _spool(
                (_item_json(r) for r in conn.execute("SELECT * FROM items ORDER BY id")), items)
            digests = sorted({h for r in conn.execute("SELECT hash, thumb_hash FROM attachments")
                              for h in r})
        manifest = json.dumps({"format": FORMAT, "version": VERSION, "exported": now_iso(),
                               "counts": {"items": n_items, "attachments": n_attachments}}).encode()
        with tarfile.open(fileobj=sink, mode="w|gz") as tar:  # type: ignore[call-overload]
            with tempfile.TemporaryFile(dir=tmp) as fh:
                fh.write(manifest)
                fh.seek(0)
                _add(tar, MANIFEST, fh, len(manifest))
            _add(tar, ATTACHMENTS, attachments, os.fstat(attachments.fileno()).st_size)
            yield sink.take()
            for digest in digests:
                path = services.blobs.path_for(digest)
                with path.open("rb") as fh:
                    _add(tar, f"blobs/{digest[:2]}/{digest}", fh, os.fstat(fh.fileno()).st_size)
                yield sink.take()
            _add(tar, ITEMS, items, os.fstat(items.fileno()).st_size)
    yield sink.take()


def write_export(services: Services, path: Path) -> None:
    write_file(export_stream(services), path)


def write_file(chunks: Iterable[bytes], path: Path) -> None:
    """Write a streamed export to ``path``, which appears only once it is complete."""
    tmp = path.with_name(path.name + ".part")
    try:
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- validation -------------------------------------------------------------------------------
def _validate_item(raw: Any, settings: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad("an item is not an object")
    try:
        tag_names = raw.get("tags") or []
        if not isinstance(tag_names, list):
            raise AppError(422, "invalid", "tags must be a list", "tags")
        item = {
            "id": int_range(raw.get("id"), "id", 1, MAX_ID),
            "type": choice(raw.get("type"), "type", TYPES),
            "title": clean_text(raw.get("title", ""), "title", settings.max_title_chars),
            "body": clean_text(raw.get("body", ""), "body", settings.max_body_chars),
            "status": None,
            "due": None,
            "due_time": None,
            "priority": 0,
            "repeat": None,
            "repeat_from": "due",
            "completed": None,
            "next_id": None,
            "pinned": int_range(raw.get("pinned", 0), "pinned", 0, 1),
            "created": clean_text(raw.get("created"), "created", 40),
            "updated": clean_text(raw.get("updated"), "updated", 40),
            "tags": tags_service.normalise(tag_names),
        }
        if item["type"] == "task":
            item["status"] = choice(raw.get("status"), "status", STATUSES)
            item["due"] = iso_date(raw.get("due"), "due")
            item["due_time"] = clock_time(raw.get("due_time"), "due_time")
            item["priority"] = int_range(raw.get("priority", 0), "priority", 0, 3)
            item["repeat"] = recurrence.canonical(raw.get("repeat"))
            item["repeat_from"] = choice(raw.get("repeat_from", "due"), "repeat_from",
                                         recurrence.REPEAT_FROM)
            if raw.get("completed") is not None:
                item["completed"] = clean_text(raw["completed"], "completed", 40)
            if raw.get("next_id") is not None:
                item["next_id"] = int_range(raw["next_id"], "next_id", 1, MAX_ID)
    except AppError as exc:
        raise _bad(f"item {str(raw.get('id'))[:20]}: {exc.message}") from None
    return item


def _validate_attachment(raw: Any) -> tuple[Any, ...]:
    if not isinstance(raw, dict) or any(k not in raw for k in _ATTACHMENT_FIELDS):
        raise _bad("an attachment lacks fields")
    try:
        int_range(raw["id"], "id", 1, MAX_ID)
        int_range(raw["item_id"], "item_id", 1, MAX_ID)
        int_range(raw["size"], "size", 0, 1 << 40)
        int_range(raw["width"], "width", 1, 1 << 20)
        int_range(raw["height"], "height", 1, 1 << 20)
        clean_text(raw["filename"], "filename", 255)
        clean_text(raw["created"], "created", 40)
    except AppError as exc:
        raise _bad(f"attachment {str(raw.get('id'))[:20]}: {exc.message}") from None
    if not all(isinstance(raw[k], str) and HASH_RE.match(raw[k]) for k in ("hash", "thumb_hash")):
        raise _bad("an attachment hash is not a SHA-256 digest")
    if raw["mime"] not in _MIMES:
        raise _bad("an attachment has an unsupported type")
    return tuple(raw[k] for k in _ATTACHMENT_FIELDS)


# --- import -----------------------------------------------------------------------------------
class _Staging:
    """What an import has read and checked so far, kept on disk rather than in memory: the
    attachment rows, the blobs staged (digest → temp file) and, during the replace, the digests
    the old library referenced. One SQLite file in tmp/, removed with the import, so an archive
    of a million rows takes the memory of one with ten."""

    def __init__(self, tmp_dir: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="restore-", suffix=".sqlite")
        os.close(fd)
        self.path = Path(name)
        self.conn = sqlite3.connect(name, isolation_level=None)
        self.conn.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE;"
            "CREATE TABLE attachment (" + ", ".join(
                f"{name} INTEGER PRIMARY KEY" if name == "id" else name
                for name in _ATTACHMENT_FIELDS) + ");"
            "CREATE INDEX attachment_hash ON attachment (hash);"
            "CREATE INDEX attachment_thumb ON attachment (thumb_hash);"
            "CREATE TABLE staged (digest TEXT PRIMARY KEY, path TEXT NOT NULL);"
            "CREATE TABLE old (digest TEXT PRIMARY KEY);"
        )
        self.conn.execute("BEGIN")  # one transaction, never committed: nothing is fsynced

    def add_attachment(self, row: tuple[Any, ...]) -> None:
        try:
            self.conn.execute(f"INSERT INTO attachment VALUES ({', '.join('?' * len(row))})", row)
        except sqlite3.IntegrityError:
            raise _bad(f"attachment id {row[0]} repeats") from None

    def attachment_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM attachment").fetchone()[0])

    def attachments(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.conn.execute("SELECT * FROM attachment ORDER BY id"))

    def needs(self, digest: str) -> bool:
        return self.conn.execute("SELECT 1 FROM attachment WHERE hash = ?1 OR thumb_hash = ?1"
                                 " LIMIT 1", (digest,)).fetchone() is not None

    def is_staged(self, digest: str) -> bool:
        return self.conn.execute("SELECT 1 FROM staged WHERE digest = ?", (digest,)).fetchone() \
            is not None

    def add_staged(self, digest: str, tmp: Path) -> None:
        self.conn.execute("INSERT OR REPLACE INTO staged VALUES (?, ?)", (digest, str(tmp)))

    def staged(self) -> Iterator[tuple[str, Path]]:
        return ((d, Path(p)) for d, p in self.conn.execute("SELECT digest, path FROM staged"))

    def unstaged(self) -> Iterator[str]:
        """Digests the attachments reference that no blob member brought."""
        return (row[0] for row in self.conn.execute(
            "SELECT hash FROM attachment UNION SELECT thumb_hash FROM attachment"
            " EXCEPT SELECT digest FROM staged"))

    def remember_old(self, digests: Iterable[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO old VALUES (?)", ((d,) for d in digests))

    def old_batches(self, size: int = 1000) -> Iterator[list[str]]:
        cursor = self.conn.execute("SELECT digest FROM old")
        while batch := [row[0] for row in cursor.fetchmany(size)]:
            yield batch

    def remove(self) -> None:
        """Delete the staged blobs still here (a failed import) and the staging file."""
        for _, tmp in self.staged():
            tmp.unlink(missing_ok=True)
        self.conn.close()
        self.path.unlink(missing_ok=True)


@dataclass
class _Import:
    services: Services
    tar: tarfile.TarFile
    staging: _Staging

    def next_member(self) -> tarfile.TarInfo | None:
        return self.tar.next()

    def expect(self, name: str) -> tarfile.TarInfo:
        member = self.tar.next()
        if member is None or member.name != name or not member.isfile():
            found = "nothing" if member is None else repr(member.name[:100])
            raise _bad(f"expected {name} next in the archive, found {found}")
        return member

    def read(self, member: tarfile.TarInfo) -> bytes:
        fh = self.tar.extractfile(member)
        return fh.read() if fh else b""

    @staticmethod
    def parse(raw: bytes, where: str, max_containers: int) -> Any:
        """One JSON document of the archive. The containers are counted before parsing: each
        takes ~70 bytes of memory for its 2 bytes of text, so a line of "[]," must be refused
        unread, not parsed and then refused."""
        if _containers(raw) > max_containers:
            raise _bad(f"{where}: a line holds more than {max_containers} lists or objects")
        try:
            return parse_json(raw)
        except AppError as exc:
            raise _bad(f"{where}: {exc.message}") from None

    def lines(self, fh: IO[bytes] | None, where: str, limit: int) -> Iterator[Any]:
        while fh is not None and (line := fh.readline(limit + 1)):
            if len(line) > limit:
                raise _bad(f"a line of {where} is longer than {limit} bytes")
            if line.strip():
                yield self.parse(line, where, MAX_LINE_CONTAINERS)

    def member_lines(self, member: tarfile.TarInfo, limit: int) -> Iterator[Any]:
        return self.lines(self.tar.extractfile(member), member.name, limit)

    def stage_blobs(self, first: tarfile.TarInfo | None) -> tarfile.TarInfo | None:
        """Stage blob members up to the first other member, which is returned."""
        member = first
        limit = max(self.services.settings.max_upload_bytes, MAX_THUMB_BYTES)
        while member is not None and member.name.startswith("blobs/"):
            match = _BLOB_MEMBER.match(member.name)
            if not match or not member.isfile() or match[1] != match[2][:2]:
                raise _bad(f"unexpected archive member {member.name[:100]!r}")
            digest = match[2]
            if not self.staging.needs(digest) or self.staging.is_staged(digest):
                raise _bad(f"blob {digest[:12]}… is not referenced by any attachment")
            if member.size > limit:
                raise _bad(f"blob {digest[:12]}… is larger than {limit} bytes")
            self._stage(member, digest)
            member = self.next_member()
        return member

    def _stage(self, member: tarfile.TarInfo, digest: str) -> None:
        fh = self.tar.extractfile(member)
        if fh is None:
            raise _bad("unreadable blob")
        fd, tmp = self.services.blobs.temp_file()
        self.staging.add_staged(digest, tmp)  # removed on failure with the rest
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != digest:
            raise _bad(f"blob {digest[:12]}… does not match its hash")

    def add_attachments(self, rows: Iterable[Any]) -> None:
        for raw in rows:
            self.staging.add_attachment(_validate_attachment(raw))

    def replace_all(self, items: Iterable[Any]) -> dict[str, int]:
        services, staging = self.services, self.staging
        missing = sum(1 for h in staging.unstaged() if not services.blobs.exists(h))
        if missing:
            raise _bad(f"{missing} blobs referenced by attachments are not in the archive")
        att = services.attachments
        unused: list[str] = []
        with att.blob_guard():
            with services.db.write() as conn:
                staging.remember_old(h for r in conn.execute(
                    "SELECT hash, thumb_hash FROM attachments") for h in r)
                conn.execute("DELETE FROM items")
                conn.execute("DELETE FROM tags")
                n_items = self._insert_items(conn, items)
                for row in staging.attachments():
                    try:
                        conn.execute(f"INSERT INTO attachments ({', '.join(_ATTACHMENT_FIELDS)})"
                                     f" VALUES ({', '.join('?' * len(row))})", row)
                    except sqlite3.IntegrityError:  # the item it names is not in the archive
                        raise _bad(f"attachment {row[0]} belongs to no item in the archive") from None
                for digest, tmp in staging.staged():  # in place before the rows commit
                    services.blobs.commit(digest, tmp)
                for batch in staging.old_batches():
                    unused += att.unreferenced(conn, batch)
            att.release(unused)
        return {"items": n_items, "attachments": staging.attachment_count()}

    def _insert_items(self, conn: sqlite3.Connection, items: Iterable[Any]) -> int:
        count = 0
        for raw in items:
            item = _validate_item(raw, self.services.settings)
            columns = [name for name in item if name != "tags"]
            try:
                conn.execute(
                    f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    [item[name] for name in columns],
                )
            except sqlite3.IntegrityError:
                raise _bad(f"item id {item['id']} repeats") from None
            if item["tags"]:
                tags_service.set_item_tags(conn, item["id"], item["tags"])
            count += 1
        return count

    def run(self) -> dict[str, int]:
        first = self.expect(MANIFEST)
        if first.size > V1_MAX_JSON_BYTES:
            raise _bad(f"{MANIFEST} is larger than {V1_MAX_JSON_BYTES} bytes")
        if first.size > MAX_MANIFEST_BYTES:  # only a version 1 archive has a manifest this big
            return self.run_v1(first)
        raw = self.read(first)
        # 64 KiB of JSON holds at most 32 Ki containers, ~2 MiB parsed: no need to count them
        head = self.parse(raw, MANIFEST, MAX_MANIFEST_BYTES)
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise _bad(f"the archive has no {MANIFEST} of format {FORMAT}")
        if head.get("version") == 1:
            return self.run_v1(first, raw)
        if head.get("version") != VERSION:
            raise _bad(f"unsupported export version {str(head.get('version'))[:20]}")
        line_limit = 6 * (self.services.settings.max_body_chars + self.services.settings.max_title_chars) \
            + 64 * 1024  # JSON escapes take up to 6 bytes a character
        attachments = self.expect(ATTACHMENTS)
        self.add_attachments(self.member_lines(attachments, 64 * 1024))
        items = self.stage_blobs(self.next_member())
        if items is None or items.name != ITEMS or not items.isfile():
            raise _bad(f"expected {ITEMS} after the blobs")
        counts = self.replace_all(self.member_lines(items, line_limit))
        if self.next_member() is not None:
            raise _bad(f"unexpected archive member after {ITEMS}")
        return counts

    def run_v1(self, first: tarfile.TarInfo, raw: bytes | None = None) -> dict[str, int]:
        """A version 1 archive: its one JSON document is split into the lines of version 2
        (on disk, read as a stream), then imported as version 2 is."""
        import ijson

        tmp = self.services.settings.tmp_dir
        member = self.tar.extractfile(first) if raw is None else None
        with tempfile.TemporaryFile(dir=tmp) as source, tempfile.TemporaryFile(dir=tmp) as \
                attachments, tempfile.TemporaryFile(dir=tmp) as items:
            source.write(raw or b"")  # read already when it was small
            while member is not None and (chunk := member.read(CHUNK)):
                source.write(chunk)
            source.seek(0)
            try:
                top = _split_v1(source, {"attachments": attachments, "items": items},
                                self.services.settings.max_title_chars
                                + self.services.settings.max_body_chars)
            except (ijson.JSONError, ValueError) as exc:
                raise _bad(f"{MANIFEST} is not valid JSON: {str(exc)[:80]}") from None
            if top.get("format") != FORMAT or top.get("version") != 1:
                raise _bad(f"the archive has no {MANIFEST} of format {FORMAT}")
            if not {"items", "attachments"} <= top["lists"]:
                raise _bad("items and attachments must be lists")
            attachments.seek(0)
            items.seek(0)
            self.add_attachments(self.lines(attachments, MANIFEST, V1_MAX_JSON_BYTES))
            rest = self.stage_blobs(self.next_member())
            if rest is not None:
                raise _bad(f"unexpected archive member {rest.name[:100]!r}")
            return self.replace_all(self.lines(items, MANIFEST, V1_MAX_JSON_BYTES))


def _containers(raw: bytes) -> int:
    """How many lists and objects a JSON text opens, strings aside (an upper bound when the
    text is not valid JSON, which the parser then refuses)."""
    bare = _JSON_STRING.sub(b"", raw) if b'"' in raw else raw
    return bare.count(b"[") + bare.count(b"{")


def _split_v1(source: IO[bytes], lists: dict[str, IO[bytes]], max_chars: int) -> dict[str, Any]:
    """Stream a version 1 document: each element of its top-level lists named in ``lists``
    becomes one JSON line in that file; returns the top-level scalars, and under "lists" the
    names of the top-level values that were lists. No text may be longer than ``max_chars``."""
    import ijson

    opening, closing = ("start_map", "start_array"), ("end_map", "end_array")
    top: dict[str, Any] = {"lists": set()}
    depth, key = 0, None  # containers open before the event; the top-level key it is under
    builder: Any = None
    events = 0
    for event, value in ijson.basic_parse(source, use_float=True):
        if event == "string" and len(value) > max_chars:  # refused before it is copied
            raise _bad(f"a text in {MANIFEST} is longer than an item can hold")
        at = depth
        depth += (event in opening) - (event in closing)
        if builder is None and at == 2 and key in lists and event not in closing:
            builder, events = ijson.ObjectBuilder(), 0  # an element of a wanted list starts
        if builder is not None:
            builder.event(event, value)
            events += 1
            if events > V1_MAX_ELEMENT_EVENTS:
                raise _bad(f"an element of {key} in {MANIFEST} is larger than an item can be")
            if depth == 2:  # the element is whole: a scalar, or its closing event
                lists[key].write(json.dumps(builder.value).encode() + b"\n")  # type: ignore[index]
                builder = None
        elif at == 1 and event == "map_key":
            key = value
        elif at == 1 and event == "start_array":
            top["lists"].add(key)
        elif at == 1 and event not in opening + closing:
            top[key] = value  # type: ignore[index]
    return top


def import_archive(services: Services, stream: IO[bytes]) -> dict[str, int]:
    """Replace all data with the archive's. Nothing changes unless the whole archive is valid."""
    with services.transfer():
        staging = _Staging(services.settings.tmp_dir)
        try:
            with tarfile.open(fileobj=stream, mode="r|gz") as tar:
                return _Import(services, tar, staging).run()
        except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError, ValueError):
            raise _bad("the file is not a TaskPlaner export (tar.gz)") from None
        finally:
            staging.remove()


def open_input(path: Path) -> IO[bytes]:
    """A file the command line was given to import, or a clear error."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise AppError(400, "unreadable", f"cannot read {path}: {exc.strerror}") from None


def read_import_file(services: Services, path: Path) -> dict[str, int]:
    with open_input(path) as fh:
        return import_archive(services, fh)

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
from dataclasses import dataclass, field
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
V1_MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_ID = 2**62
MAX_THUMB_BYTES = 4 * 1024 * 1024  # a WebP of at most 4096 px a side
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
    """Yield the archive in chunks; blobs stay pinned until the generator finishes."""
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
    with tmp.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
    tmp.replace(path)


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
@dataclass
class _Import:
    services: Services
    tar: tarfile.TarFile
    staged: dict[str, Path] = field(default_factory=dict)
    attachments: list[tuple[Any, ...]] = field(default_factory=list)

    def next_member(self) -> tarfile.TarInfo | None:
        return self.tar.next()

    def expect(self, name: str) -> tarfile.TarInfo:
        member = self.tar.next()
        if member is None or member.name != name or not member.isfile():
            found = "nothing" if member is None else repr(member.name[:100])
            raise _bad(f"expected {name} next in the archive, found {found}")
        return member

    def read_json(self, member: tarfile.TarInfo, limit: int) -> Any:
        if member.size > limit:
            raise _bad(f"{member.name} is larger than {limit} bytes")
        fh = self.tar.extractfile(member)
        return self.parse(fh.read() if fh else b"", member.name)

    @staticmethod
    def parse(raw: bytes, where: str) -> Any:
        try:
            return parse_json(raw)
        except AppError as exc:
            raise _bad(f"{where}: {exc.message}") from None

    def lines(self, member: tarfile.TarInfo, limit: int) -> Iterator[Any]:
        fh = self.tar.extractfile(member)
        while fh is not None and (line := fh.readline(limit + 1)):
            if len(line) > limit:
                raise _bad(f"a line of {member.name} is longer than {limit} bytes")
            if line.strip():
                yield self.parse(line, member.name)

    def stage_blobs(self, needed: set[str], first: tarfile.TarInfo | None) -> tarfile.TarInfo | None:
        """Stage blob members up to the first other member, which is returned."""
        member = first
        limit = max(self.services.settings.max_upload_bytes, MAX_THUMB_BYTES)
        while member is not None and member.name.startswith("blobs/"):
            match = _BLOB_MEMBER.match(member.name)
            if not match or not member.isfile() or match[1] != match[2][:2]:
                raise _bad(f"unexpected archive member {member.name[:100]!r}")
            digest = match[2]
            if digest not in needed or digest in self.staged:
                raise _bad(f"blob {digest[:12]}… is not referenced by any attachment")
            if member.size > limit:
                raise _bad(f"blob {digest[:12]}… is larger than {limit} bytes")
            self.staged[digest] = self._stage(member, digest)
            member = self.next_member()
        return member

    def _stage(self, member: tarfile.TarInfo, digest: str) -> Path:
        fh = self.tar.extractfile(member)
        if fh is None:
            raise _bad("unreadable blob")
        fd, tmp = self.services.blobs.temp_file()
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        finally:
            self.staged[digest] = tmp  # removed on failure with the rest
        if h.hexdigest() != digest:
            raise _bad(f"blob {digest[:12]}… does not match its hash")
        return tmp

    def add_attachments(self, rows: Iterable[Any]) -> set[str]:
        ids: set[int] = set()
        for raw in rows:
            row = _validate_attachment(raw)
            if row[0] in ids:
                raise _bad(f"attachment id {row[0]} repeats")
            ids.add(row[0])
            self.attachments.append(row)
        return {h for a in self.attachments for h in (a[2], a[3])}

    def replace_all(self, items: Iterable[Any], needed: set[str]) -> dict[str, int]:
        services = self.services
        missing = [h for h in needed if h not in self.staged and not services.blobs.exists(h)]
        if missing:
            raise _bad(f"{len(missing)} blobs referenced by attachments are not in the archive")
        att = services.attachments
        with att.blob_guard():
            with services.db.write() as conn:
                old = {h for r in conn.execute("SELECT hash, thumb_hash FROM attachments") for h in r}
                conn.execute("DELETE FROM items")
                conn.execute("DELETE FROM tags")
                item_ids = self._insert_items(conn, items)
                for row in self.attachments:
                    if row[1] not in item_ids:
                        raise _bad(f"attachment {row[0]} belongs to no item in the archive")
                conn.executemany(
                    f"INSERT INTO attachments ({', '.join(_ATTACHMENT_FIELDS)})"
                    f" VALUES ({', '.join('?' * len(_ATTACHMENT_FIELDS))})",
                    self.attachments,
                )
                for digest, tmp in self.staged.items():  # in place before the rows commit
                    services.blobs.commit(digest, tmp)
                self.staged.clear()
                unused = att.unreferenced(conn, old)
            att.release(unused)
        return {"items": len(item_ids), "attachments": len(self.attachments)}

    def _insert_items(self, conn: sqlite3.Connection, items: Iterable[Any]) -> set[int]:
        ids: set[int] = set()
        for raw in items:
            item = _validate_item(raw, self.services.settings)
            if item["id"] in ids:
                raise _bad(f"item id {item['id']} repeats")
            ids.add(item["id"])
            columns = [name for name in item if name != "tags"]
            conn.execute(
                f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [item[name] for name in columns],
            )
            if item["tags"]:
                tags_service.set_item_tags(conn, item["id"], item["tags"])
        return ids

    def run(self) -> dict[str, int]:
        first = self.expect(MANIFEST)
        head = self.read_json(first, V1_MAX_JSON_BYTES)
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise _bad(f"the archive has no {MANIFEST} of format {FORMAT}")
        version = head.get("version")
        if version == 1:
            if first.size > V1_MAX_JSON_BYTES or not isinstance(head.get("items"), list) \
                    or not isinstance(head.get("attachments"), list):
                raise _bad("items and attachments must be lists")
            needed = self.add_attachments(head["attachments"])
            rest = self.stage_blobs(needed, self.next_member())
            if rest is not None:
                raise _bad(f"unexpected archive member {rest.name[:100]!r}")
            return self.replace_all(head["items"], needed)
        if version != VERSION:
            raise _bad(f"unsupported export version {str(version)[:20]}")
        if first.size > MAX_MANIFEST_BYTES:
            raise _bad(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        line_limit = 6 * (self.services.settings.max_body_chars + self.services.settings.max_title_chars) \
            + 64 * 1024  # JSON escapes take up to 6 bytes a character
        attachments = self.expect(ATTACHMENTS)
        needed = self.add_attachments(self.lines(attachments, 64 * 1024))
        items = self.stage_blobs(needed, self.next_member())
        if items is None or items.name != ITEMS or not items.isfile():
            raise _bad(f"expected {ITEMS} after the blobs")
        counts = self.replace_all(self.lines(items, line_limit), needed)
        if self.next_member() is not None:
            raise _bad(f"unexpected archive member after {ITEMS}")
        return counts


def import_archive(services: Services, stream: IO[bytes]) -> dict[str, int]:
    """Replace all data with the archive's. Nothing changes unless the whole archive is valid."""
    job: _Import | None = None
    with services.transfer():
        try:
            with tarfile.open(fileobj=stream, mode="r|gz") as tar:
                job = _Import(services, tar)
                return job.run()
        except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError, ValueError):
            raise _bad("the file is not a TaskPlaner export (tar.gz)") from None
        finally:
            if job is not None:
                for tmp in job.staged.values():
                    tmp.unlink(missing_ok=True)


def open_input(path: Path) -> IO[bytes]:
    """A file the command line was given to import, or a clear error."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise AppError(400, "unreadable", f"cannot read {path}: {exc.strerror}") from None


def read_import_file(services: Services, path: Path) -> dict[str, int]:
    with open_input(path) as fh:
        return import_archive(services, fh)

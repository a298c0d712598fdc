"""Export and import: one tar.gz holding ``taskplaner.json`` and ``blobs/ab/<sha256>``.

Export reads one SQLite snapshot and pins the blob store (no blob is unlinked while it runs),
so the archive is consistent while the app keeps serving. Import checks everything first —
member names, every blob's hash, every item field — and only then replaces the data in one
transaction: a bad archive changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import tags as tags_service
from .blobs import CHUNK, HASH_RE
from .db import now_iso
from .errors import AppError
from .items import STATUSES, TYPES
from .services import Services
from .validation import choice, clean_text, int_range, iso_date

FORMAT = "taskplaner-export"
VERSION = 1
DATA_NAME = "taskplaner.json"
_BLOB_MEMBER = re.compile(r"^blobs/([0-9a-f]{2})/([0-9a-f]{64})$")
MAX_DATA_JSON_BYTES = 1024 * 1024 * 1024


def _bad(message: str) -> AppError:
    return AppError(422, "bad_archive", message, "file")


class _ChunkSink(io.RawIOBase):
    """A write-only file whose written bytes are collected for a streaming response."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _snapshot(services: Services) -> dict[str, Any]:
    with services.db.snapshot() as conn:
        items = [dict(r) for r in conn.execute("SELECT * FROM items ORDER BY id")]
        attachments = [dict(r) for r in conn.execute("SELECT * FROM attachments ORDER BY id")]
    for item in items:
        item["tags"] = item.pop("tags_text").split()
    return {"format": FORMAT, "version": VERSION, "exported": now_iso(), "items": items,
            "attachments": attachments}


def export_stream(services: Services) -> Iterator[bytes]:
    """Yield the archive in chunks; blobs stay pinned until the generator finishes."""
    sink = _ChunkSink()
    with services.attachments.pinned():
        data = _snapshot(services)
        with tempfile.TemporaryFile(dir=services.settings.tmp_dir) as spool:
            spool.write(json.dumps(data, ensure_ascii=False).encode())
            size = spool.tell()
            spool.seek(0)
            with tarfile.open(fileobj=sink, mode="w|gz") as tar:
                info = tarfile.TarInfo(DATA_NAME)
                info.size, info.mtime, info.mode = size, int(time.time()), 0o600
                tar.addfile(info, spool)
                yield sink.take()
                digests = sorted({a[k] for a in data["attachments"] for k in ("hash", "thumb_hash")})
                for digest in digests:
                    path = services.blobs.path_for(digest)
                    info = tar.gettarinfo(str(path), f"blobs/{digest[:2]}/{digest}")
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                    yield sink.take()
    yield sink.take()


def write_export(services: Services, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        for chunk in export_stream(services):
            fh.write(chunk)
    tmp.replace(path)


def _validate_item(raw: Any, settings: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad("an item is not an object")
    try:
        item = {
            "id": int_range(raw.get("id"), "id", 1, 2**62),
            "type": choice(raw.get("type"), "type", TYPES),
            "title": clean_text(raw.get("title", ""), "title", settings.max_title_chars),
            "body": clean_text(raw.get("body", ""), "body", settings.max_body_chars),
            "status": None,
            "due": None,
            "priority": 0,
            "created": clean_text(raw.get("created"), "created", 40),
            "updated": clean_text(raw.get("updated"), "updated", 40),
            "tags": tags_service.normalise(raw.get("tags") or []),
        }
        if item["type"] == "task":
            item["status"] = choice(raw.get("status"), "status", STATUSES)
            item["due"] = iso_date(raw.get("due"), "due")
            item["priority"] = int_range(raw.get("priority", 0), "priority", 0, 3)
    except AppError as exc:
        raise _bad(f"item {raw.get('id')!r}: {exc.message}") from None
    return item


_ATTACHMENT_FIELDS = ("id", "item_id", "hash", "thumb_hash", "filename", "mime", "size", "width",
                      "height", "created")


def _validate_attachment(raw: Any, item_ids: set[int]) -> tuple[Any, ...]:
    if not isinstance(raw, dict) or any(k not in raw for k in _ATTACHMENT_FIELDS):
        raise _bad("an attachment lacks fields")
    if raw["item_id"] not in item_ids:
        raise _bad(f"attachment {raw['id']!r} belongs to no item in the archive")
    if not (isinstance(raw["hash"], str) and HASH_RE.match(raw["hash"])
            and isinstance(raw["thumb_hash"], str) and HASH_RE.match(raw["thumb_hash"])):
        raise _bad("an attachment hash is not a SHA-256 digest")
    if raw["mime"] not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
        raise _bad("an attachment has an unsupported type")
    return tuple(raw[k] for k in _ATTACHMENT_FIELDS)


def import_archive(services: Services, stream: IO[bytes]) -> dict[str, int]:
    """Replace all data with the archive's. Nothing changes unless the whole archive is valid."""
    staged: dict[str, Path] = {}
    data: Any = None
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|gz") as tar:
                for member in tar:
                    if member.name == DATA_NAME and member.isfile():
                        if member.size > MAX_DATA_JSON_BYTES:
                            raise _bad(f"{DATA_NAME} is too large")
                        fh = tar.extractfile(member)
                        data = json.loads(fh.read()) if fh else None
                        continue
                    match = _BLOB_MEMBER.match(member.name)
                    if not match or not member.isfile() or match[1] != match[2][:2]:
                        raise _bad(f"unexpected archive member {member.name[:100]!r}")
                    staged[match[2]] = _stage_blob(services, tar, member, match[2])
        except (tarfile.TarError, EOFError, OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise _bad("the file is not a TaskPlaner export (tar.gz)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise _bad(f"the archive has no {DATA_NAME} of format {FORMAT}")
        if data.get("version") != VERSION:
            raise _bad(f"unsupported export version {data.get('version')!r}")
        if not isinstance(data.get("items"), list) or not isinstance(data.get("attachments"), list):
            raise _bad("items and attachments must be lists")
        items = [_validate_item(i, services.settings) for i in data["items"]]
        item_ids = {i["id"] for i in items}
        if len(item_ids) != len(items):
            raise _bad("item ids repeat")
        attachments = [_validate_attachment(a, item_ids) for a in data["attachments"]]
        needed = {h for a in attachments for h in (a[2], a[3])}
        missing = [h for h in needed if h not in staged and not services.blobs.exists(h)]
        if missing:
            raise _bad(f"{len(missing)} blobs referenced by attachments are not in the archive")
        return _replace_all(services, items, attachments, staged)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _stage_blob(services: Services, tar: tarfile.TarFile, member: tarfile.TarInfo,
                digest: str) -> Path:
    fh = tar.extractfile(member)
    if fh is None:
        raise _bad("unreadable blob")
    fd, tmp = services.blobs.temp_file()
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if h.hexdigest() != digest:
        tmp.unlink(missing_ok=True)
        raise _bad(f"blob {digest[:12]}… does not match its hash")
    return tmp


def _replace_all(services: Services, items: list[dict[str, Any]], attachments: list[tuple[Any, ...]],
                 staged: dict[str, Path]) -> dict[str, int]:
    att = services.attachments
    with att.blob_guard():
        for digest, tmp in staged.items():
            services.blobs.commit(digest, tmp)
        with services.db.write() as conn:
            old = {h for r in conn.execute("SELECT hash, thumb_hash FROM attachments") for h in r}
            conn.execute("DELETE FROM items")
            conn.execute("DELETE FROM tags")
            for item in items:
                conn.execute(
                    "INSERT INTO items (id, type, title, body, status, due, priority, created,"
                    " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (item["id"], item["type"], item["title"], item["body"], item["status"],
                     item["due"], item["priority"], item["created"], item["updated"]),
                )
                if item["tags"]:
                    tags_service.set_item_tags(conn, item["id"], item["tags"])
            conn.executemany(
                f"INSERT INTO attachments ({', '.join(_ATTACHMENT_FIELDS)})"
                f" VALUES ({', '.join('?' * len(_ATTACHMENT_FIELDS))})",
                attachments,
            )
            unused = att.unreferenced(conn, old)
        att.release(unused)
    return {"items": len(items), "attachments": len(attachments)}


def read_import_file(services: Services, path: Path) -> dict[str, int]:
    with path.open("rb") as fh:
        return import_archive(services, fh)

"""Notes you can take with you: a folder of Markdown files, as a zip, out and back in.

Export: one ``.md`` file per item, named after its title, with YAML front matter (id, type,
title, status, due, due_time, priority, repeat, repeat_from, pinned, tags, created, updated,
attachments), and each attachment beside it under ``files/`` named by its SHA-256. The body's
links to the app's images point at those files, so the folder reads well in any Markdown editor.

Import: the same shape, or any folder of ``.md`` files (Obsidian, flatnotes): the title comes
from the front matter, else the first ``# heading`` (taken out of the body), else the file name;
tags from the front matter and the ``#tags`` in the text; images linked with a relative path
(``![](files/x.png)``) that are in the archive become attachments. Each file is one item in its
own transaction, and nothing else changes: importing adds, it never replaces.

A second import of the same files adds nothing: a file's SHA-256 is remembered with the item it
made, and a file exported from this app whose item is still here (same id and created time) is
skipped. The report says what was imported and what was skipped, and why.

A stranger cannot reach this (it needs a login), but an archive is still untrusted input: sizes
are checked from the zip's directory and again while reading, at most ``MAX_FILES`` members are
looked at, front matter is parsed with YAML's safe loader and at most ``MAX_FRONT_MATTER`` bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import posixpath
import re
import struct
import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from .backup import ChunkSink, open_input, write_file
from .blobs import CHUNK
from .errors import AppError
from .quickadd import TAG_RE
from .services import Services
from .validation import TAG_RE as VALID_TAG

MAX_FILES = 20_000
MAX_DIRECTORY_BYTES = 8 * 1024 * 1024  # the zip's list of members: 20,000 paths of 400 bytes
_EOCD = struct.Struct("<4s4H2LH")  # APPNOTE 4.3.16: end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 4.3.15
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 4.3.14
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # 4.3.12: a member's header in the directory
MAX_FRONT_MATTER = 16 * 1024
MAX_REPORTED = 1_000
FILES_DIR = "files"
BLOB_LINK = re.compile(r"/api/v1/blobs/([0-9a-f]{64})")
IMAGE_LINK = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|#^\[\]]+')
MIME_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}
_FIELDS = ("type", "title", "status", "due", "due_time", "priority", "repeat", "repeat_from",
           "pinned")


# --- export ---------------------------------------------------------------------------------
def file_name(title: str, item_id: int, taken: set[str]) -> str:
    """A file name from the title, safe on every system, unique in the folder."""
    stem = " ".join(_UNSAFE_NAME.sub(" ", title).split()).strip(". ")[:80] or f"item {item_id}"
    name = f"{stem}.md"
    if name.casefold() in taken:
        name = f"{stem} ({item_id}).md"
    taken.add(name.casefold())
    return name


def _front_matter(item: dict[str, Any], attachments: list[dict[str, Any]]) -> str:
    import yaml

    fields: dict[str, Any] = {"id": item["id"], "type": item["type"], "title": item["title"]}
    if item["type"] == "task":
        fields.update({k: item[k] for k in ("status", "due", "due_time", "priority", "repeat",
                                            "repeat_from") if item[k] not in (None, 0, "")})
        if fields.get("repeat_from") == "due":
            del fields["repeat_from"]
    if item["pinned"]:
        fields["pinned"] = True
    if item["tags_text"]:
        fields["tags"] = item["tags_text"].split()
    fields.update(created=item["created"], updated=item["updated"])
    if attachments:
        fields["attachments"] = [{"file": a["file"], "name": a["filename"]} for a in attachments]
    return "---\n" + yaml.safe_dump(fields, allow_unicode=True, sort_keys=False) + "---\n"


def export_stream(services: Services) -> Iterator[bytes]:
    """The zip in chunks; the items are read in one snapshot, blobs stay pinned. A missing
    blob is a 409 before the response starts."""
    services.attachments.require_present()
    return _export_chunks(services)


def _export_chunks(services: Services) -> Iterator[bytes]:
    sink = ChunkSink()  # zipfile writes to an unseekable file with data descriptors
    with services.attachments.pinned(), services.db.snapshot() as conn, \
            zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        attached: dict[int, list[dict[str, Any]]] = {}
        files: dict[str, str] = {}  # digest → file path in the archive
        for row in conn.execute("SELECT * FROM attachments ORDER BY id"):
            path = f"{FILES_DIR}/{row['hash']}{MIME_EXT.get(row['mime'], '')}"
            files[row["hash"]] = path
            attached.setdefault(row["item_id"], []).append({**dict(row), "file": path})
        for digest, path in files.items():
            archive.write(services.blobs.path_for(digest), path)
            yield sink.take()
        taken: set[str] = set()
        for row in conn.execute("SELECT * FROM items ORDER BY id"):
            item = dict(row)
            body = BLOB_LINK.sub(lambda m: files.get(m[1], m[0]), item["body"])
            # the body exactly as stored, so that importing it gives it back unchanged
            text = _front_matter(item, attached.get(item["id"], [])) + body
            archive.writestr(file_name(item["title"] or body[:40], item["id"], taken), text)
            yield sink.take()
    yield sink.take()


def write_export(services: Services, path: Path) -> None:
    write_file(export_stream(services), path)


# --- import ---------------------------------------------------------------------------------
class _Source:
    """The files of a zip or a folder, by relative path, read with a size bound."""

    def __init__(self, members: dict[str, tuple[int, Any]]) -> None:
        self.members = members  # path → (size, opener)

    @classmethod
    def of_zip(cls, archive: zipfile.ZipFile) -> _Source:
        members: dict[str, tuple[int, Any]] = {}
        for info in archive.infolist():
            if not info.is_dir():
                members[_clean_path(info.filename)] = (
                    info.file_size, lambda info=info: archive.open(info))
        return cls(members)

    @classmethod
    def of_folder(cls, root: Path) -> _Source:
        """The folder's files, hidden folders (.git, .obsidian) left out unread; more than
        ``MAX_FILES`` files are refused once the count passes it, before any is imported."""
        members: dict[str, tuple[int, Any]] = {}
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = [d for d in subfolders if not _hidden(d)]
            for name in names:
                path = Path(folder, name)
                if _hidden(name) or path.is_symlink() or not path.is_file():
                    continue
                if len(members) == MAX_FILES:
                    raise _too_many_files()
                rel = path.relative_to(root).as_posix()
                members[_clean_path(rel)] = (path.stat().st_size, lambda p=path: p.open("rb"))
        return cls(members)

    def read(self, path: str, limit: int) -> bytes | None:
        """The file's bytes, or None when it is larger than ``limit``."""
        size, opener = self.members[path]
        if size > limit:
            return None
        with opener() as fh:
            data: bytes = fh.read(limit + 1)
        return None if len(data) > limit else data


def _too_many_files() -> AppError:
    return AppError(413, "too_large", f"the archive holds more than {MAX_FILES:,} files;"
                    " import it in parts", "file")


def check_directory(spool: IO[bytes]) -> None:
    """Refuse a zip whose central directory is too large, from its end record alone, before
    ``zipfile`` reads it: ``zipfile`` holds all of it and an object per member in memory (a
    million empty members: 520 MiB), whatever ``MAX_FILES`` says."""
    spool.seek(0, os.SEEK_END)
    size = spool.tell()
    tail_size = min(size, _EOCD.size + 0xFFFF)  # the end record, then a comment of 64 KiB at most
    spool.seek(size - tail_size)
    tail = spool.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise AppError(400, "bad_archive", "the file is not a zip of Markdown files")
    _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    end_record = size - tail_size + at  # where zipfile, too, finds the directory: just before
    directory_at = end_record - directory_bytes
    locator_at = end_record - _ZIP64_LOCATOR.size
    spool.seek(max(0, locator_at))
    if locator_at >= 0 and spool.read(4) == b"PK\x06\x07":  # ZIP64: the real counts
        record_at = locator_at - _ZIP64_EOCD.size
        spool.seek(max(0, record_at))
        record = spool.read(_ZIP64_EOCD.size)
        if record_at < 0 or len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            raise AppError(400, "bad_archive", "the zip's ZIP64 end record is damaged")
        _, _, _, _, _, _, _, entries, directory_bytes, _ = _ZIP64_EOCD.unpack(record)
        directory_at = record_at - directory_bytes
    if entries > MAX_FILES:
        raise _too_many_files()
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise AppError(413, "too_large", f"the zip's list of files is larger than"
                       f" {MAX_DIRECTORY_BYTES // 1024 // 1024} MiB", "file")
    # zipfile counts members by the directory's size, not by the end record's count:
    # walk the headers (46 bytes + three lengths each) to count what it would read
    spool.seek(max(0, directory_at))
    directory = spool.read(directory_bytes)
    offset, count = 0, 0
    while offset + _CENTRAL.size <= len(directory) and directory[offset:offset + 4] == b"PK\x01\x02":
        name, extra, comment = _CENTRAL.unpack_from(directory, offset)[12:15]
        offset += _CENTRAL.size + name + extra + comment
        count += 1
        if count > MAX_FILES:
            raise _too_many_files()
    spool.seek(0)


def _clean_path(name: str) -> str:
    return posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")


def _hidden(path: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in path.split("/"))


class _Importer:
    def __init__(self, services: Services, source: _Source) -> None:
        self.services = services
        self.source = source
        self.imported: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        limits = services.items.limits
        self.max_file_bytes = (limits.max_title_chars + limits.max_body_chars) * 4 + MAX_FRONT_MATTER

    def run(self) -> dict[str, Any]:
        for path in sorted(self.source.members):
            if _hidden(path) or not path.lower().endswith((".md", ".markdown")):
                continue
            try:
                self._one(path)
            except AppError as exc:
                self._skip(path, exc.message)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError):
                raise  # the archive itself is damaged: the caller says so
            except Exception:  # one file must not end the import without its report
                logging.getLogger("taskplaner").exception(
                    "markdown import: a file failed", extra={"fields": {"file": path[:200]}})
                self._skip(path, "could not be imported: an error in TaskPlaner (see its log)")
        return {
            "counts": {"imported": len(self.imported), "skipped": len(self.skipped)},
            "imported": self.imported[:MAX_REPORTED],
            "skipped": self.skipped[:MAX_REPORTED],
        }

    def _skip(self, path: str, reason: str) -> None:
        self.skipped.append({"file": path, "reason": reason})

    def _one(self, path: str) -> None:
        raw = self.source.read(path, self.max_file_bytes)
        if raw is None:
            return self._skip(path, "larger than a note can be")
        fingerprint = hashlib.sha256(raw).hexdigest()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return self._skip(path, "not UTF-8 text")
        meta, body = _split_front_matter(text)
        db = self.services.db
        with db.snapshot() as conn:
            seen = conn.execute("SELECT item_id FROM imported_files WHERE fingerprint = ?",
                                (fingerprint,)).fetchone()
            same = _same_item(conn, meta)
        if seen is not None:
            return self._skip(path, f"already imported (item {seen[0]})")
        if same is not None:
            return self._skip(path, f"already here (item {same})")
        fields, stamps = _fields(meta, body, path)
        if not fields.get("title") and not fields.get("body"):
            return self._skip(path, "empty")
        images = _local_images(fields.get("body", ""), path, self.source)
        declared = _declared_attachments(meta, path, self.source)
        item = self.services.items.create(fields, stamps=stamps)
        notes = self._attach(item["id"], images, declared)
        if stamps is not None:  # attaching touched it; it keeps the time it was last changed
            with db.write() as conn:
                conn.execute("UPDATE items SET updated = ? WHERE id = ?", (stamps[1], item["id"]))
        with db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO imported_files (fingerprint, item_id) VALUES (?, ?)",
                         (fingerprint, item["id"]))
        entry = {"file": path, "id": item["id"], "title": item["title"]}
        if notes:
            entry["attachments_skipped"] = "; ".join(notes)
        self.imported.append(entry)
        return None

    def _attach(self, item_id: int, images: dict[str, str], declared: dict[str, str]) -> list[str]:
        """Attach the images the note links to or its front matter lists (archive path → file
        name), and point the links at them."""
        links: dict[str, str] = {}
        urls: dict[str, str] = {}  # archive path → the attachment's URL
        notes = []
        wanted = {**declared, **{p: declared.get(p, posixpath.basename(p)) for p in images.values()}}
        for archived, name in wanted.items():
            data = self.source.read(archived, self.services.settings.max_upload_bytes)
            if data is None:
                notes.append(f"{archived}: larger than an upload may be")
                continue
            try:
                urls[archived] = self.services.attachments.add(item_id, name, io.BytesIO(data))["url"]
            except AppError as exc:
                notes.append(f"{archived}: {exc.message}")
        links = {target: urls[archived] for target, archived in images.items() if archived in urls}
        if links:
            item = self.services.items.get(item_id)
            body = IMAGE_LINK.sub(
                lambda m: f"![{m[1]}]({links.get(m[2], m[2])})", item["body"])
            self.services.items.update(item_id, {"body": body})
        return notes


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    import yaml

    m = FRONT_MATTER.match(text)
    if m is None or len(m[1]) > MAX_FRONT_MATTER:
        return {}, text
    try:
        meta = yaml.safe_load(m[1])
    except yaml.YAMLError as exc:
        raise AppError(422, "invalid", f"the front matter is not YAML: {str(exc)[:80]}") from None
    except RecursionError:  # PyYAML's composer recurses once per level: [[[…]]] 900 deep
        raise AppError(422, "invalid", "the front matter nests too deeply") from None
    if not isinstance(meta, dict):
        return {}, text
    return meta, text[m.end():]


def _same_item(conn: Any, meta: dict[str, Any]) -> int | None:
    """The item this file was exported from, when it is still here unchanged in identity."""
    item_id, created = meta.get("id"), meta.get("created")
    if not isinstance(item_id, int) or isinstance(item_id, bool) or not isinstance(created, str):
        return None
    row = conn.execute("SELECT id FROM items WHERE id = ? AND created = ?",
                       (item_id, created)).fetchone()
    return None if row is None else int(row[0])


def _as_text(value: Any) -> Any:
    """YAML reads 2027-01-15 as a date; the app's fields are text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _fields(meta: dict[str, Any], body: str, path: str) -> tuple[dict[str, Any], tuple[str, str] | None]:
    fields = {name: _as_text(meta[name]) for name in _FIELDS if name in meta and meta[name] is not None}
    if "type" not in fields:
        fields["type"] = "task" if {"status", "due"} & set(fields) else "note"
    if fields["type"] != "task":
        fields = {k: v for k, v in fields.items() if k in ("type", "title", "pinned")}
    if "due_time" in fields and isinstance(fields["due_time"], int):  # YAML 1.1 reads 9:30 as 570
        minutes = fields["due_time"]
        fields["due_time"] = f"{minutes // 60:02d}:{minutes % 60:02d}"
    if "title" in fields:  # given, even empty (an export of a note without a title)
        if isinstance(fields["title"], (int, float)):  # YAML reads "title: 2027" as a number
            fields["title"] = str(fields["title"])
    else:
        body = body.lstrip("\r\n")
        heading = re.match(r"#[ \t]+(.+?)[ \t#]*(?:\r?\n|$)", body)
        if heading:
            fields["title"], body = heading[1].strip(), body[heading.end():].lstrip("\r\n")
        else:
            fields["title"] = posixpath.splitext(posixpath.basename(path))[0]
    fields["body"] = body
    fields["tags"] = _tags(meta.get("tags"), body)
    created, updated = _as_text(meta.get("created")), _as_text(meta.get("updated"))
    stamps = (created, updated if isinstance(updated, str) else created) if isinstance(
        created, str) and len(created) <= 40 else None
    return fields, stamps


def _tags(declared: Any, body: str) -> list[str]:
    if isinstance(declared, str):
        declared = re.split(r"[,\s]+", declared)
    # scalars only: a YAML alias can make a list of lists that would take ages to print
    names = [str(t).strip().lstrip("#") for t in declared[:200] if isinstance(t, (str, int))
             ] if isinstance(declared, list) else []
    names += [m[1] for m in TAG_RE.finditer(FENCE.sub("", body))]
    valid: dict[str, str] = {}
    for name in names:
        if VALID_TAG.match(name):
            valid.setdefault(name.casefold(), name)
    return list(valid.values())[:50]


def _declared_attachments(meta: dict[str, Any], path: str, source: _Source) -> dict[str, str]:
    """The front matter's attachments (as this app exports them): archive path → file name."""
    found: dict[str, str] = {}
    listed = meta.get("attachments")
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            continue
        archived = _in_archive(entry["file"], path, source)
        if archived is not None:
            name = entry.get("name")
            found[archived] = name if isinstance(name, str) else posixpath.basename(archived)
    return found


def _in_archive(target: str, path: str, source: _Source) -> str | None:
    """The archive path a relative link from the file at ``path`` names, if it is there."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^/|^#", target, re.IGNORECASE):
        return None
    folder = posixpath.dirname(path)
    for candidate in (_clean_path(posixpath.join(folder, target)), _clean_path(target)):
        if candidate in source.members:
            return candidate
    return None


def _local_images(body: str, path: str, source: _Source) -> dict[str, str]:
    """Link target as written → the archive path of an image the note links to."""
    found: dict[str, str] = {}
    for m in IMAGE_LINK.finditer(body):
        if (archived := _in_archive(m[2], path, source)) is not None:
            found[m[2]] = archived
    return found


def import_archive(services: Services, stream: IO[bytes]) -> dict[str, Any]:
    """Add the Markdown files of a zip read from ``stream``; return the report."""
    with services.transfer(), tempfile.TemporaryFile(dir=services.settings.tmp_dir) as spool:
        while chunk := stream.read(CHUNK):
            spool.write(chunk)
        check_directory(spool)
        try:
            archive = zipfile.ZipFile(spool)
        except (zipfile.BadZipFile, OSError, ValueError):
            raise AppError(400, "bad_archive", "the file is not a zip of Markdown files") from None
        with archive:
            try:
                return _Importer(services, _Source.of_zip(archive)).run()
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise AppError(400, "bad_archive", f"the zip is damaged: {str(exc)[:80]}") from None


def import_path(services: Services, path: Path) -> dict[str, Any]:
    """Add the Markdown files of a folder or a zip file (the command line)."""
    if path.is_dir():
        with services.transfer():
            return _Importer(services, _Source.of_folder(path)).run()
    with open_input(path) as fh:
        return import_archive(services, fh)


def export_name() -> str:
    return f"taskplaner-markdown-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.zip"

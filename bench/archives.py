"""Archives of the worst shapes each import path accepts or must refuse unread: many members,
many rows, one huge row, deep nesting. Used by the import-memory benchmark (bench/run.py) and
its test (tests/app/test_import_memory.py), so both measure the same archives.

Each shape is (route, content type, the status it must get, builder); a builder writes the
archive into a folder and returns its path. ``rows`` sets the row counts of the many-rows
shapes: the test uses 300,000, the benchmark the issue's million."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

GZIP = "application/gzip"
ZIP = "application/zip"
RESTORE = "/api/v1/import"
MARKDOWN = "/api/v1/import/markdown"
V1_HEAD = b'{"format": "taskplaner-export", "version": 1, "attachments": [], "items": ['


class Shape(NamedTuple):
    route: str
    content_type: str
    status: int
    build: Callable[[Path, int], Path]


def tar_file(path: Path, members: list[tuple[str, Path | bytes]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members:
            if isinstance(data, Path):
                tar.add(data, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def zip_bytes(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


def json_lines(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    with path.open("wb") as fh:
        for row in rows:
            fh.write(json.dumps(row).encode() + b"\n")
    return path


def small_restore() -> bytes:
    """A valid version 1 archive of one note: loads the restore path's modules."""
    doc = json.dumps({"format": "taskplaner-export", "version": 1, "attachments": [],
                      "items": list(item_rows(1))}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("taskplaner.json")
        info.size = len(doc)
        tar.addfile(info, io.BytesIO(doc))
    return out.getvalue()


def attachment_rows(n: int) -> Iterator[dict[str, Any]]:
    digest = "ab" * 32  # referenced, never sent: the archive is refused after reading them all
    for i in range(1, n + 1):
        yield {"id": i, "item_id": i, "hash": digest, "thumb_hash": digest, "filename": f"p{i}.png",
               "mime": "image/png", "size": 10, "width": 1, "height": 1, "created": "c"}


def item_rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {"id": i, "type": "note", "title": f"note {i}", "body": "some text " * 20,
               "tags": ["many"], "created": "2026-01-01T00:00:00Z",
               "updated": "2026-01-01T00:00:00Z"}


def _v1(folder: Path, document: bytes) -> Path:
    return tar_file(folder / "v1.tar.gz", [("taskplaner.json", document)])


def _v2(folder: Path, attachments: Path | bytes = b"", items: Path | bytes = b"") -> Path:
    manifest = json.dumps({"format": "taskplaner-export", "version": 2}).encode()
    return tar_file(folder / "v2.tar.gz", [("taskplaner.json", manifest),
                                           ("attachments.jsonl", attachments),
                                           ("items.jsonl", items)])


def _gzip_bomb(folder: Path, rows: int) -> Path:
    """~60 KiB of tar.gz holding 60 MiB of JSON: refused from the member's size."""
    doc = V1_HEAD + b"[]," * (20 << 20) + b"[]]}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("taskplaner.json")
        info.size = len(doc)
        tar.addfile(info, io.BytesIO(doc))
    path = folder / "bomb.tar.gz"
    path.write_bytes(gzip.compress(buffer.getvalue(), 9))
    return path


def _many_members(folder: Path, rows: int) -> Path:
    path = folder / "many.zip"
    with zipfile.ZipFile(path, "w") as out:
        for i in range(rows):
            out.writestr(f"{i}.md", b"")
    return path


def _widest_directory(folder: Path, rows: int) -> Path:
    """20,000 members (the most) with names of 358 bytes: a directory just under 8 MiB."""
    path = folder / "wide.zip"
    with zipfile.ZipFile(path, "w") as out:
        for i in range(20_000):
            out.writestr(f"{'deep/' * 70}{i:05d}.md", f"# note {i}\n" if i % 10 == 0 else "")
    return path


SHAPES: dict[str, Shape] = {
    "v1: 5.5 million empty lists (16 MiB)": Shape(RESTORE, GZIP, 422, lambda f, n: _v1(
        f, V1_HEAD + b"[]," * 5_500_000 + b"[]]}")),
    "v1: one item a million levels deep": Shape(RESTORE, GZIP, 422, lambda f, n: _v1(
        f, V1_HEAD + b"[" * 1_000_000 + b"]" * 1_000_000 + b"]}")),
    "v1: one string of 15 MiB": Shape(RESTORE, GZIP, 422, lambda f, n: _v1(
        f, V1_HEAD + b'{"id": 1, "type": "note", "title": "x", "created": "c", "updated": "u",'
        b' "body": "' + b"a" * (15 << 20) + b'"}]}')),
    "v1: 60 MiB of JSON in 60 KiB of gzip": Shape(RESTORE, GZIP, 422, _gzip_bomb),
    "v2: many attachment rows": Shape(RESTORE, GZIP, 422, lambda f, n: _v2(
        f, json_lines(f / "a.jsonl", attachment_rows(n)))),
    "v2: one item line of a million empty lists": Shape(RESTORE, GZIP, 422, lambda f, n: _v2(
        f, items=b"[" + b"[]," * 1_000_000 + b"[]]\n")),
    "v2: 50,000 items (accepted)": Shape(RESTORE, GZIP, 200, lambda f, n: _v2(
        f, items=json_lines(f / "i.jsonl", item_rows(50_000)))),
    "Markdown zip: many empty members": Shape(MARKDOWN, ZIP, 413, _many_members),
    "Markdown zip: the largest directory accepted": Shape(MARKDOWN, ZIP, 200, _widest_directory),
}

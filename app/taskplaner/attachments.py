"""Image attachments: upload pipeline, reference counting over content-addressed blobs, gc.

A blob (image or thumbnail) is referenced by attachment rows; it is stored once however many
attachments point to it. Ordering keeps referenced blobs safe across crashes: a blob is
renamed into place *before* the row that references it commits, and unlinked only *after* the
transaction that dropped its last reference commits. ``_blob_lock`` serialises those two
steps within the process so an upload and a delete of the same content cannot interleave.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import images
from .blobs import CHUNK, BlobStore
from .db import Database, now_iso
from .errors import AppError, not_found

GC_GRACE_SECONDS = 600
BUSY_RETRY_SECONDS = 2
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    max_parallel_uploads: int
    image: images.ImageLimits


class UploadRejected(AppError):
    """An upload refused for a reason counted in metrics (``too_large``, ``corrupt``, …)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, reason, message, "file")
        self.reason = reason


def _url(digest: str) -> str:
    return f"/api/v1/blobs/{digest}"


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "item_id": row["item_id"],
        "hash": row["hash"],
        "filename": row["filename"],
        "mime": row["mime"],
        "size": row["size"],
        "width": row["width"],
        "height": row["height"],
        "created": row["created"],
        "url": _url(row["hash"]),
        "thumbnail_url": _url(row["thumb_hash"]),
    }


class Attachments:
    def __init__(self, db: Database, blobs: BlobStore, limits: UploadLimits) -> None:
        self.db = db
        self.blobs = blobs
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_parallel_uploads)
        self._blob_lock = threading.RLock()
        self._pins = 0  # exports in progress: unlinks wait until they finish
        self._deferred: set[str] = set()
        self.on_reject: list[Any] = []  # callbacks(reason) for metrics

    # --- reads -----------------------------------------------------------------------------
    def for_item(self, conn: sqlite3.Connection, item_id: int) -> list[dict[str, Any]]:
        return self.for_items(conn, [item_id]).get(item_id, [])

    def for_items(self, conn: sqlite3.Connection, item_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Each item's attachments, oldest first, in one query."""
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        rows = conn.execute(
            f"SELECT * FROM attachments WHERE item_id IN ({marks}) ORDER BY id", item_ids
        ).fetchall()
        by_item: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_item.setdefault(row["item_id"], []).append(_row_dict(row))
        return by_item

    def counts(self, conn: sqlite3.Connection, item_ids: list[int]) -> dict[int, int]:
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        rows = conn.execute(
            f"SELECT item_id, count(*) FROM attachments WHERE item_id IN ({marks})"
            " GROUP BY item_id",
            item_ids,
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def blob_mime(self, digest: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT mime FROM attachments WHERE hash = ?1"
            " UNION ALL SELECT 'image/webp' FROM attachments WHERE thumb_hash = ?1 LIMIT 1",
            (digest,),
        ).fetchone()
        return None if row is None else str(row[0])

    def stored_bytes(self) -> int:
        row = self.db.conn.execute(
            "SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT hash, size FROM attachments)"
        ).fetchone()
        return int(row[0])

    # --- upload ----------------------------------------------------------------------------
    def _reject(self, status: int, reason: str, message: str) -> UploadRejected:
        for callback in self.on_reject:
            callback(reason)
        return UploadRejected(status, reason, message)

    def add(self, item_id: int, filename: str, stream: IO[bytes]) -> dict[str, Any]:
        if self.db.conn.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
            raise not_found("item")
        # Uploads beyond the parallel limit are refused at once: a worker thread that waited
        # here would be one fewer for every other request (health probes included).
        if not self._slots.acquire(blocking=False):
            raise AppError(
                429, "busy", "too many uploads at once; try again in a moment",
                headers={"Retry-After": str(BUSY_RETRY_SECONDS)},
            )
        try:
            upload = self._receive(stream)
            fd, stored = self.blobs.temp_file()
            try:
                with os.fdopen(fd, "wb") as out:
                    image = images.process(upload, out, self.limits.image)
                digest = self.blobs.seal(stored)
            except images.ImageRejected as exc:
                stored.unlink(missing_ok=True)
                status = 413 if exc.reason == "too_many_pixels" else 415
                status = 422 if exc.reason in ("empty", "corrupt") else status
                raise self._reject(status, exc.reason, exc.message) from None
            except BaseException:
                stored.unlink(missing_ok=True)
                raise
            finally:
                upload.unlink(missing_ok=True)
            return self._store(item_id, filename, image, digest, stored)
        finally:
            self._slots.release()

    def _receive(self, stream: IO[bytes]) -> Path:
        """Copy the upload to a temp file, refusing it once it passes the size limit."""
        fd, tmp = self.blobs.temp_file()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > self.limits.max_upload_bytes:
                        raise self._reject(
                            413,
                            "too_large",
                            f"the file is larger than {self.limits.max_upload_bytes} bytes",
                        )
                    fh.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _store(self, item_id: int, filename: str, image: images.ProcessedImage, digest: str,
               tmp: Path) -> dict[str, Any]:
        size = tmp.stat().st_size
        thumb_digest, thumb_tmp = self.blobs.stage(image.thumbnail)
        name = os.path.basename(filename.replace("\\", "/"))[:MAX_FILENAME_CHARS] or "image"
        with self._blob_lock:
            self.blobs.commit(digest, tmp)
            self.blobs.commit(thumb_digest, thumb_tmp)
            try:
                with self.db.write() as conn:
                    if conn.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
                        raise not_found("item")
                    cur = conn.execute(
                        "INSERT INTO attachments (item_id, hash, thumb_hash, filename, mime, size,"
                        " width, height, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (item_id, digest, thumb_digest, name, image.mime, size,
                         image.width, image.height, now_iso()),
                    )
                    conn.execute("UPDATE items SET updated = ? WHERE id = ?", (now_iso(), item_id))
                    row = conn.execute(
                        "SELECT * FROM attachments WHERE id = ?", (cur.lastrowid,)
                    ).fetchone()
            except AppError:
                with self.db.snapshot() as conn:
                    unused = self.unreferenced(conn, [digest, thumb_digest])
                self.release(unused)
                raise
        return _row_dict(row)

    # --- delete and reference counting -------------------------------------------------------
    @contextmanager
    def blob_guard(self) -> Iterator[None]:
        with self._blob_lock:
            yield

    def hashes_of_item(self, conn: sqlite3.Connection, item_id: int) -> list[str]:
        rows = conn.execute(
            "SELECT hash, thumb_hash FROM attachments WHERE item_id = ?", (item_id,)
        ).fetchall()
        return [h for r in rows for h in (r[0], r[1])]

    def unreferenced(self, conn: sqlite3.Connection, digests: Iterable[str]) -> list[str]:
        return [
            d
            for d in set(digests)
            if conn.execute(
                "SELECT 1 FROM attachments WHERE hash = ?1 OR thumb_hash = ?1 LIMIT 1", (d,)
            ).fetchone()
            is None
        ]

    def release(self, digests: Iterable[str]) -> None:
        """Unlink blobs whose last reference is gone (deferred while an export reads them)."""
        with self._blob_lock:
            if self._pins:
                self._deferred.update(digests)
                return
            for digest in digests:
                self.blobs.remove(digest)

    def delete(self, attachment_id: int) -> None:
        with self._blob_lock:
            with self.db.write() as conn:
                row = conn.execute(
                    "SELECT item_id, hash, thumb_hash FROM attachments WHERE id = ?",
                    (attachment_id,),
                ).fetchone()
                if row is None:
                    raise not_found("attachment")
                conn.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))
                conn.execute(
                    "UPDATE items SET updated = ? WHERE id = ?", (now_iso(), row["item_id"])
                )
                unused = self.unreferenced(conn, [row["hash"], row["thumb_hash"]])
            self.release(unused)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep every blob on disk while the block runs (a consistent export)."""
        with self._blob_lock:
            self._pins += 1
        try:
            yield
        finally:
            with self._blob_lock:
                self._pins -= 1
                if not self._pins:
                    deferred, self._deferred = self._deferred, set()
                    with self.db.snapshot() as conn:
                        gone = self.unreferenced(conn, deferred)
                    for digest in gone:
                        self.blobs.remove(digest)

    # --- garbage collection ------------------------------------------------------------------
    def gc(self, grace_seconds: int = GC_GRACE_SECONDS) -> dict[str, int]:
        """Remove unreferenced blobs and stale temp files older than the grace period."""
        cutoff = time.time() - grace_seconds
        removed_blobs = removed_tmp = 0
        with self._blob_lock:
            with self.db.snapshot() as conn:
                referenced = {
                    h
                    for r in conn.execute("SELECT hash, thumb_hash FROM attachments")
                    for h in (r[0], r[1])
                }
            for digest in list(self.blobs.all_digests()):
                path = self.blobs.path_for(digest)
                if digest not in referenced and path.stat().st_mtime < cutoff:
                    if self._pins:  # an export may still read it; removed when it ends
                        self._deferred.add(digest)
                        continue
                    path.unlink(missing_ok=True)
                    removed_blobs += 1
            for tmp in self.blobs.tmp_dir.iterdir():
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink(missing_ok=True)
                    removed_tmp += 1
        return {"blobs_removed": removed_blobs, "temp_files_removed": removed_tmp}

    def require_present(self) -> None:
        """409 naming the first attachment whose image or thumbnail file is gone (one stat per
        file; ``check`` also reads the bytes): an export without it would not restore what the
        library shows, so none is made."""
        count, first, gone = 0, None, ""
        with self.db.snapshot() as conn:
            for row in conn.execute(
                    "SELECT id, item_id, hash, thumb_hash, filename FROM attachments ORDER BY id"):
                missing = [d for d in (row["hash"], row["thumb_hash"]) if not self.blobs.exists(d)]
                if missing:
                    count += 1
                    if first is None:
                        first, gone = row, missing[0]
        if first is not None:
            raise AppError(
                409, "missing_blobs",
                f"{count} attachment file(s) are missing, first {gone[:12]}… of"
                f" '{first['filename'][:80]}' (attachment {first['id']}) in item {first['item_id']};"
                " nothing was exported. `taskplaner check` lists them and says how to repair")

    def using(self, digests: list[str]) -> list[sqlite3.Row]:
        """The attachments whose image or thumbnail is one of ``digests``."""
        wanted = set(digests)
        with self.db.snapshot() as conn:
            return [row for row in conn.execute(
                "SELECT id, item_id, hash, thumb_hash, filename FROM attachments ORDER BY id")
                if row["hash"] in wanted or row["thumb_hash"] in wanted]

    def missing_blobs(self) -> list[str]:
        """Referenced blobs that are absent or whose bytes no longer match their hash."""
        with self.db.snapshot() as conn:
            referenced = {
                h for r in conn.execute("SELECT hash, thumb_hash FROM attachments")
                for h in (r[0], r[1])
            }
        return sorted(d for d in referenced if not self.blobs.exists(d) or not self.blobs.verify(d))


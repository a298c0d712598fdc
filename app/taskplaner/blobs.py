"""Content-addressed file store.

Layout: ``<data>/blobs/ab/abcdef…`` where the name is the SHA-256 of the file's bytes and the
folder is its first two hex digits. A blob is written to ``<data>/tmp`` first, fsynced, then
renamed into place, so a reader never sees a partial file and a crash leaves at worst an
unreferenced temp file or blob, which ``taskplaner gc`` removes.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        root.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        if not HASH_RE.match(digest):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def temp_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="up-")
        return fd, Path(name)

    def stage(self, data: bytes) -> tuple[str, Path]:
        """Write bytes to a durable temp file; return (digest, temp path) for ``commit``."""
        fd, tmp = self.temp_file()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return hashlib.sha256(data).hexdigest(), tmp

    def seal(self, tmp: Path) -> str:
        """Make a temp file written by someone else durable; return its digest for ``commit``."""
        h = hashlib.sha256()
        with tmp.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
            os.fsync(fh.fileno())
        return h.hexdigest()

    def commit(self, digest: str, tmp: Path) -> None:
        """Move a staged file into place; if the content is already stored, keep the old copy."""
        final = self.path_for(digest)
        if final.is_file():
            tmp.unlink(missing_ok=True)
            os.utime(final)  # marks it recently used, so a concurrent gc grace period covers it
            return
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def put(self, data: bytes) -> str:
        digest, tmp = self.stage(data)
        self.commit(digest, tmp)
        return digest

    def remove(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    def all_digests(self) -> Iterator[str]:
        for sub in self.root.iterdir():
            if sub.is_dir():
                for f in sub.iterdir():
                    if HASH_RE.match(f.name):
                        yield f.name

    def verify(self, digest: str) -> bool:
        """True when the stored file still hashes to its name."""
        h = hashlib.sha256()
        with self.path_for(digest).open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        return h.hexdigest() == digest

"""Export and import of everything as one tar.gz (``taskplaner.backup``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import bottle

from .. import backup
from ..errors import AppError
from ..services import Services
from .bodies import multipart_file


def register(app: bottle.Bottle, s: Services) -> None:
    @app.get("/api/v1/export")
    def export() -> Iterator[bytes]:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        bottle.response.content_type = "application/gzip"
        bottle.response.set_header(
            "Content-Disposition", f'attachment; filename="taskplaner-{stamp}.tar.gz"'
        )
        return backup.export_stream(s)

    @app.post("/api/v1/import", body="import")
    def import_() -> dict[str, Any]:
        ctype = bottle.request.content_type.lower()
        if ctype.startswith("multipart/form-data"):
            stream = multipart_file().file
        elif ctype in ("application/gzip", "application/x-gzip", "application/octet-stream"):
            stream = bottle.request.body
        else:
            raise AppError(415, "unsupported_media_type", "send a tar.gz export")
        return {"imported": backup.import_archive(s, stream)}

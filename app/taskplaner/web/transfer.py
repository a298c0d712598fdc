"""Export and import: everything as one tar.gz (``taskplaner.backup``, replaces all data), and
a zip of Markdown files (``taskplaner.markdown_folder``, adds to what is there)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import bottle

from .. import backup, markdown_folder
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
        stream = _upload(("application/gzip", "application/x-gzip"), "send a tar.gz export")
        return {"imported": backup.import_archive(s, stream)}

    @app.get("/api/v1/export/markdown")
    def export_markdown() -> Iterator[bytes]:
        bottle.response.content_type = "application/zip"
        bottle.response.set_header(
            "Content-Disposition", f'attachment; filename="{markdown_folder.export_name()}"')
        return markdown_folder.export_stream(s)

    @app.post("/api/v1/import/markdown", body="import")
    def import_markdown() -> dict[str, Any]:
        stream = _upload(("application/zip", "application/x-zip-compressed"),
                         "send a zip of Markdown files")
        return markdown_folder.import_archive(s, stream)


def _upload(types: tuple[str, ...], hint: str) -> Any:
    """The archive sent as the body (of one of ``types``) or as a multipart file field."""
    ctype = bottle.request.content_type.lower()
    if ctype.startswith("multipart/form-data"):
        return multipart_file().file
    if ctype in (*types, "application/octet-stream"):
        return bottle.request.body
    raise AppError(415, "unsupported_media_type", hint)

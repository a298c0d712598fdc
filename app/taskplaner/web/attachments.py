"""Image attachments and the blobs they point at."""

from __future__ import annotations

from typing import Any

import bottle

from ..errors import AppError
from ..services import Services
from .bodies import multipart_file
from .core import header

BLOB_CSP = "default-src 'none'; sandbox"


def register(app: bottle.Bottle, s: Services) -> None:
    @app.post("/api/v1/items/<item_id:id>/attachments", body="upload")
    def upload(item_id: int) -> dict[str, Any]:
        if not bottle.request.content_type.lower().startswith("multipart/form-data"):
            raise AppError(415, "unsupported_media_type", "send the file as multipart/form-data")
        part = multipart_file()
        result = s.attachments.add(item_id, part.raw_filename or "image", part.file)
        bottle.response.status = 201
        return result

    @app.delete("/api/v1/attachments/<attachment_id:id>")
    def delete_attachment(attachment_id: int) -> str:
        s.attachments.delete(attachment_id)
        bottle.response.status = 204
        return ""

    @app.get("/api/v1/blobs/<digest:re:[0-9a-f]{64}>")
    def blob(digest: str) -> Any:
        mime = s.attachments.blob_mime(digest)
        if mime is None or not s.blobs.exists(digest):
            raise AppError(404, "not_found", "blob not found")
        etag = f'"{digest}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Security-Policy": BLOB_CSP,
            "Content-Disposition": "inline",
        }
        if header(bottle.request.environ, "If-None-Match") == etag:
            return bottle.HTTPResponse(status=304, **headers)
        response = bottle.static_file(
            digest, root=str(s.blobs.path_for(digest).parent), mimetype=mime
        )
        for name, value in headers.items():
            response.set_header(name, value)
        return response

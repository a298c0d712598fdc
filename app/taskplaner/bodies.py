"""Reading request bodies: every failure is a 4xx with a clear message, never a 500."""

from __future__ import annotations

import json
from typing import Any

import bottle

from .errors import AppError


def json_body(max_bytes: int) -> Any:
    """Parse a JSON request body with a size cap and a clear 4xx for every failure."""
    ctype = bottle.request.content_type.split(";")[0].strip().lower()
    if ctype != "application/json":
        raise AppError(415, "unsupported_media_type", "send the body as application/json")
    length = bottle.request.content_length
    if length > max_bytes:
        raise AppError(413, "too_large", f"the JSON body is larger than {max_bytes} bytes")
    raw = bottle.request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise AppError(413, "too_large", f"the JSON body is larger than {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AppError(400, "bad_json", "the body is not valid JSON") from None


def multipart_file(field: str = "file") -> Any:
    """The uploaded file of a multipart field; every parse failure is a 400, never a 500."""
    try:
        upload = bottle.request.files.get(field)
    except (bottle.MultipartError, ValueError):  # bottle raises ValueError on bad part headers
        raise AppError(400, "bad_multipart", "the multipart body could not be parsed") from None
    if upload is None:
        raise AppError(400, "bad_request", f"the multipart field '{field}' is missing", field)
    return upload

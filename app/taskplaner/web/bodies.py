"""Reading request bodies: every failure is a 4xx with a clear message, never a 500.

Sizes are checked before this runs (``core``, and the server's gate before the body arrives).
"""

from __future__ import annotations

from typing import Any

import bottle

from ..errors import AppError
from ..validation import parse_json


def json_body(max_bytes: int) -> Any:
    """The request's JSON body as plain values (see ``validation.parse_json``)."""
    ctype = bottle.request.content_type.split(";")[0].strip().lower()
    if ctype != "application/json":
        raise AppError(415, "unsupported_media_type", "send the body as application/json")
    raw = bottle.request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise AppError(413, "too_large", f"the JSON body is larger than {max_bytes} bytes")
    return parse_json(raw)


def multipart_file(field: str = "file") -> Any:
    """The uploaded file of a multipart field; every parse failure is a 400, never a 500."""
    try:
        upload = bottle.request.files.get(field)
    except (bottle.MultipartError, ValueError, LookupError):
        # ValueError: bad part headers (UnicodeDecodeError included); LookupError: a charset
        # Python does not know, named on the request or on a part
        raise AppError(400, "bad_multipart", "the multipart body could not be parsed") from None
    if upload is None:
        raise AppError(400, "bad_request", f"the multipart field '{field}' is missing", field)
    return upload

"""Checks shared by the services: each raises AppError(422) naming the field."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date
from typing import Any

from .errors import AppError, invalid

# C0 controls other than tab/newline/carriage return never belong in text; removing them also
# keeps the search snippet markers (\x02, \x03) unambiguous.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TAG_RE = re.compile(r"^[^\W_][\w\-./]{0,63}$")


def strip_controls(text: str) -> str:
    return _CONTROL.sub("", text)


def clean_text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    value = strip_controls(value)
    if len(value) > max_chars:
        raise invalid(field, f"{field} is longer than {max_chars} characters")
    return value


def tag_name(value: Any, field: str = "tags") -> str:
    if not isinstance(value, str) or not TAG_RE.match(value.strip().lstrip("#")):
        raise invalid(
            field,
            "a tag is 1-64 letters, digits or - _ . / and starts with a letter or digit",
        )
    return value.strip().lstrip("#")


def iso_date(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise invalid(field, f"{field} must be a date like 2026-12-31")


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise invalid(field, f"{field} must be one of: {', '.join(allowed)}")
    return str(value)


def int_range(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid(field, f"{field} must be a whole number from {lo} to {hi}")
    return value


def page_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AppError(400, "bad_request", "limit must be a whole number", "limit") from None
    if not 1 <= value <= maximum:
        raise AppError(400, "bad_request", f"limit must be from 1 to {maximum}", "limit")
    return value


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> int | None:
    """Cursors are opaque to clients; a damaged one is a 400, not a 500."""
    if raw is None or raw == "":
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise AppError(400, "bad_request", "cursor is not valid", "cursor") from None

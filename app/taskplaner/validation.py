"""Checks shared by the services: each raises AppError(422) naming the field."""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from datetime import date
from typing import Any

from .errors import AppError, invalid

# C0 controls other than tab/newline/carriage return never belong in text; removing them also
# keeps the search snippet markers (\x02, \x03) unambiguous.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TAG_RE = re.compile(r"^[^\W_][\w\-./]{0,63}$")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_JSON_DEPTH = 32  # the deepest document the API defines is 3 levels
MAX_SQLITE_INT = 2**63 - 1  # the largest id or offset SQLite can take


def parse_json(raw: bytes) -> Any:
    """Parse JSON text into plain values, or raise AppError(400, "bad_json") saying why.

    Beyond syntax this refuses what would fail later, deep inside the app: invalid UTF-8,
    nesting deeper than MAX_JSON_DEPTH (Python's parser recurses), integers beyond Python's
    4,300-digit conversion limit, NaN and Infinity, and lone surrogates such as "\\ud800",
    which are valid JSON escapes but not text (SQLite cannot store them). Whole numbers
    written with a fraction (``2.0``) are read as integers, as JSON Schema reads them."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=no_constants, parse_float=_number)
    except RecursionError:
        raise _bad_json(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digit limit
        reason = "it is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)[:120]
        raise _bad_json(f"the body is not valid JSON: {reason}") from None
    _check_plain(value)
    return value


def _number(text: str) -> float | int:
    """A JSON number with a fraction or exponent. One that is whole (605.0, 1e3) is an int:
    JSON Schema, and so the OpenAPI document, calls it an integer, and the app agrees."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _bad_json(message: str) -> AppError:
    return AppError(400, "bad_json", message)


def _check_plain(value: Any) -> None:
    """Depth and text checks without recursion, so no document can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise _bad_json("the JSON holds a lone surrogate (\\ud800-\\udfff), which is not text")
        elif isinstance(node, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise _bad_json(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def strip_controls(text: str) -> str:
    return _CONTROL.sub("", text)


def stored_text(text: str) -> str:
    """Text as the app stores it: without C0 controls, and composed (NFC), so that "é" typed
    on one system and "e" + combining accent from another are the same text to search."""
    return unicodedata.normalize("NFC", strip_controls(text))


def clean_text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    value = stored_text(value)
    if len(value) > max_chars:
        raise invalid(field, f"{field} is longer than {max_chars} characters")
    return value


def tag_name(value: Any, field: str = "tags") -> str:
    if isinstance(value, str):
        value = unicodedata.normalize("NFC", value)
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


_CLOCK_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def clock_time(value: Any, field: str) -> str | None:
    """A time of day as 24-hour HH:MM, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _CLOCK_RE.match(value):
        return value
    raise invalid(field, f"{field} must be a time like 09:30")


def flag(value: Any, field: str) -> int:
    """A JSON boolean, stored as SQLite's 0 or 1."""
    if not isinstance(value, bool):
        raise invalid(field, f"{field} must be true or false")
    return int(value)


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


def encode_cursor(*values: int) -> str:
    return base64.urlsafe_b64encode(".".join(map(str, values)).encode()).decode().rstrip("=")


def _cursor_values(raw: str) -> list[int]:
    """Cursors are opaque to clients; a damaged one is a 400, not a 500."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        values = [int(part) for part in text.split(".")]
        if not all(0 <= value <= MAX_SQLITE_INT for value in values):
            raise ValueError
        return values
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise AppError(400, "bad_request", "cursor is not valid", "cursor") from None


def decode_cursor(raw: str | None) -> int | None:
    """A cursor holding one number (an offset)."""
    if raw is None or raw == "":
        return None
    values = _cursor_values(raw)
    if len(values) != 1:
        raise AppError(400, "bad_request", "cursor is not valid", "cursor")
    return values[0]


def decode_key_cursor(raw: str | None) -> tuple[int, int] | None:
    """A list cursor: the (pinned, id) sort key of the last item shown. One number alone is
    an id from before pinning existed, on the unpinned part of the list."""
    if raw is None or raw == "":
        return None
    values = _cursor_values(raw)
    if len(values) == 1:
        return 0, values[0]
    if len(values) != 2:
        raise AppError(400, "bad_request", "cursor is not valid", "cursor")
    return values[0], values[1]

"""The user's time zone, which decides what "today" is for due dates, the agenda and the feed.

The browser reports its zone (``Intl``) and the UI stores it as a setting; until then it is UTC.
Zone data comes from the system, or from the ``tzdata`` package where the system has none
(slim container images).
"""

from __future__ import annotations

import functools
import sqlite3
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from .db import get_setting, set_setting
from .errors import invalid

SETTING = "timezone"
DEFAULT_ZONE = "UTC"


@functools.cache
def zone_names() -> frozenset[str]:
    """Every zone the time-zone database names, links (US/Pacific) included. A name is checked
    against this list, never opened as a path: "America" is a folder of the database, and
    ``ZoneInfo`` answers it with IsADirectoryError. ``localtime`` is the host's own zone,
    not a name that means the same on every machine."""
    return frozenset(available_timezones() - {"localtime"})


def zone_name(value: Any, field: str = "timezone") -> str:
    """A valid IANA zone name such as Europe/Berlin; 422 naming ``field`` otherwise."""
    if isinstance(value, str) and value in zone_names():
        return value
    raise invalid(field, f"{field} must be an IANA time zone such as Europe/Berlin")


def user_zone(conn: sqlite3.Connection) -> ZoneInfo:
    name = get_setting(conn, SETTING)
    return ZoneInfo(name if name in zone_names() else DEFAULT_ZONE)


def set_user_zone(conn: sqlite3.Connection, name: Any) -> str:
    valid = zone_name(name)
    set_setting(conn, SETTING, valid)
    return valid


def user_today(conn: sqlite3.Connection) -> date:
    return datetime.now(user_zone(conn)).date()


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
NEAR = {-1: "yesterday", 0: "today", 1: "tomorrow"}


def day_words(day: str, today: str) -> str:
    """An ISO day as a person reads it, seen from ``today``: "today", "tomorrow", "yesterday",
    else "Tue 8 Dec", with the year when it is not today's. Fixed English names: the words
    must not change with the server's locale."""
    d, t = date.fromisoformat(day), date.fromisoformat(today)
    apart = (d - t).days  # a difference, not t + 1 day: that overflows on 9999-12-31
    if apart in NEAR:
        return NEAR[apart]
    words = f"{WEEKDAYS[d.weekday()]} {d.day} {MONTHS[d.month - 1]}"
    return words if d.year == t.year else f"{words} {d.year}"

"""Repeating tasks: the rule is a small subset of RFC 5545's RRULE, so a calendar reads it as is.

Accepted: ``FREQ=DAILY|WEEKLY|MONTHLY|YEARLY``, ``INTERVAL=1..366``, and for weekly rules
``BYDAY=MO,TU,…``. Rules are stored in one spelling (``canonical``) so equal rules compare equal.

The next occurrence is the first one after the later of the anchor (the due date, or the
completion day when the task repeats from completion) and today: a weekly task ticked off three
weeks late comes back next week, not three times in a row. Months and years count from the
anchor with the day clamped to the month's end, so "every month" from 31 January falls on
28 February, not on 31 March as an RRULE reader would skip to.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta

from .errors import invalid

FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MAX_INTERVAL = 366
REPEAT_FROM = ("due", "done")
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNIT = {"DAILY": "days", "WEEKLY": "weeks", "MONTHLY": "months", "YEARLY": "years"}


def canonical(value: Any, field: str = "repeat") -> str | None:
    """The rule in its one stored spelling, or None for no repetition; 422 naming ``field``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 80:
        raise invalid(field, f"{field} must be a rule like FREQ=WEEKLY;INTERVAL=2 or FREQ=WEEKLY;BYDAY=MO")
    parts: dict[str, str] = {}
    for part in value.upper().removeprefix("RRULE:").split(";"):
        key, sep, val = part.partition("=")
        if not sep or key in parts or key not in ("FREQ", "INTERVAL", "BYDAY"):
            raise invalid(field, f"{field}: {part!r} is not FREQ=, INTERVAL= or BYDAY= (each once)")
        parts[key] = val
    freq = parts.get("FREQ")
    if freq not in FREQS:
        raise invalid(field, f"{field}: FREQ must be one of {', '.join(FREQS)}")
    interval_text = parts.get("INTERVAL", "1")
    # ASCII digits only: str.isdigit() is true for "²", which int() refuses
    if not re.fullmatch(r"[0-9]{1,3}", interval_text) or not 1 <= int(interval_text) <= MAX_INTERVAL:
        raise invalid(field, f"{field}: INTERVAL must be a whole number from 1 to {MAX_INTERVAL}")
    rule = f"FREQ={freq}"
    if int(interval_text) > 1:
        rule += f";INTERVAL={int(interval_text)}"
    if "BYDAY" in parts:
        days = parts["BYDAY"].split(",")
        if freq != "WEEKLY" or not days or any(d not in WEEKDAYS for d in days):
            raise invalid(field, f"{field}: BYDAY takes MO…SU, with FREQ=WEEKLY only")
        rule += ";BYDAY=" + ",".join(d for d in WEEKDAYS if d in days)
    return rule


def _parts(rule: str) -> tuple[str, int, list[int]]:
    """FREQ, INTERVAL and the BYDAY weekdays (Monday 0) of a canonical rule."""
    fields = dict(p.split("=", 1) for p in rule.split(";"))
    codes = fields["BYDAY"].split(",") if "BYDAY" in fields else []
    return fields["FREQ"], int(fields.get("INTERVAL", "1")), sorted(WEEKDAYS.index(d) for d in codes)


def _weekly(anchor: date, interval: int, days: list[int], earliest: date) -> date:
    """The first day on or after ``earliest`` of a weekly rule with days that starts at
    ``anchor``: RRULE's weeks (from Monday) count from the anchor's, every ``interval``-th
    one holds the days, and none is before the anchor. Found by arithmetic in two steps at
    most, so an anchor in year 1 costs what yesterday's does."""
    floor = max(earliest, anchor)
    monday = anchor - timedelta(days=anchor.weekday())
    week = (floor - monday).days // 7
    week -= week % interval
    while True:
        start = monday + timedelta(weeks=week)
        for weekday_index in days:
            if (day := start + timedelta(days=weekday_index)) >= floor:
                return day
        week += interval


def first_on_or_after(rule: str, start: date) -> date | None:
    """The rule's first day on or after ``start`` (a new "every monday" task is due on
    Monday); None when the calendar ends first (year 9999)."""
    _, interval, days = _parts(rule)
    if not days:
        return start
    try:
        return _weekly(start, interval, days, start)
    except OverflowError:
        return None


def next_due(rule: str, anchor: date, today: date) -> date | None:
    """The first occurrence after both ``anchor`` and ``today``, counted from ``anchor``;
    None when there is none before the calendar ends (year 9999): the series ends there."""
    freq, interval, days = _parts(rule)
    floor = max(anchor, today)
    try:
        if days:
            return _weekly(anchor, interval, days, floor + timedelta(days=1))
        unit = _UNIT[freq]
        # jump close to the floor, then step; each step is counted from the anchor (no drift)
        if unit in ("days", "weeks"):
            step_days = interval * (7 if unit == "weeks" else 1)
            steps = max(1, (floor - anchor).days // step_days)
        else:
            months = (floor.year - anchor.year) * 12 + floor.month - anchor.month
            steps = max(1, months // (interval * (12 if unit == "years" else 1)))
        while (found_day := anchor + relativedelta(**{unit: interval * steps})) <= floor:
            steps += 1
        return found_day
    except (OverflowError, ValueError):  # date arithmetic past 9999-12-31
        return None


def describe(rule: str) -> str:
    """Words for a rule, as the UI shows it: "every 2 weeks", "every mon, thu"."""
    freq, interval, days = _parts(rule)
    unit = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month", "YEARLY": "year"}[freq]
    if days:
        names = ", ".join(WEEKDAY_NAMES[d] for d in days)
        return f"every {names}" if interval == 1 else f"every {interval} weeks on {names}"
    return f"every {unit}" if interval == 1 else f"every {interval} {unit}s"

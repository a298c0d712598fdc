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

from datetime import date, datetime
from typing import Any

from dateutil.relativedelta import relativedelta
from dateutil.rrule import WEEKLY, rrule, weekday, weekdays

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
    if not interval_text.isdigit() or not 1 <= int(interval_text) <= MAX_INTERVAL:
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


def _parts(rule: str) -> tuple[str, int, list[weekday]]:
    fields = dict(p.split("=", 1) for p in rule.split(";"))
    codes = fields["BYDAY"].split(",") if "BYDAY" in fields else []
    return fields["FREQ"], int(fields.get("INTERVAL", "1")), [weekdays[WEEKDAYS.index(d)] for d in codes]


def first_on_or_after(rule: str, start: date) -> date:
    """The rule's first day on or after ``start``: a new "every monday" task is due on Monday."""
    _, interval, days = _parts(rule)
    if not days:
        return start
    found = rrule(WEEKLY, interval=interval, byweekday=days, dtstart=_midnight(start))[0]
    return found.date()


def next_due(rule: str, anchor: date, today: date) -> date:
    """The first occurrence after both ``anchor`` and ``today``, counted from ``anchor``."""
    freq, interval, days = _parts(rule)
    floor = max(anchor, today)
    if days:
        found = rrule(WEEKLY, interval=interval, byweekday=days, dtstart=_midnight(anchor))
        # a weekly rule with days always has a next one
        return found.after(_midnight(floor)).date()
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


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def describe(rule: str) -> str:
    """Words for a rule, as the UI shows it: "every 2 weeks", "every mon, thu"."""
    freq, interval, days = _parts(rule)
    unit = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month", "YEARLY": "year"}[freq]
    if days:
        names = ", ".join(WEEKDAY_NAMES[d.weekday] for d in days)
        return f"every {names}" if interval == 1 else f"every {interval} weeks on {names}"
    return f"every {unit}" if interval == 1 else f"every {interval} {unit}s"

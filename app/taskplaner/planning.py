"""Planning: the agenda of open tasks by due day, quick add, and the calendar feed.

"Today" is the user's (``localtime``). The calendar feed is an iCalendar (RFC 5545) document
of open tasks with a due date, one all-day or timed event each with a reminder, at a URL that
holds its own token: a phone calendar subscribes to it and reminds the user. The token reads
the feed and nothing else, and a new one revokes the old. Only its hash is stored.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import quickadd
from .attachments import Attachments
from .auth import same_secret, secret_hash
from .db import Database, get_setting, set_setting
from .errors import invalid
from .items import Items, row_to_item
from .localtime import SETTING as ZONE_SETTING
from .localtime import set_user_zone, user_today, user_zone

# (name, label, condition on items.due against today and today + 7 days)
SECTIONS = (
    ("overdue", "Overdue", "due < :today"),
    ("today", "Today", "due = :today"),
    ("week", "Next 7 days", "due > :today AND due <= :week"),
    ("later", "Later", "due > :week"),
    ("nodate", "No date", "due IS NULL"),
)
MAX_PER_SECTION = 200
FEED_SETTING = "calendar_feed_token"
FEED_MAX_EVENTS = 2000
PRODID = "-//TaskPlaner//calendar feed//EN"
TIMED_MINUTES = 30  # a task with a time is shown as an event this long
REMIND_DAY_AT = timedelta(hours=9)  # an all-day task's reminder: 09:00 on its day


def _open_tasks(condition: str) -> str:
    return f"SELECT * FROM items WHERE type = 'task' AND status = 'open' AND {condition}"


def _bounds(conn: sqlite3.Connection) -> dict[str, str]:
    today = user_today(conn)
    return {"today": today.isoformat(), "week": (today + timedelta(days=7)).isoformat()}


class Planning:
    def __init__(self, db: Database, items: Items, attachments: Attachments) -> None:
        self.db = db
        self.items = items
        self.attachments = attachments

    # --- settings ---------------------------------------------------------------------------
    def today(self) -> date:
        with self.db.snapshot() as conn:
            return user_today(conn)

    def settings(self) -> dict[str, Any]:
        with self.db.snapshot() as conn:
            return {"timezone": get_setting(conn, ZONE_SETTING) or "UTC",
                    "calendar_feed": get_setting(conn, FEED_SETTING) is not None}

    def update_settings(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or set(data) - {"timezone"}:
            raise invalid("timezone", "settings take one field: timezone")
        if "timezone" in data:
            with self.db.write() as conn:
                set_user_zone(conn, data["timezone"])
        return self.settings()

    # --- agenda -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.db.snapshot() as conn:
            bounds = _bounds(conn)
            sums = ", ".join(f"COALESCE(SUM({cond}), 0)" for _, _, cond in SECTIONS)
            row = conn.execute(
                f"SELECT {sums} FROM items WHERE type = 'task' AND status = 'open'", bounds
            ).fetchone()
        return {name: int(row[i]) for i, (name, _, _) in enumerate(SECTIONS)}

    def agenda(self, with_attachments: bool = False) -> dict[str, Any]:
        """Open tasks in sections, soonest first, at most MAX_PER_SECTION each."""
        with self.db.snapshot() as conn:
            bounds = _bounds(conn)
            sections = []
            for name, label, condition in SECTIONS:
                count = conn.execute(
                    f"SELECT count(*) FROM ({_open_tasks(condition)})", bounds).fetchone()[0]
                rows = conn.execute(
                    _open_tasks(condition) + " ORDER BY pinned DESC, due, due_time IS NULL,"
                    " due_time, priority DESC, id LIMIT :limit",
                    {**bounds, "limit": MAX_PER_SECTION},
                ).fetchall()
                items = [row_to_item(r) for r in rows]
                ids = [i["id"] for i in items]
                attached = self.attachments.for_items(conn, ids) if with_attachments else {}
                for item in items:
                    item["attachments"] = attached.get(item["id"], [])
                sections.append({"name": name, "label": label, "count": count, "items": items})
            return {"today": bounds["today"], "timezone": str(user_zone(conn)),
                    "sections": sections}

    # --- quick add --------------------------------------------------------------------------
    def quick_parse(self, data: Any) -> quickadd.Parsed:
        if not isinstance(data, dict) or set(data) - {"text", "task", "ignore"}:
            raise invalid("text", "quick add takes text, and optionally task and ignore")
        text, as_task, ignore = data.get("text"), data.get("task", False), data.get("ignore", [])
        limits = self.items.limits
        if not isinstance(text, str) or len(text) > limits.max_title_chars + limits.max_body_chars:
            raise invalid("text", "text must be a string no longer than a title and a body")
        if not isinstance(as_task, bool):
            raise invalid("task", "task must be true or false")
        if not isinstance(ignore, list) or len(ignore) > quickadd.MAX_IGNORED or not all(
                isinstance(p, str) and len(p) <= 200 for p in ignore):
            raise invalid("ignore", f"ignore must be a list of at most {quickadd.MAX_IGNORED} phrases")
        with self.db.snapshot() as conn:
            today = user_today(conn)
        return quickadd.parse(text, today, as_task, ignore, limits.max_title_chars)

    def quick_add(self, data: Any) -> dict[str, Any]:
        parsed = self.quick_parse(data)
        if not parsed.title and not parsed.body:
            raise invalid("text", "write something to save")
        return self.items.create(parsed.item())

    # --- calendar feed ----------------------------------------------------------------------
    def new_feed_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self.db.write() as conn:
            set_setting(conn, FEED_SETTING, secret_hash(token))
        return token

    def revoke_feed(self) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (FEED_SETTING,))

    def feed(self, token: str) -> bytes | None:
        """The iCalendar document, or None when the token is not the feed's."""
        with self.db.snapshot() as conn:
            stored = get_setting(conn, FEED_SETTING)
            if stored is None or not same_secret(secret_hash(token) if token.isascii() else "", stored):
                return None
            zone = user_zone(conn)
            rows = conn.execute(
                _open_tasks("due IS NOT NULL") + " ORDER BY due, id LIMIT ?", (FEED_MAX_EVENTS,)
            ).fetchall()
        return _calendar(rows, zone)


def _calendar(rows: list[sqlite3.Row], zone: Any) -> bytes:
    from icalendar import Calendar

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "TaskPlaner")
    stamp = datetime.now(zone)
    for row in rows:
        try:
            cal.add_component(_event(row, zone, stamp))
        except (OverflowError, ValueError):
            # one task cannot take the feed down: a time that has no UTC form (year 1 ahead
            # of UTC, 9999-12-31 behind it) or an end past 9999-12-31 leaves that event out
            continue
    return bytes(cal.to_ical())


def _event(row: sqlite3.Row, zone: Any, stamp: datetime) -> Any:
    from icalendar import Alarm, Event

    event = Event()
    event.add("uid", f"task-{row['id']}@taskplaner")
    event.add("dtstamp", stamp)
    event.add("summary", row["title"] or row["body"][:80] or "Task")
    if row["body"]:
        event.add("description", row["body"][:2000])
    day = date.fromisoformat(row["due"])
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", row["title"] or "Task due")
    if row["due_time"]:
        hour, minute = map(int, row["due_time"].split(":"))
        # in UTC: a calendar needs no time zone definition to place it
        start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)
        event.add("dtstart", start)
        event.add("dtend", start + timedelta(minutes=TIMED_MINUTES))
        alarm.add("trigger", timedelta(minutes=-15))
    else:
        event.add("dtstart", day)
        event.add("dtend", day + timedelta(days=1))
        alarm.add("trigger", REMIND_DAY_AT)
    if row["priority"]:
        event.add("priority", {1: 9, 2: 5, 3: 1}[row["priority"]])  # RFC 5545: 1 highest
    event.add_component(alarm)
    return event

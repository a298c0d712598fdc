"""The fuzz layer over the domain, not only the wire: hypothesis drives the planning code with
every date the API accepts (year 1 to 9999), every zone of the time-zone database (folders and
links too), every repeat rule the grammar allows and its near misses, and quick-add text of any
length with any ignore list. No exception other than the app's own 422 escapes, and the cost of
each operation is bounded (a constant for rules and feeds, linear in the text for quick add).

The HTTP-level reproductions are in test_hostile_planning.py; this file is where a new input
path adds its strategy (see taskplaner/web/__init__.py)."""

from __future__ import annotations

import string
import time
import zoneinfo
from datetime import date, datetime, timedelta

import icalendar
from dateutil.rrule import WEEKLY, rrule, weekdays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskplaner import quickadd, recurrence
from taskplaner.errors import AppError
from taskplaner.localtime import zone_name, zone_names
from taskplaner.planning import _calendar

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
DAYS = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
# the ends of the calendar, where arithmetic overflows, are drawn as often as the middle
EDGE_DAYS = st.one_of(DAYS, st.dates(min_value=date(9999, 11, 1), max_value=date(9999, 12, 31)),
                      st.dates(min_value=date(1, 1, 1), max_value=date(1, 2, 1)))
ZONES = st.sampled_from(sorted(zone_names()))
FOLDERS = sorted({name.split("/")[0] for name in zone_names() if "/" in name})
ZONE_LIKE = st.one_of(ZONES, st.sampled_from(FOLDERS), st.text(max_size=70),
                      st.sampled_from(["", "/", "..", "../../etc/passwd", "America/", "posix",
                                       "right/UTC", "localtime", "UTC\x00", "Europe//Berlin"]))
CODES = st.lists(st.sampled_from(recurrence.WEEKDAYS), min_size=1, max_size=7, unique=True)
VALID_RULES = st.builds(
    lambda freq, interval, days: f"FREQ={freq}" + (f";INTERVAL={interval}" if interval else "")
    + (f";BYDAY={','.join(days)}" if days and freq == "WEEKLY" else ""),
    st.sampled_from(recurrence.FREQS), st.one_of(st.none(), st.integers(1, 366)),
    st.one_of(st.none(), CODES))


def _near_miss(rule: str, data: st.DataObject) -> str:
    """A valid rule with one change: a character swapped, dropped or added, a Unicode digit."""
    kind = data.draw(st.sampled_from(["swap", "drop", "add", "digit", "case", "prefix"]))
    at = data.draw(st.integers(0, len(rule) - 1))
    if kind == "swap":
        return rule[:at] + data.draw(st.characters()) + rule[at + 1:]
    if kind == "drop":
        return rule[:at] + rule[at + 1:]
    if kind == "add":
        return rule[:at] + data.draw(st.sampled_from(";=,0 ²٣１-+")) + rule[at:]
    if kind == "digit":
        return rule + ";INTERVAL=" + data.draw(st.sampled_from(["²", "٣", "１", "0", "367", "-1", "1e2"]))
    if kind == "case":
        return rule.lower()
    return "RRULE:" + rule


@FUZZ
@given(ZONE_LIKE)
def test_any_zone_name_is_accepted_or_a_422(name):
    try:
        assert zone_name(name) == name
        zoneinfo.ZoneInfo(name)  # what was accepted opens
    except AppError as exc:
        assert exc.status == 422 and name not in zone_names()


@FUZZ
@given(st.data(), VALID_RULES)
def test_any_rule_or_near_miss_is_canonical_or_a_422(data, rule):
    assert recurrence.canonical(rule) is not None
    miss = _near_miss(rule, data)
    try:
        canonical = recurrence.canonical(miss)
    except AppError as exc:
        assert exc.status == 422
    else:
        assert canonical is None or recurrence.canonical(canonical) == canonical


@FUZZ
@given(VALID_RULES, EDGE_DAYS, EDGE_DAYS)
def test_the_next_occurrence_exists_until_the_calendar_ends(rule, anchor, today):
    rule = recurrence.canonical(rule)
    started = time.perf_counter()
    found = recurrence.next_due(rule, anchor, today)
    assert time.perf_counter() - started < 0.05  # arithmetic, not a walk from year 1
    if found is None:  # only when the next one would be past 9999-12-31
        assert max(anchor, today) > date(9999, 12, 31) - timedelta(days=366 * 366)
    else:
        assert found > max(anchor, today)


@FUZZ
@given(st.integers(1, 366), CODES, st.dates(min_value=date(1, 1, 1), max_value=date(9990, 1, 1)),
       st.integers(0, 3000))
def test_weekly_rules_with_days_fall_where_dateutil_puts_them(interval, codes, anchor, later):
    """dateutil's rrule is the oracle (it walks; ours counts)."""
    rule = recurrence.canonical(f"FREQ=WEEKLY;INTERVAL={interval};BYDAY={','.join(codes)}")
    today = anchor + timedelta(days=later)
    expected = rrule(WEEKLY, interval=interval, byweekday=[weekdays[recurrence.WEEKDAYS.index(c)]
                                                           for c in codes],
                     dtstart=datetime.combine(anchor, datetime.min.time()))
    after = expected.after(datetime.combine(today, datetime.min.time()))
    assert recurrence.next_due(rule, anchor, today) == (after.date() if after else None)
    first = expected[0].date()
    assert recurrence.first_on_or_after(rule, anchor) == first


TIMES = st.one_of(st.none(), st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23),
                                       st.integers(0, 59)))


@FUZZ
@given(st.lists(st.tuples(EDGE_DAYS, TIMES, st.integers(0, 3)), min_size=1, max_size=8), ZONES)
def test_the_feed_serves_every_task_that_has_a_place_in_the_calendar(tasks, zone):
    rows = [{"id": n, "title": f"task {n}", "body": "", "due": day.isoformat(), "due_time": at,
             "priority": priority} for n, (day, at, priority) in enumerate(tasks)]
    rows.append({"id": 99, "title": "ordinary", "body": "b", "due": "2027-06-01",
                 "due_time": "09:30", "priority": 0})
    tz = zoneinfo.ZoneInfo(zone)
    feed = icalendar.Calendar.from_ical(_calendar(rows, tz))
    served = {str(e["summary"]) for e in feed.walk("VEVENT")}
    assert "ordinary" in served
    for row in rows:
        day = date.fromisoformat(row["due"])
        try:
            if row["due_time"]:
                hour, minute = map(int, row["due_time"].split(":"))
                start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
                (start.astimezone(zoneinfo.ZoneInfo("UTC")) + timedelta(minutes=30))
            else:
                day + timedelta(days=1)
            placeable = True
        except OverflowError:
            placeable = False
        assert (row["title"] in served) == placeable, row


QUICK_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=string.ascii_letters + string.digits + " !#:[]-,.\n", max_size=3000),
    st.lists(st.sampled_from(["tomorrow", "9am", "!high", "every", "mon", "and", "in", "3",
                              "days", "15", "jan", "2027-01-15", "#tag", "next", "week", " ",
                              "at", "noon", "sat", "on", "weekend", "other", "by"]),
             max_size=400).map(" ".join),
)


@FUZZ
@given(QUICK_TEXT, EDGE_DAYS, st.booleans(),
       st.lists(st.text(max_size=30), max_size=quickadd.MAX_IGNORED + 5))
def test_quick_add_reads_any_text_on_any_day(text, today, as_task, ignore):
    parsed = quickadd.parse(text, today, as_task, ignore)
    assert parsed.type in ("note", "task")
    assert len(parsed.title) <= 500
    if parsed.due is not None:
        date.fromisoformat(parsed.due)
    if parsed.repeat is not None:
        assert recurrence.canonical(parsed.repeat) == parsed.repeat


def _seconds(text: str, ignore: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        quickadd.parse(text, date(2026, 12, 7), False, ignore)
        best = min(best, time.perf_counter() - started)
    return best


def test_quick_add_takes_time_linear_in_its_text():
    """Measured here (two cores, a build running): 50,000 characters of the densest text take
    ~4 ms, 500,000 ~24 ms
    (the date rules see 2,000 of them; tags and splitting see all). Ten times the text may
    take at most 15 times as long; the quadratic code took 110 s for the long one."""
    unit = "9am tomorrow !high every mon and thu #t a "
    ignore = ["a", " ", "9am", "every", "!high", "tomorrow", "mon", "t"] * 2
    short, long = unit * (50_000 // len(unit)), unit * (500_000 // len(unit))
    small, large = _seconds(short, ignore), _seconds(long, ignore)
    assert large < 15 * small + 0.01, (small, large)
    assert large < 1.0, large

"""Quick add: the phrases people type become dates, times, priorities and repetitions, and
nothing else does. ``today`` is passed in, so the year's edges and weekdays are exact."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplaner import recurrence
from taskplaner.quickadd import parse

WED = date(2026, 12, 2)  # a Wednesday
NEW_YEARS_EVE = date(2026, 12, 31)  # a Thursday


@pytest.mark.parametrize(("text", "today", "title", "due", "due_time"), [
    ("Renew passport due next week", WED, "Renew passport", "2026-12-07", None),
    ("Call mom tomorrow", WED, "Call mom", "2026-12-03", None),
    ("Call mom tomorrow", NEW_YEARS_EVE, "Call mom", "2027-01-01", None),
    ("Pay bills today", WED, "Pay bills", "2026-12-02", None),
    ("Submit report fri", WED, "Submit report", "2026-12-04", None),
    ("Submit report friday", date(2026, 12, 4), "Submit report", "2026-12-04", None),
    ("Submit report next fri", WED, "Submit report", "2026-12-11", None),
    ("Dentist on sat", WED, "Dentist", "2026-12-05", None),
    ("Plan trip this weekend", WED, "Plan trip", "2026-12-05", None),
    ("Review budget next month", WED, "Review budget", "2027-01-01", None),
    ("Review budget next month", NEW_YEARS_EVE, "Review budget", "2027-01-01", None),
    ("Taxes next year", WED, "Taxes", "2027-01-01", None),
    ("Water plants in 3 days", NEW_YEARS_EVE, "Water plants", "2027-01-03", None),
    ("Follow up in a week", WED, "Follow up", "2026-12-09", None),
    ("Renew lease in 2 months", date(2026, 12, 31), "Renew lease", "2027-02-28", None),
    ("Flight 2027-01-15", WED, "Flight", "2027-01-15", None),
    ("Flight 15 Jan", WED, "Flight", "2027-01-15", None),
    ("Flight Jan 15", date(2027, 1, 15), "Flight", "2027-01-15", None),
    ("Flight January 15th, 2028", WED, "Flight", "2028-01-15", None),
    ("Party 31 Dec", NEW_YEARS_EVE, "Party", "2026-12-31", None),
    ("Party 1 Dec", NEW_YEARS_EVE, "Party", "2027-12-01", None),
    ("Leap day party Feb 29", WED, "Leap day party", "2028-02-29", None),
    ("Meeting 15 Jan at 9am", WED, "Meeting", "2027-01-15", "09:00"),
    ("Call back at 5:30pm", WED, "Call back", "2026-12-02", "17:30"),
    ("Standup tomorrow 9:15", WED, "Standup", "2026-12-03", "09:15"),
    ("Lunch with Ana tomorrow at noon", WED, "Lunch with Ana", "2026-12-03", "12:00"),
    ("Midnight release 12am tomorrow", WED, "Midnight release", "2026-12-03", "00:00"),
])
def test_dates_and_times(text, today, title, due, due_time):
    parsed = parse(text, today)
    assert (parsed.type, parsed.title, parsed.due, parsed.due_time) == ("task", title, due, due_time)


@pytest.mark.parametrize("text", [
    "Ask May about the taxes",
    "Sat on the report for too long",
    "The sun is out",
    "Wed in June",
    "Review chapter 3",
    "Tomorrow's agenda",
    "Prepare weekly review",
    "Buy 2 eggs and 12 apples",
    "Version 2.10 notes",
    "Room 1204",
    "Flight 2027-02-30",
    "Call at 25:00",
    "Meet at 13pm",
    "#today",
    "email me at next@week.example",
])
def test_words_that_are_not_dates_stay_text(text):
    parsed = parse(text, WED)
    assert parsed.parts == [] and parsed.due is None and parsed.due_time is None
    assert parsed.type == "note"


@pytest.mark.parametrize(("text", "priority"), [
    ("Fix leak !3", 3), ("Fix leak !high", 3), ("Fix leak !medium", 2), ("Fix leak !med", 2),
    ("Fix leak !1", 1), ("!low Fix leak", 1), ("Fix leak !4", 0), ("Fix leak!3", 0),
])
def test_priorities(text, priority):
    parsed = parse(text, WED)
    assert parsed.priority == priority
    assert ("!" not in parsed.title) == bool(priority)


@pytest.mark.parametrize(("text", "rule", "due"), [
    ("Pay rent every month", "FREQ=MONTHLY", "2026-12-02"),
    ("Backups every day", "FREQ=DAILY", "2026-12-02"),
    ("Report every 2 weeks", "FREQ=WEEKLY;INTERVAL=2", "2026-12-02"),
    ("Sync every other week", "FREQ=WEEKLY;INTERVAL=2", "2026-12-02"),
    ("Birthday card every year 3 Mar", "FREQ=YEARLY", "2027-03-03"),
    ("Gym every monday", "FREQ=WEEKLY;BYDAY=MO", "2026-12-07"),
    ("Water plants every mon and thu", "FREQ=WEEKLY;BYDAY=MO,TH", "2026-12-03"),
    ("Water plants every thu, mon", "FREQ=WEEKLY;BYDAY=MO,TH", "2026-12-03"),
    ("Standup every weekday at 9:30", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "2026-12-02"),
])
def test_repetition(text, rule, due):
    parsed = parse(text, WED)
    assert (parsed.type, parsed.repeat, parsed.due) == ("task", rule, due)
    assert "every" not in parsed.title
    assert recurrence.canonical(rule) == rule


def test_everything_at_once_with_tags_and_a_body():
    parsed = parse("[ ] Renew passport due next week !high every 10 years #admin #Travel\n"
                   "bring the old one\nand photos", WED)
    assert parsed.item() == {
        "type": "task", "title": "Renew passport", "body": "bring the old one\nand photos",
        "tags": ["admin", "travel"], "due": "2026-12-07", "due_time": None, "priority": 3,
        "repeat": "FREQ=YEARLY;INTERVAL=10"}
    assert [(p.kind, p.text) for p in parsed.parts] == [
        ("date", "due next week"), ("priority", "!high"), ("repeat", "every 10 years")]
    assert [p.label for p in parsed.parts] == ["Mon 7 Dec", "high", "every 10 years"]


def test_only_the_first_line_is_read_for_dates():
    parsed = parse("Shopping\nbread tomorrow", WED)
    assert parsed.type == "note" and parsed.due is None and parsed.body == "bread tomorrow"


def test_a_removed_chip_keeps_its_text_and_nothing_inside_it_is_read():
    first = parse("Renew passport due next week", WED)
    again = parse("Renew passport due next week", WED, ignore=[first.parts[0].text])
    assert again.parts == [] and again.title == "Renew passport due next week"
    assert again.type == "note"
    # the other parts still count
    both = parse("Call Ana fri at 5pm", WED, ignore=["at 5pm"])
    assert (both.due, both.due_time, both.title) == ("2026-12-04", None, "Call Ana at 5pm")


def test_a_long_first_line_loses_nothing():
    line = "word " * 200
    parsed = parse(line + "\nmore", WED, max_title_chars=500)
    assert len(parsed.title) == 500
    assert " ".join((parsed.title + parsed.body).split()) == " ".join((line + "more").split())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.lists(st.text(max_size=15), max_size=3), st.booleans(),
       st.dates(min_value=date(1900, 1, 1), max_value=date(9990, 12, 31)))
def test_any_text_parses_and_every_recognised_part_was_typed(text, ignore, as_task, today):
    parsed = parse(text, today, as_task, ignore)
    first = text.strip().removeprefix("[ ]").removeprefix("[]").strip().partition("\n")[0]
    for part in parsed.parts:
        assert first[part.start:part.end] == part.text
        assert not any(p.strip() and p.strip().casefold() in part.text.casefold() for p in ignore)
    kinds = [p.kind for p in parsed.parts]
    assert len(kinds) == len(set(kinds))
    if parsed.due:
        date.fromisoformat(parsed.due)
    if parsed.repeat:
        assert recurrence.canonical(parsed.repeat) == parsed.repeat
    assert parsed.type == "task" or not parsed.parts


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["every day", "every 3 weeks", "every month", "every 2 years",
                        "every monday", "every tue and sat", "every weekday"]),
       st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
       st.integers(min_value=0, max_value=4000))
def test_the_next_occurrence_is_after_today_and_on_the_rule(phrase, anchor, days_late):
    from datetime import timedelta

    rule = parse(f"x {phrase}", anchor).repeat
    today = anchor + timedelta(days=days_late)
    found = recurrence.next_due(rule, anchor, today)
    assert found > today and found > anchor
    if "BYDAY" in rule:
        assert recurrence.WEEKDAYS[found.weekday()] in rule
    elif rule == "FREQ=DAILY":
        assert found == today + timedelta(days=1)
    elif rule.startswith("FREQ=MONTHLY"):
        assert found.day == min(anchor.day, found.day) and (found.day == anchor.day or found.day >= 28)

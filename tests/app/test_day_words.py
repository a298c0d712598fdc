"""Due days as a person says them (#31): "today", "tomorrow", "Tue 8 Dec", the year only when it
is not this one's. Over the whole calendar (years 1 to 9999), never an error."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskplaner.localtime import day_words

TODAY = date(2026, 12, 8)  # a Tuesday


@pytest.mark.parametrize(
    ("day", "words"),
    [
        (TODAY, "today"),
        (TODAY + timedelta(days=1), "tomorrow"),
        (TODAY - timedelta(days=1), "yesterday"),
        (TODAY + timedelta(days=2), "Thu 10 Dec"),
        (date(2026, 1, 1), "Thu 1 Jan"),
        (date(2027, 3, 1), "Mon 1 Mar 2027"),
        (date(2020, 1, 1), "Wed 1 Jan 2020"),
    ],
)
def test_days_read_as_words(day: date, words: str) -> None:
    assert day_words(day.isoformat(), TODAY.isoformat()) == words


@given(st.dates(), st.dates())
def test_any_two_days_give_words_and_the_year_only_when_it_differs(day: date, today: date) -> None:
    words = day_words(day.isoformat(), today.isoformat())
    apart = (day - today).days
    if apart in (-1, 0, 1):
        assert words == {-1: "yesterday", 0: "today", 1: "tomorrow"}[apart]
    else:
        assert str(day.day) in words.split()
        assert (str(day.year) in words.split()) == (day.year != today.year)


def test_the_last_and_first_days_of_the_calendar() -> None:
    assert day_words("9999-12-31", "9999-12-31") == "today"
    assert day_words("9999-12-31", "9999-12-30") == "tomorrow"
    assert day_words("0001-01-01", "9999-12-31") == "Mon 1 Jan 1"

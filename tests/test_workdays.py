"""Swedish working days: weekends, public holidays and the de facto holidays are not working days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from sipflows.workdays import WorkCalendar, add_working_days, is_working_day


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2026, 1, 1), "nyårsdagen"),
        (date(2026, 1, 6), "trettondedag jul"),
        (date(2026, 4, 3), "långfredagen"),
        (date(2026, 4, 6), "annandag påsk"),
        (date(2026, 5, 1), "första maj"),
        (date(2026, 5, 14), "Kristi himmelsfärds dag"),
        (date(2026, 6, 19), "midsommarafton"),
        (date(2026, 12, 24), "julafton"),
        (date(2026, 12, 25), "juldagen"),
        (date(2026, 12, 31), "nyårsafton"),
        (date(2027, 3, 26), "långfredagen 2027"),
        (date(2027, 5, 6), "Kristi himmelsfärds dag 2027"),
        (date(2027, 6, 25), "midsommarafton 2027"),
        (date(2026, 6, 6), "nationaldagen (a Saturday in 2026)"),
    ],
)
def test_holidays_are_not_working_days(day, name):
    assert not is_working_day(day), name


def test_national_day_on_a_weekday_is_off():
    assert date(2025, 6, 6).weekday() == 4
    assert not is_working_day(date(2025, 6, 6))


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 4, 2),  # skärtorsdag is a working day
        date(2026, 4, 7),  # the Tuesday after Easter
        date(2026, 6, 18),  # the day before midsommarafton
        date(2026, 12, 23),
        date(2026, 12, 28),  # between Christmas and New Year
        date(2026, 12, 30),
        date(2027, 1, 7),  # after Epiphany
        date(2026, 10, 30),  # Friday before alla helgons dag (Saturday 31 Oct)
    ],
)
def test_ordinary_days_are_working_days(day):
    assert is_working_day(day)


def test_alla_helgons_dag_falls_on_a_saturday():
    # 2026: alla helgons dag is Saturday 31 October: it costs no working day
    assert date(2026, 10, 31).weekday() == 5
    assert add_working_days(date(2026, 10, 30), 1) == date(2026, 11, 2)


def test_weekends_are_off():
    assert not is_working_day(date(2026, 11, 21))
    assert not is_working_day(date(2026, 11, 22))


def test_start_day_never_counts():
    assert add_working_days(date(2026, 11, 23), 1) == date(2026, 11, 24)
    assert add_working_days(date(2026, 11, 23), 0) == date(2026, 11, 23)
    # counting from a Saturday: Monday is the first working day after it
    assert add_working_days(date(2026, 11, 21), 1) == date(2026, 11, 23)


def test_friday_meeting_two_working_days():
    assert add_working_days(date(2026, 11, 20), 2) == date(2026, 11, 24)


def test_easter():
    # skärtorsdag 2 April 2026 → långfredag, påskafton, påskdagen, annandag påsk off
    assert add_working_days(date(2026, 4, 2), 1) == date(2026, 4, 7)
    assert add_working_days(date(2026, 4, 2), 2) == date(2026, 4, 8)


def test_ascension_thursday():
    assert add_working_days(date(2026, 5, 13), 1) == date(2026, 5, 15)


def test_midsummer():
    # Thursday 18 June 2026: midsommarafton (Fri) and the weekend are off
    assert add_working_days(date(2026, 6, 18), 1) == date(2026, 6, 22)
    assert add_working_days(date(2026, 6, 18), 2) == date(2026, 6, 23)


def test_christmas_to_epiphany():
    # 23 Dec 2026 (Wed): 24, 25 off, 26-27 weekend → 28 Mon, 29 Tue
    assert add_working_days(date(2026, 12, 23), 2) == date(2026, 12, 29)
    # 30 Dec: 31 (nyårsafton) and 1 Jan off, weekend → 4 Jan, 5 Jan; 6 Jan off → 7 Jan
    assert add_working_days(date(2026, 12, 30), 2) == date(2027, 1, 5)
    assert add_working_days(date(2026, 12, 30), 3) == date(2027, 1, 7)
    working = [d for d in (date(2026, 12, 24) + timedelta(n) for n in range(15)) if is_working_day(d)]
    assert working == [
        date(2026, 12, 28),
        date(2026, 12, 29),
        date(2026, 12, 30),
        date(2027, 1, 4),
        date(2027, 1, 5),
        date(2027, 1, 7),
    ]


def test_day_before_a_holiday():
    # a meeting on Wednesday 13 May 2026, the day before Ascension: two working days later is Monday
    assert add_working_days(date(2026, 5, 13), 2) == date(2026, 5, 18)


def test_negative_counts_back():
    assert add_working_days(date(2026, 4, 7), -1) == date(2026, 4, 2)


def test_organisation_closed_days():
    cal = WorkCalendar([date(2026, 5, 15)])  # a klämdag the unit takes off
    assert not cal.is_working_day(date(2026, 5, 15))
    assert cal.add_working_days(date(2026, 5, 13), 1) == date(2026, 5, 18)
    assert is_working_day(date(2026, 5, 15))  # the national calendar is unchanged


def test_working_days_between_is_the_inverse_of_adding():
    cal = WorkCalendar()
    start = date(2026, 12, 18)
    for n in range(0, 25):
        assert cal.working_days_between(start, cal.add_working_days(start, n)) == n


def test_latest_base_date_matches_brute_force():
    cal = WorkCalendar([date(2026, 3, 2)])
    for offset in range(0, 400, 3):
        judged = date(2026, 1, 1) + timedelta(days=offset)
        for n in (1, 2, 3, 5, 10):
            base = cal.latest_base_date(judged, n)
            assert cal.add_working_days(base, n) <= judged
            assert cal.add_working_days(base + timedelta(days=1), n) > judged

"""Swedish working days.

Weekends, every public holiday and the de facto holidays (julafton, midsommarafton, nyårsafton) are not
working days; the ``holidays`` package knows them, including Easter. An organisation may close more days.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def _swedish_holidays(year: int) -> frozenset[date]:
    days = holidays.country_holidays("SE", years=year, categories=("public", "de_facto"))
    # holidays.Sweden lists every Sunday as a public holiday (Söndag); weekends are handled below anyway
    return frozenset(d for d in days)


def is_national_holiday(d: date) -> bool:
    return d in _swedish_holidays(d.year)


class WorkCalendar:
    """Working days for one organisation: national ones minus the organisation's own closed days."""

    def __init__(self, closed_days: Iterable[date] = ()) -> None:
        self.closed_days = frozenset(closed_days)

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and not is_national_holiday(d) and d not in self.closed_days

    def add_working_days(self, d: date, n: int) -> date:
        """The n-th working day after ``d`` (``d`` itself never counts); negative n counts back."""
        step = timedelta(days=1 if n >= 0 else -1)
        remaining = abs(n)
        current = d
        if remaining == 0:
            return d
        while remaining:
            current += step
            if self.is_working_day(current):
                remaining -= 1
        return current

    def next_working_day(self, d: date) -> date:
        """``d`` if it is a working day, else the first working day after it."""
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: how many working days ``end`` lies after ``start``.

        Negative when ``end`` is before ``start``.
        """
        if end < start:
            return -self.working_days_between(end, start)
        count = 0
        current = start
        while current < end:
            current += timedelta(days=1)
            if self.is_working_day(current):
                count += 1
        return count

    def latest_base_date(self, judged: date, n: int) -> date:
        """The latest day ``b`` with ``add_working_days(b, n) <= judged``.

        Because ``add_working_days`` never decreases as ``b`` grows, every base date up to this one has
        reached its n-th working day by ``judged``: the checks turn that into one range predicate in SQL.
        """
        if n <= 0:
            return judged
        # The n-th working day after b is <= judged exactly when b lies before the working day that is
        # n-1 working days before the last working day on or before judged.
        anchor = judged if self.is_working_day(judged) else self.add_working_days(judged, -1)
        first = self.add_working_days(anchor, -(n - 1))
        return first - timedelta(days=1)


DEFAULT_CALENDAR = WorkCalendar()


def is_working_day(d: date) -> bool:
    return DEFAULT_CALENDAR.is_working_day(d)


def add_working_days(d: date, n: int) -> date:
    """The n-th working day after ``d``; ``d`` itself never counts."""
    return DEFAULT_CALENDAR.add_working_days(d, n)

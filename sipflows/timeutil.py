"""UTC storage, Europe/Stockholm judgement: the two conversions every module needs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def as_utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC (that is how they are stored)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def local_date(dt: datetime) -> date:
    return as_utc(dt).astimezone(STOCKHOLM).date()


def local_datetime(dt: datetime) -> datetime:
    return as_utc(dt).astimezone(STOCKHOLM)


def from_local(d: date, t: time) -> datetime:
    """A wall-clock time in Stockholm as an aware UTC datetime (DST resolved by zoneinfo)."""
    return datetime.combine(d, t, tzinfo=STOCKHOLM).astimezone(UTC)


def start_of_local_day_utc(d: date) -> datetime:
    return from_local(d, time(0, 0))


def run_dates(scheduled_start: datetime, date_override: date | None) -> tuple[date, datetime]:
    """The local date a run judges and the ``now`` it stamps: both from the scheduled start.

    A backfill or replay passes ``date_override``; the notices are still stamped with the start time.
    """
    # Prefect hands over pendulum/whenever subclasses; plain stdlib values bind reliably in SQLAlchemy.
    now = datetime.fromtimestamp(scheduled_start.timestamp(), tz=UTC)
    day = local_date(now) if date_override is None else date(*date_override.timetuple()[:3])
    return day, now

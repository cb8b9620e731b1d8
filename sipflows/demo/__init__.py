"""A demo region: Västra Mälardalen (Köping, Arboga, Kungsör) with Region Västmanland and the agencies.

Every date is laid out relative to the judged day, so that on that day every check finds something, at
several stages of its ladder, and several plans have nothing due. Where a stage depends on the working-day
calendar (holidays, an organisation's own closed day) the demo searches the base date with the same
calendar and ladder the checks use, so the scenario holds on any working day, not only ``DEMO_DATE``.

The directory (organisations, contacts) is kept as CSV files in this package and read with
``sipflows.importer.read_table``; the plans are generated (``plans``, ``builder``, ``timeline``). All rows go
through the CSV importer (``sipflows.importer.import_table``), so the demo is deterministic
and idempotent: a second run with the same date changes nothing; a run with another date moves the
timeline. Individuals are obviously fake ("Testperson 7", Skatteverket's test number 19121212-1212) and
every address is under example.se.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from sipflows.demo.builder import TEST_PERSONAL_NUMBER, Builder, Expectation, Row
from sipflows.demo.directory import directory_table, organisation_of
from sipflows.demo.plans import plans
from sipflows.demo.timeline import Timeline
from sipflows.importer import KINDS, FileResult, import_table, table_from_rows
from sipflows.models import ClosedDay, Organisation
from sipflows.policy import EffectivePolicy, default_policy
from sipflows.timeutil import from_local
from sipflows.workdays import WorkCalendar

__all__ = ["DEMO_DATE", "TEST_PERSONAL_NUMBER", "DemoSummary", "Expectation", "build_demo"]

# A Tuesday in late November 2026, no holiday near it: every check fires on it.
DEMO_DATE = date(2026, 11, 24)


@dataclass
class DemoSummary:
    today: date
    files: list[FileResult]
    expected: list[Expectation]
    quiet_cases: list[str]
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Demo region Västra Mälardalen, judged on {self.today.isoformat()}"]
        for f in self.files:
            counts = f"{f.inserted} new, {f.updated} updated, {f.unchanged} unchanged"
            out.append(f"  {f.kind:<14} {f.rows:>3} rows: {counts}")
        out.append("Due on that day:")
        for e in self.expected:
            out.append(f"  {e.case_reference:<13} {e.check}/{e.stage}: {e.what}")
        out.append("Nothing due: " + ", ".join(self.quiet_cases))
        if self.skipped:
            out.append("Not laid out (the date gives no base day for them): " + ", ".join(self.skipped))
        return out


def _calendars(session: Session) -> dict[str, WorkCalendar]:
    closed: dict[str, set[date]] = {}
    rows = session.execute(select(Organisation.code, ClosedDay.day).join(ClosedDay.organisation)).tuples()
    for code, day in rows:
        closed.setdefault(code, set()).add(day)
    return {code: WorkCalendar(days) for code, days in closed.items()}


def build_demo(
    session: Session,
    today: date = DEMO_DATE,
    *,
    policy: EffectivePolicy | None = None,
    mail_domain: str | None = None,
    now: datetime | None = None,
) -> DemoSummary:
    """Load the demo region into the register for judging on ``today``; idempotent. Does not commit.

    ``policy`` (default: the built-in one) is the policy the stages are laid out for. ``now`` stamps
    changed meetings; by default 07:00 Stockholm time on ``today``, so the demo never reads the clock."""
    policy = policy or default_policy()
    if mail_domain is None:
        from sipflows.settings import get_settings

        mail_domain = get_settings().mail_domain
    now = now or from_local(today, time(7, 0))
    files: list[FileResult] = []

    def load(kind: str, rows: list[Row]) -> None:
        if rows:
            table = table_from_rows(kind, rows, f"demo/{kind}.csv")
            files.append(import_table(session, table, now, mail_domain))

    files.append(import_table(session, directory_table("organisations"), now, mail_domain))
    # Kungsör's IFO has a planning day two working days ago: its deadlines run on its own calendar
    closed_day = WorkCalendar().add_working_days(today, -2)
    load(
        "closed_days", [{"organisation": "KUN-IFO", "day": closed_day.isoformat(), "reason": "Planeringsdag"}]
    )
    contacts = directory_table("contacts")
    files.append(import_table(session, contacts, now, mail_domain))

    builder = Builder(Timeline(today, _calendars(session), policy), organisation_of(contacts))
    plans(builder)
    for kind in KINDS[3:]:
        load(kind, builder.rows[kind])
    return DemoSummary(
        today=today,
        files=files,
        expected=builder.expected,
        quiet_cases=builder.quiet,
        skipped=builder.skipped,
    )

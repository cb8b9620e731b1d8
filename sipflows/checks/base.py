"""What every check shares: the finding it returns and the context it judges in.

A check is a few set-based SQL statements over the register for one local date. Deadlines in working days
are turned into date cut-offs in Python (``WorkCalendar.latest_base_date``) and then into UTC instants, so
that SQL only compares timestamps with indexed range predicates, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, and_, case, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from sipflows.models import CaseStatus, ClosedDay, Organisation, SipCase
from sipflows.policy import EffectivePolicy, Policy
from sipflows.timeutil import start_of_local_day_utc
from sipflows.workdays import WorkCalendar

Bound = TypeVar("Bound", date, datetime)


@dataclass(frozen=True)
class Finding:
    """Something a person must be told. ``key`` is deterministic: same object, same stage, same key."""

    check: str
    stage: str
    object_type: str
    object_id: int
    case_id: int
    case_reference: str
    recipients: tuple[int, ...]
    due: date | None
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.check}:{self.object_type}:{self.object_id}:{self.stage}"

    def notice_key(self, contact_id: int) -> str:
        return f"{self.key}:c{contact_id}"


@dataclass
class CheckContext:
    """Everything a check needs besides the session: the judged date, the policy and the calendars."""

    judged: date
    policy: EffectivePolicy
    org_codes: dict[int, str]
    closed_days: dict[int, frozenset[date]]
    _calendars: dict[int | None, WorkCalendar] = field(default_factory=dict)
    _special: frozenset[int] | None = None

    @classmethod
    def load(cls, session: Session, judged: date, policy: EffectivePolicy) -> CheckContext:
        codes = dict(session.execute(select(Organisation.id, Organisation.code)).tuples().all())
        closed: dict[int, set[date]] = {}
        for org_id, day in session.execute(select(ClosedDay.organisation_id, ClosedDay.day)).tuples():
            closed.setdefault(org_id, set()).add(day)
        return cls(judged, policy, codes, {k: frozenset(v) for k, v in closed.items()})

    def calendar(self, org_id: int | None) -> WorkCalendar:
        if org_id not in self._calendars:
            self._calendars[org_id] = WorkCalendar(
                self.closed_days.get(org_id, frozenset()) if org_id else ()
            )
        return self._calendars[org_id]

    def policy_for(self, org_id: int | None) -> Policy:
        return self.policy.for_organisation(self.org_codes.get(org_id) if org_id is not None else None)

    def special_orgs(self) -> set[int]:
        """Organisations whose calendar or policy differs from the default: they get their own cut-off."""
        if self._special is None:
            overridden = {oid for oid, code in self.org_codes.items() if code in self.policy.overrides}
            self._special = frozenset(overridden | set(self.closed_days))
        return set(self._special)

    def scope(self, org_id: int | None) -> int | None:
        """The org itself when it has its own calendar or policy, else None (the shared default).

        Checks key their per-row memo on this, so the thousands of ordinary organisations share one.
        """
        if self._special is None:
            self.special_orgs()
        assert self._special is not None
        return org_id if org_id in self._special else None

    def bounds(self, bound_for: Callable[[WorkCalendar, Policy], Bound]) -> tuple[Bound, dict[int, Bound]]:
        """``bound_for(calendar, policy)`` for the default and for every special organisation."""
        default = bound_for(self.calendar(None), self.policy.policy)
        special = {oid: bound_for(self.calendar(oid), self.policy_for(oid)) for oid in self.special_orgs()}
        return default, special

    def cutoffs(self, days_for: Any) -> tuple[datetime, dict[int, datetime]]:
        """UTC instants before which a base timestamp has passed its deadline, per organisation.

        ``days_for(policy) -> int`` names the working days of the deadline. Returns the default instant
        and one per organisation whose calendar or policy differs. The instant is the start of the local
        day after ``latest_base_date``.
        """
        default = self._instant(None, days_for(self.policy.policy))
        special = {oid: self._instant(oid, days_for(self.policy_for(oid))) for oid in self.special_orgs()}
        return default, special

    def _instant(self, org_id: int | None, n: int) -> datetime:
        base = self.calendar(org_id).latest_base_date(self.judged, n)
        return start_of_local_day_utc(base + timedelta(days=1))


def ladder_stage(
    calendar: WorkCalendar, due: date, judged: date, steps: Sequence[tuple[str, int]]
) -> str | None:
    """The latest step reached on ``judged``: steps are (stage, working days after ``due``), ascending;
    a negative offset is a step before the due day.

    Only the latest step is reported, so a sweep that missed days does not send stale earlier steps.
    """
    reached: str | None = None
    for stage, offset in steps:
        if calendar.add_working_days(due, offset) <= judged:
            reached = stage
    return reached


def unique_recipients(ids: Iterable[int | None]) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for i in ids:
        if i is not None:
            seen.setdefault(i, None)
    return tuple(seen)


class Check(Protocol):
    """What a check module provides (the modules themselves satisfy it)."""

    NAME: str

    def run(self, session: Session, ctx: CheckContext) -> list[Finding]: ...


def _within_loosest(
    default: Bound,
    special: Mapping[int, Bound],
    predicate: Callable[[Bound], ColumnElement[bool]],
    loosest: Callable[[Iterable[Bound]], Bound],
    exact: Callable[[dict[Bound, list[int]]], ColumnElement[bool]],
) -> ColumnElement[bool]:
    """The organisations whose bound is not the default, grouped by bound (in id order): the loosest
    bound as a plain conjunct, for the index range, and ``exact`` of the groups filtering within it."""
    differing: dict[Bound, list[int]] = {}
    for oid, bound in sorted(special.items()):
        if bound != default:
            differing.setdefault(bound, []).append(oid)
    if not differing:
        return predicate(default)
    every: list[Bound] = [default]
    every.extend(differing)
    return and_(predicate(loosest(every)), exact(differing))


def per_org(
    org_column: InstrumentedAttribute[int],
    default: Bound,
    special: Mapping[int, Bound],
    predicate: Callable[[Bound], ColumnElement[bool]],
    loosest: Callable[[Iterable[Bound]], Bound],
) -> ColumnElement[bool]:
    """``predicate(bound)`` with each organisation's own bound, as portable SQL.

    The loosest bound comes first as a plain conjunct so the database can use its index range; the
    exact per-organisation bounds then only filter within it. Organisations sharing a bound share a term.
    """

    def exact(differing: dict[Bound, list[int]]) -> ColumnElement[bool]:
        ids = [oid for group in differing.values() for oid in group]
        return or_(
            and_(org_column.not_in(ids), predicate(default)),
            *(and_(org_column.in_(group), predicate(bound)) for bound, group in differing.items()),
        )

    return _within_loosest(default, special, predicate, loosest, exact)


def per_org_case(
    org_column: InstrumentedAttribute[int],
    default: Bound,
    special: Mapping[int, Bound],
    predicate: Callable[[Bound], ColumnElement[bool]],
    loosest: Callable[[Iterable[Bound]], Bound],
) -> ColumnElement[bool]:
    """:func:`per_org`, the exact bounds written as one ``CASE`` over the organisation instead of an ``OR``.

    Without planner statistics SQLite splits an ``OR`` whose every term bounds an indexed column into
    one index scan per term (``MULTI-INDEX OR``), each over nearly the whole range, and joins from every
    row they find: for the meeting ladders at 200,000 plans a minute instead of a quarter of a second. A
    ``CASE`` cannot be split: the loosest bound drives the one range scan with or without statistics.
    Rows whose organisation is NULL match no branch, as no term of :func:`per_org` matches them.
    """

    def exact(differing: dict[Bound, list[int]]) -> ColumnElement[bool]:
        whens = [(org_column.in_(group), predicate(bound)) for bound, group in differing.items()]
        whens.append((org_column.is_not(None), predicate(default)))
        return case(*whens)

    return _within_loosest(default, special, predicate, loosest, exact)


def case_is_open() -> ColumnElement[bool]:
    """Closed plans and plans whose consent was withdrawn are never anyone's business again."""
    return and_(SipCase.status != CaseStatus.CLOSED, SipCase.consent_withdrawn_on.is_(None))


def escalation_recipients(
    escalation_contact_id: int | None, org_escalation_contact_id: int | None, fallback: Iterable[int | None]
) -> tuple[int, ...]:
    """A contact's escalation contact, else its organisation's; else the previous step's recipients, so an
    escalation with nobody to escalate to still reaches someone in the plan."""
    chosen = escalation_contact_id or org_escalation_contact_id
    return unique_recipients([chosen] if chosen is not None else fallback)


def plan_recipients(
    escalate: bool,
    convener_id: int | None,
    coordinator_id: int | None,
    convener_escalation_id: int | None,
    org_escalation_id: int | None,
) -> tuple[int, ...]:
    """A plan's convener and coordinator; at an escalation step whom they escalate to instead."""
    plan = [convener_id, coordinator_id]
    if escalate:
        return escalation_recipients(convener_escalation_id, org_escalation_id, plan)
    return unique_recipients(plan)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.check, f.case_reference, f.key))

"""SIP statistics for a period: the figures coordinators and steering groups ask for.

Every figure is an aggregate (a count, a share or a median) over a date range ``[start, end]`` of local
Stockholm dates, both ends included; timestamps are in the period when their local date is, i.e.
``start_of_local_day_utc(start) <= ts < start_of_local_day_utc(end + 1 day)``. No figure names a plan
or a person. Counts come from SQL aggregates with ``GROUP BY``; figures that need an organisation's
working-day calendar (documentation in time, medians of working days) fetch the period's date pairs
in one query and finish in Python. Never one query per row.

Per organisation
    Plans, meetings, documentation and invitations count for the plan's **convener organisation**;
    deviations count for the **concerning organisation**. ``TOTAL`` (``"*"``) is every organisation
    in scope (all, or those given with ``organisations=``). Invitations are further split by the
    **invited contact's organisation kind** (dimension ``invitee_kind``), so that Försäkringskassan's
    or the schools' answers and attendance are visible.

Plans (unit: count)
    ``plans_identified``/``plans_offered``/``plans_started``/``plans_ended``: plans whose
    ``identified_on``/``offered_on``/``activated_on``/``closed_on`` lies in the period.
    ``plans_ended_consent_withdrawn``: of those ended, closure reason ``consent_withdrawn``.
    ``sip_meetings_held``/``follow_ups_held``/``pre_meetings_held``: meetings of that kind with status
    ``held`` starting in the period; ``plans_held``/``plans_followed_up``: distinct plans with such a
    held SIP meeting / follow-up meeting.
    ``plans_first_sip_meeting``: plans whose first ever held SIP meeting lies in the period;
    ``identified_to_first_sip_median_working_days``: median working days from ``identified_on`` to that
    meeting's local date (working days in ``(identified, meeting]``, convener's calendar).

Documentation (dimension ``meeting_kind``: ``sip_meeting``, ``follow_up``; no dimension = both)
    Of the held SIP and follow-up meetings starting in the period (``documentation_meetings_held``),
    the due day is ``add_working_days(local meeting date, documentation.due_working_days)`` on the
    convener's calendar (national holidays plus its closed days) and with its policy override.
    ``documented_in_time``: documented on or before the due day (local date of ``documented_at``);
    ``documented_late``: documented after it; ``undocumented_overdue``: not documented and the due day
    is before ``as_of``; ``documentation_pending``: not documented and the due day is ``as_of`` or
    later (not late yet, left out of the share).
    ``documented_in_time_share`` (percent) = in time / (held − pending).
    ``documentation_median_working_days``: median working days from the meeting to its documentation,
    over the documented meetings.

Invitations (dimension ``invitee_kind``; no dimension = all kinds)
    ``invitations_sent``: invitations with ``sent_at`` in the period (any meeting kind or status);
    ``invitations_answered`` those with an answer other than ``none`` (split into accepted, tentative,
    declined); ``invitation_answer_rate`` (percent) = answered / sent.
    ``attendance_recorded``: invitations to meetings held in the period whose attendance is recorded
    (``attended`` not null); ``attendance_attended`` of those, attended; ``attendance_rate`` (percent).

Deviations (dimensions ``kind``, ``severity``, and both; no dimension = all)
    ``deviations_reported``: reported in the period. ``deviations_closed``: of those, resolved before
    the period ended; ``deviations_open``: the rest (still open at the end of the period).
    ``deviations_acknowledged``/``deviations_replied``: of those, acknowledged / replied at all.
    ``deviation_acknowledgement_median_days``/``deviation_reply_median_days`` (no dimension and
    ``severity`` only): median **calendar** days between the local dates of report and
    acknowledgement / reply.

Rows with a dimension appear only where something was counted; rows without a dimension appear for the
total and every organisation of the section (with zeros). Shares and medians without any data are
``None``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, or_, select, true
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from sipflows.checks.base import CheckContext
from sipflows.metrics import METRICS as METRICS  # re-exported: the registry's old home
from sipflows.metrics import Section as Section
from sipflows.metrics import Unit as Unit
from sipflows.models import (
    Answer,
    ClosureReason,
    Contact,
    Deviation,
    DeviationKind,
    Invitation,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Organisation,
    OrgKind,
    Severity,
    SipCase,
)
from sipflows.policy import EffectivePolicy
from sipflows.timeutil import local_date, start_of_local_day_utc

TOTAL = "*"


Value = int | float | None


@dataclass(frozen=True)
class Figure:
    """One number of the report: what, for which organisation (code or ``TOTAL``), split how."""

    metric: str
    organisation: str
    dimension: str
    value: Value
    unit: str


@dataclass(frozen=True)
class Period:
    """Local dates, both ends included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def week_ending(cls, last_day: date) -> Period:
        return cls(last_day - timedelta(days=6), last_day)

    @property
    def utc_start(self) -> datetime:
        return start_of_local_day_utc(self.start)

    @property
    def utc_end(self) -> datetime:
        """The first instant after the period (exclusive bound)."""
        return start_of_local_day_utc(self.end + timedelta(days=1))


@dataclass(frozen=True)
class OrgInfo:
    code: str
    name: str
    kind: str


class UnknownOrganisation(ValueError):
    """An organisation code given for the report's scope is not in the register."""


def dimension(**parts: object) -> str:
    """``kind=party_absent;severity=high``: the stable text form of a split, in the given order."""
    return ";".join(f"{k}={getattr(v, 'value', v)}" for k, v in parts.items())


@dataclass(frozen=True)
class ReportStats:
    period: Period
    as_of: date
    scope: tuple[str, ...]
    organisations: dict[str, OrgInfo]
    documentation_due: dict[str, int]
    figures: tuple[Figure, ...]

    @cached_property
    def _index(self) -> dict[tuple[str, str, str], Figure]:
        return {(f.metric, f.organisation, f.dimension): f for f in self.figures}

    def figure(self, metric: str, organisation: str = TOTAL, dimension: str = "") -> Figure:
        """The figure, or ``KeyError`` when no such row exists."""
        return self._index[(metric, organisation, dimension)]

    def value(
        self, metric: str, organisation: str = TOTAL, dimension: str = "", default: Value = None
    ) -> Value:
        found = self._index.get((metric, organisation, dimension))
        return found.value if found is not None else default

    def organisations_in(self, section: Section) -> list[str]:
        """Organisation codes with rows in a section, by name."""
        codes = {f.organisation for f in self.figures if METRICS[f.metric].section == section}
        codes.discard(TOTAL)
        return sorted(codes, key=lambda c: (self.organisations[c].name.casefold(), c))

    def dimension_values(self, metric: str, key: str, organisation: str = TOTAL) -> list[str]:
        """The values of a single-key dimension (``invitee_kind``, ``kind``…) present for a metric."""
        prefix = f"{key}="
        return sorted(
            f.dimension[len(prefix) :]
            for f in self.figures
            if f.metric == metric
            and f.organisation == organisation
            and f.dimension.startswith(prefix)
            and ";" not in f.dimension
        )


# shares: (part, whole) counts of the same cell
_SHARES = {
    "documented_in_time_share": ("documented_in_time", "documentation_judged"),
    "invitation_answer_rate": ("invitations_answered", "invitations_sent"),
    "attendance_rate": ("attendance_attended", "attendance_recorded"),
}


class _Cells:
    """Counts and samples per (organisation code, dimension); every row counts for its organisation and for
    ``TOTAL``. Samples are kept under the name of the median metric they feed."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.samples: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))

    def count(self, org: str, dims: Iterable[str], name: str, n: int) -> None:
        for o in (org, TOTAL):
            for d in dims:
                self.counts[(o, d)][name] += n

    def sample(self, org: str, dims: Iterable[str], name: str, v: int) -> None:
        for o in (org, TOTAL):
            for d in dims:
                self.samples[(o, d)][name].append(v)

    def emit(
        self,
        out: list[Figure],
        section: Section,
        scope_codes: Iterable[str],
        medians_for: Callable[[str], bool] = lambda dim: True,
    ) -> None:
        """One row per metric of ``section``, in the registry's order, for every cell counted, the total and
        every organisation in scope: counts as counted, shares from ``_SHARES``, medians of the samples
        (only in the cells whose dimension ``medians_for`` accepts)."""
        keys = set(self.counts) | set(self.samples) | {(o, "") for o in scope_codes} | {(TOTAL, "")}
        for org, dim in sorted(keys):
            counts, samples = self.counts[(org, dim)], self.samples[(org, dim)]
            for name, metric in METRICS.items():
                if metric.section != section:
                    continue
                value: Value
                if metric.unit == Unit.COUNT:
                    value = counts[name]
                elif metric.unit == Unit.PERCENT:
                    part, whole = _SHARES[name]
                    value = 100.0 * counts[part] / counts[whole] if counts[whole] else None
                elif medians_for(dim):
                    value = float(statistics.median(samples[name])) if samples[name] else None
                else:
                    continue
                out.append(Figure(name, org, dim, value, metric.unit.value))


@dataclass(frozen=True)
class _Query:
    """What every section's queries share: the period, the register's organisation codes and the scope."""

    session: Session
    period: Period
    codes: dict[int, str]
    scope_ids: list[int]
    scope_codes: list[str]

    def in_scope(self, org_id: QueryableAttribute[int]) -> ColumnElement[bool]:
        return org_id.in_(self.scope_ids) if self.scope_ids else true()

    def in_period(self, col: Any) -> ColumnElement[bool]:
        return and_(col >= self.period.utc_start, col < self.period.utc_end)

    def on_days(self, col: QueryableAttribute[Any]) -> ColumnElement[bool]:
        """A local-date column within the period."""
        return col.between(self.period.start, self.period.end)


def compute_stats(
    session: Session,
    period: Period,
    policy: EffectivePolicy,
    *,
    organisations: Sequence[str] = (),
    as_of: date | None = None,
) -> ReportStats:
    """Every figure for ``period``; ``as_of`` (default: the period's last day) judges what is pending."""
    judged = as_of or period.end
    orgs = {
        oid: OrgInfo(code, name, kind.value)
        for oid, code, name, kind in session.execute(
            select(Organisation.id, Organisation.code, Organisation.name, Organisation.kind)
        ).tuples()
    }
    by_code = {o.code: oid for oid, o in orgs.items()}
    unknown = [c for c in organisations if c not in by_code]
    if unknown:
        raise UnknownOrganisation(f"no organisation with code {', '.join(sorted(unknown))} in the register")
    scope_ids = sorted({by_code[c] for c in organisations})
    q = _Query(
        session,
        period,
        {oid: o.code for oid, o in orgs.items()},
        scope_ids,
        [orgs[i].code for i in scope_ids],
    )
    ctx = CheckContext.load(session, judged, policy)

    out: list[Figure] = []
    _plans(q, ctx).emit(out, Section.PLANS, q.scope_codes)
    _documentation(q, ctx, judged).emit(out, Section.DOCUMENTATION, q.scope_codes)
    _invitations(q).emit(out, Section.INVITATIONS, q.scope_codes)
    # the medians are split by severity only
    _deviations(q).emit(
        out, Section.DEVIATIONS, q.scope_codes, lambda d: d == "" or d.startswith("severity=")
    )

    due = {TOTAL: policy.policy.documentation.due_working_days}
    for code, pol in policy.overrides.items():
        if code in by_code and pol.documentation.due_working_days != due[TOTAL]:
            due[code] = pol.documentation.due_working_days
    return ReportStats(
        period=period,
        as_of=judged,
        scope=tuple(q.scope_codes),
        organisations={o.code: o for o in orgs.values()},
        documentation_due=due,
        figures=tuple(out),
    )


def _count_case(cond: ColumnElement[bool]) -> Any:
    return func.sum(case((cond, 1), else_=0))


def _plans(q: _Query, ctx: CheckContext) -> _Cells:
    cells = _Cells()
    stage_cols = {
        "plans_identified": q.on_days(SipCase.identified_on),
        "plans_offered": q.on_days(SipCase.offered_on),
        "plans_started": q.on_days(SipCase.activated_on),
        "plans_ended": q.on_days(SipCase.closed_on),
    }
    ended_withdrawn = and_(
        q.on_days(SipCase.closed_on), SipCase.closure_reason == ClosureReason.CONSENT_WITHDRAWN
    )
    scope = q.in_scope(SipCase.convener_org_id)
    stmt = (
        select(
            SipCase.convener_org_id,
            *(_count_case(c) for c in stage_cols.values()),
            _count_case(ended_withdrawn),
        )
        .where(or_(*stage_cols.values()), scope)
        .group_by(SipCase.convener_org_id)
    )
    names = [*stage_cols, "plans_ended_consent_withdrawn"]
    for org_id, *values in q.session.execute(stmt).tuples():
        for name, v in zip(names, values, strict=True):
            cells.count(q.codes[org_id], [""], name, int(v or 0))

    held = (
        select(
            SipCase.convener_org_id,
            Meeting.kind,
            func.count(Meeting.id),
            func.count(distinct(Meeting.case_id)),
        )
        .join(SipCase, SipCase.id == Meeting.case_id)
        .where(Meeting.status == MeetingStatus.HELD, q.in_period(Meeting.starts_at), scope)
        .group_by(SipCase.convener_org_id, Meeting.kind)
    )
    meeting_names = {
        MeetingKind.PRE_MEETING: ("pre_meetings_held", None),
        MeetingKind.SIP_MEETING: ("sip_meetings_held", "plans_held"),
        MeetingKind.FOLLOW_UP: ("follow_ups_held", "plans_followed_up"),
    }
    for org_id, kind, n_meetings, n_plans in q.session.execute(held).tuples():
        meetings_name, plans_name = meeting_names[MeetingKind(kind)]
        cells.count(q.codes[org_id], [""], meetings_name, n_meetings)
        if plans_name:
            # each plan has one convener, so per-organisation distinct counts add up to the total
            cells.count(q.codes[org_id], [""], plans_name, n_plans)

    first_held = (
        select(Meeting.case_id, func.min(Meeting.starts_at).label("first_at"))
        .where(Meeting.kind == MeetingKind.SIP_MEETING, Meeting.status == MeetingStatus.HELD)
        .group_by(Meeting.case_id)
        .having(q.in_period(func.min(Meeting.starts_at)))
        .subquery()
    )
    pairs = (
        select(SipCase.convener_org_id, SipCase.identified_on, first_held.c.first_at)
        .join(first_held, first_held.c.case_id == SipCase.id)
        .where(scope)
    )
    for org_id, identified_on, first_at in q.session.execute(pairs).tuples():
        days = ctx.calendar(org_id).working_days_between(identified_on, local_date(first_at))
        cells.count(q.codes[org_id], [""], "plans_first_sip_meeting", 1)
        cells.sample(q.codes[org_id], [""], "identified_to_first_sip_median_working_days", days)
    return cells


def _documentation(q: _Query, ctx: CheckContext, judged: date) -> _Cells:
    cells = _Cells()
    stmt = (
        select(SipCase.convener_org_id, Meeting.kind, Meeting.starts_at, Meeting.documented_at)
        .join(SipCase, SipCase.id == Meeting.case_id)
        .where(
            Meeting.status == MeetingStatus.HELD,
            Meeting.kind.in_([MeetingKind.SIP_MEETING, MeetingKind.FOLLOW_UP]),
            q.in_period(Meeting.starts_at),
            q.in_scope(SipCase.convener_org_id),
        )
    )
    for org_id, kind, starts_at, documented_at in q.session.execute(stmt).tuples():
        calendar = ctx.calendar(org_id)
        held_on = local_date(starts_at)
        due = calendar.add_working_days(held_on, ctx.policy_for(org_id).documentation.due_working_days)
        org, dims = q.codes[org_id], ("", dimension(meeting_kind=kind))
        cells.count(org, dims, "documentation_meetings_held", 1)
        if documented_at is not None:
            documented_on = local_date(documented_at)
            outcome = "documented_in_time" if documented_on <= due else "documented_late"
            days = calendar.working_days_between(held_on, documented_on)
            cells.sample(org, dims, "documentation_median_working_days", days)
        else:
            outcome = "documentation_pending" if due >= judged else "undocumented_overdue"
        cells.count(org, dims, outcome, 1)
        # the share leaves out the meetings still in time
        cells.count(org, dims, "documentation_judged", int(outcome != "documentation_pending"))
    return cells


def _invitations(q: _Query) -> _Cells:
    cells = _Cells()
    invitee_org = aliased(Organisation)

    def base(*cols: Any) -> Any:
        return (
            select(SipCase.convener_org_id, invitee_org.kind, *cols)
            .select_from(Invitation)
            .join(Meeting, Meeting.id == Invitation.meeting_id)
            .join(SipCase, SipCase.id == Meeting.case_id)
            .join(Contact, Contact.id == Invitation.contact_id)
            .join(invitee_org, invitee_org.id == Contact.organisation_id)
            .group_by(SipCase.convener_org_id, invitee_org.kind)
        )

    scope = q.in_scope(SipCase.convener_org_id)
    answers = (
        base(Invitation.answer, func.count(Invitation.id))
        .where(q.in_period(Invitation.sent_at), scope)
        .group_by(Invitation.answer)
    )
    for org_id, kind, answer, n in q.session.execute(answers).tuples():
        org, dims = q.codes[org_id], ("", dimension(invitee_kind=OrgKind(kind)))
        cells.count(org, dims, "invitations_sent", n)
        if Answer(answer) != Answer.NONE:
            cells.count(org, dims, "invitations_answered", n)
            cells.count(org, dims, f"invitations_{Answer(answer).value}", n)

    attendance = base(func.count(Invitation.id), _count_case(Invitation.attended.is_(true()))).where(
        Meeting.status == MeetingStatus.HELD,
        q.in_period(Meeting.starts_at),
        Invitation.attended.is_not(None),
        scope,
    )
    for org_id, kind, recorded, attended in q.session.execute(attendance).tuples():
        org, dims = q.codes[org_id], ("", dimension(invitee_kind=OrgKind(kind)))
        cells.count(org, dims, "attendance_recorded", recorded)
        cells.count(org, dims, "attendance_attended", int(attended or 0))
    return cells


def _deviations(q: _Query) -> _Cells:
    cells = _Cells()
    scope = q.in_scope(Deviation.concerning_org_id)
    closed = and_(Deviation.resolved_at.is_not(None), Deviation.resolved_at < q.period.utc_end)
    counts = (
        select(
            Deviation.concerning_org_id,
            Deviation.kind,
            Deviation.severity,
            func.count(Deviation.id),
            _count_case(closed),
            func.count(Deviation.acknowledged_at),
            func.count(Deviation.replied_at),
        )
        .where(q.in_period(Deviation.reported_at), scope)
        .group_by(Deviation.concerning_org_id, Deviation.kind, Deviation.severity)
    )
    for org_id, kind, severity, n, n_closed, n_ack, n_replied in q.session.execute(counts).tuples():
        kind, severity = DeviationKind(kind), Severity(severity)
        org = q.codes[org_id]
        dims: tuple[str, ...] = (
            "",
            dimension(kind=kind),
            dimension(severity=severity),
            dimension(kind=kind, severity=severity),
        )
        cells.count(org, dims, "deviations_reported", n)
        cells.count(org, dims, "deviations_closed", int(n_closed or 0))
        cells.count(org, dims, "deviations_open", n - int(n_closed or 0))
        cells.count(org, dims, "deviations_acknowledged", n_ack)
        cells.count(org, dims, "deviations_replied", n_replied)

    durations = select(
        Deviation.concerning_org_id,
        Deviation.severity,
        Deviation.reported_at,
        Deviation.acknowledged_at,
        Deviation.replied_at,
    ).where(
        q.in_period(Deviation.reported_at),
        or_(Deviation.acknowledged_at.is_not(None), Deviation.replied_at.is_not(None)),
        scope,
    )
    for org_id, severity, reported_at, acknowledged_at, replied_at in q.session.execute(durations).tuples():
        org, dims = q.codes[org_id], ("", dimension(severity=Severity(severity)))
        reported_on = local_date(reported_at)
        if acknowledged_at is not None:
            days = (local_date(acknowledged_at) - reported_on).days
            cells.sample(org, dims, "deviation_acknowledgement_median_days", days)
        if replied_at is not None:
            cells.sample(
                org, dims, "deviation_reply_median_days", (local_date(replied_at) - reported_on).days
            )
    return cells

"""Plans with consent whose first SIP meeting is never called (the county reports: offered, never held).

The limit depends on the plan (``first_meeting`` in the policy):

- ordinary: ``ordinary_working_days`` working days from the day the need was identified;
- for a child or young person (``under_18``): ``child_days`` calendar days from that day (Västbus);
- arising at discharge from inpatient care (``origin = discharge``, Lag 2017:612): ``discharge_days``
  calendar days from the discharge date, whatever the age.

A limit in calendar days that ends on a weekend or holiday ends on the next working day. The working day
after the limit the convener and the coordinator are reminded; ``escalation_after_working_days`` later the
convener's escalation contact. A SIP meeting booked (scheduled or held, at any time) ends the ladder, and
so does closing the plan or withdrawing consent; a plan without consent is not yet anyone's to call.
Object: the plan; the stage carries the limit's day, so a corrected date gives a new ladder.
Deciding organisation: the convener organisation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    ladder_stage,
    per_org,
    plan_recipients,
    sort_findings,
)
from sipflows.models import Contact, Meeting, MeetingKind, MeetingStatus, Organisation, PlanOrigin, SipCase
from sipflows.policy import FirstMeetingPolicy, Policy
from sipflows.workdays import WorkCalendar

NAME = "first_meeting"

REMINDER = "reminder"
ESCALATION = "escalation-1"

# a SIP meeting in these states is booked: the first meeting has been called
BOOKED = (MeetingStatus.SCHEDULED, MeetingStatus.HELD)

ORDINARY = "ordinary"
CHILD = "child"
DISCHARGE = "discharge"


def plan_kind(origin: PlanOrigin | str, under_18: bool) -> str:
    """Which limit applies: discharge (the law's) before child before ordinary."""
    if str(origin) == PlanOrigin.DISCHARGE.value:
        return DISCHARGE
    return CHILD if under_18 else ORDINARY


def due_day(calendar: WorkCalendar, policy: FirstMeetingPolicy, kind: str, base: date) -> date:
    """The last day on which the first SIP meeting should have been called, counted from ``base`` (the
    identified day, or the discharge date for a plan from discharge)."""
    if kind == ORDINARY:
        return calendar.add_working_days(base, policy.ordinary_working_days)
    days = policy.discharge_days if kind == DISCHARGE else policy.child_days
    return calendar.next_working_day(base + timedelta(days=days))


def ladder(policy: FirstMeetingPolicy) -> list[tuple[str, int]]:
    return [(REMINDER, 1), (ESCALATION, 1 + policy.escalation_after_working_days)]


def stage_on(
    calendar: WorkCalendar, policy: FirstMeetingPolicy, kind: str, base: date, judged: date
) -> tuple[date, str | None]:
    """The due day and the ladder step reached on ``judged`` (None before the reminder day)."""
    due = due_day(calendar, policy, kind, base)
    return due, ladder_stage(calendar, due, judged, ladder(policy))


def _latest_base(kind: str, judged: date) -> Callable[[WorkCalendar, Policy], date]:
    """``bound_for(calendar, policy)``: the latest base day whose reminder day can have come by ``judged``.

    Exact for working days (the reminder is ``ordinary + 1`` working days after the base); for limits in
    calendar days a safe bound (the reminder comes after base + days), the exact stage is decided per row.
    """

    def bound(calendar: WorkCalendar, policy: Policy) -> date:
        fm = policy.first_meeting
        if kind == ORDINARY:
            return calendar.latest_base_date(judged, fm.ordinary_working_days + 1)
        days = fm.discharge_days if kind == DISCHARGE else fm.child_days
        return judged - timedelta(days=days + 1)

    return bound


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    def base_before(kind: str, column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
        default, special = ctx.bounds(_latest_base(kind, ctx.judged))
        return per_org(SipCase.convener_org_id, default, special, lambda d: column <= d, max)

    sip = aliased(Meeting)
    booked_sip = (sip.kind == MeetingKind.SIP_MEETING, sip.status.in_(BOOKED))
    not_booked: ColumnElement[bool]
    if session.get_bind().dialect.name == "sqlite":
        # SQLite runs a correlated NOT EXISTS once per candidate plan (a probe into meetings each, 3x
        # slower on the benchmark register); NOT IN builds the set of booked plans once
        not_booked = SipCase.id.not_in(select(sip.case_id).where(*booked_sip))
    else:
        # PostgreSQL makes NOT EXISTS a hash anti-join; its NOT IN would need every id within work_mem
        not_booked = ~exists().where(sip.case_id == SipCase.id, *booked_sip)
    not_discharge = SipCase.origin != PlanOrigin.DISCHARGE
    convener = aliased(Contact)
    stmt = (
        select(
            SipCase.id,
            SipCase.reference,
            SipCase.origin,
            SipCase.under_18,
            SipCase.identified_on,
            SipCase.discharged_on,
            SipCase.convener_org_id,
            SipCase.convener_contact_id,
            SipCase.coordinator_contact_id,
            convener.escalation_contact_id,
            Organisation.escalation_contact_id,
        )
        .join(convener, convener.id == SipCase.convener_contact_id)
        .join(Organisation, Organisation.id == SipCase.convener_org_id)
        .where(
            case_is_open(),
            SipCase.consent_given_on.is_not(None),
            or_(
                and_(
                    SipCase.origin == PlanOrigin.DISCHARGE,
                    SipCase.discharged_on.is_not(None),
                    base_before(DISCHARGE, SipCase.discharged_on),
                ),
                and_(
                    not_discharge,
                    SipCase.under_18.is_(true()),
                    base_before(CHILD, SipCase.identified_on),
                ),
                and_(
                    not_discharge,
                    SipCase.under_18.is_(false()),
                    base_before(ORDINARY, SipCase.identified_on),
                ),
            ),
            not_booked,
        )
    )
    memo: dict[tuple[int | None, str, date], tuple[date, str | None]] = {}
    findings: list[Finding] = []
    for (
        case_id,
        reference,
        origin,
        under_18,
        identified_on,
        discharged_on,
        org_id,
        convener_id,
        coordinator_id,
        convener_escalation,
        org_escalation,
    ) in session.execute(stmt).tuples():
        kind = plan_kind(origin, bool(under_18))
        base = discharged_on if kind == DISCHARGE else identified_on
        assert base is not None  # filtered in SQL
        scope = ctx.scope(org_id)
        if (scope, kind, base) not in memo:
            policy = ctx.policy_for(scope).first_meeting
            memo[scope, kind, base] = stage_on(ctx.calendar(scope), policy, kind, base, ctx.judged)
        due, stage = memo[scope, kind, base]
        if stage is None:
            continue
        recipients = plan_recipients(
            stage != REMINDER, convener_id, coordinator_id, convener_escalation, org_escalation
        )
        findings.append(
            Finding(
                check=NAME,
                stage=f"{stage}@{due.isoformat()}",
                object_type="case",
                object_id=case_id,
                case_id=case_id,
                case_reference=reference,
                recipients=recipients,
                due=due,
                # which limit applied, for operations; notices never say it (a discharge is health data)
                details={"limit": kind, "due": due.isoformat()},
            )
        )
    return sort_findings(findings)

"""Follow-ups that the plan set a date for but that never happen (Dalarna: the most common failure).

Object: the case, for its current ``follow_up_due``. Deciding organisation: the convener organisation.
The stage carries the due date, so a plan followed up and given a new date is reminded again.
A booked (non-cancelled) follow-up meeting from the reminder day on silences the reminder; only a held
one silences the overdue notice and the escalation.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.orm import Session, aliased

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    ladder_stage,
    per_org,
    plan_recipients,
    sort_findings,
)
from sipflows.models import Contact, Meeting, MeetingKind, MeetingStatus, Organisation, SipCase
from sipflows.timeutil import start_of_local_day_utc

NAME = "follow_up"

REMINDER = "reminder"
OVERDUE = "overdue"
ESCALATION = "escalation-1"


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    # the reminder day (R working days before due) has come  <=>  due <= the R-th working day after judged
    default, special = ctx.bounds(
        lambda calendar, policy: calendar.add_working_days(
            ctx.judged, policy.follow_up.reminder_before_working_days
        )
    )
    follow_up = aliased(Meeting)

    def latest_follow_up(*statuses: MeetingStatus, exclude: bool = False) -> ScalarSelect[Any]:
        status = follow_up.status.not_in(statuses) if exclude else follow_up.status.in_(statuses)
        return (
            select(func.max(follow_up.starts_at))
            .where(follow_up.case_id == SipCase.id, follow_up.kind == MeetingKind.FOLLOW_UP, status)
            .scalar_subquery()
        )

    convener = aliased(Contact)
    stmt = (
        select(
            SipCase.id,
            SipCase.reference,
            SipCase.follow_up_due,
            SipCase.convener_org_id,
            SipCase.convener_contact_id,
            SipCase.coordinator_contact_id,
            convener.escalation_contact_id,
            Organisation.escalation_contact_id,
            latest_follow_up(MeetingStatus.CANCELLED, exclude=True),
            latest_follow_up(MeetingStatus.HELD),
        )
        .join(convener, convener.id == SipCase.convener_contact_id)
        .join(Organisation, Organisation.id == SipCase.convener_org_id)
        .where(
            SipCase.follow_up_due.is_not(None),
            per_org(SipCase.convener_org_id, default, special, lambda d: SipCase.follow_up_due <= d, max),
            case_is_open(),
        )
    )
    memo: dict[tuple[int | None, date], tuple[date, datetime, str | None]] = {}
    findings = []
    for (
        case_id,
        reference,
        due,
        org_id,
        convener_id,
        coordinator_id,
        convener_escalation,
        org_escalation,
        latest_booked,
        latest_held,
    ) in session.execute(stmt).tuples():
        assert due is not None  # filtered in SQL
        scope = ctx.scope(org_id)
        if (scope, due) not in memo:
            memo[scope, due] = _reminder_day_and_stage(ctx, scope, due)
        reminder_day, reminder_starts, stage = memo[scope, due]
        if stage is None:
            continue
        # the reminder stops once a follow-up is booked, the later steps once one was held: "starts on or
        # after the reminder day" (local), compared as UTC instants
        latest = latest_booked if stage == REMINDER else latest_held
        if latest is not None and latest >= reminder_starts:
            continue
        recipients = plan_recipients(
            stage not in (REMINDER, OVERDUE), convener_id, coordinator_id, convener_escalation, org_escalation
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
                details={"follow_up_due": due.isoformat(), "reminder_on": reminder_day.isoformat()},
            )
        )
    return sort_findings(findings)


def _reminder_day_and_stage(
    ctx: CheckContext, scope: int | None, due: date
) -> tuple[date, datetime, str | None]:
    calendar, policy = ctx.calendar(scope), ctx.policy_for(scope).follow_up
    overdue = policy.overdue_after_working_days
    steps = [
        (REMINDER, -policy.reminder_before_working_days),
        (OVERDUE, overdue),
        (ESCALATION, overdue + policy.escalation_after_working_days),
    ]
    reminder_day = calendar.add_working_days(due, -policy.reminder_before_working_days)
    return reminder_day, start_of_local_day_utc(reminder_day), ladder_stage(calendar, due, ctx.judged, steps)

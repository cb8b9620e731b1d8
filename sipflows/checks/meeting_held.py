"""SIP meetings and follow-ups whose time has passed while the register still has them scheduled.

Documentation is chased only for meetings marked held, so a meeting nobody marked would never be chased:
the working day after it (``meeting_held.ask_after_working_days``) the convener is asked to confirm that
it was held (``sipflows meeting held CODE``), or to move or cancel it; then the convener's escalation
contact. Once it is confirmed held, the documentation deadline runs from the meeting's day as before.
Deciding organisation: the case's convener organisation. The ladder starts on the asking day itself.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    escalation_recipients,
    ladder_stage,
    per_org,
    sort_findings,
    unique_recipients,
)
from sipflows.models import Contact, Meeting, MeetingKind, MeetingStatus, Organisation, SipCase
from sipflows.timeutil import local_date

NAME = "meeting_held"

REMINDER = "reminder"
ESCALATION = "escalation-1"


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    # asking day <= judged  <=>  the meeting started before the start of the local day after
    # latest_base_date(judged, ask_after)
    default, special = ctx.cutoffs(lambda p: p.meeting_held.ask_after_working_days)
    convener = aliased(Contact)
    stmt = (
        select(
            Meeting.id,
            Meeting.code,
            Meeting.kind,
            Meeting.starts_at,
            SipCase.id,
            SipCase.reference,
            SipCase.convener_org_id,
            SipCase.convener_contact_id,
            SipCase.coordinator_contact_id,
            convener.escalation_contact_id,
            Organisation.escalation_contact_id,
        )
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(convener, convener.id == SipCase.convener_contact_id)
        .join(Organisation, Organisation.id == SipCase.convener_org_id)
        .where(
            Meeting.status == MeetingStatus.SCHEDULED,
            per_org(SipCase.convener_org_id, default, special, lambda c: Meeting.starts_at < c, max),
            Meeting.kind.in_((MeetingKind.SIP_MEETING, MeetingKind.FOLLOW_UP)),
            case_is_open(),
        )
    )
    memo: dict[tuple[int | None, date], tuple[date, str | None]] = {}
    findings: list[Finding] = []
    for (
        meeting_id,
        code,
        kind,
        starts_at,
        case_id,
        reference,
        org_id,
        convener_id,
        coordinator_id,
        convener_escalation,
        org_escalation,
    ) in session.execute(stmt).tuples():
        meeting_on = local_date(starts_at)
        scope = ctx.scope(org_id)
        if (scope, meeting_on) not in memo:
            memo[scope, meeting_on] = _due_and_stage(ctx, scope, meeting_on)
        due, stage = memo[scope, meeting_on]
        if stage is None:
            continue
        if stage == REMINDER:
            recipients = unique_recipients([convener_id])
        else:
            recipients = escalation_recipients(
                convener_escalation, org_escalation, [convener_id, coordinator_id]
            )
        findings.append(
            Finding(
                check=NAME,
                stage=stage,
                object_type="meeting",
                object_id=meeting_id,
                case_id=case_id,
                case_reference=reference,
                recipients=recipients,
                due=due,
                details={
                    "meeting_code": code,
                    "meeting_kind": str(kind),
                    "meeting_on": meeting_on.isoformat(),
                },
            )
        )
    return sort_findings(findings)


def _due_and_stage(ctx: CheckContext, scope: int | None, meeting_on: date) -> tuple[date, str | None]:
    calendar, policy = ctx.calendar(scope), ctx.policy_for(scope).meeting_held
    due = calendar.add_working_days(meeting_on, policy.ask_after_working_days)
    steps = [(REMINDER, 0), (ESCALATION, policy.escalation_after_working_days)]
    return due, ladder_stage(calendar, due, ctx.judged, steps)

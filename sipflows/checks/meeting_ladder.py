"""The ladder two checks run from a past meeting's local day: one query, one loop, their own steps.

``documentation`` (held, not documented) and ``meeting_held`` (still ``scheduled`` after its day) both
look at SIP meetings and follow-ups of open plans, count working days from the meeting's day in the
convener organisation's calendar and policy, and step up from the convener to the escalation contact.
What differs — the status, an extra condition, the steps — is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, aliased

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    escalation_recipients,
    ladder_stage,
    per_org,
    per_org_case,
    sort_findings,
    unique_recipients,
)
from sipflows.models import Contact, Meeting, MeetingKind, MeetingStatus, Organisation, SipCase
from sipflows.policy import Policy
from sipflows.timeutil import local_date

# The steps of a ladder: (stage, working days after the due day), the first one asking the convener alone,
# ``escalation-…`` ones going to the escalation contact, any other to the convener and the coordinator.
Steps = list[tuple[str, int]]


def meeting_findings(
    session: Session,
    ctx: CheckContext,
    *,
    check: str,
    status: MeetingStatus,
    due_after: Callable[[Policy], int],
    steps: Callable[[Policy], Steps],
    day_detail: str,
    also: Sequence[ColumnElement[bool]] = (),
) -> list[Finding]:
    """Findings for SIP meetings and follow-ups in ``status`` (and ``also``) whose ladder, from the due day
    ``due_after`` working days after the meeting's local day, has reached a step on the judged day."""
    # due <= judged  <=>  the meeting started before the start of the local day after latest_base_date
    default, special = ctx.cutoffs(due_after)
    # SQLite without statistics splits per_org's OR into a scan of every held meeting per bound; a CASE
    # keeps it to one range. PostgreSQL filters either form in the join, but plans the OR better.
    bounded = per_org_case if session.get_bind().dialect.name == "sqlite" else per_org
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
            Meeting.status == status,
            bounded(SipCase.convener_org_id, default, special, lambda c: Meeting.starts_at < c, max),
            *also,
            Meeting.kind.in_((MeetingKind.SIP_MEETING, MeetingKind.FOLLOW_UP)),
            case_is_open(),
        )
    )

    def due_and_stage(scope: int | None, meeting_on: date) -> tuple[date, str | None]:
        calendar, policy = ctx.calendar(scope), ctx.policy_for(scope)
        due = calendar.add_working_days(meeting_on, due_after(policy))
        return due, ladder_stage(calendar, due, ctx.judged, steps(policy))

    first = steps(ctx.policy.policy)[0][0]  # the steps' names do not depend on the values
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
            memo[scope, meeting_on] = due_and_stage(scope, meeting_on)
        due, stage = memo[scope, meeting_on]
        if stage is None:
            continue
        if stage == first:
            recipients = unique_recipients([convener_id])
        elif stage.startswith("escalation"):
            recipients = escalation_recipients(
                convener_escalation, org_escalation, [convener_id, coordinator_id]
            )
        else:
            recipients = unique_recipients([convener_id, coordinator_id])
        findings.append(
            Finding(
                check=check,
                stage=stage,
                object_type="meeting",
                object_id=meeting_id,
                case_id=case_id,
                case_reference=reference,
                recipients=recipients,
                due=due,
                details={"meeting_code": code, "meeting_kind": str(kind), day_detail: meeting_on.isoformat()},
            )
        )
    return sort_findings(findings)

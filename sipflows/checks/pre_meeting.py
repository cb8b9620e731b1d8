"""SIP meetings coming up without a pre-meeting (förmöte) held for the plan.

The pre-meeting is where the individual agrees the purpose, the questions and whom to invite (Region
Uppsala); without it the SIP meeting tends to fail. Deciding organisation: the case's convener
organisation. One alert per meeting, to the convener contact and the coordinator.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    per_org,
    sort_findings,
    unique_recipients,
)
from sipflows.models import Meeting, MeetingKind, MeetingStatus, SipCase
from sipflows.policy import Policy
from sipflows.timeutil import local_date, start_of_local_day_utc
from sipflows.workdays import WorkCalendar

NAME = "pre_meeting"

ALERT = "alert"


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    def end_of_window(calendar: WorkCalendar, policy: Policy) -> datetime:
        last = calendar.add_working_days(ctx.judged, policy.pre_meeting.alert_within_working_days)
        return start_of_local_day_utc(last + timedelta(days=1))

    default, special = ctx.bounds(end_of_window)
    pre = aliased(Meeting)
    held_pre_meeting = exists().where(
        pre.case_id == Meeting.case_id,
        pre.kind == MeetingKind.PRE_MEETING,
        pre.status == MeetingStatus.HELD,
        pre.starts_at < Meeting.starts_at,
    )
    stmt = (
        select(
            Meeting.id,
            Meeting.code,
            Meeting.starts_at,
            SipCase.id,
            SipCase.reference,
            SipCase.convener_contact_id,
            SipCase.coordinator_contact_id,
        )
        .join(SipCase, SipCase.id == Meeting.case_id)
        .where(
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.starts_at >= start_of_local_day_utc(ctx.judged),
            per_org(SipCase.convener_org_id, default, special, lambda c: Meeting.starts_at < c, max),
            Meeting.kind == MeetingKind.SIP_MEETING,
            case_is_open(),
            ~held_pre_meeting,
        )
    )
    findings = []
    for meeting_id, code, starts_at, case_id, reference, convener_id, coordinator_id in session.execute(
        stmt
    ).tuples():
        meeting_on = local_date(starts_at)
        findings.append(
            Finding(
                check=NAME,
                stage=ALERT,
                object_type="meeting",
                object_id=meeting_id,
                case_id=case_id,
                case_reference=reference,
                recipients=unique_recipients([convener_id, coordinator_id]),
                due=meeting_on,
                details={"meeting_code": code, "meeting_on": meeting_on.isoformat()},
            )
        )
    return sort_findings(findings)

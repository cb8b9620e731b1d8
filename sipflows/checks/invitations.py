"""Invitations nobody answered, and meetings about to happen without the parties they need.

Deciding organisation: the case's convener organisation (it sends the invitations and calls the meeting).
a. ``reminder`` (per invitation): unanswered ``reminder_after_working_days`` after it was sent, while the
   meeting is still ahead. Goes to the invitee only, and only when the invitee belongs to the plan.
b. ``convener-alert`` (per meeting): a SIP or follow-up meeting at most ``convener_alert_within_working_days``
   away with a required invitation unanswered or declined, or a principal (kommun, region) that will not be
   there — the law obliges both. A principal is there when one of its participants accepted, when it
   convenes (the convener's organisation calls the meeting and has no invitation of its own), or when the
   meeting's chair belongs to it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    per_org,
    sort_findings,
    unique_recipients,
)
from sipflows.models import (
    Answer,
    Contact,
    Invitation,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Organisation,
    Participant,
    Principal,
    SipCase,
)
from sipflows.policy import Policy
from sipflows.timeutil import local_date, start_of_local_day_utc
from sipflows.workdays import WorkCalendar

NAME = "invitations"

REMINDER = "reminder"
CONVENER_ALERT = "convener-alert"
PRINCIPALS = (Principal.KOMMUN, Principal.REGION)


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    return sort_findings([*_reminders(session, ctx), *_convener_alerts(session, ctx)])


def _invitee_in_plan() -> ColumnElement[bool]:
    """A reminder about a plan may only reach someone of that plan."""
    return or_(
        Invitation.contact_id == SipCase.convener_contact_id,
        Invitation.contact_id == SipCase.coordinator_contact_id,
        exists().where(Participant.case_id == SipCase.id, Participant.contact_id == Invitation.contact_id),
    )


def _reminders(session: Session, ctx: CheckContext) -> list[Finding]:
    default, special = ctx.cutoffs(lambda p: p.invitations.reminder_after_working_days)
    after_judged_day = start_of_local_day_utc(ctx.judged + timedelta(days=1))
    stmt = (
        select(
            Invitation.id,
            Invitation.contact_id,
            Invitation.sent_at,
            Meeting.id,
            Meeting.code,
            Meeting.starts_at,
            SipCase.id,
            SipCase.reference,
            SipCase.convener_org_id,
        )
        .join(Meeting, Meeting.id == Invitation.meeting_id)
        .join(SipCase, SipCase.id == Meeting.case_id)
        .where(
            Invitation.answer == Answer.NONE,
            Invitation.sent_at.is_not(None),
            per_org(SipCase.convener_org_id, default, special, lambda c: Invitation.sent_at < c, max),
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.starts_at >= after_judged_day,
            case_is_open(),
            _invitee_in_plan(),
        )
    )
    memo: dict[tuple[int | None, date], date] = {}
    findings = []
    for (
        inv_id,
        contact_id,
        sent_at,
        meeting_id,
        code,
        starts_at,
        case_id,
        reference,
        org_id,
    ) in session.execute(stmt).tuples():
        assert sent_at is not None  # filtered in SQL
        sent_on = local_date(sent_at)
        scope = ctx.scope(org_id)
        if (scope, sent_on) not in memo:
            days = ctx.policy_for(scope).invitations.reminder_after_working_days
            memo[scope, sent_on] = ctx.calendar(scope).add_working_days(sent_on, days)
        due = memo[scope, sent_on]
        findings.append(
            Finding(
                check=NAME,
                stage=REMINDER,
                object_type="invitation",
                object_id=inv_id,
                case_id=case_id,
                case_reference=reference,
                recipients=(contact_id,),
                due=due,
                details={
                    "meeting_id": meeting_id,
                    "meeting_code": code,
                    "meeting_on": local_date(starts_at).isoformat(),
                    "sent_on": sent_on.isoformat(),
                },
            )
        )
    return findings


def _alert_window(ctx: CheckContext) -> ColumnElement[bool]:
    """Scheduled SIP and follow-up meetings from the judged day to N working days ahead (per org)."""

    def end_of_window(calendar: WorkCalendar, policy: Policy) -> datetime:
        last = calendar.add_working_days(ctx.judged, policy.invitations.convener_alert_within_working_days)
        return start_of_local_day_utc(last + timedelta(days=1))

    default, special = ctx.bounds(end_of_window)
    return and_(
        Meeting.status == MeetingStatus.SCHEDULED,
        Meeting.starts_at >= start_of_local_day_utc(ctx.judged),
        per_org(SipCase.convener_org_id, default, special, lambda c: Meeting.starts_at < c, max),
        Meeting.kind.in_((MeetingKind.SIP_MEETING, MeetingKind.FOLLOW_UP)),
        case_is_open(),
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _convener_alerts(session: Session, ctx: CheckContext) -> list[Finding]:
    window = _alert_window(ctx)
    convener_org = aliased(Organisation)
    chair = aliased(Contact)
    chair_org = aliased(Organisation)
    meetings = (
        select(
            Meeting.id,
            Meeting.code,
            Meeting.starts_at,
            SipCase.id,
            SipCase.reference,
            SipCase.convener_contact_id,
            SipCase.coordinator_contact_id,
            convener_org.principal,
            chair_org.principal,
        )
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(convener_org, convener_org.id == SipCase.convener_org_id)
        .outerjoin(chair, chair.id == Meeting.chair_contact_id)
        .outerjoin(chair_org, chair_org.id == chair.organisation_id)
        .where(window)
    )
    answers = (
        select(
            Invitation.meeting_id,
            _count(and_(Invitation.required.is_(True), Invitation.answer == Answer.NONE)),
            _count(and_(Invitation.required.is_(True), Invitation.answer == Answer.DECLINED)),
            *(
                _count(and_(Invitation.answer == Answer.ACCEPTED, Organisation.principal == principal))
                for principal in PRINCIPALS
            ),
        )
        .join(Meeting, Meeting.id == Invitation.meeting_id)
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(Contact, Contact.id == Invitation.contact_id)
        .join(Organisation, Organisation.id == Contact.organisation_id)
        .where(window)
        .group_by(Invitation.meeting_id)
    )
    tallies = {row[0]: tuple(int(n) for n in row[1:]) for row in session.execute(answers).tuples()}
    findings = []
    for (
        meeting_id,
        code,
        starts_at,
        case_id,
        reference,
        convener_id,
        coordinator_id,
        convener_principal,
        chair_principal,
    ) in session.execute(meetings).tuples():
        unanswered, declined, *accepted = tallies.get(meeting_id, (0, 0, 0, 0))
        # present by definition: the convening organisation's principal, and the chair's
        present = {convener_principal, chair_principal}
        missing = [str(p) for p, n in zip(PRINCIPALS, accepted, strict=True) if n == 0 and p not in present]
        if not (unanswered or declined or missing):
            continue
        meeting_on = local_date(starts_at)
        findings.append(
            Finding(
                check=NAME,
                stage=CONVENER_ALERT,
                object_type="meeting",
                object_id=meeting_id,
                case_id=case_id,
                case_reference=reference,
                recipients=unique_recipients([convener_id, coordinator_id]),
                due=meeting_on,
                details={
                    "meeting_code": code,
                    "meeting_on": meeting_on.isoformat(),
                    "unanswered": unanswered,
                    "declined": declined,
                    "missing_principals": missing,
                },
            )
        )
    return findings

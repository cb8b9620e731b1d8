"""Open deviations (avvikelser) the concerning organisation has not acknowledged or replied to.

Deciding organisation: the concerning organisation. Two ladders per deviation, each starting the working
day after its deadline and escalating every few working days up to a limit:
a. acknowledgement within ``acknowledgement_for(severity)`` working days of the report ("skyndsamt");
b. reply with measures within ``reply_for(severity)`` calendar days (on the next working day if that
   is not one).
High severity shortens both. Details carry kind and severity, never the description.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from sipflows.checks.base import (
    CheckContext,
    Finding,
    case_is_open,
    ladder_stage,
    per_org,
    sort_findings,
    unique_recipients,
)
from sipflows.models import Contact, Deviation, Organisation, Participant, Severity, SipCase
from sipflows.policy import DeviationPolicy, Policy
from sipflows.timeutil import local_date, start_of_local_day_utc
from sipflows.workdays import WorkCalendar

NAME = "deviations"

ACKNOWLEDGEMENT = "acknowledgement"
REPLY = "reply"


def acknowledgement_due(
    calendar: WorkCalendar, policy: DeviationPolicy, reported_on: date, severity: Severity
) -> date:
    return calendar.add_working_days(reported_on, policy.acknowledgement_for(severity))


def reply_due(calendar: WorkCalendar, policy: DeviationPolicy, reported_on: date, severity: Severity) -> date:
    return calendar.next_working_day(reported_on + timedelta(days=policy.reply_for(severity)))


def ladder(prefix: str, policy: DeviationPolicy) -> list[tuple[str, int]]:
    """Reminder the working day after the deadline, then escalation-1, -2, … up to max_escalations."""
    steps = [(f"{prefix}-reminder", 1)]
    offset = 1 + policy.escalation_after_working_days
    for n in range(1, policy.max_escalations + 1):
        steps.append((f"{prefix}-escalation-{n}", offset))
        offset += policy.repeat_escalation_every_working_days
    return steps


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    def reported_before(bound_for: Callable[[WorkCalendar, Policy, Severity], date]) -> ColumnElement[bool]:
        """Per severity and organisation: reported before the local day after the latest base date."""
        terms = []
        for severity in Severity:
            default, special = ctx.bounds(_instant_for(bound_for, severity))
            terms.append(
                and_(
                    Deviation.severity == severity,
                    per_org(
                        Deviation.concerning_org_id,
                        default,
                        special,
                        lambda c: Deviation.reported_at < c,
                        max,
                    ),
                )
            )
        return or_(*terms)

    def ack_base(calendar: WorkCalendar, policy: Policy, severity: Severity) -> date:
        # the reminder day add_working_days(reported, A + 1) has come
        return calendar.latest_base_date(ctx.judged, policy.deviations.acknowledgement_for(severity) + 1)

    def reply_base(calendar: WorkCalendar, policy: Policy, severity: Severity) -> date:
        # reminder day = add_working_days(next_working_day(r + D), 1) = add_working_days(r + D - 1, 2)
        days = policy.deviations.reply_for(severity)
        return calendar.latest_base_date(ctx.judged, 2) - timedelta(days=days - 1)

    due_for_acknowledgement = and_(Deviation.acknowledged_at.is_(None), reported_before(ack_base))
    due_for_reply = and_(Deviation.replied_at.is_(None), reported_before(reply_base))
    candidates = and_(
        Deviation.resolved_at.is_(None), or_(due_for_acknowledgement, due_for_reply), case_is_open()
    )

    stmt = (
        select(
            Deviation.id,
            Deviation.code,
            Deviation.kind,
            Deviation.severity,
            Deviation.reported_at,
            Deviation.acknowledged_at,
            Deviation.replied_at,
            Deviation.concerning_org_id,
            SipCase.id,
            SipCase.reference,
            Organisation.escalation_contact_id,
        )
        .join(SipCase, SipCase.id == Deviation.case_id)
        .join(Organisation, Organisation.id == Deviation.concerning_org_id)
        .where(candidates)
    )
    # the plan's participants who work at the concerning organisation, for the same deviations
    people_stmt = (
        select(Deviation.id, Participant.contact_id, Contact.escalation_contact_id)
        .join(SipCase, SipCase.id == Deviation.case_id)
        .join(Participant, Participant.case_id == Deviation.case_id)
        .join(
            Contact,
            and_(
                Contact.id == Participant.contact_id, Contact.organisation_id == Deviation.concerning_org_id
            ),
        )
        .where(candidates)
        .order_by(Deviation.id, Participant.contact_id)
    )
    people: dict[int, list[tuple[int, int | None]]] = defaultdict(list)
    for deviation_id, contact_id, escalation_id in session.execute(people_stmt).tuples():
        people[deviation_id].append((contact_id, escalation_id))

    findings = []
    for (
        deviation_id,
        code,
        kind,
        severity,
        reported_at,
        acknowledged_at,
        replied_at,
        org_id,
        case_id,
        reference,
        org_escalation,
    ) in session.execute(stmt).tuples():
        scope = ctx.scope(org_id)
        calendar, policy = ctx.calendar(scope), ctx.policy_for(scope).deviations
        reported_on = local_date(reported_at)
        participants = people.get(deviation_id, [])
        for prefix, open_, due_of in (
            (ACKNOWLEDGEMENT, acknowledged_at is None, acknowledgement_due),
            (REPLY, replied_at is None, reply_due),
        ):
            if not open_:
                continue
            due = due_of(calendar, policy, reported_on, severity)
            stage = ladder_stage(calendar, due, ctx.judged, ladder(prefix, policy))
            if stage is None:
                continue
            findings.append(
                Finding(
                    check=NAME,
                    stage=stage,
                    object_type="deviation",
                    object_id=deviation_id,
                    case_id=case_id,
                    case_reference=reference,
                    recipients=_recipients(stage.endswith("-reminder"), participants, org_escalation),
                    due=due,
                    details={
                        "deviation_code": code,
                        "kind": str(kind),
                        "severity": str(severity),
                        "reported_on": reported_on.isoformat(),
                    },
                )
            )
    return sort_findings(findings)


def _instant_for(
    bound_for: Callable[[WorkCalendar, Policy, Severity], date], severity: Severity
) -> Callable[[WorkCalendar, Policy], datetime]:
    """The UTC instant at which the local day after the latest base date starts."""

    def instant(calendar: WorkCalendar, policy: Policy) -> datetime:
        return start_of_local_day_utc(bound_for(calendar, policy, severity) + timedelta(days=1))

    return instant


def _recipients(
    reminder: bool, participants: list[tuple[int, int | None]], org_escalation: int | None
) -> tuple[int, ...]:
    """Reminder: the plan's people at the concerning organisation, else its escalation contact.
    Escalation: the organisation's escalation contact, else those people's own escalation contacts
    (else the people themselves, so the deviation is never silently dropped)."""
    own = [contact for contact, _ in participants]
    if reminder:
        return unique_recipients(own or [org_escalation])
    if org_escalation is not None:
        return (org_escalation,)
    return unique_recipients([esc for _, esc in participants if esc is not None] or own)

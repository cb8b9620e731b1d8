"""Held SIP and follow-up meetings whose plan is not yet documented (county agreements: two working days).

Deciding organisation: the case's convener organisation. The ladder starts on the due day itself.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sipflows.checks.base import CheckContext, Finding
from sipflows.checks.meeting_ladder import meeting_findings
from sipflows.models import Meeting, MeetingStatus
from sipflows.policy import Policy

NAME = "documentation"

REMINDER = "reminder"
OVERDUE = "overdue"
ESCALATION = "escalation-1"


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    return meeting_findings(
        session,
        ctx,
        check=NAME,
        status=MeetingStatus.HELD,
        also=[Meeting.documented_at.is_(None)],
        due_after=lambda p: p.documentation.due_working_days,
        steps=_steps,
        day_detail="held_on",
    )


def _steps(policy: Policy) -> list[tuple[str, int]]:
    return [(REMINDER, 0), (OVERDUE, 1), (ESCALATION, policy.documentation.escalation_after_working_days)]

"""SIP meetings and follow-ups whose time has passed while the register still has them scheduled.

Documentation is chased only for meetings marked held, so a meeting nobody marked would never be chased:
the working day after it (``meeting_held.ask_after_working_days``) the convener is asked to confirm that
it was held (``sipflows meeting held CODE``), or to move or cancel it; then the convener's escalation
contact. Once it is confirmed held, the documentation deadline runs from the meeting's day as before.
Deciding organisation: the case's convener organisation. The ladder starts on the asking day itself.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sipflows.checks.base import CheckContext, Finding
from sipflows.checks.meeting_ladder import meeting_findings
from sipflows.models import MeetingStatus
from sipflows.policy import Policy

NAME = "meeting_held"

REMINDER = "reminder"
ESCALATION = "escalation-1"


def run(session: Session, ctx: CheckContext) -> list[Finding]:
    return meeting_findings(
        session,
        ctx,
        check=NAME,
        status=MeetingStatus.SCHEDULED,
        due_after=lambda p: p.meeting_held.ask_after_working_days,
        steps=_steps,
        day_detail="meeting_on",
    )


def _steps(policy: Policy) -> list[tuple[str, int]]:
    return [(REMINDER, 0), (ESCALATION, policy.meeting_held.escalation_after_working_days)]

"""The checks: one module per kind of thing that falls through the cracks.

Each module has ``NAME`` and ``run(session, ctx) -> list[Finding]``; ``run_checks`` runs them for one
judged local date with one context, so calendars and policy are read once per sweep.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy.orm import Session

from sipflows.checks import (
    deviations,
    documentation,
    first_meeting,
    follow_up,
    invitations,
    meeting_held,
    pre_meeting,
)
from sipflows.checks.base import Check, CheckContext, Finding
from sipflows.policy import EffectivePolicy

ALL_CHECKS: tuple[Check, ...] = (
    documentation,
    meeting_held,
    invitations,
    pre_meeting,
    follow_up,
    deviations,
    first_meeting,
)
CHECK_NAMES: tuple[str, ...] = tuple(c.NAME for c in ALL_CHECKS)


def run_checks(
    session: Session, judged: date, policy: EffectivePolicy, only: Iterable[str] | None = None
) -> dict[str, list[Finding]]:
    """Findings per check name, in ``ALL_CHECKS`` order. Unknown names in ``only`` are an error."""
    wanted = set(only) if only is not None else set(CHECK_NAMES)
    unknown = wanted - set(CHECK_NAMES)
    if unknown:
        raise ValueError(f"unknown checks: {', '.join(sorted(unknown))}; known: {', '.join(CHECK_NAMES)}")
    ctx = CheckContext.load(session, judged, policy)
    return {check.NAME: check.run(session, ctx) for check in ALL_CHECKS if check.NAME in wanted}


__all__ = ["ALL_CHECKS", "CHECK_NAMES", "CheckContext", "Finding", "run_checks"]

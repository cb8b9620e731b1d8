"""What a flow run needs besides the work itself, kept free of Prefect: the run's dates and artifact tables.

The flows turn these rows into Prefect artifacts; nothing here contains a person or message content.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sipflows.policy import EffectivePolicy
from sipflows.sweep import SweepResult
from sipflows.timeutil import local_date


def run_dates(scheduled_start: datetime, date_override: date | None) -> tuple[date, datetime]:
    """The local date a run judges and the ``now`` it stamps: both from the scheduled start.

    A backfill or replay passes ``date_override``; the notices are still stamped with the start time.
    """
    # Prefect hands over pendulum/whenever subclasses; plain stdlib values bind reliably in SQLAlchemy.
    now = datetime.fromtimestamp(scheduled_start.timestamp(), tz=UTC)
    day = local_date(now) if date_override is None else date(*date_override.timetuple()[:3])
    return day, now


def sweep_counts_table(result: SweepResult) -> list[dict[str, Any]]:
    rows = [{"check": c, "stage": s, "findings": n} for (c, s), n in sorted(result.counts().items())]
    for check, found in sorted(result.findings.items()):
        if not found:
            rows.append({"check": check, "stage": "-", "findings": 0})
    return rows


def enqueued_table(result: SweepResult) -> list[dict[str, Any]]:
    return [
        {"reference": e.reference, "kind": e.kind, "recipient organisation": e.recipient_organisation}
        for e in result.enqueued_notices
    ]


def policy_markdown(policy: EffectivePolicy) -> str:
    lines = ["| scope | key | value | source |", "|---|---|---|---|"]
    lines += [
        f"| {scope} | `{key}` | {value} | {source} |" for scope, key, value, source in policy.describe()
    ]
    return "\n".join(lines)


def policy_log_lines(policy: EffectivePolicy) -> list[str]:
    return [f"{scope} {key}={value} ({source})" for scope, key, value, source in policy.describe()]

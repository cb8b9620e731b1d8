"""The ledger at a glance, for operations staff: what is waiting, what failed, when the sweep last ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sipflows.models import Notice, NoticeStatus, SweepRun


@dataclass(frozen=True)
class LastSweep:
    judged_on: date
    started_at: datetime
    finished_at: datetime | None
    findings: int
    enqueued: int


@dataclass(frozen=True)
class LedgerStatus:
    counts: dict[str, int]
    oldest_pending_at: datetime | None
    next_retry_at: datetime | None
    last_sweep: LastSweep | None
    recent_failures: list[tuple[str, str, int, str]] = field(default_factory=list)

    def oldest_pending_age_seconds(self, now: datetime) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return (now - self.oldest_pending_at).total_seconds()


def ledger_status(session: Session, failures: int = 10) -> LedgerStatus:
    """Counts per status, the oldest pending notice, the next retry and the newest failures."""
    counts = {s.value: 0 for s in NoticeStatus}
    for status, n in session.execute(select(Notice.status, func.count()).group_by(Notice.status)).tuples():
        counts[NoticeStatus(status).value] = n
    oldest = session.scalar(select(func.min(Notice.created_at)).where(Notice.status == NoticeStatus.PENDING))
    next_retry = session.scalar(
        select(func.min(Notice.next_attempt_at)).where(Notice.status == NoticeStatus.FAILED)
    )
    sweep = session.execute(
        select(SweepRun).order_by(SweepRun.started_at.desc()).limit(1)
    ).scalar_one_or_none()
    last = (
        LastSweep(sweep.judged_on, sweep.started_at, sweep.finished_at, sweep.findings, sweep.enqueued)
        if sweep
        else None
    )
    rows = session.execute(
        select(Notice.key, Notice.kind, Notice.attempts, Notice.last_error)
        .where(Notice.status.in_([NoticeStatus.FAILED, NoticeStatus.DEAD]))
        .order_by(Notice.id.desc())
        .limit(failures)
    ).tuples()
    recent = [(k, kind, attempts, err or "") for k, kind, attempts, err in rows]
    return LedgerStatus(counts, oldest, next_retry, last, recent)

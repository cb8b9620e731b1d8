"""The daily sweep as one domain operation: run every check for a date, enqueue the notices, record it.

Flows and the CLI call this; it takes the judged date and ``now`` as parameters and never reads the clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipflows.checks import run_checks
from sipflows.checks.base import Finding
from sipflows.models import Contact, Notice, Organisation, SipCase, SweepRun
from sipflows.notices.build import enqueue_findings
from sipflows.notices.render import split_stage
from sipflows.policy import EffectivePolicy
from sipflows.settings import Settings

_CHUNK = 500


@dataclass(frozen=True)
class EnqueuedNotice:
    """What operations may see of a notice: no person, no content."""

    reference: str
    kind: str
    recipient_organisation: str


@dataclass
class SweepResult:
    judged: date
    findings: dict[str, list[Finding]]
    enqueued: int
    enqueued_notices: list[EnqueuedNotice] = field(default_factory=list)
    sweep_id: int | None = None

    def counts(self) -> Counter[tuple[str, str]]:
        """Findings per (check, stage family): ``escalation-2`` and ``reminder@2026-05-04`` fold."""
        return Counter((f.check, split_stage(f.stage)[0]) for fs in self.findings.values() for f in fs)

    @property
    def total_findings(self) -> int:
        return sum(len(v) for v in self.findings.values())


def _enqueued_rows(session: Session, keys: Iterable[str], now: datetime) -> list[EnqueuedNotice]:
    keys = list(keys)
    rows: list[EnqueuedNotice] = []
    for start in range(0, len(keys), _CHUNK):
        stmt = (
            select(SipCase.reference, Notice.kind, Organisation.name)
            .join(SipCase, SipCase.id == Notice.case_id)
            .join(Contact, Contact.id == Notice.contact_id)
            .join(Organisation, Organisation.id == Contact.organisation_id)
            .where(Notice.key.in_(keys[start : start + _CHUNK]), Notice.created_at == now)
        )
        rows.extend(EnqueuedNotice(r, k, o) for r, k, o in session.execute(stmt).tuples())
    rows.sort(key=lambda e: (e.reference, e.kind, e.recipient_organisation))
    return rows


def run_sweep(
    engine: Engine,
    judged: date,
    policy: EffectivePolicy,
    now: datetime,
    settings: Settings,
    only: Iterable[str] | None = None,
    flow_run_id: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SweepResult:
    """Run the checks for ``judged`` and enqueue their notices in one transaction; safe to rerun.

    ``now`` stamps the notices; ``clock`` only records when the sweep finished, for operations.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        sweep = SweepRun(judged_on=judged, started_at=now, flow_run_id=flow_run_id)
        session.add(sweep)
        session.flush()
        findings = run_checks(session, judged, policy, only=only)
        flat = [f for fs in findings.values() for f in fs]
        enqueued = enqueue_findings(session, flat, now, settings)
        keys = [f.notice_key(c) for f in flat for c in f.recipients]
        result = SweepResult(judged, findings, enqueued, _enqueued_rows(session, keys, now), sweep.id)
        sweep.findings = result.total_findings
        sweep.enqueued = enqueued
        sweep.counts = {f"{c}/{s}": n for (c, s), n in sorted(result.counts().items())}
        sweep.finished_at = clock()
    return result

"""The daily sweep as one domain operation: run every check for a date, enqueue the notices, record it.

Flows and the CLI call this; it takes the judged date and ``now`` as parameters and never reads the clock.

Most days most findings were already notified: a document still missing today was missing yesterday, and
its notice is in the ledger under the same deterministic key. So the sweep looks the keys up first, in
one set-based statement per batch, and renders only the notices that are new; rendering every finding's
notice to let the ledger drop the known ones cost far more than the checks themselves. Findings go through
in batches, so memory holds one batch's notices at a time, not the day's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from operator import attrgetter

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sipflows import collector
from sipflows.checks import CHECK_NAMES, run_checks
from sipflows.checks.base import Finding
from sipflows.db import ensure_statistics, session_scope
from sipflows.models import SweepRun
from sipflows.notices.build import NoticeInputs, read_for_notices
from sipflows.notices.ledger import NoticeDraft, insert_drafts, missing_keys
from sipflows.policy import EffectivePolicy
from sipflows.settings import Settings
from sipflows.stages import stage_family
from sipflows.workdays import is_working_day

# Findings per batch: one key look-up, one render-and-enqueue pass, its drafts then dropped.
BATCH = 2_000


def unknown_checks(names: Iterable[str] | None) -> list[str]:
    """The names that are no check: a run asked for them is refused before it touches the register."""
    return sorted(set(names or ()) - set(CHECK_NAMES))


def judges_nothing(judged: date, scheduled: bool) -> bool:
    """Whether a sweep of ``judged`` skips the day: a scheduled run on a day that is not a Swedish working
    day (cron cannot know the holidays; the next working day's run reports the latest stage reached). A
    date given by hand, for a replay or backfill, is always judged."""
    return scheduled and not is_working_day(judged)


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
        return Counter((f.check, stage_family(f.stage)) for fs in self.findings.values() for f in fs)

    @property
    def total_findings(self) -> int:
        return sum(len(v) for v in self.findings.values())


def _labels(inputs: NoticeInputs, drafts: Sequence[NoticeDraft]) -> dict[str, EnqueuedNotice]:
    """What operations may see of each draft, by key, from the register slice its rendering read: the
    plan's reference and the recipient's organisation (rows a draft was built from exist there)."""
    reg = inputs.register
    if reg is None:
        return {}
    labels = {}
    for d in drafts:
        case = reg.cases.get(d.case_id) if d.case_id is not None else None
        contact = reg.contacts.get(d.contact_id) if d.contact_id is not None else None
        org = reg.orgs.get(contact.organisation_id) if contact is not None else None
        if case is not None and org is not None:
            labels[d.key] = EnqueuedNotice(case.reference, d.kind, org.name)
    return labels


def _batches(findings: dict[str, list[Finding]], size: int) -> Iterator[list[Finding]]:
    """Every finding, in batches, ordered by key: concurrent sweeps then insert overlapping keys in the
    same order (the ledger's guard against deadlocks holds across batches too)."""
    flat = sorted((f for fs in findings.values() for f in fs), key=lambda f: f.key + ":")
    for start in range(0, len(flat), size):
        yield flat[start : start + size]


def new_findings(session: Session, findings: Sequence[Finding]) -> list[Finding]:
    """The findings narrowed to the recipients whose notice the ledger does not hold yet (findings with
    none left are dropped). The ledger's insert still settles races; this only spares the rendering."""
    keys = [f.notice_key(c) for f in findings for c in dict.fromkeys(f.recipients)]
    missing = missing_keys(session, keys)
    if not missing:
        return []
    narrowed = []
    for f in findings:
        recipients = tuple(c for c in dict.fromkeys(f.recipients) if f.notice_key(c) in missing)
        if recipients:
            narrowed.append(f if recipients == f.recipients else replace(f, recipients=recipients))
    return narrowed


def _enqueue_new(
    session: Session, findings: dict[str, list[Finding]], now: datetime, settings: Settings
) -> tuple[int, list[EnqueuedNotice]]:
    """Render and enqueue the findings' new notices, batch by batch; how many were enqueued, and which.

    A batch's drafts are inserted after the next batch's register reads: on PostgreSQL the insert then runs
    in a thread of its own while this one renders the next batch, so the server's work on the ledger (its
    indexes, foreign keys, TOAST) overlaps the client's rendering instead of following it. The connection
    is used by one thread at a time: the insert is waited for before the next statement. Same transaction,
    same rows in the same key order per insert; on SQLite the insert simply runs in turn.
    """
    connection = session.connection()
    overlap = connection.dialect.name == "postgresql"
    enqueued = 0
    notices: list[EnqueuedNotice] = []
    # rendered, not yet inserted; then being inserted: with what operations may see of each draft, by key
    ready: tuple[list[NoticeDraft], dict[str, EnqueuedNotice]] | None = None
    inflight: tuple[Future[list[str]], dict[str, EnqueuedNotice]] | None = None

    def insert(drafts: list[NoticeDraft]) -> list[str]:
        return insert_drafts(connection, drafts, now, settings.mail_domain)

    def settle() -> None:
        nonlocal enqueued, inflight
        if inflight is not None:
            future, labels = inflight
            inflight = None
            inserted = future.result()
            enqueued += len(inserted)
            notices.extend(labels[k] for k in inserted if k in labels)

    # leaving the block waits for an insert still running, before the transaction may roll back
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sipflows-ledger") as pool:

        def send() -> None:
            nonlocal ready, inflight
            if ready is not None:
                drafts, labels = ready
                ready = None
                if overlap:
                    inflight = (pool.submit(insert, drafts), labels)
                else:
                    done: Future[list[str]] = Future()
                    done.set_result(insert(drafts))
                    inflight = (done, labels)

        for batch in _batches(findings, BATCH):
            new = new_findings(session, batch)
            if not new:
                continue
            inputs = read_for_notices(session, new)
            send()  # the previous batch's insert, while this batch renders
            drafts = inputs.render(settings)
            settle()
            ready = (drafts, _labels(inputs, drafts))
        send()
        settle()
    return enqueued, notices


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
    """Run the checks for ``judged`` and enqueue their new notices in one transaction; safe to rerun.

    The planner statistics are refreshed first if the register changed much since they were taken
    (:func:`sipflows.db.ensure_statistics`), in a transaction of their own. ``now`` stamps the notices;
    ``clock`` only records when the sweep finished, for operations.
    """
    ensure_statistics(engine)
    with session_scope(engine) as session:  # one unit of work: the whole day's notices, or none
        sweep = SweepRun(judged_on=judged, started_at=now, flow_run_id=flow_run_id)
        session.add(sweep)
        session.flush()
        with collector.paused():
            findings = run_checks(session, judged, policy, only=only)
            enqueued, notices = _enqueue_new(session, findings, now, settings)
        notices.sort(key=attrgetter("reference", "kind", "recipient_organisation"))
        result = SweepResult(judged, findings, enqueued, notices, sweep.id)
        sweep.findings = result.total_findings
        sweep.enqueued = enqueued
        sweep.counts = {f"{c}/{s}": n for (c, s), n in sorted(result.counts().items())}
        sweep.finished_at = clock()
    return result

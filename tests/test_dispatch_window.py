"""The resend window of SMTP dispatch, whose outcomes are committed in groups on a recorder thread.

Dispatch over SMTP hands each outcome to a recorder thread and goes on; before a message is committed to
the server (between its envelope and DATA) all but the last ``record_window`` outcomes must be in the
ledger. A process killed at any moment therefore leaves at most ``record_window`` + 1 sent notices
unrecorded, and the next run sends exactly those again, with the same Message-ID. Nothing is lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, select

from sipflows.models import Notice, NoticeStatus
from sipflows.notices.dispatch import dispatch
from sipflows.transports.base import OutgoingMessage, SendResult
from sipflows.transports.smtp import SmtpTransport
from tests import smtp_server as smtp_helpers
from tests.smtp_server import settings_for
from tests.test_dispatch import NOW, add, age_claims, draft, fast_settings, ledger
from tests.test_dispatch_kill import CHILD, LEASE, child_args, finish, start_child

smtp_server = smtp_helpers.smtp_server  # the fixture

# the kill test's child, with a wrapper that keeps SMTP's before_commit (the pipelined path)
PIPELINED_CHILD = CHILD.replace(
    """    def send(self, message):
        result = self.inner.send(message)""",
    """    def send(self, message, *, before_commit=None):
        result = self.inner.send(message, before_commit=before_commit)""",
).replace(
    'settings = Settings(_env_file=None, **args["settings"])',
    'settings = Settings(_env_file=None, **args["settings"], record_window=args["window"])',
)
assert PIPELINED_CHILD.count("before_commit=before_commit") == 1 and "record_window" in PIPELINED_CHILD

# ... and one that also lets dispatch prepare each message ahead, on its producer thread (SMTP's own path)
PREPARED_CHILD = PIPELINED_CHILD.replace(
    """    def send(self, message, *, before_commit=None):
        result = self.inner.send(message, before_commit=before_commit)""",
    """    def prepare(self, message):
        return self.inner.prepare(message)

    def send(self, message, *, before_commit=None, prepared=None):
        result = self.inner.send(message, before_commit=before_commit, prepared=prepared)""",
)
assert "prepared=prepared" in PREPARED_CHILD


def unrecorded(engine: Engine, message_ids: list[str]) -> int:
    """How many of the notices with these Message-IDs the ledger does not have as sent."""
    if not message_ids:
        return 0
    with engine.connect() as conn:
        sent = conn.execute(
            select(Notice.message_id).where(
                Notice.message_id.in_(message_ids), Notice.status == NoticeStatus.SENT
            )
        ).scalars()
        return len(message_ids) - len(set(sent))


@dataclass
class WatchingTransport:
    """A transport of our own that, at the moment each message is committed, counts the messages it
    committed before that the ledger does not yet know as sent."""

    engine: Engine
    name: str = "watching"
    committed: list[str] = field(default_factory=list)
    behind: list[int] = field(default_factory=list)

    def __enter__(self) -> WatchingTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, message: OutgoingMessage, *, before_commit=None) -> SendResult:
        assert before_commit is not None
        before_commit()
        self.behind.append(unrecorded(self.engine, self.committed))
        self.committed.append(message.message_id)
        return SendResult()


@pytest.mark.parametrize("window", [0, 3])
def test_no_message_is_committed_with_more_than_the_window_unrecorded(engine, window):
    total = 40
    add(engine, [draft(n) for n in range(1, total + 1)])
    transport = WatchingTransport(engine)
    settings = fast_settings(record_window=window, batch_size=25)

    summary = dispatch(engine, transport, NOW, settings)

    assert summary.sent == total and len(transport.committed) == total
    assert max(transport.behind) <= window
    if window == 0:
        assert transport.behind == [0] * total  # every outcome is in the ledger before the next goes
    rows = ledger(engine).values()
    assert {(n.status, n.attempts) for n in rows} == {(NoticeStatus.SENT, 1)}
    assert all(n.claimed_until is None for n in rows)


def test_over_smtp_every_outcome_is_recorded_once_the_run_ends(engine, smtp_server):
    add(engine, [draft(n) for n in range(1, 121)])
    settings = settings_for(smtp_server, record_window=20, batch_size=50)

    summary = dispatch(engine, SmtpTransport(settings), NOW, settings)

    assert (summary.sent, summary.batches) == (120, 3)
    rows = ledger(engine)
    assert Counter(d.message["Message-ID"] for d in smtp_server.deliveries) == {
        n.message_id: 1 for n in rows.values()
    }
    assert {(n.status, n.attempts, n.sent_at) for n in rows.values()} == {(NoticeStatus.SENT, 1, NOW)}


@pytest.mark.parametrize(
    ("window", "batch_size", "child"),
    [(0, 30, PIPELINED_CHILD), (4, 30, PIPELINED_CHILD), (4, 5, PREPARED_CHILD)],
)
def test_killed_mid_batch_resends_at_most_the_window_and_loses_nothing(
    engine, db_url, smtp_server, tmp_path, window, batch_size, child
):
    total, crash_at = 30, 17
    drafts = [draft(n) for n in range(1, total + 1)]
    for d in drafts:  # one by one: ledger ids (the dispatch order) follow this list
        add(engine, [d])
    script = tmp_path / "child.py"
    script.write_text(child)

    args = child_args(smtp_server, db_url, NOW, batch_size=batch_size, window=window)
    code, summary, err = finish(start_child(script, args, crash_key=drafts[crash_at - 1].key))

    assert code == 137 and summary is None, err
    rows = ledger(engine)
    first_run = [d.message["Message-ID"] for d in smtp_server.deliveries]
    assert first_run == [rows[d.key].message_id for d in drafts[:crash_at]]  # in order, up to the crash
    sent_unrecorded = [d.key for d in drafts[:crash_at] if rows[d.key].status == NoticeStatus.PENDING]
    # the notice the process died on, and at most the window before it
    assert drafts[crash_at - 1].key in sent_unrecorded
    assert 1 <= len(sent_unrecorded) <= window + 1
    assert sent_unrecorded == [d.key for d in drafts[crash_at - len(sent_unrecorded) : crash_at]]
    assert all(rows[d.key].status == NoticeStatus.PENDING for d in drafts[crash_at:])
    # claimed ahead and never sent: at most the next batch besides the one it died in, back after the lease
    claimed_unsent = [d.key for d in drafts[crash_at:] if rows[d.key].claimed_until is not None]
    assert len(claimed_unsent) <= 2 * batch_size

    age_claims(engine, LEASE + 1)  # the lease runs out
    settings = settings_for(smtp_server, claim_lease_seconds=LEASE, record_window=window)
    rerun = dispatch(engine, SmtpTransport(settings), NOW, settings)

    assert rerun.sent == len(sent_unrecorded) + (total - crash_at)
    rows = ledger(engine)
    counts = Counter(d.message["Message-ID"] for d in smtp_server.deliveries)
    resent = {rows[k].message_id for k in sent_unrecorded}
    assert counts == {rows[d.key].message_id: 2 if rows[d.key].message_id in resent else 1 for d in drafts}
    assert {(n.status, n.attempts) for n in rows.values()} == {(NoticeStatus.SENT, 1)}

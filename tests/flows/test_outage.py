"""The mail server is killed for six hours — far beyond the old 31-minute retry window — and comes back.

Simulated time: the dispatch runs every five minutes of the outage (``now`` given explicitly), with
dispatch flow runs in between; a real aiosmtpd server is stopped, then started again on the same port.
Every run during the outage fails and costs no notice an attempt; none dies; afterwards every notice
is delivered exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flows.dispatch import dispatch_notices
from sipflows.models import Notice, NoticeStatus
from sipflows.notices.dispatch import dispatch
from sipflows.settings import get_settings
from sipflows.transports.base import TransportUnavailable
from sipflows.transports.smtp import SmtpTransport
from tests.smtp_server import free_port, start_smtp_server
from tests.test_dispatch import add, draft, ledger

OUTAGE = timedelta(hours=6)
EVERY = timedelta(minutes=5)  # the dispatch deployment's schedule


def _statuses(engine) -> dict[NoticeStatus, int]:
    with Session(engine) as s:
        return dict(s.execute(select(Notice.status, func.count()).group_by(Notice.status)).tuples().all())


def test_six_hours_without_smtp_kill_no_notice_and_each_arrives_once(flow_env, engine, monkeypatch):
    port = free_port()
    for name, value in {
        "SIPFLOWS_TRANSPORT": "smtp",
        "SIPFLOWS_SMTP_HOST": "127.0.0.1",
        "SIPFLOWS_SMTP_PORT": str(port),
        "SIPFLOWS_SMTP_TIMEOUT": "5",
        "SIPFLOWS_BATCH_SIZE": "7",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()  # default retries: what a deployment gets
    # the outage started seven hours ago (flow runs judge "now" by their scheduled start, the wall clock)
    start = datetime.now(UTC).replace(microsecond=0) - OUTAGE - timedelta(hours=1)
    add(engine, [draft(n) for n in range(1, 31)], now=start)

    # the server works, sends the first notices, then is killed
    server = start_smtp_server(port=port)
    first = dispatch(engine, SmtpTransport(settings), start, settings, max_batches=1)
    server.stop()
    assert first.sent == 7
    delivered = [d.message["Message-ID"] for d in server.deliveries]

    failed_runs = domain_runs = 0
    when = start + EVERY
    while when <= start + OUTAGE:
        if domain_runs % 24 == 0:  # every two hours, as a real flow run
            state = dispatch_notices(return_state=True)
            assert state.is_failed(), state
            assert f"SMTP 127.0.0.1:{port}" in state.message and "SIPFLOWS_SMTP_HOST" in state.message
            failed_runs += 1
        with pytest.raises(TransportUnavailable):
            dispatch(engine, SmtpTransport(settings), when, settings)
        domain_runs += 1
        counts = _statuses(engine)
        assert counts == {NoticeStatus.SENT: 7, NoticeStatus.PENDING: 23}, when  # nothing failed, dead
        when += EVERY
    assert domain_runs == OUTAGE // EVERY and failed_runs == 3
    rows = ledger(engine)
    assert {
        (n.attempts, n.claimed_until, n.last_error) for n in rows.values() if n.status != NoticeStatus.SENT
    } == {(0, None, None)}

    # the server is back on the same port: the next run sends every waiting notice, once
    back = start_smtp_server(port=port)
    try:
        result = dispatch_notices()
        assert result == {"sent": 23, "failed": 0, "dead": 0}
        assert dispatch_notices() == {"sent": 0, "failed": 0, "dead": 0}
        delivered += [d.message["Message-ID"] for d in back.deliveries]
    finally:
        back.stop()
    rows = ledger(engine)
    assert Counter(delivered) == {n.message_id: 1 for n in rows.values()}  # all 30, each exactly once
    assert {(n.status, n.attempts) for n in rows.values()} == {(NoticeStatus.SENT, 1)}

"""Dispatch in real processes: killed between send and record, and two dispatchers at once.

The child script below is the only place that crashes on purpose: it wraps the SMTP transport and calls
``os._exit(137)`` (what SIGKILL leaves behind) right after the server accepted the notice named in
``SIPFLOWS_TEST_CRASH_AFTER_SEND`` — after the send, before dispatch can record it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sipflows.models import Invitation, NoticeStatus
from sipflows.notices.dispatch import dispatch
from sipflows.transports.smtp import SmtpTransport
from tests import smtp_server as smtp_helpers
from tests.smtp_server import SmtpTestServer, settings_for
from tests.test_dispatch import NOW, add, age_claims, draft, invitation_draft, lease_now, ledger

smtp_server = smtp_helpers.smtp_server  # the fixture

LEASE = 600

CHILD = r'''
import json, os, sys, time
from datetime import datetime
from pathlib import Path

from sipflows.db import make_engine
from sipflows.notices.dispatch import dispatch
from sipflows.settings import Settings
from sipflows.transports.smtp import SmtpTransport


class CrashAfterSend:
    """Dies without a trace right after the server accepted the chosen notice."""

    name = "smtp"

    def __init__(self, inner, key):
        self.inner, self.key = inner, key

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        self.inner.__exit__(*exc)

    def send(self, message):
        result = self.inner.send(message)
        if message.key == self.key:
            os._exit(137)
        return result


args = json.loads(sys.argv[1])
settings = Settings(_env_file=None, **args["settings"])
engine = make_engine(args["db_url"])
transport = SmtpTransport(settings)
crash_key = os.environ.get("SIPFLOWS_TEST_CRASH_AFTER_SEND")
if crash_key:
    transport = CrashAfterSend(transport, crash_key)
if args.get("start_file"):
    Path(args["ready_file"]).touch()
    while not Path(args["start_file"]).exists():
        time.sleep(0.002)
summary = dispatch(
    engine,
    transport,
    datetime.fromisoformat(args["now"]),
    settings,
    batch_size=args.get("batch_size"),
    worker_id=args.get("worker_id"),
)
print(json.dumps({"sent": summary.sent, "failed": summary.failed, "dead": summary.dead}))
'''


def child_args(server: SmtpTestServer, db_url: str, now, **extra: Any) -> str:
    settings = {
        "transport": "smtp",
        "smtp_host": server.host,
        "smtp_port": server.port,
        "sender_address": "sip-noreply@sipflows.test",
        "mail_domain": "sipflows.test",
        "claim_lease_seconds": LEASE,
    }
    return json.dumps({"settings": settings, "db_url": db_url, "now": now.isoformat(), **extra})


def start_child(script: Path, args: str, crash_key: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPFLOWS_")}
    if crash_key:
        env["SIPFLOWS_TEST_CRASH_AFTER_SEND"] = crash_key
    return subprocess.Popen(
        [sys.executable, str(script), args],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> tuple[int, dict[str, int] | None, str]:
    out, err = child.communicate(timeout=120)
    return child.returncode, (json.loads(out) if out.strip() else None), err


def test_killed_between_send_and_record_resends_the_same_message_once(
    engine, session, build, db_url, smtp_server, tmp_path
):
    r = build.standard_region()
    case = build.case(r["k"], participants=(r["r"],))
    meeting = build.meeting(case, date(2026, 3, 10))
    build.invite(meeting, r["r"])
    session.commit()
    invitation = invitation_draft(meeting, r["r"].id, r["r"].email)
    drafts = [draft(1), draft(2), invitation, draft(3), draft(4)]
    for d in drafts:  # one by one: ledger ids (the dispatch order) follow this list
        add(engine, [d])
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    before = lease_now(engine)
    code, summary, err = finish(
        start_child(script, child_args(smtp_server, db_url, NOW), crash_key=invitation.key)
    )
    after = lease_now(engine)

    assert code == 137 and summary is None, err
    arrived = [d.message["Message-ID"] for d in smtp_server.deliveries]
    rows = ledger(engine)
    assert arrived == [rows[d.key].message_id for d in drafts[:3]]  # the invitation went out...
    crashed = rows[invitation.key]
    # ...but was never recorded
    assert (crashed.status, crashed.attempts, crashed.sent_at) == (NoticeStatus.PENDING, 0, None)
    # the lease runs from the moment of the claim on the lease clock (the database's on PostgreSQL)
    assert crashed.claimed_until is not None
    assert before + timedelta(seconds=LEASE) <= crashed.claimed_until <= after + timedelta(seconds=LEASE)
    assert [rows[d.key].status for d in drafts] == [NoticeStatus.SENT] * 2 + [NoticeStatus.PENDING] * 3
    with Session(engine) as s:
        assert s.scalar(select(Invitation.sent_at).where(Invitation.contact_id == r["r"].id)) is None

    # while the lease lasts nobody touches the claimed notices
    settings = settings_for(smtp_server, claim_lease_seconds=LEASE)
    waiting = dispatch(engine, SmtpTransport(settings), NOW + timedelta(minutes=5), settings)
    assert (waiting.batches, waiting.sent) == (0, 0)

    age_claims(engine, LEASE + 1)  # the lease runs out
    later = NOW + timedelta(seconds=LEASE + 60)
    rerun = dispatch(engine, SmtpTransport(settings), later, settings)
    assert (rerun.sent, rerun.failed, rerun.dead) == (3, 0, 0)

    rows = ledger(engine)
    counts = Counter(d.message["Message-ID"] for d in smtp_server.deliveries)
    assert counts == {rows[d.key].message_id: (2 if d is invitation else 1) for d in drafts}
    first, second = [
        d.message for d in smtp_server.deliveries if d.message["Message-ID"] == crashed.message_id
    ]
    calendars = [
        [p.get_content() for p in m.walk() if p.get_content_type() == "text/calendar"]
        for m in (first, second)
    ]
    assert calendars[0] == calendars[1] == [crashed.ics]  # same UID and SEQUENCE: the same event version
    assert first["Subject"] == second["Subject"]
    for d in drafts:
        n = rows[d.key]
        assert (n.status, n.attempts) == (NoticeStatus.SENT, 1)
    assert rows[invitation.key].sent_at == later
    with Session(engine) as s:
        assert s.scalar(select(Invitation.sent_at).where(Invitation.contact_id == r["r"].id)) == later


def test_two_dispatchers_at_once_never_send_the_same_notice(engine, db_url, smtp_server, tmp_path):
    total = 160
    add(engine, [draft(n) for n in range(1, total + 1)])
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    start_file = tmp_path / "go"
    children = {}
    for worker in ("A", "B"):
        args = child_args(
            smtp_server,
            db_url,
            NOW,
            batch_size=8,
            worker_id=worker,
            ready_file=str(tmp_path / f"ready-{worker}"),
            start_file=str(start_file),
        )
        children[worker] = start_child(script, args)
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{w}").exists() for w in children):
        assert time.monotonic() < deadline, "children did not start"
        assert all(c.poll() is None for c in children.values()), [c.stderr.read() for c in children.values()]
        time.sleep(0.01)
    start_file.touch()  # both begin claiming at the same moment

    results = {w: finish(c) for w, c in children.items()}

    for code, _summary, err in results.values():
        assert code == 0, err
    sent = {w: s["sent"] for w, (_c, s, _e) in results.items() if s}
    assert sum(sent.values()) == total
    assert all(n > 0 for n in sent.values()), sent  # both really worked at the same time
    ids = [d.message["Message-ID"] for d in smtp_server.deliveries]
    assert len(ids) == total and len(set(ids)) == total  # every notice exactly once
    rows = ledger(engine).values()
    assert {n.status for n in rows} == {NoticeStatus.SENT}
    assert Counter(n.claimed_by for n in rows) == sent  # and the ledger knows who sent which

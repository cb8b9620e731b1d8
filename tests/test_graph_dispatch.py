"""The Graph transport under dispatch: the ledger, the register, the CLI and a process killed mid-batch.

Everything runs against tests/graph_server.py over HTTPS, on SQLite and (when configured) PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from sipflows.booking import book_meeting, cancel_meeting, move_meeting
from sipflows.models import Invitation, Meeting, NoticeStatus
from sipflows.notices.dispatch import dispatch
from sipflows.notices.invitations import sync_invitations
from sipflows.settings import Settings
from sipflows.transports.graph import BOOKING_PROPERTY, MEETING_PROPERTY, GraphTransport, booking_key
from tests.factories import SECRETS, local
from tests.graph_server import GraphServer
from tests.test_dispatch import add, age_claims, draft, invitation_draft, ledger
from tests.test_graph import MAILBOX, SECRET, Naps, graph_settings

TODAY = date(2026, 3, 2)  # Monday
NOW = local(TODAY, "08:00")
D = date(2026, 3, 27)  # the Friday before summer time
LEASE = 600


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer(tmp_path, client_secret=SECRET, mailbox=MAILBOX) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        yield server


def settings_for(graph: GraphServer, **overrides: Any) -> Settings:
    return graph_settings(graph, mail_domain="sipflows.test", claim_lease_seconds=LEASE, **overrides)


def sync(engine: Any, settings: Settings) -> None:
    with Session(engine) as s, s.begin():
        sync_invitations(s, NOW, settings)


def test_meeting_booked_moved_and_cancelled_through_the_ledger(engine, session, build, graph) -> None:
    w = build.standard_region()
    build.case(w["k"], reference="SIP-2026-7", participants=(w["r"], w["f"], w["s"]))
    session.commit()
    settings = settings_for(graph)
    # the invitees, and the convener as chair (sent the meeting, never asked for an answer in the register)
    invitees = {
        w["k"].email: "required",
        w["r"].email: "required",
        w["f"].email: "optional",
        w["s"].email: "required",
    }
    meeting = book_meeting(
        session,
        "SIP-2026-7",
        "sip_meeting",
        local(D, "09:00"),
        local(D, "10:30"),
        invitees=[(w["r"].code, True), (w["f"].code, False), (w["s"].code, True)],
        place="Vårdcentralen Köping, rum 3",
        now=NOW,
        settings=settings,
    )
    session.commit()

    sync(engine, settings)
    booked = dispatch(engine, GraphTransport(settings), NOW, settings)

    assert (booked.sent, booked.failed, booked.dead) == (4, 0, 0)
    events = {e.attendee_addresses()[0]: e for e in graph.events()}
    assert {a: e.attendees[0]["type"] for a, e in events.items()} == invitees
    for address, event in events.items():
        assert event.prop(MEETING_PROPERTY) == meeting.ical_uid
        assert event.prop(BOOKING_PROPERTY) == booking_key(meeting.ical_uid, address)
        assert (event.starts_at, event.ends_at) == (local(D, "09:00"), local(D, "10:30"))
        assert event.location == "Vårdcentralen Köping, rum 3"
    rows = ledger(engine)
    assert {n.address: n.external_id for n in rows.values()} == {a: e.id for a, e in events.items()}
    session.expire_all()
    assert all(i.sent_at == NOW for i in session.scalars(select(Invitation)))
    assert Counter(s.kind for s in graph.sent) == {"meeting_request": 4}

    # moved past the change to summer time: each attendee's event is updated, none is booked anew
    later = local(date(2026, 3, 30), "13:00")
    move_meeting(session, meeting.code, later, later + timedelta(minutes=90), now=NOW)
    session.commit()
    sync(engine, settings)
    moved = dispatch(engine, GraphTransport(settings), NOW, settings)

    assert (moved.sent, moved.failed) == (4, 0)
    assert len(graph.events()) == 4
    assert all(e.starts_at == later and e.ends_at == later + timedelta(minutes=90) for e in graph.events())
    assert all(
        e.data["start"] == {"dateTime": "2026-03-30T13:00:00", "timeZone": "W. Europe Standard Time"}
        for e in graph.events()
    )
    assert len(graph.graph_requests("PATCH")) == 4 and len(graph.graph_requests("POST", "/events")) == 4
    assert Counter(s.kind for s in graph.sent) == {"meeting_request": 4, "meeting_update": 4}

    cancel_meeting(session, meeting.code, now=NOW)
    session.commit()
    sync(engine, settings)
    cancelled = dispatch(engine, GraphTransport(settings), NOW, settings)

    assert (cancelled.sent, cancelled.failed) == (4, 0)
    assert all(e.cancelled for e in graph.events())
    assert Counter(s.kind for s in graph.sent) == {
        "meeting_request": 4,
        "meeting_update": 4,
        "meeting_cancellation": 4,
    }
    # ledger ids found the events each time: no lookup by booking key was needed after the first send
    lookups = [r for r in graph.graph_requests("GET") if "$filter" in r.query]
    assert len(lookups) == 4 and len(graph.graph_requests("GET", "/events/")) == 8
    # nothing of the plan's personal data ever reached Graph
    for request in graph.graph_requests():
        sent = json.dumps(request.body, ensure_ascii=False)
        assert not any(secret in sent for secret in SECRETS)


def test_throttling_uses_up_no_attempt_and_a_bad_address_fails_alone(engine, graph) -> None:
    graph.rejected_recipients.add("person2@kommun.example.se")
    graph.fail("POST", "/sendMail", status=429, retry_after=2, times=3)
    add(engine, [draft(n) for n in (1, 2, 3)])
    settings = settings_for(graph)
    naps = Naps()

    summary = dispatch(engine, GraphTransport(settings, sleep=naps), NOW, settings)

    assert (summary.sent, summary.failed, summary.dead) == (2, 0, 1)
    assert naps.waits == [2.0, 2.0, 2.0]
    rows = {n.address: n for n in ledger(engine).values()}
    assert rows["person2@kommun.example.se"].status == NoticeStatus.DEAD
    assert "ErrorInvalidRecipients" in str(rows["person2@kommun.example.se"].last_error)
    for n in (1, 3):
        sent = rows[f"person{n}@kommun.example.se"]
        assert (sent.status, sent.attempts) == (NoticeStatus.SENT, 1)  # the waits cost no attempt
    assert sorted(m.internet_message_id for m in graph.sent) == sorted(
        rows[f"person{n}@kommun.example.se"].message_id for n in (1, 3)
    )


# --------------------------------------------------------------------------------------- a killed process

CHILD = r"""
import json, os, sys
from datetime import datetime

from sipflows.db import make_engine
from sipflows.notices.dispatch import dispatch
from sipflows.settings import Settings
from sipflows.transports.graph import GraphTransport


class CrashAfterSend:
    '''Dies without a trace right after Graph accepted the chosen notice.'''

    name = "graph"

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
transport = CrashAfterSend(GraphTransport(settings), args["crash_key"])
summary = dispatch(make_engine(args["db_url"]), transport, datetime.fromisoformat(args["now"]), settings)
print(json.dumps({"sent": summary.sent}))
"""


def test_killed_between_send_and_record_books_one_event(
    engine, session, build, db_url, graph, tmp_path
) -> None:
    w = build.standard_region()
    case = build.case(w["k"], participants=(w["r"],))
    meeting = build.meeting(case, date(2026, 3, 10))
    build.invite(meeting, w["r"])
    session.commit()
    invitation = invitation_draft(meeting, w["r"].id, w["r"].email)
    drafts = [draft(1), invitation, draft(2)]
    for d in drafts:  # one by one: ledger ids (the dispatch order) follow this list
        add(engine, [d])
    settings = settings_for(graph)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child_settings = {
        k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
        for k, v in settings.model_dump(mode="json").items()
        if k.startswith("graph_") or k in ("transport", "mail_domain", "claim_lease_seconds")
    }
    child_settings["graph_client_secret"] = SECRET
    args = {"settings": child_settings, "db_url": db_url, "now": NOW.isoformat(), "crash_key": invitation.key}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPFLOWS_")}

    child = subprocess.run(
        [sys.executable, str(script), json.dumps(args)],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == 137, child.stderr
    (event,) = graph.events()  # Exchange has the meeting and sent the request ...
    rows = ledger(engine)
    crashed = rows[invitation.key]
    assert (crashed.status, crashed.external_id) == (
        NoticeStatus.PENDING,
        None,
    )  # ... the ledger does not know

    age_claims(engine, LEASE + 60)  # the killed dispatcher's lease runs out
    later = NOW + timedelta(seconds=LEASE + 60)
    rerun = dispatch(engine, GraphTransport(settings), later, settings)

    assert (rerun.sent, rerun.failed) == (2, 0)  # the invitation and the notice after it
    assert graph.events() == [event]  # found again by its booking key: no second event
    assert [s.kind for s in graph.sent].count("meeting_request") == 1
    rows = ledger(engine)
    assert (rows[invitation.key].status, rows[invitation.key].external_id) == (NoticeStatus.SENT, event.id)
    assert len(graph.graph_requests("POST", "/events")) == 1
    session.expire_all()
    assert session.scalar(select(Meeting.id).where(Meeting.id == meeting.id)) == meeting.id


# ----------------------------------------------------------------------------------------- the CLI


def graph_environment(graph: GraphServer, db_url: str, **extra: str) -> dict[str, str]:
    """A deployment's environment: settings as variables, the private CA through REQUESTS_CA_BUNDLE only
    (which httpx alone would not read)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIPFLOWS_") and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")
    }
    env.update(
        {
            "SIPFLOWS_DATABASE_URL": db_url,
            "SIPFLOWS_TRANSPORT": "graph",
            "SIPFLOWS_MAIL_DOMAIN": "sipflows.test",
            "SIPFLOWS_GRAPH_TENANT_ID": graph.tenant,
            "SIPFLOWS_GRAPH_CLIENT_ID": graph.client_id,
            "SIPFLOWS_GRAPH_CLIENT_SECRET": SECRET,
            "SIPFLOWS_GRAPH_MAILBOX": MAILBOX,
            "SIPFLOWS_GRAPH_BASE_URL": graph.base_url,
            "SIPFLOWS_GRAPH_AUTHORITY_URL": graph.authority_url,
            "REQUESTS_CA_BUNDLE": str(graph.ca_file),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }
    )
    return env


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sipflows.cli import app; app()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def sqlite_register(tmp_path: Path) -> Iterator[tuple[Any, str, Session]]:
    """The CLI tests are about the environment, not the database: one SQLite register is enough."""
    from sipflows.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    engine = make_engine(url)
    migrate(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield engine, url, session
    engine.dispose()


def test_cli_dispatch_sends_through_graph_from_the_environment(sqlite_register, graph, tmp_path) -> None:
    from tests.factories import RegisterBuilder

    engine, db_url, session = sqlite_register
    build = RegisterBuilder(session)
    w = build.standard_region()
    case = build.case(w["k"], reference="SIP-2026-9", participants=(w["r"], w["s"]))
    meeting = build.meeting(case, D)
    build.invite(meeting, w["r"])
    build.invite(meeting, w["s"], required=False)
    session.commit()
    settings = settings_for(graph)
    sync(engine, settings)
    add(engine, [draft(1)])

    done = cli(["notices", "dispatch", "--now", NOW.isoformat()], graph_environment(graph, db_url), tmp_path)

    assert done.returncode == 0, done.stderr
    assert "via graph: 4 sent, 0 failed (will retry), 0 dead" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    assert sorted(e.attendee_addresses()[0] for e in graph.events()) == sorted(
        [w["k"].email, w["r"].email, w["s"].email]  # the convener's own copy, and the two invitees
    )
    assert [s.kind for s in graph.sent].count("message") == 1
    assert {n.status for n in ledger(engine).values()} == {NoticeStatus.SENT}


def test_cli_names_the_missing_graph_setting(graph, tmp_path) -> None:
    env = graph_environment(graph, f"sqlite:///{tmp_path / 'untouched.sqlite'}")
    del env["SIPFLOWS_GRAPH_MAILBOX"]

    done = cli(["notices", "dispatch"], env, tmp_path)

    assert done.returncode == 2
    assert "SIPFLOWS_GRAPH_MAILBOX is not set" in done.stderr
    assert graph.requests == []

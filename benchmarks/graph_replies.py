"""Benchmark: one replies run's Graph source over a large SIP mailbox (``sipflows.replies.ingest_graph``).

    python -m benchmarks.graph_replies                    # SQLite file in a temporary folder
    python -m benchmarks.graph_replies --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

``--plans`` plans (default 2,000), each with a scheduled meeting in the coming weeks, four invitees and the
convener: five Graph events per meeting in the test Graph server (tests/graph_server.py, HTTPS, in this
process), each recorded in the ledger as the Graph transport leaves it. ``--answered`` of the invitees
(default 60 %) have answered in Exchange Online. The run is timed twice: the first records the answers,
the second finds them all recorded already (what every quarter-hour run does afterwards). Printed: wall
and CPU time (the CPU includes the test server rendering its JSON in the same process), Graph calls, SQL
statements. On PostgreSQL a fresh schema (named after issue 11) is created and dropped afterwards. Run it
from the repository root (``-m``: it uses the test server in ``tests/``).

Target: a replies run over 10,000 events well under a minute (the deployment runs every 15 minutes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from benchmarks.registers import fresh_database
from sipflows.db import migrate
from sipflows.models import (
    CaseStatus,
    Contact,
    Invitation,
    Meeting,
    MeetingKind,
    Notice,
    NoticeStatus,
    Organisation,
    OrgKind,
    Participant,
    Principal,
    SipCase,
)
from sipflows.replies import ingest_graph
from sipflows.settings import Settings
from sipflows.transports.graph import BOOKING_PROPERTY, MEETING_PROPERTY, booking_key
from tests.graph_server import NO_TIME, Event, GraphServer

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
READ = NOW + timedelta(days=2)
SECRET = "bench-secret-~11"
MAILBOX = "sip@kommun.example.se"


def load(engine: Engine, graph: GraphServer, plans: int, answered: float, rng: random.Random) -> int:
    """The register, the ledger and the mailbox's events; returns the number of answers given."""
    given = 0
    with Session(engine) as s, s.begin():
        org = Organisation(code="KOP", name="Köping", kind=OrgKind.MUNICIPAL_UNIT, principal=Principal.KOMMUN)
        s.add(org)
        s.flush()
        for p in range(plans):
            people = [
                Contact(
                    code=f"C{p}-{n}",
                    organisation_id=org.id,
                    name=f"K {p}-{n}",
                    email=f"c{p}.{n}@kommun.example.se",
                )
                for n in range(5)
            ]
            s.add_all(people)
            s.flush()
            case = SipCase(
                reference=f"SIP-B-{p}",
                convener_org_id=org.id,
                convener_contact_id=people[0].id,
                status=CaseStatus.ACTIVE,
                identified_on=NOW.date(),
            )
            s.add(case)
            s.flush()
            s.add_all(Participant(case_id=case.id, contact_id=c.id) for c in people)
            start = NOW + timedelta(days=7 + p % 60, hours=p % 8)
            meeting = Meeting(
                code=f"M{p}",
                case_id=case.id,
                kind=MeetingKind.SIP_MEETING,
                starts_at=start,
                ends_at=start + timedelta(minutes=90),
                ical_uid=f"m{p}-sip-b-{p}@sipflows.bench",
                updated_at=NOW,
            )
            s.add(meeting)
            s.flush()
            s.add_all(Invitation(meeting_id=meeting.id, contact_id=c.id, sent_at=NOW) for c in people[1:])
            for n, c in enumerate(people):
                event_id = graph.new_id()
                status = {"response": "none", "time": NO_TIME}
                if n > 0 and rng.random() < answered:
                    response = rng.choice(("accepted", "tentativelyAccepted", "declined"))
                    when = NOW + timedelta(minutes=rng.randrange(1, 2000))
                    status = {"response": response, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
                    given += 1
                graph.state.events[event_id] = Event(
                    event_id,
                    {
                        "subject": f"SIP-möte SIP-B-{p}",
                        "attendees": [
                            {"type": "required", "emailAddress": {"address": c.email}, "status": status}
                        ],
                        "singleValueExtendedProperties": [
                            {"id": BOOKING_PROPERTY, "value": booking_key(meeting.ical_uid, c.email)},
                            {"id": MEETING_PROPERTY, "value": meeting.ical_uid},
                        ],
                    },
                    meeting.starts_at,
                    meeting.ends_at,
                    NOW,
                    NOW,
                )
                s.add(
                    Notice(
                        key=f"invitation:{meeting.code}:{c.code}:0",
                        kind="meeting.invitation",
                        case_id=case.id,
                        meeting_id=meeting.id,
                        contact_id=c.id,
                        address=c.email,
                        subject="Kallelse",
                        body_text="",
                        body_html="",
                        ics_method="REQUEST",
                        ics_sequence=0,
                        status=NoticeStatus.SENT,
                        attempts=1,
                        next_attempt_at=NOW,
                        message_id=f"<{meeting.code}.{c.code}@sipflows.bench>",
                        created_at=NOW,
                        sent_at=NOW,
                        external_id=event_id,
                    )
                )
    return given


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", help="PostgreSQL URL (a fresh schema is used); default SQLite")
    ap.add_argument("--plans", type=int, default=2000, help="plans, each a meeting with five events")
    ap.add_argument("--answered", type=float, default=0.6, help="share of invitees who answered")
    args = ap.parse_args(argv)
    logging.getLogger("sipflows").setLevel(logging.WARNING)  # every answer is logged at INFO
    rng = random.Random(11)
    with (
        tempfile.TemporaryDirectory() as tmp,
        GraphServer(Path(tmp), client_secret=SECRET, mailbox=MAILBOX) as graph,
    ):
        os.environ["SSL_CERT_FILE"] = str(graph.ca_file)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            transport="graph",
            graph_tenant_id=graph.tenant,
            graph_client_id=graph.client_id,
            graph_client_secret=SecretStr(SECRET),
            graph_mailbox=MAILBOX,
            graph_base_url=graph.base_url,
            graph_authority_url=graph.authority_url,
        )
        engine, close = fresh_database(args.database_url, Path(tmp), "issue11")
        statements = 0

        def count(*_: object) -> None:
            nonlocal statements
            statements += 1

        try:
            migrate(engine)
            started = time.perf_counter()
            given = load(engine, graph, args.plans, args.answered, rng)
            events = len(graph.state.events)
            print(
                f"database: {engine.dialect.name}; {args.plans:,} meetings, {events:,} events, {given:,} "
                f"answers given (built in {time.perf_counter() - started:.0f} s, not timed)"
            )
            event.listen(engine, "before_cursor_execute", count)
            for label in ("first run (records the answers)", "second run (nothing new)"):
                statements, calls = 0, len(graph.requests)
                wall, cpu = time.perf_counter(), time.process_time()
                summary = ingest_graph(engine, settings, READ, READ - timedelta(days=90))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                views = sum(1 for r in graph.requests[calls:] if "/calendarView" in r.path)
                print(
                    f"{label}: {wall:.2f} s wall, {cpu:.2f} s CPU, {events / wall:,.0f} events/s; "
                    f"{len(graph.requests) - calls} HTTPS calls ({views} calendar view pages), "
                    f"{statements:,} SQL statements; {json.dumps(summary.as_dict())}"
                )
        finally:
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: render + enqueue N meeting invitations, then dispatch them over SMTP to a local server.

    python benchmarks/notices.py                       # SQLite file in a temporary folder
    python benchmarks/notices.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/notices.py --dispatchers 2        # two dispatch processes sharing the ledger

What is measured is the real path: ``sipflows.notices.invitations.sync_invitations`` (Jinja2 templates,
the iCalendar REQUEST, the ledger's INSERT … ON CONFLICT) and ``sipflows.notices.dispatch.dispatch``
through ``SmtpTransport`` to an aiosmtpd server running in a separate process (so that the server does
not compete with the dispatcher for the GIL). Invitations are the heaviest notices (two bodies plus a
calendar part), so the figures are a floor for the other kinds. The register is bulk-loaded first and
not timed. On PostgreSQL a fresh schema is created and dropped afterwards.

The *wire floor* is measured in the same run, against the same server: the same notices built into
messages beforehand (not timed), then sent by a bare ``smtplib`` loop over one connection — no database,
no MIME building, no bookkeeping. With one dispatcher the two are interleaved: ``--interleave`` batches
dispatched, then as many messages by the bare loop, and again, so that both see the same moments of a
shared, noisy machine (with several dispatchers the floor runs before and after). The dispatch rate is
printed as a ratio of the floor's: how close one dispatcher comes to what the wire alone allows.

Targets on a 2-core machine: >= 2,000 rendered+enqueued per second, >= 300 sent per second, and one
dispatcher at >= 0.7 of the wire floor.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import smtplib
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from sipflows.db import make_engine, migrate
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
from sipflows.notices.dispatch import dispatch
from sipflows.notices.dispatch.messages import build_message, load_context
from sipflows.notices.invitations import sync_invitations
from sipflows.settings import Settings
from sipflows.transports.mime import mime_bytes, sender_address
from sipflows.transports.smtp import SmtpTransport

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
INVITEES = 5  # per meeting
ORGS = 20
CONTACTS_PER_ORG = 50


# ------------------------------------------------------------------------------------- the SMTP sink


def _serve(port: int, received: Any, ready: Any, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    class Counter:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with received.get_lock():
                received.value += 1
            return "250 OK"

    controller = Controller(Counter(), hostname="127.0.0.1", port=port, server_hostname="localhost")
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------- the register


def load_register(engine: Engine, meetings: int) -> None:
    """``meetings`` future SIP meetings, each with INVITEES invitees who are participants of its plan."""
    contacts = ORGS * CONTACTS_PER_ORG
    with Session(engine) as s, s.begin():
        s.execute(
            insert(Organisation),
            [
                {
                    "id": o,
                    "code": f"ORG{o}",
                    "name": f"Enhet {o}",
                    "kind": OrgKind.MUNICIPAL_UNIT if o % 2 else OrgKind.REGION_UNIT,
                    "principal": Principal.KOMMUN if o % 2 else Principal.REGION,
                }
                for o in range(1, ORGS + 1)
            ],
        )
        s.execute(
            insert(Contact),
            [
                {
                    "id": c,
                    "code": f"C{c}",
                    "organisation_id": (c - 1) // CONTACTS_PER_ORG + 1,
                    "name": f"Handläggare {c}",
                    "email": f"c{c}@org{(c - 1) // CONTACTS_PER_ORG + 1}.example.se",
                }
                for c in range(1, contacts + 1)
            ],
        )
        chunk = 2000
        for start in range(1, meetings + 1, chunk):
            ids = range(start, min(start + chunk, meetings + 1))
            members = {m: [((m * 7 + k * 131) % contacts) + 1 for k in range(INVITEES)] for m in ids}
            s.execute(
                insert(SipCase),
                [
                    {
                        "id": m,
                        "reference": f"SIP-2026-{m:06d}",
                        "convener_org_id": (members[m][0] - 1) // CONTACTS_PER_ORG + 1,
                        "convener_contact_id": members[m][0],
                        "individual_name": "Bench Person",
                        "personal_identity_number": "19900101-0000",
                        "status": CaseStatus.ACTIVE,
                        "identified_on": date(2026, 1, 5),
                        "consent_given_on": date(2026, 1, 7),
                        "activated_on": date(2026, 1, 7),
                    }
                    for m in ids
                ],
            )
            s.execute(insert(Participant), [{"case_id": m, "contact_id": c} for m in ids for c in members[m]])
            s.execute(
                insert(Meeting),
                [
                    {
                        "id": m,
                        "code": f"M{m}",
                        "case_id": m,
                        "kind": MeetingKind.SIP_MEETING,
                        "starts_at": NOW + timedelta(days=14 + m % 30, hours=m % 6),
                        "ends_at": NOW + timedelta(days=14 + m % 30, hours=m % 6, minutes=90),
                        "place": "Vårdcentralen, rum 3",
                        "purpose": "Samordna insatser",
                        "ical_uid": f"m{m}@bench.sipflows",
                    }
                    for m in ids
                ],
            )
            s.execute(
                insert(Invitation), [{"meeting_id": m, "contact_id": c} for m in ids for c in members[m]]
            )


def prebuilt_messages(engine: Engine, settings: Settings) -> list[tuple[str, bytes]]:
    """Every notice in the ledger as (recipient, bytes), built exactly as dispatch builds them."""
    sender = sender_address(settings.sender_address, settings.sender_name)
    out: list[tuple[str, bytes]] = []
    with engine.connect() as conn:
        rows = list(conn.execute(select(Notice.__table__).order_by(Notice.id)).mappings())
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            ctx = load_context(conn, chunk, (settings.organizer(), settings.sender_name))
            for row in chunk:
                message = build_message(row, ctx, NOW)
                out.append((message.to_address, mime_bytes(message, sender)))
    return out


def wire_floor(port: int, sender: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds a bare smtplib loop takes to send ``messages`` over one connection."""
    t0 = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for to, data in messages:
            smtp.sendmail(sender, [to], data)
    return time.perf_counter() - t0


def _dispatcher(url: str, settings: Settings, worker: str, results: Any) -> None:
    """One dispatcher process: its own engine and SMTP connection, the shared ledger's claims."""
    engine = make_engine(url)
    try:
        summary = dispatch(engine, SmtpTransport(settings), NOW, settings, worker_id=worker)
        results.put((summary.sent, summary.failed, summary.dead, time.process_time()))
    finally:
        engine.dispose()


def run_dispatchers(engine: Engine, settings: Settings, n: int) -> tuple[int, int, int, float]:
    """``n`` dispatchers at once, as several Prefect workers would run them; sent, failed, dead, CPU s."""
    url = engine.url.render_as_string(hide_password=False)
    results: Any = mp.Queue()
    procs = [mp.Process(target=_dispatcher, args=(url, settings, f"bench-{i}", results)) for i in range(n)]
    for p in procs:
        p.start()
    totals = [results.get() for _ in procs]
    for p in procs:
        p.join()
    sent, failed, dead, cpu = (sum(t[i] for t in totals) for i in range(4))
    return int(sent), int(failed), int(dead), float(cpu)


def fresh_database(url: str | None, folder: Path, schema: str | None = None) -> tuple[Engine, str | None]:
    if url is None:
        return make_engine(f"sqlite:///{folder / 'bench.sqlite'}"), None
    if make_url(url).get_backend_name() != "postgresql":
        return make_engine(url), None
    schema = schema or f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return make_engine(scoped.render_as_string(hide_password=False)), schema


def drop_schema(url: str, schema: str) -> None:
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", help="PostgreSQL URL (a fresh schema is used); default SQLite")
    ap.add_argument(
        "--schema",
        help="PostgreSQL schema to create, use and drop (default bench_ plus a random suffix); "
        "must not exist yet",
    )
    ap.add_argument("--notices", type=int, default=50_000, help="invitations to render, enqueue and send")
    ap.add_argument("--batch-size", type=int, default=200, help="dispatch batch size")
    ap.add_argument("--no-floor", action="store_true", help="skip the bare smtplib floor")
    ap.add_argument(
        "--interleave",
        type=int,
        default=5,
        help="batches dispatched between two slices of the floor (as many messages each)",
    )
    ap.add_argument(
        "--dispatchers",
        type=int,
        default=1,
        help="dispatch processes sharing the ledger (default 1: in this process)",
    )
    args = ap.parse_args(argv)
    meetings = max(1, args.notices // INVITEES)

    with tempfile.TemporaryDirectory() as tmp:
        engine, schema = fresh_database(args.database_url, Path(tmp), args.schema)
        try:
            migrate(engine)
            t0 = time.perf_counter()
            load_register(engine, meetings)
            print(f"database: {engine.dialect.name}; register loaded in {time.perf_counter() - t0:.1f}s")

            port = free_port()
            received = mp.Value("i", 0)
            ready, stop = mp.Event(), mp.Event()
            server = mp.Process(target=_serve, args=(port, received, ready, stop), daemon=True)
            server.start()
            if not ready.wait(30):
                print("SMTP server did not start", file=sys.stderr)
                return 1
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                transport="smtp",
                smtp_host="127.0.0.1",
                smtp_port=port,
                mail_domain="bench.sipflows",
                batch_size=args.batch_size,
            )
            try:
                t0 = time.perf_counter()
                with Session(engine) as s, s.begin():
                    summary = sync_invitations(s, NOW, settings)
                enqueue_s = time.perf_counter() - t0
                enqueued = summary.enqueued

                floor_sent = 0
                floor_s = 0.0  # seconds the bare smtplib loop took for floor_sent messages
                messages = [] if args.no_floor else prebuilt_messages(engine, settings)
                dispatch_s = dispatch_cpu = 0.0
                sent = failed = dead = 0
                if args.dispatchers == 1:
                    # interleaved: some batches dispatched, then as many messages by the bare loop, and
                    # again, so that both see the same moments of a noisy machine
                    transport = SmtpTransport(settings)
                    while True:
                        t0, c0 = time.perf_counter(), time.process_time()
                        result = dispatch(engine, transport, NOW, settings, max_batches=args.interleave)
                        dispatch_s += time.perf_counter() - t0
                        dispatch_cpu += time.process_time() - c0
                        sent, failed, dead = sent + result.sent, failed + result.failed, dead + result.dead
                        if result.batches == 0:
                            break
                        if messages:  # as many messages as were just dispatched
                            chunk = messages[floor_sent % len(messages) :][: result.sent]
                            floor_s += wire_floor(port, settings.sender_address, chunk)
                            floor_sent += len(chunk)
                else:
                    if messages:
                        floor_s += wire_floor(port, settings.sender_address, messages)
                        floor_sent += len(messages)
                    t0 = time.perf_counter()
                    sent, failed, dead, dispatch_cpu = run_dispatchers(engine, settings, args.dispatchers)
                    dispatch_s = time.perf_counter() - t0
                    if messages:
                        floor_s += wire_floor(port, settings.sender_address, messages)
                        floor_sent += len(messages)
                del messages
            finally:
                stop.set()
                server.join(10)
            with Session(engine) as s:
                sent_rows = s.scalar(select(func.count()).where(Notice.status == NoticeStatus.SENT))
        finally:
            engine.dispose()
            if schema and args.database_url:
                drop_schema(args.database_url, schema)

    print(f"rendered + enqueued: {enqueued} invitations in {enqueue_s:.1f}s = {enqueued / enqueue_s:,.0f}/s")
    print(
        f"dispatched over SMTP: {sent} sent, {failed} failed, {dead} dead in {dispatch_s:.1f}s "
        f"= {sent / dispatch_s:,.0f}/s (batch {args.batch_size}, {args.dispatchers} dispatcher(s))"
    )
    print(
        f"dispatcher CPU {1000 * dispatch_cpu / max(sent, 1):.2f} ms per notice "
        f"(the rest of the wall time is the SMTP conversation and the database)"
    )
    if floor_sent:
        floor = floor_sent / floor_s
        print(
            f"wire floor (bare smtplib loop, the same messages, the same server, in the same run): "
            f"{floor_sent} sent in {floor_s:.1f}s = {floor:,.0f}/s"
        )
        print(f"dispatch / floor = {sent / dispatch_s / floor:.2f}")
    print(f"server received {received.value} (expected {sent + floor_sent}); ledger rows sent: {sent_rows}")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

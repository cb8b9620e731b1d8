"""Benchmark: the time one calendar reply costs, from its bytes to the register, as the mailbox sources
handle each message (``sipflows.replies.handle_message``: MIME, the sender rule, the iCalendar parse,
one meeting look-up, the answer applied in its own transaction).

    python benchmarks/replies.py                     # SQLite file in a temporary folder
    python benchmarks/replies.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Messages: an Outlook reply (one ATTENDEE); a REPLY with 100,000 ATTENDEE lines and the sender among them
(about 9 MB, base64 as Outlook encodes calendars); the same without the sender (set aside as untrusted);
a reply nested in 1,000 MIME levels (set aside). Each is handled ``--repeat`` times; the median wall and
CPU time per message are printed. Reading the message off the IMAP server is not included. On
PostgreSQL a fresh schema (named after issue 9) is created and dropped afterwards.

Target: a 100,000-attendee reply in well under a second per message.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` and ``sipflows`` importable
    sys.path.insert(0, str(REPO))

from sqlalchemy import Engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.registers import fresh_database  # noqa: E402
from sipflows.db import migrate  # noqa: E402
from sipflows.models import (  # noqa: E402
    CaseStatus,
    Contact,
    Invitation,
    Meeting,
    MeetingKind,
    Organisation,
    OrgKind,
    Participant,
    Principal,
    SipCase,
)
from sipflows.replies import ReplySummary, handle_message  # noqa: E402
from sipflows.timeutil import from_local  # noqa: E402

UID = "SIP-BENCH-1-M1@bench.sipflows"
SENDER = "rolf@region.example.se"
RECEIVED = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def load_register(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        org = Organisation(
            code="RV", name="Vårdcentralen", kind=OrgKind.REGION_UNIT, principal=Principal.REGION
        )
        s.add(org)
        s.flush()
        people = [
            Contact(
                code=f"C{n}", organisation_id=org.id, name=f"Kontakt {n}", email=f"c{n}@region.example.se"
            )
            for n in range(5)
        ]
        people.append(Contact(code="ROLF", organisation_id=org.id, name="Rolf", email=SENDER))
        s.add_all(people)
        s.flush()
        case = SipCase(
            reference="SIP-BENCH-1",
            convener_org_id=org.id,
            convener_contact_id=people[0].id,
            status=CaseStatus.ACTIVE,
            identified_on=date(2026, 1, 5),
        )
        s.add(case)
        s.flush()
        s.add_all(Participant(case_id=case.id, contact_id=p.id) for p in people)
        start = from_local(date(2026, 3, 27), clock(9, 0))
        meeting = Meeting(
            code="SIP-BENCH-1-M1",
            case_id=case.id,
            kind=MeetingKind.SIP_MEETING,
            starts_at=start,
            ends_at=start + timedelta(minutes=90),
            place="Rum 3",
            ical_uid=UID,
        )
        s.add(meeting)
        s.flush()
        sent = from_local(date(2026, 3, 2), clock(8, 0))
        s.add_all(Invitation(meeting_id=meeting.id, contact_id=p.id, sent_at=sent) for p in people[1:])


def reply(attendees: list[tuple[str, str]], sender: str = SENDER, minute: int = 0) -> bytes:
    lines = ["BEGIN:VCALENDAR", "METHOD:REPLY", "PRODID:Microsoft Exchange Server 2010", "VERSION:2.0"]
    lines += ["BEGIN:VEVENT", f"UID:{UID}", "SEQUENCE:0", f"DTSTAMP:20260303T10{minute:02d}00Z"]
    lines += [f"ATTENDEE;PARTSTAT={p};CN=Deltagare:mailto:{a}" for a, p in attendees]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    msg = EmailMessage()
    msg["From"] = f"Rolf <{sender}>"
    msg["To"] = "sip-kallelser@kommun.example.se"
    msg["Subject"] = "Accepterat: SIP-möte"
    msg["Date"] = format_datetime(RECEIVED)
    msg.set_content("Svar på mötesinbjudan\n", cte="base64")
    msg.add_alternative(
        ("\r\n".join(lines) + "\r\n").encode(),
        maintype="text",
        subtype="calendar",
        cte="base64",
        params={"charset": "utf-8", "method": "REPLY"},
    )
    return msg.as_bytes()


def nested(depth: int) -> bytes:
    head = f"From: {SENDER}\r\nMIME-Version: 1.0\r\n".encode()
    opening = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(depth)
    )
    closing = b"".join(f"\r\n--b{i}--\r\n".encode() for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/calendar; method=REPLY\r\n\r\nBEGIN:VCALENDAR\r\n" + closing


def measure(engine: Engine, raw: bytes, repeat: int) -> tuple[float, float, ReplySummary]:
    walls, cpus = [], []
    summary = ReplySummary()
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        handle_message(engine, raw, "bench", RECEIVED, summary)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", help="PostgreSQL URL (a fresh schema is used); default SQLite")
    ap.add_argument("--repeat", type=int, default=7, help="handlings per message (the median is printed)")
    args = ap.parse_args(argv)
    logging.getLogger("sipflows").setLevel(logging.ERROR)  # every set-aside message would log a warning
    crowd = [(f"p{n}@elsewhere.example", "DECLINED") for n in range(100_000)]
    messages = {
        "Outlook reply, 1 ATTENDEE": reply([(SENDER, "ACCEPTED")]),
        "REPLY with 100,000 ATTENDEE lines, the sender among them": reply(
            [*crowd[:50_000], (SENDER, "TENTATIVE"), *crowd[50_000:]], minute=30
        ),
        "REPLY with 100,000 ATTENDEE lines, not the sender's (set aside)": reply(crowd),
        "MIME nested 1,000 levels (set aside)": nested(1_000),
    }
    with tempfile.TemporaryDirectory() as tmp:
        engine, close = fresh_database(args.database_url, Path(tmp), "issue9")
        try:
            migrate(engine)
            load_register(engine)
            print(f"database: {engine.dialect.name}; median of {args.repeat} handlings per message")
            for name, raw in messages.items():
                wall, cpu, summary = measure(engine, raw, args.repeat)
                outcome = (
                    "set aside" if summary.rejected else f"applied {summary.applied}, stale {summary.stale}"
                )
                size = f"{len(raw) / 1e6:.1f} MB" if len(raw) > 1e6 else f"{len(raw) / 1e3:.1f} kB"
                print(f"{name}: {size}, {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU ({outcome})")
        finally:
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The round trip a coordinator makes: the invitation sipflows sent → Accept/Decline in a calendar client →
the REPLY mailed to the ORGANIZER → read from the mailbox (pymap over IMAP, or a folder) → recorded.

The REPLY is built from the invitation as it left sipflows (the .eml in the outbox, or the message the
test SMTP server received), the way Thunderbird/Outlook build one (RFC 5546 3.2.3), and it travels to the
address the invitation's ORGANIZER names — which must be the mailbox sipflows reads.
"""

from __future__ import annotations

import email
import smtplib
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import vobject
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipflows.booking import book_meeting, move_meeting
from sipflows.models import Answer, Contact, Invitation, Language, Meeting
from sipflows.notices.dispatch import dispatch
from sipflows.notices.invitations import sync_invitations
from sipflows.replies import ingest_folder, ingest_imap
from sipflows.settings import Settings
from sipflows.transports.mime import sender_address
from sipflows.transports.outbox import OutboxTransport
from sipflows.transports.smtp import SmtpTransport
from tests.factories import SECRETS, RegisterBuilder, local
from tests.imap_server import ImapTestServer, running_imap_server
from tests.itip_messages import client_reply, invitation_calendar
from tests.smtp_server import SmtpTestServer, start_smtp_server

MAILBOX = "sip-kallelser@kommun.example.se"  # the shared mailbox: From, ORGANIZER, read over IMAP
SENT = local(date(2026, 3, 2), "07:00")
MEETING_DAY = date(2026, 3, 27)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sender_address": MAILBOX,
        "sender_name": "SIP-kallelser",
        "mail_domain": "kommun.example.se",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def imap_settings(server: ImapTestServer, base: Settings) -> Settings:
    return base.model_copy(
        update={
            "imap_host": server.host,
            "imap_port": server.port,
            "imap_ssl": False,
            "imap_username": server.user,
            "imap_password": SecretStr(server.password),
        }
    )


def book(session: Session, w: dict[str, Any], cfg: Settings) -> Meeting:
    meeting = book_meeting(
        session,
        w["case"].reference,
        "sip_meeting",
        local(MEETING_DAY, "09:00"),
        local(MEETING_DAY, "10:30"),
        invitees=[(w["r"].code, True), (w["f"].code, False), (w["s"].code, True)],
        place="Vårdcentralen Köping, rum 3",
        now=SENT,
        settings=cfg,
    )
    sync_invitations(session, SENT, cfg)
    session.commit()
    return meeting


@pytest.fixture
def imap_server() -> Any:
    with running_imap_server() as server:
        yield server


@pytest.fixture
def world(build: RegisterBuilder, session: Session) -> dict[str, Any]:
    r = build.standard_region()
    k = r["k"]
    assert isinstance(k, Contact)
    k.name = "Linnéa Åberg"
    case = build.case(k, reference="SIP-2026-42", participants=(r["r"], r["f"], r["s"]))
    session.commit()
    return {**r, "case": case}


def answers(engine: Engine, meeting: Meeting) -> dict[str, tuple[Answer, datetime | None]]:
    with Session(engine) as s:
        rows = s.execute(
            select(Contact.code, Invitation.answer, Invitation.answered_at)
            .join(Invitation.contact)
            .where(Invitation.meeting_id == meeting.id)
        ).all()
    return {code: (answer, at) for code, answer, at in rows}


def outbox_by_recipient(folder: Path) -> dict[str, EmailMessage]:
    out: dict[str, EmailMessage] = {}
    for path in folder.glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out[msg["To"].addresses[0].addr_spec] = msg
    return out


def test_invitations_name_the_answers_mailbox_and_the_convener_as_chair(
    engine: Engine, session: Session, world: dict[str, Any], tmp_path: Path
) -> None:
    cfg = settings()
    book(session, world, cfg)
    transport = OutboxTransport(tmp_path, sender_address(cfg.sender_address, cfg.sender_name))
    assert dispatch(engine, transport, SENT, cfg).sent == 4
    mails = outbox_by_recipient(tmp_path)
    k, r = world["k"], world["r"]
    assert set(mails) == {world[x].email for x in ("k", "r", "f", "s")}  # the convener has a copy too
    for to, msg in mails.items():
        assert msg["From"].addresses[0].addr_spec == MAILBOX
        if to == k.email:
            assert msg["Reply-To"] is None  # the convener's own copy: replies to themselves make no sense
        else:
            assert msg["Reply-To"].addresses[0].addr_spec == k.email  # people's replies reach the convener
            assert msg["Reply-To"].addresses[0].display_name == "Linnéa Åberg"
        (part,) = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
        assert part.get_param("method") == "REQUEST"
        cal = invitation_calendar(msg)
        assert str(cal["METHOD"]) == part.get_param("method")
        (event,) = cal.walk("VEVENT")
        assert str(event["ORGANIZER"]) == f"mailto:{MAILBOX}"
        via = "SIP invitations" if to == r.email else "SIP-kallelser"
        assert event["ORGANIZER"].params["CN"] == f"Linnéa Åberg via {via}"
        attendees = {str(a)[len("mailto:") :]: a.params for a in event["ATTENDEE"]}
        assert list(attendees) == [world[x].email for x in ("k", "r", "f", "s")]
        assert attendees[k.email]["ROLE"] == "CHAIR"
        assert [attendees[world[x].email]["ROLE"] for x in ("r", "f", "s")] == [
            "REQ-PARTICIPANT",
            "OPT-PARTICIPANT",
            "REQ-PARTICIPANT",
        ]
        assert all(p["PARTSTAT"] == "NEEDS-ACTION" and p["RSVP"] == "TRUE" for p in attendees.values())
        # a second, independent parser reads the same thing
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parsed = vobject.readOne(payload.decode())
        assert parsed.method.value == "REQUEST"
        assert parsed.vevent.organizer.value == f"mailto:{MAILBOX}"
        assert parsed.vevent.uid.value == cal.walk("VEVENT")[0]["UID"]
        assert int(parsed.vevent.sequence.value) == 0
        assert parsed.vevent.dtstamp.value.tzinfo is not None
        chair = [a for a in parsed.vevent.attendee_list if a.params.get("ROLE") == ["CHAIR"]]
        assert [a.value for a in chair] == [f"mailto:{k.email}"]
        raw = msg.as_string()
        assert not any(secret in raw for secret in SECRETS)
    # the convener gets the meeting into their calendar, but no invitation that would be chased for an answer
    invited = set(session.scalars(select(Invitation.contact_id)))
    assert k.id not in invited


def test_an_organizer_address_of_its_own(
    engine: Engine, session: Session, world: dict[str, Any], tmp_path: Path
):
    cfg = settings(
        sender_address="sip-noreply@kommun.example.se", organizer_address="sip-svar@kommun.example.se"
    )
    book(session, world, cfg)
    dispatch(engine, OutboxTransport(tmp_path, sender_address(cfg.sender_address)), SENT, cfg)
    for msg in outbox_by_recipient(tmp_path).values():
        (event,) = invitation_calendar(msg).walk("VEVENT")
        assert str(event["ORGANIZER"]) == "mailto:sip-svar@kommun.example.se"
        assert msg["From"].addresses[0].addr_spec == "sip-noreply@kommun.example.se"


def test_round_trip_through_the_outbox_imap_and_a_folder(
    engine: Engine, session: Session, world: dict[str, Any], tmp_path: Path, imap_server: ImapTestServer
) -> None:
    cfg = settings()
    meeting = book(session, world, cfg)
    outbox = tmp_path / "outbox"
    dispatch(engine, OutboxTransport(outbox, sender_address(MAILBOX)), SENT, cfg)
    sent = outbox_by_recipient(outbox)
    k, r, f, s = (world[x] for x in ("k", "r", "f", "s"))

    # Rolf accepts in his client: the REPLY goes to the ORGANIZER, the mailbox IMAP reads
    accepted_at = datetime(2026, 3, 3, 8, 12, tzinfo=UTC)
    reply, to = client_reply(sent[r.email], r.email, "ACCEPTED", accepted_at)
    assert to == MAILBOX
    imap_server.append(reply, received=accepted_at + timedelta(seconds=20))
    # the convener accepts their own copy: handled, nothing to record
    reply, to = client_reply(sent[k.email], k.email, "ACCEPTED", accepted_at)
    assert to == MAILBOX
    imap_server.append(reply, received=accepted_at + timedelta(seconds=30))
    now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    summary = ingest_imap(engine, imap_settings(imap_server, cfg), now)
    assert (summary.messages, summary.applied, summary.convener, summary.rejected) == (2, 1, 1, 0)
    assert answers(engine, meeting)[r.code] == (Answer.ACCEPTED, accepted_at)

    # Sven declines; his reply is delivered into the folder source
    declined_at = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    folder = tmp_path / "replies"
    folder.mkdir()
    reply, to = client_reply(sent[s.email], s.email, "DECLINED", declined_at)
    (folder / "sven.eml").write_bytes(reply)
    summary = ingest_folder(engine, folder, declined_at + timedelta(minutes=5))
    assert (summary.messages, summary.applied, summary.rejected) == (1, 1, 0)
    assert answers(engine, meeting)[s.code] == (Answer.DECLINED, declined_at)

    # the meeting moves: an answer to the old invitation no longer counts, one to the new does
    move_meeting(session, meeting.code, local(MEETING_DAY, "13:00"), local(MEETING_DAY, "14:00"), now=now)
    sync_invitations(session, now, cfg)
    session.commit()
    dispatch(engine, OutboxTransport(tmp_path / "outbox2", sender_address(MAILBOX)), now, cfg)
    updated = outbox_by_recipient(tmp_path / "outbox2")
    late = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
    old, _ = client_reply(sent[f.email], f.email, "ACCEPTED", late)
    new, _ = client_reply(updated[f.email], f.email, "TENTATIVE", late + timedelta(minutes=1))
    (folder / "f-old.eml").write_bytes(old)
    (folder / "f-new.eml").write_bytes(new)
    summary = ingest_folder(engine, folder, late + timedelta(hours=1))
    assert (summary.stale, summary.applied) == (1, 1)
    assert answers(engine, meeting)[f.code] == (Answer.TENTATIVE, late + timedelta(minutes=1))
    assert answers(engine, meeting)[r.code] == (Answer.ACCEPTED, accepted_at)  # nobody else changed


@pytest.fixture
def smtp() -> Any:
    server = start_smtp_server()
    try:
        yield server
    finally:
        server.stop()


def test_round_trip_over_smtp_and_imap(
    engine: Engine,
    session: Session,
    world: dict[str, Any],
    smtp: SmtpTestServer,
    imap_server: ImapTestServer,
) -> None:
    cfg = settings(transport="smtp", smtp_host=smtp.host, smtp_port=smtp.port)
    world["r"].language = Language.EN
    session.commit()
    meeting = book(session, world, cfg)
    assert dispatch(engine, SmtpTransport(cfg), SENT, cfg).sent == 4
    (invitation,) = [d for d in smtp.deliveries if d.rcpt_tos == (world["r"].email,)]
    assert invitation.mail_from == MAILBOX

    # Rolf's client sends the REPLY to the ORGANIZER; the mail system delivers it into the shared mailbox
    accepted_at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    reply, to = client_reply(invitation.content, world["r"].email, "DECLINED", accepted_at)
    with smtplib.SMTP(smtp.host, smtp.port) as client:
        client.sendmail(world["r"].email, [to], reply)
    (delivered,) = [d for d in smtp.deliveries if d.rcpt_tos == (MAILBOX,)]
    imap_server.append(delivered.content, received=accepted_at + timedelta(seconds=3))

    summary = ingest_imap(engine, imap_settings(imap_server, cfg), datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    assert (summary.messages, summary.applied) == (1, 1)
    got = answers(engine, meeting)
    assert got[world["r"].code] == (Answer.DECLINED, accepted_at)
    assert {a for code, (a, _) in got.items() if code != world["r"].code} == {Answer.NONE}

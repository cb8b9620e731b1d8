"""The outbox transport: one .eml file per notice, readable as mail, written once and atomically."""

from __future__ import annotations

import base64
import email
import subprocess
import sys
from datetime import date, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from sipflows.models import Notice, NoticeStatus
from sipflows.notices.dispatch import dispatch
from sipflows.settings import Settings
from sipflows.transports.base import (
    AttachmentError,
    OutgoingMessage,
    TransportUnavailable,
    attachments_from_json,
)
from sipflows.transports.factory import make_transport
from sipflows.transports.mime import mime_bytes, sender_address
from sipflows.transports.outbox import OutboxTransport, eml_filename
from sipflows.transports.smtp import SmtpTransport
from tests.test_dispatch import NOW, add, draft, invitation_draft, ledger, unix

SENDER = sender_address("sip-noreply@sipflows.test", "SIP-påminnelser")


def read_eml(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_eml_names_are_safe_deterministic_and_distinct():
    key = "meeting.request:meeting:12:seq:0:contact:7"
    assert eml_filename(key) == eml_filename(key)
    assert eml_filename(key).startswith("meeting.request_meeting_12_seq_0_contact_7-")
    assert eml_filename("a:b") != eml_filename("a_b")  # same readable part, different keys
    odd = eml_filename("../../etc/passwd\0" + "x" * 400)
    assert "/" not in odd and "\0" not in odd and not odd.startswith(".") and len(odd) < 130


def test_outbox_dispatch_writes_one_mail_per_notice_and_a_rerun_writes_nothing(
    engine, session, build, tmp_path
):
    r = build.standard_region()
    case = build.case(r["k"], participants=(r["r"],))
    meeting = build.meeting(case, date(2026, 3, 10))
    build.invite(meeting, r["r"])
    session.commit()
    add(engine, [invitation_draft(meeting, r["r"].id, r["r"].email), draft(1), draft(2)])
    folder = tmp_path / "outbox"
    settings = Settings(_env_file=None, outbox_dir=folder, sender_address="sip-noreply@sipflows.test")

    summary = dispatch(engine, make_transport(settings), NOW, settings)

    assert summary.sent == 3
    rows = ledger(engine)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == sorted(eml_filename(k) for k in rows)
    for key, n in rows.items():
        msg = read_eml(folder / eml_filename(key))
        assert msg["Message-ID"] == n.message_id
        assert msg["To"].addresses[0].addr_spec == n.address
        assert msg["From"].addresses[0].addr_spec == "sip-noreply@sipflows.test"
        assert msg["Subject"] == n.subject
        assert msg["Date"].datetime == NOW
        assert unix(msg.get_body(("plain",)).get_content()) == n.body_text
        types = [p.get_content_type() for p in msg.walk()]
        if n.ics:
            assert types == ["multipart/alternative", "text/plain", "text/html", "text/calendar"]
            (cal,) = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
            assert cal.get_param("method") == "REQUEST" and cal.get_content() == n.ics
        else:
            assert types == ["multipart/alternative", "text/plain", "text/html"]
        assert n.status == NoticeStatus.SENT and n.external_id is None
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}

    again = dispatch(engine, make_transport(settings), NOW + timedelta(days=1), settings)

    assert again.sent == 0
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in folder.iterdir()} == before

    # a resend (as after a crash between writing and recording) replaces the file, never adds one
    with Session(engine) as s, s.begin():
        s.execute(update(Notice).where(Notice.key == draft(1).key).values(status=NoticeStatus.PENDING))
    assert dispatch(engine, make_transport(settings), NOW + timedelta(days=2), settings).sent == 1
    assert sorted(f.name for f in folder.iterdir()) == sorted(before)  # no temp files left either
    resent = read_eml(folder / eml_filename(draft(1).key))
    assert resent["Message-ID"] == rows[draft(1).key].message_id
    assert resent["Date"].datetime == NOW + timedelta(days=2)


def test_attachments_make_a_mixed_message_with_the_files(engine, tmp_path):
    csv = "organisation;planer;dokumenterade i tid\nKöping IFO;12;11\n".encode()
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    files = {
        "files": [
            {
                "filename": "vecka-10.csv",
                "content_type": "text/csv",
                "content_base64": base64.b64encode(csv).decode(),
            },
            {
                "filename": "diagram.png",
                "content_type": "image/png",
                "content_base64": base64.b64encode(png).decode(),
            },
        ]
    }
    add(engine, [draft(1, kind="report.weekly", attachments=files)])
    folder = tmp_path / "out"
    dispatch(engine, OutboxTransport(folder, SENDER), NOW, Settings(_env_file=None))
    msg = read_eml(folder / eml_filename(draft(1).key))
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "multipart/alternative"
    got = {
        a.get_filename(): (a.get_content_type(), a.get_payload(decode=True)) for a in msg.iter_attachments()
    }
    assert got == {"vecka-10.csv": ("text/csv", csv), "diagram.png": ("image/png", png)}
    text = next(msg.iter_attachments())
    assert text.get_content_charset() == "utf-8" and text.get_content() == csv.decode()


@pytest.mark.parametrize(
    "data, complaint",
    [
        ({"files": "x"}, "must be a list"),
        ({"files": [{"content_type": "text/csv", "content_base64": ""}]}, "filename missing"),
        ({"files": [{"filename": "a", "content_type": "csv", "content_base64": ""}]}, "type/subtype"),
        ({"files": [{"filename": "a", "content_type": "text/csv", "content_base64": "%%"}]}, "not base64"),
    ],
)
def test_bad_attachment_data_is_named(data, complaint):
    with pytest.raises(AttachmentError, match=complaint):
        attachments_from_json(data)


def test_an_unwritable_outbox_is_the_transport_unavailable(engine, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox should be")
    add(engine, [draft(1)])
    with pytest.raises(TransportUnavailable) as raised:
        dispatch(engine, OutboxTransport(blocker / "outbox", SENDER), NOW, Settings(_env_file=None))
    assert raised.value.settings == ("SIPFLOWS_OUTBOX_DIR",) and str(blocker / "outbox") in str(raised.value)
    n = ledger(engine)[draft(1).key]
    assert (n.status, n.attempts, n.last_error) == (NoticeStatus.PENDING, 0, None)  # no attempt lost


def test_make_transport_picks_by_settings_and_loads_exchange_only_when_chosen(tmp_path):
    outbox = make_transport(Settings(_env_file=None, transport="outbox", outbox_dir=tmp_path))
    assert isinstance(outbox, OutboxTransport) and outbox.folder == tmp_path
    assert outbox.sender.display_name == "SIP-påminnelser"
    assert isinstance(make_transport(Settings(_env_file=None, transport="smtp")), SmtpTransport)
    code = (
        "import sys\n"
        "from sipflows.settings import Settings\n"
        "from sipflows.transports.factory import make_transport\n"
        "make_transport(Settings(_env_file=None, transport='outbox'))\n"
        "make_transport(Settings(_env_file=None, transport='smtp'))\n"
        "assert 'exchangelib' not in sys.modules, 'exchangelib imported without need'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------- the MIME


def mail(**kw: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "notice_id": 1,
        "key": "k:1",
        "message_id": "<k1@sipflows.test>",
        "to_address": "anna@kommun.example.se",
        "to_name": "Anna Åberg",
        "subject": "Kallelse till SIP-möte",
        "body_text": "Hej!\n",
        "body_html": "<p>Hej!</p>",
        "date": NOW,
    }
    values.update(kw)
    return OutgoingMessage(**values)  # type: ignore[arg-type]


def test_headers_cannot_be_injected_and_mime_version_appears_once():
    data = mime_bytes(
        mail(to_name="Åberg\r\nBcc: spy@evil.example", subject="Möte\nBcc: spy@evil.example"), SENDER
    )
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Möte Bcc: spy@evil.example"
    assert msg["To"].addresses[0].addr_spec == "anna@kommun.example.se"
    assert data.count(b"MIME-Version:") == 1
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF throughout


def test_a_cancellation_is_text_html_and_calendar_with_method_cancel():
    data = mime_bytes(mail(ics="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", ics_method="cancel"), SENDER)
    built = email.message_from_bytes(data, policy=policy.SMTP)
    assert isinstance(built, EmailMessage)
    assert [p.get_content_type() for p in built.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    cal = next(p for p in built.walk() if p.get_content_type() == "text/calendar")
    assert cal.get_param("method") == "CANCEL" and cal.get_content() == "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    assert built["Auto-Submitted"] == "auto-generated"


def test_unusable_messages_are_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="not a usable email address"):
        mime_bytes(mail(to_address="Anna Åberg <anna@x>, kommunen"), SENDER)
    with pytest.raises(ValueError, match="ics method"):
        mime_bytes(mail(ics="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", ics_method="PUBLISH"), SENDER)
    with pytest.raises(ValueError):
        sender_address("noreply")


def test_non_ascii_attachment_names_survive():
    files = attachments_from_json(
        {
            "files": [
                {"filename": "översikt v.10.pdf", "content_type": "application/pdf", "content_base64": "JVBE"}
            ]
        }
    )
    msg = email.message_from_bytes(mime_bytes(mail(attachments=files), SENDER), policy=policy.default)
    (part,) = msg.iter_attachments()
    assert part.get_filename() == "översikt v.10.pdf" and part.get_content() == b"%PD"


# --- a write killed midway -------------------------------------------------------------------------------

HALF_WRITER = r"""
import os, sys, time
from pathlib import Path
from sipflows.transports.outbox import _locked_temp_file

fd, tmp = _locked_temp_file(Path(sys.argv[1]))
os.write(fd, b"Message-ID: <half@sipflows.test>\r\nSubject: half a mess")
print(Path(tmp).name, flush=True)
time.sleep(60)  # killed here, mid-write
"""


def test_a_write_killed_midway_leaves_a_temp_file_the_next_run_removes(engine, tmp_path):
    folder = tmp_path / "outbox"
    folder.mkdir()
    finished = folder / "done.eml"
    finished.write_bytes(b"Subject: kept\r\n\r\nkept\r\n")
    child = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        partial = folder / name
        assert name.startswith(".") and name.endswith(".eml.tmp") and partial.is_file()
        # a second dispatcher while the writer lives: its file is not touched
        assert OutboxTransport(folder).remove_stale_temp_files() == 0
        assert partial.is_file()
    finally:
        child.kill()
        child.wait()
    assert partial.is_file()  # SIGKILL leaves it behind

    # the next run, even with nothing to send, removes it and nothing else
    settings = Settings(_env_file=None, outbox_dir=folder)
    summary = dispatch(engine, make_transport(settings), NOW, settings)
    assert summary.sent == 0
    assert sorted(p.name for p in folder.iterdir()) == ["done.eml"]


def test_a_stale_temp_file_goes_when_a_batch_opens_the_outbox(engine, session, build, tmp_path):
    folder = tmp_path / "outbox"
    transport = OutboxTransport(folder)  # made before the folder exists: nothing to clean yet
    folder.mkdir()
    stale = folder / ".notice-abc123.eml.tmp"
    stale.write_bytes(b"half")
    settings = Settings(_env_file=None, outbox_dir=folder)
    add(engine, [draft(1)])
    assert dispatch(engine, transport, NOW, settings).sent == 1
    assert sorted(p.name for p in folder.iterdir()) == [eml_filename(draft(1).key)]

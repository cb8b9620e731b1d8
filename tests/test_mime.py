"""The bytes dispatch sends: written straight to bytes, the same message the standard library writes.

``mime_bytes`` writes a notice without files directly; ``render_mime`` builds the standard library's
object tree (still used for messages with files). Both must give the same headers and the same parts,
parse without defects, and never carry their boundary inside a part.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

import pytest

from sipflows.transports.base import OutgoingMessage
from sipflows.transports.mime import (
    MIME_POLICY,
    encoded_words,
    mime_bytes,
    render_mime,
    sender_address,
)

SENDER = sender_address("sip-noreply@sipflows.test", "SIP-påminnelser")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//sipflows tests//SV\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
    "UID:m1@sipflows.test\r\nSEQUENCE:2\r\nDTSTART:20260316T080000Z\r\nDTEND:20260316T093000Z\r\n"
    "SUMMARY:SIP-möte\r\nLOCATION:Vårdcentralen\\, rum 3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def mail(**kw: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "notice_id": 7,
        "key": "meeting.request:meeting:7:seq:2:contact:3",
        "message_id": "<0123456789abcdef@sipflows.test>",
        "to_address": "anna@kommun.example.se",
        "to_name": "Anna Åberg",
        "subject": "Kallelse till SIP-möte måndag 16 mars 2026 kl. 09.00",
        "body_text": "Hej!\n\nDu är kallad till SIP-möte för planen SIP-2026-7.\n",
        "body_html": "<p>Hej!</p><p>Du är kallad till SIP-möte för planen <b>SIP-2026-7</b>.</p>",
        "ics": ICS,
        "ics_method": "REQUEST",
        "reply_to": "sam@kommun.example.se",
        "reply_to_name": "Samordnare Sköld",
        "date": NOW,
    }
    values.update(kw)
    return OutgoingMessage(**values)  # type: ignore[arg-type]


# bodies a generator can get wrong: delimiter look-alikes, trailing blanks, long lines, every line end
AWKWARD_TEXT = (
    "-- \n--=_sipflows_0123\n=_sipflows_\n.\nFrom here\n a=b \t\n"
    + "x" * 300
    + "\n"
    + "å" * 80
    + "\r\nCRLF line\rCR line\n\u2028sep\x0cff\n\n"
)
CASES = {
    "invitation": {},
    "cancellation, method in lower case": {"ics_method": "cancel"},
    "no calendar part": {"ics": None, "ics_method": None},
    "empty bodies": {"body_text": "", "body_html": ""},
    "awkward bodies": {"body_text": AWKWARD_TEXT, "body_html": AWKWARD_TEXT.replace("\n", "<br>\r\n")},
    "long ASCII subject and name": {
        "subject": "Påminnelse " + "very long subject " * 8,
        "to_name": "N " * 60,
    },
    "long non-ASCII subject": {"subject": "Åäö – möte " * 20},
    "reply-to is the recipient": {"reply_to": "anna@kommun.example.se"},
    "no reply-to, no name": {"reply_to": None, "to_name": None},
}


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def shape(msg: Message) -> list[object]:
    """Everything a reader sees: headers in order (boundary left out), and each part's headers and content."""
    out: list[object] = []
    for part in msg.walk():
        headers = [(k, str(v)) for k, v in part.items() if k != "Content-Type"]
        params = [(k, v) for k, v in part.get_params() or [] if k != "boundary"]
        content = None if part.is_multipart() else part.get_payload(decode=True)
        out.append((part.get_content_type(), params, headers, content))
    return out


def lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def boundaries(data: bytes) -> list[bytes]:
    return re.findall(rb'boundary="([^"]+)"', data)


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_direct_bytes_are_the_message_the_standard_library_writes(case):
    message = mail(**case)
    direct = mime_bytes(message, SENDER)
    library = render_mime(message, SENDER).as_bytes(policy=MIME_POLICY)

    assert shape(parse(direct)) == shape(parse(library))
    # byte for byte, but for the random boundary
    (b1,), (b2,) = boundaries(direct), boundaries(library)
    assert direct.replace(b1, b"B") == library.replace(b2, b"B")


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_the_bytes_parse_cleanly_with_crlf_lines_and_the_parts_intact(case):
    message = mail(**case)
    data = mime_bytes(message, SENDER)
    msg = parse(data)

    assert all(not part.defects for part in msg.walk())
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    assert data.count(b"MIME-Version:") == 1
    assert msg["Message-ID"] == message.message_id
    assert msg["Date"].datetime == NOW
    assert msg["To"].addresses[0].addr_spec == message.to_address
    assert msg["Subject"] == " ".join(message.subject.split())
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html, *calendar = msg.iter_parts()
    # text travels with CRLF line ends (a lone CR or LF becomes one); everything else arrives as written
    assert lines(plain.get_content()) == lines(message.body_text)
    assert lines(html.get_content()) == lines(message.body_html)
    if message.ics:
        (cal,) = calendar
        assert cal.get_content_type() == "text/calendar"
        assert cal.get_param("method") == (message.ics_method or "").upper()
        assert cal["Content-Transfer-Encoding"] == "base64"
        assert cal.get_content() == message.ics  # its CRLF line folding untouched
    else:
        assert calendar == []


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_the_boundary_never_appears_inside_a_part(case):
    data = mime_bytes(mail(**case), SENDER)
    (boundary,) = boundaries(data)
    assert 1 <= len(boundary) <= 70 and re.fullmatch(
        rb"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]", boundary
    )
    _, body = data.split(b"\r\n\r\n", 1)
    lines = body.split(b"\r\n")
    delimiters = [i for i, line in enumerate(lines) if boundary in line]
    # the boundary occurs only on its own delimiter lines: one per part and the closing one
    assert [lines[i] for i in delimiters] == [b"--" + boundary] * (len(delimiters) - 1) + [
        b"--" + boundary + b"--"
    ]
    assert len(delimiters) == len(list(parse(data).iter_parts())) + 1


def test_every_message_gets_its_own_boundary_and_an_attachment_its_own_nesting():
    message = mail()
    seen = {boundaries(mime_bytes(message, SENDER))[0] for _ in range(200)}
    assert len(seen) == 200
    from sipflows.transports.base import Attachment

    files = (Attachment("rapport.csv", "text/csv", "kolumn\r\n--\r\nå\r\n".encode()),)
    data = mime_bytes(message, SENDER, attachments=files)
    outer, inner = boundaries(data)
    assert outer != inner
    msg = parse(data)
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
        "text/csv",
    ]
    assert all(not part.defects for part in msg.walk())


def test_encoded_words_split_between_characters_and_decode_back():
    for text in ("å" * 50, "a" * 41 + "😀" + "b", "€" * 15, "x"):
        words = encoded_words(text)
        assert all(len(line) <= 77 for line in words.split("\r\n"))
        msg = parse(f"Subject: {words}\r\n\r\n".encode())
        assert msg["Subject"] == text

"""Calendar replies as real clients send them, and the means to build hostile ones.

``outlook_reply`` and ``google_reply`` copy what Exchange/Outlook and Google Calendar put on the wire;
``client_reply`` builds the REPLY a client makes from an invitation sipflows actually sent (RFC 5546
3.2.3: METHOD:REPLY, the same UID and SEQUENCE, only the replying ATTENDEE with its PARTSTAT, sent to the
ORGANIZER). ``mail`` wraps any calendar text in a message with the headers and encoding a test wants.
"""

from __future__ import annotations

import base64
import email
import quopri
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses

from icalendar import Calendar, Event, vCalAddress

T1 = datetime(2026, 2, 3, 10, 15, tzinfo=UTC)


def _ics(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def outlook_ics(uid: str, attendee: str, partstat: str, stamp: datetime, sequence: int = 0) -> str:
    return _ics(
        [
            "BEGIN:VCALENDAR",
            "METHOD:REPLY",
            "PRODID:Microsoft Exchange Server 2010",
            "VERSION:2.0",
            "BEGIN:VTIMEZONE",
            "TZID:W. Europe Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16010101T030000",
            "TZOFFSETFROM:+0200",
            "TZOFFSETTO:+0100",
            "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010101T020000",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0200",
            "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
            "BEGIN:VEVENT",
            f"ATTENDEE;PARTSTAT={partstat};CN=Svar Svarsson:mailto:{attendee}",
            "COMMENT;LANGUAGE=sv-SE:\\n",
            "SUMMARY;LANGUAGE=sv-SE:Accepterat: SIP-möte",
            "DTSTART;TZID=W. Europe Standard Time:20260210T090000",
            "DTEND;TZID=W. Europe Standard Time:20260210T103000",
            f"UID:{uid}",
            "CLASS:PUBLIC",
            "PRIORITY:5",
            f"DTSTAMP:{stamp.strftime('%Y%m%dT%H%M%SZ')}",
            "TRANSP:OPAQUE",
            "STATUS:CONFIRMED",
            f"SEQUENCE:{sequence}",
            "LOCATION;LANGUAGE=sv-SE:Köpings vårdcentral\\, rum 3",
            "X-MICROSOFT-CDO-APPT-SEQUENCE:0",
            "X-MICROSOFT-CDO-OWNERAPPTID:2121862040",
            "X-MICROSOFT-CDO-BUSYSTATUS:BUSY",
            "X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY",
            "X-MICROSOFT-CDO-ALLDAYEVENT:FALSE",
            "X-MICROSOFT-CDO-IMPORTANCE:1",
            "X-MICROSOFT-CDO-INSTTYPE:0",
            "X-MICROSOFT-DONOTFORWARDMEETING:FALSE",
            "X-MICROSOFT-DISALLOW-COUNTER:FALSE",
            "END:VEVENT",
            "END:VCALENDAR",
        ]
    )


def outlook_reply(
    uid: str,
    attendee: str,
    partstat: str = "ACCEPTED",
    stamp: datetime = T1,
    sequence: int = 0,
    sender: str | None = None,
) -> bytes:
    """multipart/alternative: text/plain and text/calendar; method=REPLY, both base64, as Exchange sends.
    The message comes From the attendee unless ``sender`` says otherwise."""
    msg = EmailMessage()
    msg["From"] = f"Svar Svarsson <{sender or attendee}>"
    msg["To"] = "SIP-påminnelser <sip-noreply@example.se>"
    msg["Subject"] = "Accepterat: SIP-möte"
    msg["Date"] = format_datetime(stamp + timedelta(seconds=5))
    msg["Message-ID"] = f"<{partstat.lower()}.{stamp.timestamp():.0f}@exchange.example.se>"
    msg["Thread-Topic"] = "SIP-möte"
    msg.set_content("Svar på mötesinbjudan\n", cte="base64")
    msg.add_alternative(
        outlook_ics(uid, attendee, partstat, stamp, sequence).encode(),
        maintype="text",
        subtype="calendar",
        cte="base64",
        params={"charset": "utf-8", "method": "REPLY"},
    )
    return msg.as_bytes()


def google_ics(uid: str, attendee: str, partstat: str, stamp: datetime, sequence: int = 0) -> str:
    z = stamp.strftime("%Y%m%dT%H%M%SZ")
    return _ics(
        [
            "BEGIN:VCALENDAR",
            "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
            "VERSION:2.0",
            "CALSCALE:GREGORIAN",
            "METHOD:REPLY",
            "BEGIN:VEVENT",
            "DTSTART:20260210T080000Z",
            "DTEND:20260210T093000Z",
            f"DTSTAMP:{z}",
            "ORGANIZER;CN=SIP-påminnelser:mailto:sip-noreply@example.se",
            f"UID:{uid}",
            f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={partstat};CN=Svar S",
            f" varsson;X-NUM-GUESTS=0:mailto:{attendee}",
            "CREATED:20260202T090000Z",
            "LAST-MODIFIED:" + z,
            "LOCATION:Köpings vårdcentral\\, rum 3",
            f"SEQUENCE:{sequence}",
            "STATUS:CONFIRMED",
            "SUMMARY:SIP-möte",
            "TRANSP:OPAQUE",
            "END:VEVENT",
            "END:VCALENDAR",
        ]
    )


def google_reply(
    uid: str,
    attendee: str,
    partstat: str = "DECLINED",
    stamp: datetime = T1,
    sequence: int = 0,
    edit: Callable[[str], str] = lambda ics: ics,
) -> bytes:
    """multipart/mixed: (text/plain, text/html, text/calendar; method=REPLY) and an invite.ics attachment."""
    ics = edit(google_ics(uid, attendee, partstat, stamp, sequence))
    msg = EmailMessage()
    msg["From"] = f"Svar Svarsson <{attendee}>"
    msg["To"] = "sip-noreply@example.se"
    msg["Subject"] = f"Svar: SIP-möte ({partstat.lower()})"
    msg["Date"] = format_datetime(stamp)
    msg.set_content("Svar Svarsson har svarat på inbjudan.\n")
    msg.add_alternative("<p>Svar Svarsson har svarat på inbjudan.</p>\n", subtype="html")
    msg.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
    msg.make_mixed()
    msg.add_attachment(
        ics.encode(),
        maintype="application",
        subtype="ics",
        filename="invite.ics",
        params={"name": "invite.ics"},
    )
    return msg.as_bytes()


def plain_mail(sender: str, text: str = "Jag kommer tyvärr inte, hälsningar") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "sip-noreply@example.se"
    msg["Subject"] = "Frånvaro: SIP-möte"
    msg["Date"] = format_datetime(T1)
    msg.set_content(text)
    return msg.as_bytes()


def broken_reply(sender: str = "someone@example.se") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = "Accepted"
    msg["Date"] = format_datetime(T1)
    msg.set_content("accepted\n")
    msg.add_alternative("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nthis is not\r\n", subtype="calendar")
    part = msg.get_payload()[1]  # type: ignore[index]
    part.set_param("method", "REPLY")
    return msg.as_bytes()


def mail(
    ics: str | bytes,
    sender: str | None,
    *,
    date: datetime | None = T1,
    method: str | None = "REPLY",
    charset: str | None = "utf-8",
    cte: str = "base64",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """One text/calendar part (after a text/plain one) in a multipart/alternative message, built by hand
    so that any charset name or encoding can be declared."""
    body = ics if isinstance(ics, bytes) else ics.encode("utf-8")
    params = "".join(
        f'; {k}="{v}"' if any(c in v for c in ' ;"\\') or not v.isascii() or not v else f"; {k}={v}"
        for k, v in (("charset", charset), ("method", method))
        if v is not None
    )
    if cte == "base64":
        encoded = base64.encodebytes(body)
    elif cte == "quoted-printable":
        encoded = quopri.encodestring(body)
    else:
        encoded = body
    headers = []
    if sender is not None:
        headers.append(f"From: {sender}")
    headers += ["To: sip-kallelser@kommun.example.se", "Subject: Svar: SIP-mote"]
    if date is not None:
        headers.append(f"Date: {format_datetime(date)}")
    for k, v in (extra_headers or {}).items():
        headers.append(f"{k}: {v}")
    headers += ["MIME-Version: 1.0", 'Content-Type: multipart/alternative; boundary="=_b1"']
    head = "\r\n".join(headers).encode("utf-8")
    return (
        head
        + b"\r\n\r\n--=_b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSvar\r\n--=_b1\r\n"
        + f"Content-Type: text/calendar{params}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + encoded
        + b"\r\n--=_b1--\r\n"
    )


def reply_ics(
    uid: str,
    attendees: list[tuple[str, str]],
    *,
    stamp: datetime | None = T1,
    sequence: int | None = 0,
    method: str = "REPLY",
) -> str:
    """A minimal REPLY calendar: ``attendees`` is (address, PARTSTAT) pairs, in order."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//hostile//EN", f"METHOD:{method}"]
    lines += ["BEGIN:VEVENT", f"UID:{uid}"]
    if stamp is not None:
        lines.append(f"DTSTAMP:{stamp.strftime('%Y%m%dT%H%M%SZ')}")
    if sequence is not None:
        lines.append(f"SEQUENCE:{sequence}")
    lines += [f"ATTENDEE;PARTSTAT={p};CN=N N:mailto:{a}" for a, p in attendees]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return _ics(lines)


def forwarded(inner: bytes, forwarder: str) -> bytes:
    """``inner`` attached as message/rfc822 to a note from ``forwarder``, as "Forward as attachment" does."""
    msg = EmailMessage()
    msg["From"] = forwarder
    msg["To"] = "sip-kallelser@kommun.example.se"
    msg["Subject"] = "Fwd: Svar"
    msg["Date"] = format_datetime(T1)
    msg.set_content("Se svaret nedan.\n")
    msg.add_attachment(email.message_from_bytes(inner, policy=policy.default))
    return msg.as_bytes()


def nested(depth: int, inner_ics: str, sender: str) -> bytes:
    """A calendar reply wrapped in ``depth`` levels of multipart/mixed."""
    head = f"From: {sender}\r\nDate: {format_datetime(T1)}\r\nMIME-Version: 1.0\r\n".encode()
    opening = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(depth)
    )
    leaf = b"Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n" + inner_ics.encode()
    closing = b"".join(f"\r\n--b{i}--\r\n".encode() for i in reversed(range(depth)))
    return head + opening + leaf + closing


# --- a client answering an invitation sipflows sent --------------------------------------------------------


def invitation_calendar(invitation: bytes | Message) -> Calendar:
    """The text/calendar part of an invitation mail, parsed."""
    msg = invitation if isinstance(invitation, Message) else email.message_from_bytes(invitation)
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            assert str(part.get_param("method")).upper() == "REQUEST"
            return Calendar.from_ical(payload.decode(part.get_content_charset() or "utf-8"))
    raise AssertionError("the invitation carries no text/calendar part")


def client_reply(
    invitation: bytes | Message, attendee: str, partstat: str, now: datetime
) -> tuple[bytes, str]:
    """The REPLY a calendar client sends when ``attendee`` answers the invitation, and where it goes.

    RFC 5546 3.2.3 / RFC 6047: METHOD:REPLY; the VEVENT keeps UID, SEQUENCE, DTSTART, DTEND and
    ORGANIZER of the request, carries only the replying ATTENDEE with its PARTSTAT and a fresh DTSTAMP;
    the mail goes From the attendee To the ORGANIZER's address, in a text/calendar part with
    ``method=REPLY`` (Thunderbird also attaches it as invite.ics; so do we).
    """
    request = invitation_calendar(invitation)
    (event,) = request.walk("VEVENT")
    organizer = event["ORGANIZER"]
    organizer_address = str(organizer)[len("mailto:") :]
    mine = [a for a in event.get("ATTENDEE", []) if str(a).lower() == f"mailto:{attendee}".lower()]
    assert mine, f"{attendee} is not an attendee of the invitation"
    reply = Calendar()
    reply.add("PRODID", "-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN")
    reply.add("VERSION", "2.0")
    reply.add("METHOD", "REPLY")
    answer = Event()
    answer.add("UID", str(event["UID"]))
    answer.add("SEQUENCE", int(event["SEQUENCE"]))
    for name in ("DTSTART", "DTEND", "SUMMARY"):
        answer.add(name, event.decoded(name))
    answer.add("ORGANIZER", organizer)
    answer.add("DTSTAMP", now)
    me = vCalAddress(str(mine[0]))
    me.params["CN"] = mine[0].params.get("CN", "")
    me.params["PARTSTAT"] = partstat
    me.params["ROLE"] = mine[0].params.get("ROLE", "REQ-PARTICIPANT")
    answer.add("ATTENDEE", me)
    reply.add_component(answer)
    ics = reply.to_ical().decode()
    msg = EmailMessage()
    msg["From"] = f'"{me.params["CN"]}" <{attendee}>'
    msg["To"] = organizer_address
    msg["Subject"] = f"{partstat.title()}: {event['SUMMARY']}"
    msg["Date"] = format_datetime(now)
    msg.set_content(f"{me.params['CN']} has {partstat.lower()} your event invitation.\n")
    msg.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
    msg.make_mixed()
    msg.add_attachment(ics.encode(), maintype="application", subtype="ics", filename="invite.ics")
    (to,) = getaddresses([organizer_address])
    return msg.as_bytes(policy=policy.SMTP), to[1]

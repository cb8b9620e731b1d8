"""An iTIP REPLY (RFC 5546) read out of an email (iMIP, RFC 6047), and whose answer it is.

A message answers for its sender only. The sender is the one address in From, compared after
normalising (case, IDNA); the REPLY's ATTENDEE must be that address, and only that attendee's answer is
taken from it — a reply that names other attendees changes nothing of theirs. Calendars inside attached
or forwarded messages (``message/*`` parts) belong to someone else and are not read. From can be forged
on the internet; the receiving mail system's SPF, DKIM and DMARC checks are what make it trustworthy, and
this rule is what stops one invitee answering for another.

The message is hostile until read: it is never quoted in a reason, MIME nesting and calendar size are
bounded, only ordinary text charsets are decoded, and the ATTENDEE lines of everyone but the sender are
dropped before the calendar is parsed, so a reply with 100,000 attendees costs what one with one does.
RFC 5545 is followed where it is lenient: property and parameter names in any case, a byte-order mark
before ``BEGIN:VCALENDAR``, folded lines.
"""

from __future__ import annotations

import codecs
import email
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.policy import default as default_policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from icalendar import Calendar, Component
from icalendar.prop import vBroken

from sipflows.models import Answer
from sipflows.replies.answers import normalise_address

CALENDAR_TYPES = ("text/calendar", "application/ics")
PARTSTAT_ANSWERS = {"ACCEPTED": Answer.ACCEPTED, "TENTATIVE": Answer.TENTATIVE, "DECLINED": Answer.DECLINED}
_OTHER_PARTSTATS = frozenset({"NEEDS-ACTION", "DELEGATED", "COMPLETED", "IN-PROCESS"})  # RFC 5545 3.2.12
MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # a reply is a few kB; 100,000 attendee lines are about 7 MB
MAX_MIME_DEPTH = 16
MAX_MULTIPARTS = 100
MAX_CALENDAR_PARTS = 8
MAX_CALENDAR_LINES = 5_000  # after the lines of other attendees are dropped
MAX_COMPONENT_DEPTH = 8

# charsets a calendar part may declare (RFC 5545 wants UTF-8; clients have sent the others)
_TEXT_CHARSETS = frozenset(
    codecs.lookup(name).name
    for name in (
        "utf-8",
        "utf-8-sig",
        "us-ascii",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        *(f"iso-8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
        *(f"windows-{n}" for n in range(1250, 1259)),
        "koi8-r",
        "koi8-u",
    )
)
_CHARSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")


class RejectedReply(ValueError):
    """A message set aside for a person. The reason never quotes the message, so it can be logged."""

    category = "malformed"


class MalformedReply(RejectedReply):
    """Claims to be a calendar reply but cannot be read as one."""

    category = "malformed"


class UntrustedReply(RejectedReply):
    """A calendar reply whose answer is not its sender's to give."""

    category = "untrusted"


class NotAReply(RejectedReply):
    """No calendar reply at all: a note, an out-of-office, a forwarded invitation."""

    category = "not_replies"


@dataclass(frozen=True)
class ItipAnswer:
    uid: str
    attendee: str  # the normalised address, which is also the message's sender
    answer: Answer
    answered_at: datetime | None  # what the reply claims (DTSTAMP, else Date), aware UTC; None if neither
    sequence: int | None


@dataclass(frozen=True)
class ReplyMessage:
    answer: ItipAnswer
    other_attendees: int  # ATTENDEE lines of people other than the sender: ignored


# --- the sender -------------------------------------------------------------------------------------------


def message_sender(msg: Message) -> str:
    """The one address in the message's one From header, normalised; ``UntrustedReply`` otherwise.

    Two parsers must agree on it (the standard library's strict header parser and ``getaddresses``), so
    an address crafted to be read one way by one of them and another way by the other is refused.
    """
    values = msg.get_all("From") or []
    if len(values) != 1:
        raise UntrustedReply("the message has no single From header")
    raw = str(values[0])
    try:
        header: Any = default_policy.header_factory("From", raw)
        strict = [a.addr_spec for a in header.addresses]
        grouped = any(g.display_name is not None for g in header.groups)
    except Exception:  # the header parser raises several kinds on hostile input
        raise UntrustedReply("From cannot be read") from None
    if grouped:
        raise UntrustedReply("From names a group, not a mailbox")
    loose = [address for _, address in getaddresses([raw]) if address]
    if len(strict) != 1 or len(loose) != 1:
        raise UntrustedReply("From does not name exactly one address")
    sender = normalise_address(strict[0])
    if sender is None or sender != normalise_address(loose[0]):
        raise UntrustedReply("From is not a usable address")
    return sender


def _message_date(msg: Message) -> datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --- MIME ---------------------------------------------------------------------------------------------------


def own_parts(msg: Message) -> Iterator[Message]:
    """The leaf parts of the message itself, depth first, without descending into attached or forwarded
    messages (``message/*``): their calendars are somebody else's. Iterative and depth-bounded."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if depth > MAX_MIME_DEPTH:
            raise MalformedReply(f"MIME parts are nested more than {MAX_MIME_DEPTH} levels deep")
        if part.get_content_maintype() == "message":
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
            continue
        yield part


def _charset(part: Message, where: str) -> str:
    raw = part.get_param("charset")
    if raw is None:
        return "utf-8"  # RFC 5545 3.1.4
    if not isinstance(raw, str):  # RFC 2231 form: no client writes a charset that way
        raise MalformedReply(f"{where} declares a charset that cannot be read")
    declared = raw.strip().strip('"').lower()
    if not _CHARSET_NAME.fullmatch(declared):
        raise MalformedReply(f"{where} declares a charset that cannot be read")
    try:
        name = codecs.lookup(declared).name
    except (LookupError, ValueError):
        raise MalformedReply(f"{where} declares an unknown charset") from None
    if name not in _TEXT_CHARSETS:
        raise MalformedReply(f"{where} declares a charset calendars are not written in")
    return name


def _text(part: Message, where: str) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload.strip():
        raise MalformedReply(f"{where} is empty")
    try:
        text = payload.decode(_charset(part, where))
    except UnicodeError:
        raise MalformedReply(f"{where} is not text in its declared charset") from None
    return text.lstrip("\ufeff \t\r\n")  # RFC 5545 3.1.4: a BOM may precede BEGIN:VCALENDAR


# --- the calendar ----------------------------------------------------------------------------------------


def _value_of(line: str) -> str:
    """The value of a content line: after the first colon outside a quoted parameter value."""
    if '"' not in line:
        return line.partition(":")[2]
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return line[i + 1 :]
    return ""


def _unfolded_lines(text: str) -> list[str]:
    """RFC 5545 3.1: a line break followed by a space or tab continues the line."""
    text = text.replace("\r\n", "\n")
    if "\n " in text or "\n\t" in text:
        text = text.replace("\n ", "").replace("\n\t", "")
    return text.split("\n")


def _senders_lines(text: str, sender: str, where: str) -> tuple[str, int, int]:
    """The calendar with only the sender's ATTENDEE lines, and how many lines of the sender's and of
    others it had. Bounds the size and the component nesting of what is left for the parser."""
    kept: list[str] = []
    own = others = depth = 0
    local = sender.rpartition("@")[0]
    for line in _unfolded_lines(text):
        if not line or line[0] in " \t":
            continue  # no content line (a fold was already undone)
        first = line[0]
        if first in "Aa" and line[:8].upper() == "ATTENDEE" and line[8:9] in (";", ":"):
            value = _value_of(line) if '"' in line else line.partition(":")[2]
            folded = value.casefold()
            # cheap test first: normalising changes the local part only by percent-decoding
            if ("%" in folded or local in folded) and normalise_address(value) == sender:
                own += 1
                kept.append(line)
            else:
                others += 1
            continue
        if first in "BbEe":
            head = line[:6].upper()
            if head == "BEGIN:":
                depth += 1
                if depth > MAX_COMPONENT_DEPTH:
                    raise MalformedReply(f"{where}: components are nested too deeply")
            elif head.startswith("END:"):
                depth -= 1
        kept.append(line)
        if len(kept) > MAX_CALENDAR_LINES:
            raise MalformedReply(f"{where} is too large for a calendar reply")
    return "\r\n".join(kept) + "\r\n", own, others


def _first_bad_line(text: str) -> int | None:
    """The physical line number of the first line that is no iCalendar content line (RFC 5545 3.1)."""
    pattern = re.compile(r"^[A-Za-z0-9-]+[;:]")
    for number, line in enumerate(text.splitlines(), start=1):
        if line and line[0] not in " \t" and not pattern.match(line):
            return number
    return None


def _parse(text: str, original: str, where: str) -> Calendar:
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except Exception:  # icalendar raises several kinds; the reason must not quote the content
        line = _first_bad_line(original)
        at = f" (line {line})" if line else ""
        raise MalformedReply(f"{where} is not valid iCalendar{at}") from None
    if len(calendars) > 1:
        raise MalformedReply(f"{where} holds more than one calendar")
    if not calendars or not isinstance(calendars[0], Calendar):
        raise MalformedReply(f"{where} is not valid iCalendar (no complete VCALENDAR)")
    return calendars[0]


def _prop(component: Component, name: str, where: str) -> Any:
    value = component.get(name)
    if isinstance(value, vBroken) or (isinstance(value, list) and name != "ATTENDEE"):
        raise MalformedReply(f"{where}: {name} cannot be read")
    return value


def _stamp(event: Component, where: str, date_header: datetime | None) -> datetime | None:
    stamp = _prop(event, "DTSTAMP", where)
    if stamp is None:
        return date_header
    dt = getattr(stamp, "dt", None)
    if not isinstance(dt, datetime):
        raise MalformedReply(f"{where}: DTSTAMP is not a date-time")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _sequence(event: Component, where: str) -> int | None:
    seq = _prop(event, "SEQUENCE", where)
    try:
        return None if seq is None else int(str(seq))
    except ValueError:
        raise MalformedReply(f"{where}: SEQUENCE is not a number") from None


def _partstats(event: Component, where: str) -> set[str]:
    attendees = _prop(event, "ATTENDEE", where)
    found: set[str] = set()
    for attendee in attendees if isinstance(attendees, list) else [attendees] if attendees else []:
        if isinstance(attendee, vBroken):
            raise MalformedReply(f"{where}: ATTENDEE cannot be read")
        params = getattr(attendee, "params", {})
        found.add(str(params.get("PARTSTAT", "NEEDS-ACTION")).upper())
    return found


@dataclass(frozen=True)
class _EventAnswer:
    uid: str
    partstats: frozenset[str]
    answered_at: datetime | None
    sequence: int | None


def _part_answers(
    part: Message, where: str, sender: str, date_header: datetime | None
) -> tuple[list[_EventAnswer], int] | None:
    """The sender's answers in one calendar part and how many other attendees it names; None when the
    part is not a REPLY."""
    declared = str(part.get_param("method") or "").strip().upper()
    original = _text(part, where)
    text, _, others = _senders_lines(original, sender, where)
    calendar = _parse(text, original, where)
    method = str(_prop(calendar, "METHOD", where) or declared).strip().upper()
    if method != "REPLY":
        return None
    events = [e for e in calendar.walk("VEVENT") if e.get("RECURRENCE-ID") is None]
    if not events:
        raise MalformedReply(f"{where}: REPLY has no VEVENT for a single meeting")
    answers = []
    for event in events:
        uid = _prop(event, "UID", where)
        if uid is None or not str(uid).strip():
            raise MalformedReply(f"{where}: VEVENT has no UID")
        answers.append(
            _EventAnswer(
                str(uid).strip(),
                frozenset(_partstats(event, where)),
                _stamp(event, where, date_header),
                _sequence(event, where),
            )
        )
    return answers, others


def read_reply(raw: bytes) -> ReplyMessage:
    """The one answer a message may give: its sender's, to one meeting. Raises ``NotAReply``,
    ``MalformedReply`` or ``UntrustedReply`` (a :class:`RejectedReply`) with a reason fit for a log."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedReply(f"the message is larger than {MAX_MESSAGE_BYTES // 2**20} MB")
    if raw.lower().count(b"multipart/") > MAX_MULTIPARTS:  # before the parser recurses into them
        raise MalformedReply(f"the message has more than {MAX_MULTIPARTS} multipart parts")
    try:
        msg = email.message_from_bytes(raw)
        parts = [p for p in own_parts(msg) if p.get_content_type() in CALENDAR_TYPES]
    except RecursionError:
        raise MalformedReply("the MIME structure is nested too deeply") from None
    if not parts:
        raise NotAReply("not a calendar reply (no text/calendar part of its own)")
    # an invitation or cancellation forwarded here says so in its part: not ours to read
    parts = [p for p in parts if str(p.get_param("method") or "REPLY").strip().upper() == "REPLY"]
    if not parts:
        raise NotAReply("not a calendar reply (its calendar parts are no METHOD:REPLY)")
    if len(parts) > MAX_CALENDAR_PARTS:
        raise MalformedReply(f"the message has more than {MAX_CALENDAR_PARTS} calendar parts")
    sender = message_sender(msg)
    date_header = _message_date(msg)
    found: set[_EventAnswer] = set()
    others = 0
    replies = 0
    for n, part in enumerate(parts, start=1):
        where = f"{part.get_content_type()} part {n}"
        try:
            read = _part_answers(part, where, sender, date_header)
        except RecursionError:
            raise MalformedReply(f"{where} is nested too deeply") from None
        if read is None:
            continue
        replies += 1
        answers, other = read
        found.update(answers)
        others = max(others, other)  # Google repeats the same calendar as an attachment
    if not replies:
        raise NotAReply("not a calendar reply (no METHOD:REPLY)")
    if len({a.uid for a in found}) != 1:
        raise MalformedReply("the REPLY answers more than one meeting")
    own = {a for a in found if a.partstats}
    if not own:
        if others:
            raise UntrustedReply("the REPLY's ATTENDEE is not its sender (From)")
        raise MalformedReply("the REPLY has no ATTENDEE")
    if len(own) != 1 or len(next(iter(own)).partstats) != 1:
        raise MalformedReply("the REPLY gives the sender more than one answer")
    (event,) = own
    (partstat,) = event.partstats
    answer = PARTSTAT_ANSWERS.get(partstat)
    if answer is None:
        said = partstat if partstat in _OTHER_PARTSTATS else "unknown"
        raise MalformedReply(f"the REPLY's answer is {said}, not accepted, tentative or declined")
    return ReplyMessage(ItipAnswer(event.uid, sender, answer, event.answered_at, event.sequence), others)


def parse_itip_reply(raw: bytes) -> list[ItipAnswer]:
    """The sender's answer in a message, as a list: ``[]`` when it is no calendar reply. Raises
    ``MalformedReply`` or ``UntrustedReply`` otherwise."""
    try:
        return [read_reply(raw).answer]
    except NotAReply:
        return []

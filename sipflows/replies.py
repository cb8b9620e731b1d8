"""Invitation answers into the register: iTIP REPLY messages from IMAP or a folder, and answers by phone.

An answer is state, not an event: applying one twice leaves the register as it was, and an answer only
replaces a stored one that is older, so replies may arrive late, twice or out of order. A reply to an
earlier SEQUENCE of the meeting (before it was moved) is not an answer to the meeting as it stands.

Answers for meetings of closed plans are not recorded: closure (or withdrawn consent) freezes the plan
and the register should not go on processing data about it. They are logged and counted as ``closed``,
and the message counts as handled.

Each message is applied in its own transaction and only marked handled (IMAP ``\\Seen``, file moved to
``processed/``) after its commit, so a run killed at any point is simply run again.
"""

from __future__ import annotations

import base64
import email
import email.policy
import enum
import imaplib
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from icalendar import Calendar, Component
from icalendar.prop import vBroken
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from sipflows.db import session_scope
from sipflows.models import Answer, CaseStatus, Contact, Invitation, Meeting
from sipflows.settings import Settings

log = logging.getLogger(__name__)

IMAP_TIMEOUT_SECONDS = 60.0
PROCESSED_DIR = "processed"
REJECTED_DIR = "rejected"
CALENDAR_TYPES = ("text/calendar", "application/ics")
PARTSTAT_ANSWERS = {"ACCEPTED": Answer.ACCEPTED, "TENTATIVE": Answer.TENTATIVE, "DECLINED": Answer.DECLINED}


# --- recording one answer -------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # matched, but a newer answer (or a later version of the meeting) is already known
    CLOSED = "closed"  # the meeting's plan is closed: nothing is recorded
    UNKNOWN_MEETING = "unknown_meeting"
    UNKNOWN_ATTENDEE = "unknown_attendee"

    @property
    def matched(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.STALE)


def _email_key(address: str) -> str:
    address = address.strip()
    if address.lower().startswith("mailto:"):
        address = address[len("mailto:") :]
    return address.strip().casefold()


def _domain(address: str) -> str:
    """Only the domain goes into logs: the mailbox name is personal data."""
    return address.rpartition("@")[2] or "?"


def _apply(
    invitations: list[Invitation],
    meeting: Meeting,
    answer: Answer,
    answered_at: datetime,
    source: str,
    sequence: int | None,
) -> Outcome:
    if meeting.case.status == CaseStatus.CLOSED:
        log.warning("answer from %s for meeting %s not recorded: its plan is closed", source, meeting.code)
        return Outcome.CLOSED
    if sequence is not None and sequence < meeting.sequence:
        log.info(
            "answer from %s for meeting %s answers SEQUENCE %d, the meeting is at %d: not recorded",
            source,
            meeting.code,
            sequence,
            meeting.sequence,
        )
        return Outcome.STALE
    outcome = Outcome.STALE
    for inv in invitations:
        if inv.answered_at is not None and inv.answered_at >= answered_at:
            continue
        inv.answer = answer
        inv.answered_at = answered_at
        outcome = Outcome.APPLIED
    if outcome is Outcome.STALE:
        log.info("answer from %s for meeting %s is older than the stored one: kept", source, meeting.code)
    else:
        log.info("recorded %s from %s for meeting %s", answer.value, source, meeting.code)
    return outcome


def apply_answer(
    session: Session,
    uid: str,
    attendee_email: str,
    answer: Answer,
    answered_at: datetime,
    source: str,
    *,
    sequence: int | None = None,
) -> Outcome:
    """Record one attendee's answer to the meeting with iCalendar ``uid``; see :class:`Outcome`.

    The attendee is matched case-insensitively on the invited contact's email. When several invited
    contacts share that address (a functional mailbox), the answer is theirs all. ``sequence`` is the
    SEQUENCE the reply answers, when it says: a reply to an earlier version of the meeting is stale.
    Does not commit.
    """
    if answered_at.tzinfo is None:
        raise ValueError("answered_at must be an aware datetime")
    meeting = session.scalars(
        select(Meeting)
        .where(Meeting.ical_uid == uid.strip())
        .options(
            selectinload(Meeting.invitations).selectinload(Invitation.contact), selectinload(Meeting.case)
        )
    ).one_or_none()
    if meeting is None:
        log.warning("answer from %s ignored: no meeting has its UID", source)
        return Outcome.UNKNOWN_MEETING
    key = _email_key(attendee_email)
    invitations = [inv for inv in meeting.invitations if _email_key(inv.contact.email) == key]
    if not invitations:
        log.warning(
            "answer from %s ignored: meeting %s has no invitation for that attendee (domain %s)",
            source,
            meeting.code,
            _domain(key),
        )
        return Outcome.UNKNOWN_ATTENDEE
    return _apply(invitations, meeting, answer, answered_at, source, sequence)


def record_answer(
    session: Session,
    uid: str,
    attendee_email: str,
    answer: Answer,
    answered_at: datetime,
    source: str,
    *,
    sequence: int | None = None,
) -> bool:
    """True when the meeting and the attendee's invitation were found (the answer stored, or a newer
    one kept); False for an unknown UID or attendee, or a meeting of a closed plan. Does not commit."""
    return apply_answer(session, uid, attendee_email, answer, answered_at, source, sequence=sequence).matched


class RegisterLookupError(LookupError):
    """A code given by a person (on the command line) that the register does not know."""


def record_phone_answer(
    session: Session, meeting_code: str, contact_code: str, answer: Answer, answered_at: datetime
) -> Outcome:
    """An answer given by phone, recorded against exactly that contact's invitation. Does not commit."""
    if answered_at.tzinfo is None:
        raise ValueError("answered_at must be an aware datetime")
    if answer is Answer.NONE:
        raise ValueError("a phone answer is accepted, tentative or declined")
    meeting = session.scalars(
        select(Meeting).where(Meeting.code == meeting_code).options(selectinload(Meeting.case))
    ).one_or_none()
    if meeting is None:
        raise RegisterLookupError(f"no meeting with code {meeting_code!r}")
    inv = session.scalars(
        select(Invitation)
        .join(Contact)
        .where(Invitation.meeting_id == meeting.id, Contact.code == contact_code)
    ).one_or_none()
    if inv is None:
        raise RegisterLookupError(f"meeting {meeting_code} has no invitation for contact {contact_code!r}")
    return _apply([inv], meeting, answer, answered_at, f"phone ({contact_code})", None)


# --- reading iTIP REPLY messages ------------------------------------------------------------------------


class MalformedReply(ValueError):
    """A message that claims to be a calendar reply but cannot be read as one. The reason never quotes
    the message, so it can be logged."""


@dataclass(frozen=True)
class ItipAnswer:
    uid: str
    attendee: str  # the address, without mailto:
    answer: Answer
    answered_at: datetime  # aware UTC
    sequence: int | None


def _message_date(msg: Message) -> datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _calendar_parts(msg: Message) -> Iterator[tuple[str, Message]]:
    """Each calendar part with a name a person can find it by: ``text/calendar part 1``."""
    parts = (p for p in msg.walk() if p.get_content_type() in CALENDAR_TYPES)
    for n, part in enumerate(parts, start=1):
        yield f"{part.get_content_type()} part {n}", part


_CONTENT_LINE = re.compile(r"^[A-Za-z0-9-]+[;:]")


def _first_bad_line(text: str) -> int | None:
    """The physical line number of the first line that is no iCalendar content line (RFC 5545 3.1)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line and line[0] not in " \t" and not _CONTENT_LINE.match(line):
            return number
    return None


def _read_calendar(part: Message, where: str) -> Calendar:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload.strip():
        raise MalformedReply(f"{where} is empty")
    try:
        text = payload.decode(part.get_content_charset() or "utf-8")
    except (LookupError, UnicodeDecodeError):
        raise MalformedReply(f"{where} is not text in its declared charset") from None
    try:
        return Calendar.from_ical(text)
    except Exception as exc:  # icalendar raises several kinds; the reason must not quote the content
        line = getattr(exc, "line_number", None) or _first_bad_line(text)
        at = f" (line {line})" if line else ""
        raise MalformedReply(f"{where} is not valid iCalendar{at}") from None


def _prop(component: Component, name: str, where: str) -> Any:
    value = component.get(name)
    if isinstance(value, vBroken):
        raise MalformedReply(f"{where}: {name} cannot be read")
    return value


def _event_answers(event: Component, where: str, fallback_at: datetime | None) -> list[ItipAnswer]:
    uid = _prop(event, "UID", where)
    if uid is None or not str(uid).strip():
        raise MalformedReply(f"{where}: VEVENT has no UID")
    stamp = _prop(event, "DTSTAMP", where)
    if stamp is None:
        if fallback_at is None:
            raise MalformedReply(f"{where}: no DTSTAMP and no readable Date header")
        answered_at = fallback_at
    else:
        dt = getattr(stamp, "dt", None)
        if not isinstance(dt, datetime):
            raise MalformedReply(f"{where}: DTSTAMP is not a date-time")
        answered_at = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    seq = _prop(event, "SEQUENCE", where)
    try:
        sequence = None if seq is None else int(str(seq))
    except ValueError:
        raise MalformedReply(f"{where}: SEQUENCE is not a number") from None
    attendees = _prop(event, "ATTENDEE", where)
    if attendees is None:
        raise MalformedReply(f"{where}: REPLY has no ATTENDEE")
    out: list[ItipAnswer] = []
    for attendee in attendees if isinstance(attendees, list) else [attendees]:
        if isinstance(attendee, vBroken):
            raise MalformedReply(f"{where}: ATTENDEE cannot be read")
        address = _email_key(str(attendee))
        if "@" not in address:
            raise MalformedReply(f"{where}: ATTENDEE is not an email address")
        params = getattr(attendee, "params", {})
        partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
        if partstat in PARTSTAT_ANSWERS:
            out.append(
                ItipAnswer(str(uid).strip(), address, PARTSTAT_ANSWERS[partstat], answered_at, sequence)
            )
    return out


def parse_itip_reply(raw: bytes) -> list[ItipAnswer]:
    """The answers an email carries as iTIP REPLY (RFC 5546), in any text/calendar or application/ics
    part: one per attendee and event. ``[]`` when the message is not a calendar reply (a note, an
    out-of-office, a forwarded invitation). Raises :class:`MalformedReply` for a REPLY that cannot be read,
    or one that carries no ACCEPTED/TENTATIVE/DECLINED attendee (a delegation: a person should look)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    fallback_at = _message_date(msg)
    answers: dict[ItipAnswer, None] = {}  # ordered set: Google sends the same calendar twice
    replies = 0
    for where, part in _calendar_parts(msg):
        declared = str(part.get_param("method") or "").upper()
        if declared and declared != "REPLY":
            continue  # an invitation or cancellation forwarded here: not ours to read
        calendar = _read_calendar(part, where)
        method = str(calendar.get("METHOD") or declared).upper()
        if method != "REPLY":
            continue
        replies += 1
        events = [e for e in calendar.walk("VEVENT") if e.get("RECURRENCE-ID") is None]
        if not events:
            raise MalformedReply(f"{where}: REPLY has no VEVENT for a single meeting")
        for event in events:
            for answer in _event_answers(event, where, fallback_at):
                answers[answer] = None
    if replies and not answers:
        raise MalformedReply("REPLY has no attendee who accepted, declined or answered tentatively")
    return list(answers)


# --- ingesting messages ---------------------------------------------------------------------------------


class ReplyIngestError(RuntimeError):
    """The source of replies cannot be read at all (no folder, IMAP refused): the run stops."""


class PartialIngestError(ReplyIngestError):
    """Some configured sources failed; ``summaries`` holds what the others did."""

    def __init__(self, message: str, summaries: dict[str, ReplySummary]) -> None:
        super().__init__(message)
        self.summaries = summaries


@dataclass
class ReplySummary:
    """Counts of one ingest run. Messages: ``messages`` = handled + malformed + not_replies; answers (a
    message may carry several): ``matched`` (of which ``applied`` changed the register, ``stale`` did not),
    ``unknown`` (UID or attendee not in the register) and ``closed`` (plan closed, not recorded)."""

    messages: int = 0
    malformed: int = 0
    not_replies: int = 0
    matched: int = 0
    applied: int = 0
    stale: int = 0
    unknown: int = 0
    closed: int = 0

    def __add__(self, other: ReplySummary) -> ReplySummary:
        return ReplySummary(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        return ", ".join(f"{f.name.replace('_', ' ')} {getattr(self, f.name)}" for f in fields(self))


class _Disposition(enum.Enum):
    HANDLED = "handled"
    REJECTED = "rejected"


def _ingest_message(
    engine: Engine, raw: bytes, source: str, now: datetime, summary: ReplySummary
) -> tuple[_Disposition, str]:
    """Apply one message in its own transaction; the reason says why a rejected one was set aside."""
    summary.messages += 1
    try:
        answers = parse_itip_reply(raw)
    except MalformedReply as exc:
        log.warning("%s rejected: %s", source, exc)
        summary.malformed += 1
        return _Disposition.REJECTED, f"malformed calendar reply: {exc}"
    if not answers:
        log.info("%s is not a calendar reply: set aside for a person", source)
        summary.not_replies += 1
        return _Disposition.REJECTED, "not a calendar reply (no text/calendar part with METHOD:REPLY)"
    with session_scope(engine) as session:
        # an answer cannot be given after it was received: a sender's clock ahead of ours is capped
        outcomes = [
            apply_answer(
                session, a.uid, a.attendee, a.answer, min(a.answered_at, now), source, sequence=a.sequence
            )
            for a in answers
        ]
    for outcome in outcomes:
        summary.matched += outcome.matched
        summary.applied += outcome is Outcome.APPLIED
        summary.stale += outcome is Outcome.STALE
        summary.closed += outcome is Outcome.CLOSED
        summary.unknown += outcome in (Outcome.UNKNOWN_MEETING, Outcome.UNKNOWN_ATTENDEE)
    return _Disposition.HANDLED, ", ".join(o.value for o in outcomes)


def _move_into(path: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}-{n}{path.suffix}"
        n += 1
    os.replace(path, target)
    return target


def ingest_folder(engine: Engine, folder: Path, now: datetime) -> ReplySummary:
    """Every ``*.eml`` directly in ``folder``, oldest name first: handled ones move to ``processed/``,
    malformed and non-replies to ``rejected/`` (with a ``.reason.txt`` beside), so a rerun finds only
    what is new."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not folder.is_dir():
        raise ReplyIngestError(f"replies folder {folder} does not exist")
    summary = ReplySummary()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".eml"):
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # taken by a concurrent run
            continue
        disposition, reason = _ingest_message(engine, raw, f"file {path.name}", now, summary)
        try:
            if disposition is _Disposition.HANDLED:
                _move_into(path, folder / PROCESSED_DIR)
            else:
                moved = _move_into(path, folder / REJECTED_DIR)
                moved.with_name(moved.name + ".reason.txt").write_text(
                    f"{now.isoformat()} {reason}\n", encoding="utf-8"
                )
        except FileNotFoundError:
            continue
    log.info("replies folder %s: %s", folder, summary.describe())
    return summary


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3): "Svar på" is sent as "Svar p&AOU-"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quote_mailbox(name: str) -> str:
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_login(conn: imaplib.IMAP4, user: str, password: Callable[[], str]) -> None:
    """LOGIN carries ASCII only; a UTF-8 user or password (å, ä, ö) goes by SASL PLAIN."""
    try:
        user.encode("ascii")
        password().encode("ascii")
    except UnicodeEncodeError:
        if "AUTH=PLAIN" not in conn.capabilities:
            raise ReplyIngestError(
                "IMAP: non-ASCII credentials need AUTH=PLAIN, which the server lacks"
            ) from None
        conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password()}".encode())
        return
    conn.login(user, password())


def _connect(settings: Settings) -> imaplib.IMAP4:
    host, port = settings.imap_host, settings.imap_port
    if not host:
        raise ReplyIngestError("IMAP is not configured: set SIPFLOWS_IMAP_HOST")
    if not settings.imap_username or settings.imap_password is None:
        raise ReplyIngestError("IMAP needs SIPFLOWS_IMAP_USERNAME and SIPFLOWS_IMAP_PASSWORD")
    secret = settings.imap_password
    try:
        if settings.imap_ssl:
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, timeout=IMAP_TIMEOUT_SECONDS)
        else:
            conn = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT_SECONDS)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ReplyIngestError(f"cannot reach IMAP server {host}:{port}: {exc}") from None
    try:
        _imap_login(conn, settings.imap_username, secret.get_secret_value)
    except imaplib.IMAP4.error:
        conn.shutdown()
        raise ReplyIngestError(
            f"IMAP server {host}:{port} refused the login of {settings.imap_username}"
        ) from None
    except BaseException:
        conn.shutdown()
        raise
    return conn


def _fetched_message(data: list[object]) -> bytes | None:
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def ingest_imap(engine: Engine, settings: Settings, now: datetime) -> ReplySummary:
    """Every unseen message in ``settings.imap_folder``. Messages are read with ``BODY.PEEK[]`` (which
    leaves them unseen) and flagged ``\\Seen`` only after their answers are committed; malformed messages
    and non-replies are also flagged ``\\Flagged`` for a person to look at. A run that dies midway leaves
    the rest unseen for the next run."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    summary = ReplySummary()
    conn = _connect(settings)
    where = f"IMAP {settings.imap_host}/{settings.imap_folder}"
    try:
        typ, data = conn.select(_quote_mailbox(settings.imap_folder))
        if typ != "OK":
            raise ReplyIngestError(f"{where}: cannot open the folder")
        typ, data = conn.uid("SEARCH", "UNSEEN")
        if typ != "OK":
            raise ReplyIngestError(f"{where}: search for unseen messages failed")
        uids = [u.decode() for u in (data[0] or b"").split()] if data and isinstance(data[0], bytes) else []
        for uid in uids:
            typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = _fetched_message(list(data)) if typ == "OK" else None
            if raw is None:
                log.warning("%s: message uid %s could not be fetched; left for the next run", where, uid)
                continue
            disposition, _ = _ingest_message(engine, raw, f"IMAP message uid {uid}", now, summary)
            flags = r"(\Seen)" if disposition is _Disposition.HANDLED else r"(\Seen \Flagged)"
            typ, _ = conn.uid("STORE", uid, "+FLAGS.SILENT", flags)
            if typ != "OK":
                log.warning("%s: could not flag message uid %s; it will be read again", where, uid)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ReplyIngestError(f"{where}: connection failed: {exc}") from None
    finally:
        with suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
    log.info("%s: %s", where, summary.describe())
    return summary


EXCHANGE_LOOKBACK = timedelta(days=90)


def ingest_configured(
    engine: Engine, settings: Settings, now: datetime, *, since: datetime | None = None
) -> dict[str, ReplySummary]:
    """Every configured source of answers: Exchange (when an Exchange server is set; the attendee
    responses of meetings ending at or after ``since``, default 90 days back), IMAP (``imap_host``) and
    the replies folder (``replies_dir``). A source that cannot be read does not keep the others from
    running; its error is raised after them, so the run still fails visibly."""
    summaries: dict[str, ReplySummary] = {}
    errors: list[str] = []
    if settings.exchange_server or settings.exchange_service_endpoint:
        from sipflows.replies_exchange import poll_exchange_responses

        try:
            with session_scope(engine) as session:
                summaries["exchange"] = poll_exchange_responses(
                    settings, session, since or now - EXCHANGE_LOOKBACK, now
                )
        except ReplyIngestError as exc:
            errors.append(str(exc))
    if settings.imap_host:
        try:
            summaries["imap"] = ingest_imap(engine, settings, now)
        except ReplyIngestError as exc:
            errors.append(str(exc))
    if settings.replies_dir is not None:
        try:
            summaries["folder"] = ingest_folder(engine, settings.replies_dir, now)
        except ReplyIngestError as exc:
            errors.append(str(exc))
    if errors:
        raise PartialIngestError("; ".join(errors), summaries)
    return summaries

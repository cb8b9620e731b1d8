"""Answers into the register: the one place that decides whether an answer may change an invitation.

Every source ends here — iTIP REPLY mail (IMAP, a folder), a calendar service's attendee responses
(Exchange over EWS, Exchange Online over Microsoft Graph: :func:`apply_calendar_responses`) and answers
given by phone — so the rules are the same for all of them:

- An answer changes only the invitation of the attendee it is from (contacts sharing one functional
  mailbox share its answer). Whether the attendee really sent it is the source's business: a mail source
  only passes on the answer of the message's sender, a calendar service answers for its own attendees.
- Answers for cancelled meetings and for closed plans (or withdrawn consent) are not recorded: the plan is
  frozen and the register should not go on processing data about it.
- An answer is state, not an event: it only replaces an older one, so replies may arrive late, twice or out
  of order. An answer to an earlier version of the meeting (a lower SEQUENCE, or given before the meeting
  was last changed) is stale; one to a SEQUENCE that was never sent is not believed.
- The time an answer claims (DTSTAMP, a response time) is believed only between the sending of the
  invitation and the receipt of the answer (plus a small clock skew); otherwise the receipt time is used,
  so a forged date can neither bury a later answer nor outlive it. The same answer read again without a
  time of its own (a calendar service polled every quarter hour) keeps the time it was first recorded at.

Each meeting is looked up once, with its invitations, however many answers for it are applied.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.orm import Session

from sipflows.models import Answer, CaseStatus, Contact, Invitation, Meeting, MeetingStatus, SipCase

log = logging.getLogger("sipflows.replies")

CLOCK_SKEW = timedelta(minutes=10)  # how far ahead of the receipt a sender's clock may be believed
MAX_UID_LENGTH = 255
LOOKUP_CHUNK = 500  # UIDs per look-up statement: well inside every database's limit on bound parameters
_SPACE = re.compile(r"\s")


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # matched, but a newer answer (or a later version of the meeting) is already known
    CLOSED = "closed"  # the meeting's plan is closed or its consent withdrawn: nothing is recorded
    CANCELLED = "cancelled"  # the meeting is cancelled: nothing is recorded
    CONVENER = "convener"  # the plan's convener answered their own copy; they have no invitation to answer
    UNKNOWN_MEETING = "unknown_meeting"
    UNKNOWN_ATTENDEE = "unknown_attendee"  # the meeting is ours, the attendee is not invited to it
    UNSENT_VERSION = "unsent_version"  # answers a SEQUENCE above any sipflows sent

    @property
    def matched(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.STALE)

    @property
    def set_aside(self) -> bool:
        """Whether a message carrying this answer is put aside for a person to look at."""
        return self in (Outcome.UNKNOWN_MEETING, Outcome.UNKNOWN_ATTENDEE, Outcome.UNSENT_VERSION)


def normalise_address(value: str) -> str | None:
    """An email address (or a ``mailto:`` calendar address) as it is compared: case-folded, the domain
    in its ASCII (IDNA) form; None when it is not a plain ``local@domain``."""
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = unquote(text[7:]).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if len(text) > 254 or not text.isprintable() or _SPACE.search(text):
        return None
    local, at, domain = text.rpartition("@")
    domain = domain.rstrip(".")
    if not at or not local or not domain or "@" in local.strip('"'):
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return f"{local.casefold()}@{domain.lower()}"


def address_key(value: str) -> str:
    """The comparison key of a stored contact address (never None: a bad one simply matches nothing)."""
    return normalise_address(value) or value.strip().casefold()


def domain_of(address: str) -> str:
    """Only the domain goes into logs: the mailbox name is personal data."""
    return address.rpartition("@")[2] or "?"


def trusted_time(claimed: datetime | None, received: datetime, sent_at: datetime | None) -> datetime:
    """The answer's time: what it claims, if that lies between the sending and the receipt (with
    :data:`CLOCK_SKEW`); the receipt time otherwise. Never after the receipt."""
    if claimed is None:
        return received
    if sent_at is not None and claimed < sent_at:
        return received
    if claimed > received + CLOCK_SKEW:
        return received
    return min(claimed, received)


# --- one meeting and its invitations ---------------------------------------------------------------------


@dataclass
class MeetingAnswers:
    """A meeting with everything the answers to it are judged on, read in two queries."""

    meeting: Meeting
    case_status: CaseStatus
    consent_withdrawn: bool
    convener_key: str
    by_address: dict[str, list[Invitation]]

    @property
    def plan_closed(self) -> bool:
        return self.case_status == CaseStatus.CLOSED or self.consent_withdrawn

    def apply(
        self,
        attendee: str,
        answer: Answer,
        claimed_at: datetime | None,
        received_at: datetime,
        source: str,
        *,
        sequence: int | None = None,
        after_change: bool = False,
    ) -> Outcome:
        """Judge and record one attendee's answer; see the module's rules. Does not commit.

        ``sequence`` is the SEQUENCE an iTIP reply answers, when it says; ``after_change`` (calendar
        services, which have no SEQUENCE) makes an answer given before the meeting's last change stale.
        """
        m = self.meeting
        key = address_key(attendee)
        invitations = self.by_address.get(key)
        if not invitations:
            if key == self.convener_key:
                log.info(
                    "answer from %s for meeting %s is the convener's own: nothing to record", source, m.code
                )
                return Outcome.CONVENER
            log.warning(
                "answer from %s ignored: meeting %s has no invitation for that attendee (domain %s)",
                source,
                m.code,
                domain_of(key),
            )
            return Outcome.UNKNOWN_ATTENDEE
        if self.plan_closed:
            log.warning("answer from %s for meeting %s not recorded: its plan is closed", source, m.code)
            return Outcome.CLOSED
        if m.status == MeetingStatus.CANCELLED:
            log.warning("answer from %s for meeting %s not recorded: it is cancelled", source, m.code)
            return Outcome.CANCELLED
        if sequence is not None and sequence > m.sequence:
            log.warning(
                "answer from %s for meeting %s answers SEQUENCE %d, never sent (the meeting is at %d)",
                source,
                m.code,
                sequence,
                m.sequence,
            )
            return Outcome.UNSENT_VERSION
        if sequence is not None and sequence < m.sequence:
            log.info(
                "answer from %s for meeting %s answers SEQUENCE %d, the meeting is at %d: not recorded",
                source,
                m.code,
                sequence,
                m.sequence,
            )
            return Outcome.STALE
        outcome = Outcome.STALE
        for inv in invitations:
            at = trusted_time(claimed_at, received_at, inv.sent_at)
            if after_change and m.updated_at is not None and at < m.updated_at:
                log.info("answer from %s for meeting %s predates its last change: stale", source, m.code)
                continue
            if inv.answered_at is not None and inv.answered_at >= at:
                continue
            if claimed_at is None and inv.answer == answer and inv.answered_at is not None:
                continue  # the same answer again, with no time of its own: nothing new to date it by
            inv.answer = answer
            inv.answered_at = at
            outcome = Outcome.APPLIED
        if outcome is Outcome.APPLIED:
            log.info("recorded %s from %s for meeting %s", answer.value, source, m.code)
        else:
            log.info("answer from %s for meeting %s is not newer than the stored one: kept", source, m.code)
        return outcome


def _plausible_uid(uid: str) -> bool:
    return bool(uid) and len(uid) <= MAX_UID_LENGTH and uid.isprintable()


def load_meeting(session: Session, uid: str) -> MeetingAnswers | None:
    """The meeting with iCalendar ``uid`` and its invitations, or None when the register has none.

    A UID that cannot be one of ours (empty, too long, control characters) is not even looked up.
    """
    uid = uid.strip()
    if not _plausible_uid(uid):
        return None
    row = session.execute(
        select(Meeting, SipCase.status, SipCase.consent_withdrawn_on, Contact.email)
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(Contact, Contact.id == SipCase.convener_contact_id)
        .where(Meeting.ical_uid == uid)
    ).one_or_none()
    if row is None:
        return None
    meeting, status, withdrawn_on, convener_email = row
    by_address: dict[str, list[Invitation]] = {}
    for inv, email in session.execute(
        select(Invitation, Contact.email)
        .join(Contact, Contact.id == Invitation.contact_id)
        .where(Invitation.meeting_id == meeting.id)
        .order_by(Invitation.id)
    ).tuples():
        by_address.setdefault(address_key(email), []).append(inv)
    return MeetingAnswers(meeting, status, withdrawn_on is not None, address_key(convener_email), by_address)


def load_meetings(session: Session, uids: Iterable[str]) -> dict[str, MeetingAnswers]:
    """:func:`load_meeting` for many UIDs at once, by UID: two statements per :data:`LOOKUP_CHUNK` of
    them (a calendar service answers for every meeting booked in it)."""
    wanted = sorted({u.strip() for u in uids if _plausible_uid(u.strip())})
    found: dict[str, MeetingAnswers] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        by_id: dict[int, MeetingAnswers] = {}
        for meeting, status, withdrawn_on, convener_email in session.execute(
            select(Meeting, SipCase.status, SipCase.consent_withdrawn_on, Contact.email)
            .join(SipCase, SipCase.id == Meeting.case_id)
            .join(Contact, Contact.id == SipCase.convener_contact_id)
            .where(Meeting.ical_uid.in_(chunk))
        ).tuples():
            record = MeetingAnswers(
                meeting, status, withdrawn_on is not None, address_key(convener_email), {}
            )
            found[meeting.ical_uid] = by_id[meeting.id] = record
        if not by_id:
            continue
        for inv, email in session.execute(
            select(Invitation, Contact.email)
            .join(Contact, Contact.id == Invitation.contact_id)
            .where(Invitation.meeting_id.in_(list(by_id)))
            .order_by(Invitation.id)
        ).tuples():
            by_id[inv.meeting_id].by_address.setdefault(address_key(email), []).append(inv)
    return found


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
    """Record one attendee's answer, given at ``answered_at``, to the meeting with iCalendar ``uid``.

    The caller vouches for the attendee and the time; mail and calendar sources go through
    :meth:`MeetingAnswers.apply` with their receipt time instead. Does not commit.
    """
    if answered_at.tzinfo is None:
        raise ValueError("answered_at must be an aware datetime")
    record = load_meeting(session, uid)
    if record is None:
        log.warning("answer from %s ignored: no meeting has its UID", source)
        return Outcome.UNKNOWN_MEETING
    return record.apply(attendee_email, answer, answered_at, answered_at, source, sequence=sequence)


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
    one kept). Does not commit."""
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
    uid = session.scalar(select(Meeting.ical_uid).where(Meeting.code == meeting_code))
    record = load_meeting(session, uid) if uid is not None else None
    if record is None:
        raise RegisterLookupError(f"no meeting with code {meeting_code!r}")
    row = session.execute(
        select(Invitation, Contact.email)
        .join(Contact, Contact.id == Invitation.contact_id)
        .where(Invitation.meeting_id == record.meeting.id, Contact.code == contact_code)
    ).one_or_none()
    if row is None:
        raise RegisterLookupError(f"meeting {meeting_code} has no invitation for contact {contact_code!r}")
    inv, email = row
    # exactly this contact's invitation, even when others share its (functional) address
    only = MeetingAnswers(
        record.meeting,
        record.case_status,
        record.consent_withdrawn,
        record.convener_key,
        {address_key(email): [inv]},
    )
    return only.apply(email, answer, answered_at, answered_at, f"phone ({contact_code})")


# --- calendar services: Exchange (EWS) and Microsoft Graph -----------------------------------------------


@dataclass(frozen=True)
class CalendarResponse:
    """One attendee's answer as a calendar service tracks it on an event sipflows booked.

    ``meeting_uid`` is the register's iCalendar UID of the meeting (not the service's own item id or
    per-attendee UID); ``responded_at`` is the service's response time, if it gives one.
    """

    meeting_uid: str
    attendee: str
    answer: Answer
    responded_at: datetime | None


# --- what a run did --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetAside:
    """A message put aside for a person: where it is (file name, IMAP uid) and why; never its content."""

    where: str
    reason: str


@dataclass
class ReplySummary:
    """Counts of one run of one source.

    ``messages`` read (Exchange: calendar items; Graph: events). Answers: ``applied`` (changed the
    register), ``stale`` (a newer one is kept), ``closed`` (plan closed), ``cancelled`` (meeting
    cancelled), ``convener`` (the convener's own copy). Set aside for a person, each counted in
    ``rejected`` too: ``unknown`` (not our meeting, or the sender not invited to it), ``untrusted`` (the
    answer is not its sender's, or answers a version never sent), ``malformed``, ``not_replies`` (no
    calendar reply; for Exchange and Graph, items nobody has answered yet), ``errors`` (the handling itself
    failed). ``set_aside`` lists the messages and reasons, for the run's artifact. The calendar services
    set nothing aside (there is no message to move): their ``unknown`` and ``untrusted`` answers — for
    Graph, ``untrusted`` is an answer given on another attendee's event — are only counted and logged.
    """

    messages: int = 0
    applied: int = 0
    stale: int = 0
    closed: int = 0
    cancelled: int = 0
    convener: int = 0
    unknown: int = 0
    untrusted: int = 0
    malformed: int = 0
    not_replies: int = 0
    errors: int = 0
    rejected: int = 0
    set_aside: list[SetAside] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return self.applied + self.stale

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.APPLIED:
            self.applied += 1
        elif outcome is Outcome.STALE:
            self.stale += 1
        elif outcome is Outcome.CLOSED:
            self.closed += 1
        elif outcome is Outcome.CANCELLED:
            self.cancelled += 1
        elif outcome is Outcome.CONVENER:
            self.convener += 1
        elif outcome is Outcome.UNSENT_VERSION:
            self.untrusted += 1
        else:
            self.unknown += 1

    def _counters(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "set_aside"]

    def __add__(self, other: ReplySummary) -> ReplySummary:
        total = ReplySummary(**{n: getattr(self, n) + getattr(other, n) for n in self._counters()})
        total.set_aside = [*self.set_aside, *other.set_aside]
        return total

    def as_dict(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in self._counters()}

    def describe(self) -> str:
        return ", ".join(f"{n.replace('_', ' ')} {getattr(self, n)}" for n in self._counters())


def apply_calendar_responses(
    session: Session, responses: Iterable[CalendarResponse], now: datetime, source: str
) -> ReplySummary:
    """Record attendee responses read from a calendar service, by the rules above. Does not commit.

    ``now`` is when they were read: the receipt time of every response (a response time outside the
    invitation's sending and ``now`` is not believed). A response given before the meeting's last change
    answers the old meeting and is stale. The meetings are looked up together (:func:`load_meetings`),
    however many there are and however many attendees answered.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    summary = ReplySummary()
    by_meeting: dict[str, list[CalendarResponse]] = {}
    for response in responses:
        by_meeting.setdefault(response.meeting_uid, []).append(response)
    records = load_meetings(session, by_meeting)
    for uid, answers in by_meeting.items():
        record = records.get(uid.strip())
        if record is None:
            log.warning("%d answer(s) from %s ignored: no meeting has their UID", len(answers), source)
            summary.unknown += len(answers)
            continue
        for r in answers:
            outcome = record.apply(r.attendee, r.answer, r.responded_at, now, source, after_change=True)
            summary.count(outcome)
    return summary


# --- sources -----------------------------------------------------------------------------------------------


class ReplyIngestError(RuntimeError):
    """A source of answers cannot be read at all (no folder, IMAP refused, the register unreachable):
    that source stops and the run fails. ``summary`` holds what it did before it stopped, if anything."""

    def __init__(self, message: str, summary: ReplySummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class PartialIngestError(ReplyIngestError):
    """Some configured sources failed; ``summaries`` holds what the others did."""

    def __init__(self, message: str, summaries: dict[str, ReplySummary]) -> None:
        super().__init__(message)
        self.summaries = summaries

"""Invitation answers read from Microsoft Graph: the attendee responses on the events sipflows booked.

With ``SIPFLOWS_TRANSPORT=graph`` every invitation is an event in the SIP mailbox's calendar, one per
meeting and attendee; Exchange Online processes the attendee's Accept/Tentative/Decline itself and keeps it
on that event. Reading them back takes a calendar view of the mailbox (pages of 100 events), not one call
per invitation.

An answer is believed only when all of this holds, so one attendee can never answer for another:

- the event is one the ledger recorded: its id is the ``external_id`` of a meeting notice sent through
  Graph, and the event's own booking (meeting UID and the attendee's address, as the transport wrote
  them) is that notice's. Events the ledger does not know (not yet recorded after a crash, booked by
  another installation sharing the mailbox) are left for later or alone;
- the answer is the one of the attendee the event was booked for. Anyone Exchange added to the event
  later (an invitation forwarded by its attendee) does not count, even if they are invited on an event
  of their own: their own event carries their own answer;
- then the rules every source follows (:func:`~sipflows.replies.answers.apply_calendar_responses`):
  only that attendee's invitation changes; cancelled meetings and closed plans are not recorded; an
  answer given before the meeting's last change is stale; an implausible response time gives way to the
  time of reading. The convener's own event (they are the chair, with no invitation) records nothing.

Answers are state: reading twice changes nothing. The ledger is read, Graph is read, and the answers are
applied in that order, so no database transaction stays open while Graph is waited on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from sipflows.db import session_scope
from sipflows.models import Answer, Meeting, MeetingStatus, Notice, NoticeStatus
from sipflows.replies.answers import (
    CalendarResponse,
    ReplyIngestError,
    ReplySummary,
    apply_calendar_responses,
    domain_of,
)
from sipflows.settings import Settings
from sipflows.transports.base import (
    PermanentSendError,
    SecretLoader,
    TransientSendError,
    TransportUnavailable,
)
from sipflows.transports.graph import (
    EventResponses,
    GraphClient,
    GraphReadError,
    booking_key,
    describe,
)

log = logging.getLogger("sipflows.replies")

SOURCE = "Microsoft Graph"
# Graph's attendee responseType → answer; none, notResponded and organizer are no answer
RESPONSE_ANSWERS = {
    "accepted": Answer.ACCEPTED,
    "tentativelyAccepted": Answer.TENTATIVE,
    "declined": Answer.DECLINED,
}
# Graph refuses a calendar view longer than 1,825 days; longer windows are read in parts
MAX_VIEW = timedelta(days=1800)
# what to check when Graph's own message names no setting
_HINTS = (
    ("sign-in authority", "check SIPFLOWS_GRAPH_AUTHORITY_URL, SIPFLOWS_GRAPH_TENANT_ID and the network"),
    ("Microsoft Graph at", "check SIPFLOWS_GRAPH_BASE_URL and the network"),
    ("Prefect Secret", "check SIPFLOWS_GRAPH_CREDENTIALS_BLOCK"),
    ("block document", "check SIPFLOWS_GRAPH_CREDENTIALS_BLOCK"),  # Prefect: no block of that name
    ("the app needs", "check the app's permissions on SIPFLOWS_GRAPH_MAILBOX"),
)


@dataclass
class Booked:
    """What the ledger knows of the events sipflows booked through Graph for meetings still of interest."""

    bookings: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # event id → {(uid, booking)}
    last_end: datetime | None = None  # the latest end of those meetings

    def __bool__(self) -> bool:
        return bool(self.bookings)


def booked_events(session: Session, since: datetime) -> Booked:
    """The events recorded in the ledger for scheduled meetings ending at or after ``since``."""
    rows = session.execute(
        select(Notice.external_id, Notice.address, Meeting.ical_uid, Meeting.ends_at)
        .join(Meeting, Notice.meeting_id == Meeting.id)
        .where(
            Notice.external_id.is_not(None),
            Notice.status == NoticeStatus.SENT,
            or_(Notice.ics_method.is_(None), Notice.ics_method != "CANCEL"),
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.ends_at >= since,
        )
    ).tuples()
    booked = Booked()
    for event_id, address, uid, ends_at in rows:
        booked.bookings.setdefault(str(event_id), set()).add((uid, booking_key(uid, address)))
        if booked.last_end is None or ends_at > booked.last_end:
            booked.last_end = ends_at
    return booked


def windows(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """``[since, until)`` in calendar views Graph accepts (at most :data:`MAX_VIEW` each)."""
    parts = []
    start = since
    while start < until:
        end = min(start + MAX_VIEW, until)
        parts.append((start, end))
        start = end
    return parts


def event_answers(event: EventResponses, booked: Booked, summary: ReplySummary) -> list[CalendarResponse]:
    """The answer on one event, if it is one of ours and its booked attendee gave one; counts in
    ``summary`` what is not an answer to record."""
    recorded = booked.bookings.get(event.event_id)
    if recorded is None:
        return []
    if (event.meeting_uid, event.booking) not in recorded:
        # the ledger's id now names an event booked for another meeting or attendee: answer nothing
        log.warning("the Graph event recorded for a meeting is not its booking; skipped")
        summary.unknown += 1
        return []
    if event.cancelled:
        return []
    summary.messages += 1
    attendee = event.booked_for
    others = [
        a
        for a in event.attendees
        if a.response in RESPONSE_ANSWERS and booking_key(event.meeting_uid, a.email) != event.booking
    ]
    for other in others:
        log.info(
            "an answer on the Graph event of another attendee (forwarded to domain %s) is not theirs to "
            "give; ignored",
            domain_of(other.email),
        )
    summary.untrusted += len(others)
    if attendee is None:
        log.warning("the Graph event booked for a meeting no longer lists its attendee; skipped")
        summary.unknown += 1
        return []
    answer = RESPONSE_ANSWERS.get(attendee.response)
    if answer is None:
        summary.not_replies += 1
        return []
    return [CalendarResponse(event.meeting_uid, attendee.email, answer, attendee.responded_at)]


def read_responses(
    client: GraphClient, booked: Booked, since: datetime, summary: ReplySummary
) -> list[CalendarResponse]:
    """The answers on the booked events, read from the mailbox's calendar view. ``client`` is open.

    Raises ``ReplyIngestError`` (credentials scrubbed, the settings to check named) when Graph cannot
    be read.
    """
    if not booked or booked.last_end is None:
        return []
    seen: set[str] = set()
    responses: list[CalendarResponse] = []
    try:
        for start, end in windows(since, booked.last_end + timedelta(days=1)):
            for event in client.attendee_responses(start, end):
                if event.event_id in seen:  # an event spanning two views
                    continue
                seen.add(event.event_id)
                responses.extend(event_answers(event, booked, summary))
    except Exception as exc:
        raise ReplyIngestError(_failure("Microsoft Graph polling failed", exc)) from None
    unknown = len(seen - booked.bookings.keys())
    if unknown:
        log.info("%d sipflows event(s) in the mailbox the ledger has not recorded; not read", unknown)
    return responses


def _failure(what: str, exc: Exception) -> str:
    """The run's error: what failed and why (credentials scrubbed), and which setting to look at."""
    known = (TransportUnavailable, GraphReadError, TransientSendError, PermanentSendError)
    if isinstance(exc, TransportUnavailable):
        text = describe(exc.reason)  # the source names itself: "graph transport cannot be used" is noise
    else:
        text = describe(str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}")
    if "SIPFLOWS_" not in text:
        hint = next((h for marker, h in _HINTS if marker in text), "check the SIPFLOWS_GRAPH_* settings")
        text += f" — {hint}"
    return f"{what}: {text}"


def graph_client(settings: Settings, secret_loader: SecretLoader | None = None) -> GraphClient:
    """A client for the configured mailbox, not yet connected; a missing or wrong setting is named."""
    try:
        return GraphClient(settings, secret_loader=secret_loader)
    except Exception as exc:
        raise ReplyIngestError(_failure("Microsoft Graph polling cannot start", exc)) from None


def _open(client: GraphClient) -> None:
    try:
        client.open()
    except Exception as exc:  # Graph or the sign-in unreachable, the token or the mailbox refused
        raise ReplyIngestError(_failure("Microsoft Graph polling cannot start", exc)) from None


def poll_graph_responses(
    client_or_settings: GraphClient | Settings,
    session: Session,
    since: datetime,
    now: datetime,
    *,
    secret_loader: SecretLoader | None = None,
) -> ReplySummary:
    """Record the answers on the Graph events of meetings that end at or after ``since``.

    ``client_or_settings``: an open ``GraphClient`` (the dispatch's, say) or ``Settings`` to connect with.
    ``now`` is when the answers were read: it dates answers Graph gives no time for. Summary: ``messages``
    events read, ``not_replies`` of them not answered yet, ``untrusted`` answers given on another
    attendee's event, ``unknown`` events no longer booked as the ledger says; the answers as
    ``applied``/``stale``/``closed``/``cancelled``/``convener``. Does not commit. Raises
    ``ReplyIngestError`` when Graph cannot be configured or read.
    """
    if since.tzinfo is None or now.tzinfo is None:
        raise ValueError("since and now must be aware datetimes")
    summary = ReplySummary()
    owned = isinstance(client_or_settings, Settings)
    client = (
        graph_client(client_or_settings, secret_loader)
        if isinstance(client_or_settings, Settings)
        else client_or_settings
    )
    booked = booked_events(session, since)
    if not booked:
        return summary
    if owned:
        _open(client)
    try:
        responses = read_responses(client, booked, since, summary)
    finally:
        if owned:
            client.close()
    summary += apply_calendar_responses(session, responses, now, SOURCE)
    log.info("Graph responses: %s", summary.describe())
    return summary


def ingest_graph(
    engine: Engine,
    settings: Settings,
    now: datetime,
    since: datetime,
    *,
    secret_loader: SecretLoader | None = None,
) -> ReplySummary:
    """The replies run's Graph source: the ledger read, Graph read, the answers applied and committed —
    three steps, so no transaction is held open while Graph is waited on."""
    if since.tzinfo is None or now.tzinfo is None:
        raise ValueError("since and now must be aware datetimes")
    summary = ReplySummary()
    client = graph_client(
        settings, secret_loader
    )  # the settings are checked even when there is nothing to read
    try:
        with session_scope(engine) as session:
            booked = booked_events(session, since)
        if not booked:
            return summary
        _open(client)
        try:
            responses = read_responses(client, booked, since, summary)
        finally:
            client.close()
        with session_scope(engine) as session:
            summary += apply_calendar_responses(session, responses, now, SOURCE)
    except (OperationalError, InterfaceError) as exc:
        raise ReplyIngestError(
            f"Microsoft Graph answers: the register cannot be reached: {type(exc.orig).__name__}", summary
        ) from None
    log.info("Graph responses: %s", summary.describe())
    return summary

"""Answers to invitations, from wherever they come, into the register.

- :mod:`sipflows.replies.answers` — the rules every answer is judged by, and the interface a calendar
  service implements (:class:`CalendarResponse`, :func:`apply_calendar_responses`);
- :mod:`sipflows.replies.itip` — an iTIP REPLY read out of an email, and whose answer it is;
- :mod:`sipflows.replies.mailbox` — the IMAP folder and the folder of ``.eml`` files, message by message;
- :mod:`sipflows.replies.exchange` — the attendee responses Exchange tracks on the items it booked (EWS);
- :mod:`sipflows.replies.graph` — the same on the events booked through Microsoft Graph (Exchange Online).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from sipflows.db import session_scope
from sipflows.replies.answers import (
    CLOCK_SKEW,
    CalendarResponse,
    MeetingAnswers,
    Outcome,
    PartialIngestError,
    RegisterLookupError,
    ReplyIngestError,
    ReplySummary,
    SetAside,
    apply_answer,
    apply_calendar_responses,
    load_meeting,
    normalise_address,
    record_answer,
    record_phone_answer,
)
from sipflows.replies.exchange import poll_exchange_responses
from sipflows.replies.graph import ingest_graph, poll_graph_responses
from sipflows.replies.itip import (
    ItipAnswer,
    MalformedReply,
    NotAReply,
    RejectedReply,
    ReplyMessage,
    UntrustedReply,
    parse_itip_reply,
    read_reply,
)
from sipflows.replies.mailbox import handle_message, imap_utf7, ingest_folder, ingest_imap
from sipflows.settings import Settings
from sipflows.transports.base import SecretLoader

# how far back the calendar services (Exchange, Graph) are read when the caller does not say
CALENDAR_LOOKBACK = timedelta(days=90)

__all__ = [
    "CALENDAR_LOOKBACK",
    "CLOCK_SKEW",
    "CalendarResponse",
    "ItipAnswer",
    "MalformedReply",
    "MeetingAnswers",
    "NotAReply",
    "Outcome",
    "PartialIngestError",
    "RegisterLookupError",
    "RejectedReply",
    "ReplyIngestError",
    "ReplyMessage",
    "ReplySummary",
    "SetAside",
    "UntrustedReply",
    "apply_answer",
    "apply_calendar_responses",
    "handle_message",
    "imap_utf7",
    "ingest_configured",
    "ingest_folder",
    "ingest_graph",
    "ingest_imap",
    "load_meeting",
    "normalise_address",
    "parse_itip_reply",
    "poll_exchange_responses",
    "poll_graph_responses",
    "read_reply",
    "record_answer",
    "record_phone_answer",
]


def ingest_configured(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    since: datetime | None = None,
    secret_loader: SecretLoader | None = None,
) -> dict[str, ReplySummary]:
    """Every configured source of answers: Exchange (when an Exchange server is set) and Microsoft Graph
    (when the transport is ``graph``) — the attendee responses of meetings ending at or after ``since``,
    default :data:`CALENDAR_LOOKBACK` back —, IMAP (``imap_host``) and the replies folder
    (``replies_dir``). A source that cannot be read does not keep the others from running; its error is
    raised after them, so the run still fails visibly. ``secret_loader`` reads Exchange's or Graph's
    credentials block, as for dispatch."""
    summaries: dict[str, ReplySummary] = {}
    errors: list[str] = []

    def failed(name: str, exc: ReplyIngestError) -> None:
        errors.append(str(exc))
        if exc.summary is not None:  # what the source did before it stopped belongs in the run's figures
            summaries[name] = exc.summary

    since = since or now - CALENDAR_LOOKBACK
    if settings.exchange_server or settings.exchange_service_endpoint:
        try:
            with session_scope(engine) as session:
                summaries["exchange"] = poll_exchange_responses(
                    settings, session, since, now, secret_loader=secret_loader
                )
        except ReplyIngestError as exc:
            failed("exchange", exc)
    if settings.transport == "graph":
        try:
            summaries["graph"] = ingest_graph(engine, settings, now, since, secret_loader=secret_loader)
        except ReplyIngestError as exc:
            failed("graph", exc)
    if settings.imap_host:
        try:
            summaries["imap"] = ingest_imap(engine, settings, now)
        except ReplyIngestError as exc:
            failed("imap", exc)
    if settings.replies_dir is not None:
        try:
            summaries["folder"] = ingest_folder(engine, settings.replies_dir, now)
        except ReplyIngestError as exc:
            failed("folder", exc)
    if errors:
        raise PartialIngestError("; ".join(errors), summaries)
    return summaries

"""The transport interface. Outbox, SMTP, Exchange (EWS) and Microsoft Graph implement it.

A transport receives an ``OutgoingMessage`` that carries everything any transport needs (MIME for mail
transports, the structured meeting for calendar-aware ones) and never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str
    required: bool = True
    chair: bool = False  # the plan's convener, who calls the meeting (iCalendar ROLE=CHAIR)


@dataclass(frozen=True)
class MeetingInfo:
    """The meeting behind an invitation notice, for transports that book it natively (Exchange, Graph)."""

    uid: str
    sequence: int
    method: str  # REQUEST or CANCEL
    subject: str
    starts_at: datetime
    ends_at: datetime
    location: str | None
    organizer_email: str  # the mailbox that sends invitations and receives the answers
    organizer_name: str
    attendees: tuple[Attendee, ...] = field(default_factory=tuple)  # the convener among them, as chair


@dataclass(frozen=True)
class OutgoingMessage:
    notice_id: int
    key: str
    message_id: str
    to_address: str
    to_name: str | None
    subject: str
    body_text: str
    body_html: str
    ics: str | None = None
    ics_method: str | None = None
    meeting: MeetingInfo | None = None
    external_id: str | None = None  # a previous send's item id (Exchange), for updates
    reply_to: str | None = None  # where a person's reply goes (the convener), when not to the sender
    reply_to_name: str | None = None


@dataclass(frozen=True)
class SendResult:
    external_id: str | None = None


class PermanentSendError(Exception):
    """The message can never be delivered as it is (bad address, rejected recipient): do not retry."""


class TransientSendError(Exception):
    """Try again later (server down, throttled, timeout)."""


class TransportUnavailable(Exception):
    """The transport as a whole cannot be used (unreachable, TLS, refused credentials or permissions).

    No notice's attempt is consumed: nothing about any one notice caused it, so dispatch stops and the
    run fails for operations staff to see, instead of counting it against every notice in the batch.
    """


class Transport(Protocol):
    """Opened once per batch (one SMTP connection, one Exchange account), then ``send`` per message.

    ``send`` raises ``PermanentSendError`` or ``TransientSendError`` for one message, and
    ``TransportUnavailable`` (from ``__enter__`` or ``send``) when the transport itself cannot be used;
    any other exception is treated as transient. Messages must never include credentials in what they raise.
    """

    name: str

    def __enter__(self) -> Transport: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: OutgoingMessage) -> SendResult: ...

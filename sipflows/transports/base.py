"""The transport interface. Outbox, SMTP, Exchange (EWS) and Microsoft Graph implement it.

A transport receives an ``OutgoingMessage`` that carries everything any transport needs (MIME for mail
transports, the structured meeting for calendar-aware ones) and never touches the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Reads a named secret from the store the entry point chose (the flows: Prefect Secret blocks). The
# library never imports a secret store itself, so it runs where Prefect is not installed.
SecretLoader = Callable[[str], object]


def secret_text(value: object, keys: tuple[str, ...]) -> str | None:
    """A loaded secret as text: a non-empty string, or the first of ``keys`` in an object; else None."""
    if isinstance(value, dict):
        for key in keys:
            found = value.get(key)
            if isinstance(found, str) and found:
                return found
        return None
    return value if isinstance(value, str) and value else None


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
    """This message failed for now (a 4xx for its recipient, a connection lost mid-message): retry it."""


class TransportUnavailable(Exception):
    """The service itself cannot be used: connection refused, timeout, TLS, login, the sender refused.

    Not the fault of any notice, so dispatch consumes no notice's attempt: it gives the claimed notices
    back untouched and stops, and the run fails with this message. It names the transport, where it was
    trying to go and the settings a person should check; never a credential.
    """

    def __init__(self, transport: str, where: str, reason: str, settings: Sequence[str] = ()) -> None:
        self.transport, self.where, self.reason = transport, where, reason
        self.settings = tuple(settings)
        self.summary: Any = None  # what the interrupted dispatch had done (set by dispatch)
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"the {self.transport} transport cannot be used ({self.where}): {self.reason}"
        if self.settings:
            text += f"; check {', '.join(self.settings)}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its fields (Prefect stores raised exceptions)
        return (type(self), (self.transport, self.where, self.reason, self.settings))


class Transport(Protocol):
    """Opened once per batch (one SMTP connection, one Exchange account), then ``send`` per message.

    ``send`` raises ``PermanentSendError`` or ``TransientSendError`` for this one message, and
    ``TransportUnavailable`` when the service cannot be used at all (opening may raise it too); any
    other exception from ``send`` is treated as transient for the message, any exception from opening
    as the transport being unavailable. Messages must never include credentials in what they raise.
    """

    name: str

    def __enter__(self) -> Transport: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: OutgoingMessage) -> SendResult: ...

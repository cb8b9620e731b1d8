"""The transport interface. Outbox, SMTP, Exchange (EWS) and Microsoft Graph implement it.

A transport receives an ``OutgoingMessage`` that carries everything any transport needs (MIME for mail
transports, the structured meeting for calendar-aware ones) and never touches the database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
    """A meeting as an invitation describes it — plain values only, no register objects.

    ``notices/calendar.py`` writes it as iCalendar (and reads it back from a stored invitation); the
    transports that book meetings natively (Exchange, Graph) send it as it is.
    """

    uid: str
    sequence: int
    subject: str  # the calendar SUMMARY
    starts_at: datetime
    ends_at: datetime
    organizer_email: str  # the mailbox that sends invitations and receives the answers
    organizer_name: str
    method: str = "REQUEST"  # REQUEST or CANCEL
    attendees: tuple[Attendee, ...] = ()  # the convener among them, as chair
    place: str | None = None
    digital_link: str | None = None
    description: str = ""

    @property
    def location(self) -> str | None:
        """Where the meeting is: its place, else its digital link (iCalendar LOCATION)."""
        return (self.place or "").strip() or (self.digital_link or "").strip() or None

    @property
    def url(self) -> str | None:
        """The digital link, if any (iCalendar URL)."""
        return (self.digital_link or "").strip() or None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


class AttachmentError(ValueError):
    """``Notice.attachments`` cannot be turned into files (the notice can never be sent as is)."""


def attachments_from_json(data: Mapping[str, Any] | None) -> tuple[Attachment, ...]:
    """``{"files": [{"filename", "content_type", "content_base64"}]}`` → attachments; strict."""
    if not data:
        return ()
    files = data.get("files")
    if not isinstance(files, list):
        raise AttachmentError("attachments: 'files' must be a list")
    out: list[Attachment] = []
    for i, f in enumerate(files):
        if not isinstance(f, Mapping):
            raise AttachmentError(f"attachments.files[{i}]: not an object")
        filename, ctype, b64 = f.get("filename"), f.get("content_type"), f.get("content_base64")
        if not isinstance(filename, str) or not filename.strip():
            raise AttachmentError(f"attachments.files[{i}]: filename missing")
        if not isinstance(ctype, str) or ctype.count("/") != 1:
            raise AttachmentError(f"attachments.files[{i}] ({filename}): content_type must be type/subtype")
        if not isinstance(b64, str):
            raise AttachmentError(f"attachments.files[{i}] ({filename}): content_base64 missing")
        try:
            content = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise AttachmentError(
                f"attachments.files[{i}] ({filename}): content_base64 is not base64"
            ) from None
        out.append(Attachment(filename=filename, content_type=ctype.strip().lower(), content=content))
    return tuple(out)


@dataclass(frozen=True)
class OutgoingMessage:
    """One notice as every transport takes it: mail transports write MIME from it (``transports/mime.py``),
    calendar-aware ones book ``meeting`` natively; each sends ``attachments`` as files."""

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
    date: datetime | None = None  # the Date header (the run's time); None: the transport's clock
    attachments: tuple[Attachment, ...] = ()


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

"""What every part of the Graph transport shares: Graph's names, sipflows' event keys, errors."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sipflows.transports.base import (
    TransportUnavailable,
)
from sipflows.transports.redact import Redactor

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


SecretLoader = Callable[[str], str]

# sipflows' own MAPI property set; its two named properties mark and identify the events it books
PROPERTY_SET = "{74b2aa2a-f22b-4d2d-a8a2-272e87fe25a0}"
BOOKING_PROPERTY = f"String {PROPERTY_SET} Name SipflowsBooking"
MEETING_PROPERTY = f"String {PROPERTY_SET} Name SipflowsMeetingUid"

# Graph's attendee responseType values that are an answer (none, organizer and notResponded are not)
ANSWER_RESPONSES = frozenset({"accepted", "tentativelyAccepted", "declined"})

# Windows zone names Exchange knows for the IANA zones sipflows runs in; any other zone is sent as UTC
_WINDOWS_ZONES = {
    "Europe/Stockholm": "W. Europe Standard Time",
    "Europe/Oslo": "W. Europe Standard Time",
    "Europe/Berlin": "W. Europe Standard Time",
    "Europe/Copenhagen": "Romance Standard Time",
    "Europe/Helsinki": "FLE Standard Time",
    "Europe/London": "GMT Standard Time",
    "UTC": "UTC",
    "Etc/UTC": "UTC",
}
_ZONES_BY_WINDOWS_NAME = {
    **{v: k for k, v in _WINDOWS_ZONES.items()},
    "W. Europe Standard Time": "Europe/Stockholm",
}

_EVENT_FIELDS = (
    "id,subject,body,start,end,location,attendees,isCancelled,transactionId,"
    "createdDateTime,lastModifiedDateTime"
)
_EXPAND = f"singleValueExtendedProperties($filter=id eq '{BOOKING_PROPERTY}' or id eq '{MEETING_PROPERTY}')"
# Statuses that say "not now": waited out per Retry-After, never counted against a notice
_THROTTLED = frozenset({429, 502, 503, 504})
# 404 codes that mean the mailbox itself is missing or unusable, not one item
_MAILBOX_ERRORS = frozenset(
    {"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotHostedInExchangeOnline"}
)
# One sendMail request carries at most 4 MB, attachments base64-encoded inside its JSON
_MAX_MAIL_REQUEST = 4_000_000
_MAX_ERROR_TEXT = 400
_MAX_PAGES = 1000

_LIBRARY_LOGGERS = ("msal", "requests", "urllib3", "httpx", "httpcore")


class GraphConfigurationError(TransportUnavailable, ValueError):
    """The Graph settings are incomplete or wrong; the message names the environment variable to fix."""

    def __init__(self, reason: str) -> None:
        super().__init__("graph", "its settings", reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


def _unavailable(reason: str) -> TransportUnavailable:
    """Graph as a whole cannot be used; ``reason`` says where and which setting to check."""
    return TransportUnavailable("graph", "Microsoft Graph", reason)


class GraphReadError(RuntimeError):
    """Graph answered a read (the attendee responses) with an error that is not the transport's outage."""


_SCRUBBER = Redactor(_LIBRARY_LOGGERS)


def describe(text: str) -> str:
    """Text fit for a log, an exception or the ledger: credentials scrubbed, one line, bounded."""
    text = " ".join(_SCRUBBER.scrub(text).split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"


# ------------------------------------------------------------------------------------ names and keys


def booking_key(meeting_uid: str, attendee_email: str) -> str:
    """The key of one attendee's event: the meeting's UID, "/", a digest of the address.

    The same shape as the Exchange transport's item UID, so both transports name a booking alike.
    """
    digest = hashlib.sha256(attendee_email.strip().casefold().encode()).hexdigest()[:16]
    return f"{meeting_uid}/{digest}"


def transaction_id(booking: str, notice_key: str) -> str:
    """Graph's ``transactionId`` for creating ``booking`` from the notice ``notice_key``.

    The same notice always asks for the same event; a later notice (after a cancellation) for a new one.
    """
    return "sipflows-" + hashlib.sha256(f"{booking}\n{notice_key}".encode()).hexdigest()[:40]


def graph_scope(base_url: str) -> str:
    """The app-only scope of the Graph at ``base_url``: its origin and ``/.default`` (national clouds too)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


# --------------------------------------------------------------------------------------- what Graph says


@dataclass(frozen=True)
class AttendeeResponse:
    """One attendee's answer as Exchange tracks it on the organiser's event."""

    email: str
    response: str  # Graph's responseType: accepted, tentativelyAccepted, declined, none, notResponded, …
    responded_at: datetime | None  # UTC; None when Graph gives no time (no answer yet)
    required: bool = True

    @property
    def answered(self) -> bool:
        return self.response in ANSWER_RESPONSES


@dataclass(frozen=True)
class EventResponses:
    """An event sipflows booked, with its attendees' answers."""

    event_id: str
    meeting_uid: str
    booking: str
    cancelled: bool
    starts_at: datetime | None
    ends_at: datetime | None
    last_modified: datetime | None
    attendees: tuple[AttendeeResponse, ...]

    @property
    def booked_for(self) -> AttendeeResponse | None:
        """The attendee this event was booked for (their address is in the booking key), not anyone
        Exchange added later (a forwarded invitation): only that attendee's answer is an answer."""
        for attendee in self.attendees:
            if booking_key(self.meeting_uid, attendee.email) == self.booking:
                return attendee
        return None


def parse_graph_time(value: Any) -> datetime | None:
    """Graph's times as aware UTC datetimes: ``"…T08:00:00.0000000"`` (with ``Z`` or not) or a
    dateTimeTimeZone object. Graph's "no time" (year 1) and anything unreadable are None."""
    zone: Any = UTC
    if isinstance(value, Mapping):
        name = str(value.get("timeZone") or "UTC")
        zone = UTC if name in ("UTC", "Etc/UTC") else ZoneInfo(_ZONES_BY_WINDOWS_NAME.get(name, "UTC"))
        value = value.get("dateTime")
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text, zone = text[:-1], UTC
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?([+-]\d\d:\d\d)?", text)
    if match is None:
        return None
    stamp, fraction, offset = match.groups()
    try:
        parsed = datetime.fromisoformat(stamp + (f".{fraction[:6]:0<6}" if fraction else "") + (offset or ""))
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _properties(event: Mapping[str, Any]) -> dict[str, str]:
    props = event.get("singleValueExtendedProperties") or []
    return {str(p.get("id", "")).casefold(): str(p.get("value", "")) for p in props if isinstance(p, Mapping)}


def _property(event: Mapping[str, Any], property_id: str) -> str | None:
    return _properties(event).get(property_id.casefold())


def _responses(event: Mapping[str, Any]) -> EventResponses | None:
    meeting_uid = _property(event, MEETING_PROPERTY)
    booking = _property(event, BOOKING_PROPERTY)
    if not meeting_uid or not booking or not event.get("id"):
        return None  # not an event sipflows booked
    attendees = []
    for attendee in event.get("attendees") or ():
        address = ((attendee or {}).get("emailAddress") or {}).get("address")
        if not address:
            continue
        status = attendee.get("status") or {}
        attendees.append(
            AttendeeResponse(
                email=str(address),
                response=str(status.get("response") or "none"),
                responded_at=parse_graph_time(status.get("time")),
                required=str(attendee.get("type") or "required") != "optional",
            )
        )
    return EventResponses(
        event_id=str(event["id"]),
        meeting_uid=meeting_uid,
        booking=booking,
        cancelled=bool(event.get("isCancelled")),
        starts_at=parse_graph_time(event.get("start")),
        ends_at=parse_graph_time(event.get("end")),
        last_modified=parse_graph_time(event.get("lastModifiedDateTime")),
        attendees=tuple(attendees),
    )


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """Graph's error code and message (``{"error": {"code", "message"}}``), or what the body says."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", str(body)[:200]


def _what_failed(response: httpx.Response, action: str) -> str:
    code, message = _error_of(response)
    request_id = response.headers.get("request-id") or response.headers.get("client-request-id") or ""
    detail = f"{response.status_code} {code}".strip() + (f": {message}" if message else "")
    return describe(
        f"Graph could not {action}: {detail}" + (f" (request-id {request_id})" if request_id else "")
    )

"""The Graph ``Transport``: one event per notice (meeting and attendee), other notices by sendMail."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sipflows.addresses import check_address
from sipflows.settings import Settings
from sipflows.transports.base import (
    MeetingInfo,
    OutgoingMessage,
    PermanentSendError,
    SecretLoader,
    SendResult,
    TransientSendError,
    Transport,
    TransportUnavailable,
)
from sipflows.transports.graph.client import GraphClient
from sipflows.transports.graph.common import (
    _MAX_MAIL_REQUEST,
    _WINDOWS_ZONES,
    BOOKING_PROPERTY,
    MEETING_PROPERTY,
    _property,
    booking_key,
    describe,
    parse_graph_time,
    transaction_id,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ transport


class GraphTransport:
    """Sends notices through one Exchange Online mailbox over Microsoft Graph; opened once per batch."""

    name = "graph"

    def __init__(
        self,
        settings: Settings,
        *,
        secret_loader: SecretLoader | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = GraphClient(settings, secret_loader=secret_loader, sleep=sleep)
        self._zone = ZoneInfo(settings.timezone)
        self._zone_name = _WINDOWS_ZONES.get(settings.timezone)

    def __enter__(self) -> GraphTransport:
        self.client.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def send(self, message: OutgoingMessage) -> SendResult:
        if not self.client.is_open:
            raise RuntimeError("GraphTransport.send outside its with-block")
        meeting = message.meeting
        try:
            address = check_address(message.to_address)
        except ValueError as exc:
            raise PermanentSendError(str(exc)) from None
        try:
            if meeting is None:
                return self._send_mail(message, address)
            if meeting.method.upper() == "CANCEL":
                return self._cancel(message, meeting, address)
            return self._book(message, meeting, address)
        except (PermanentSendError, TransientSendError, TransportUnavailable):
            raise
        except Exception as exc:  # an answer we could not read: try again later
            raise TransientSendError(describe(f"Graph send failed: {type(exc).__name__}: {exc}")) from None

    # --- meetings ---------------------------------------------------------------------------------------

    def _when(self, value: datetime) -> dict[str, str]:
        if value.tzinfo is None:  # a caller's bug that no retry mends
            raise PermanentSendError("meeting times must be aware datetimes")
        if self._zone_name is None or self._zone_name == "UTC":
            utc = value.astimezone(UTC).replace(tzinfo=None)
            return {"dateTime": utc.isoformat(timespec="seconds"), "timeZone": "UTC"}
        local = value.astimezone(self._zone).replace(tzinfo=None)
        return {"dateTime": local.isoformat(timespec="seconds"), "timeZone": self._zone_name}

    def _fields(self, message: OutgoingMessage, meeting: MeetingInfo, address: str) -> dict[str, Any]:
        listed = next((a for a in meeting.attendees if a.email.casefold() == address.casefold()), None)
        required = listed.required if listed is not None else True
        name = message.to_name or (listed.name if listed is not None else None) or address
        return {
            "subject": meeting.subject,
            "body": {"contentType": "html", "content": message.body_html},
            "start": self._when(meeting.starts_at),
            "end": self._when(meeting.ends_at),
            "location": {"displayName": meeting.location or ""},
            "attendees": [
                {
                    "emailAddress": {"address": address, "name": name},
                    "type": "required" if required else "optional",
                }
            ],
        }

    def _existing(self, message: OutgoingMessage, booking: str) -> dict[str, Any] | None:
        """The event booked for this meeting and attendee: by the ledger's id, else by the booking key."""
        if message.external_id:
            event = self.client.get_event(message.external_id)
            if event is not None and _property(event, BOOKING_PROPERTY) == booking:
                return event
            if event is None:
                log.warning("notice %s: its earlier Graph event is gone", message.notice_id)
            else:
                log.warning("notice %s: the recorded Graph event is another booking's", message.notice_id)
        events = self.client.find_events(booking)
        live = [e for e in events if not e.get("isCancelled")]
        if live:
            return max(live, key=lambda e: str(e.get("createdDateTime") or ""))
        return events[0] if events else None

    def _book(self, message: OutgoingMessage, meeting: MeetingInfo, address: str) -> SendResult:
        booking = booking_key(meeting.uid, address)
        wanted = self._fields(message, meeting, address)
        event = self._existing(message, booking)
        if event is None or event.get("isCancelled"):
            created = self.client.create_event(
                {
                    **wanted,
                    "responseRequested": True,
                    "allowNewTimeProposals": False,  # the convener sets SIP meeting times in the register
                    "isReminderOn": False,  # the service mailbox needs no reminder of its own
                    "transactionId": transaction_id(booking, message.key),
                    "singleValueExtendedProperties": [
                        {"id": BOOKING_PROPERTY, "value": booking},
                        {"id": MEETING_PROPERTY, "value": meeting.uid},
                    ],
                }
            )
            log.info("notice %s: meeting request sent through Graph", message.notice_id)
            return SendResult(external_id=str(created["id"]))
        changes = {name: value for name, value in wanted.items() if not _same(name, event.get(name), value)}
        if changes:
            self.client.update_event(str(event["id"]), changes)
            log.info(
                "notice %s: meeting update sent through Graph (%s)", message.notice_id, ", ".join(changes)
            )
        else:
            log.info("notice %s: the Graph event already says this; nothing re-sent", message.notice_id)
        return SendResult(external_id=str(event["id"]))

    def _cancel(self, message: OutgoingMessage, meeting: MeetingInfo, address: str) -> SendResult:
        event = self._existing(message, booking_key(meeting.uid, address))
        if event is None:
            # never booked here, or deleted in the mailbox (which itself told the attendee): nothing to do
            log.warning("notice %s: no Graph event to cancel; nothing sent", message.notice_id)
            return SendResult(external_id=message.external_id)
        if not event.get("isCancelled"):
            if self.client.cancel_event(str(event["id"]), message.body_text.strip()):
                log.info("notice %s: meeting cancellation sent through Graph", message.notice_id)
            else:
                log.warning("notice %s: the Graph event went before it was cancelled", message.notice_id)
        return SendResult(external_id=str(event["id"]))

    # --- plain notices ----------------------------------------------------------------------------------

    def _send_mail(self, message: OutgoingMessage, address: str) -> SendResult:
        files: list[dict[str, Any]] = []
        for attachment in message.attachments:
            content_type = attachment.content_type
            if content_type.startswith("text/") and "charset" not in content_type:
                try:
                    attachment.content.decode("utf-8")
                    content_type += "; charset=utf-8"
                except UnicodeDecodeError:
                    pass
            files.append(_file(attachment.filename, content_type, attachment.content))
        if message.ics:
            method = (message.ics_method or "PUBLISH").upper()
            files.append(
                _file(
                    "invitation.ics", f"text/calendar; charset=utf-8; method={method}", message.ics.encode()
                )
            )
        mail: dict[str, Any] = {
            "subject": " ".join(message.subject.split()),
            "body": {"contentType": "html", "content": message.body_html},
            "toRecipients": [{"emailAddress": {"address": address, "name": message.to_name or address}}],
            # the ledger's Message-ID: a resend after a crash is recognisable as the same message
            "internetMessageId": message.message_id,
            # Graph takes custom headers only as X- headers; this one keeps out-of-office replies away
            "internetMessageHeaders": [{"name": "X-Auto-Response-Suppress", "value": "OOF, AutoReply"}],
        }
        if files:
            mail["attachments"] = files
        payload = {"message": mail, "saveToSentItems": True}
        size = len(json.dumps(payload))
        if size > _MAX_MAIL_REQUEST:
            raise PermanentSendError(
                f"the mail with its attachments is {size:,} bytes as Graph takes it; sendMail takes at most "
                f"{_MAX_MAIL_REQUEST:,}"
            )
        self.client.send_mail(payload)
        log.info("notice %s: sent through Graph", message.notice_id)
        return SendResult()


if TYPE_CHECKING:
    _IS_A_TRANSPORT: type[Transport] = GraphTransport


def _file(name: str, content_type: str, content: bytes) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type,
        "contentBytes": base64.b64encode(content).decode("ascii"),
    }


def _visible_text(markup: str) -> str:
    text = re.sub(r"<(head|style|script)\b.*?</\1\s*>", " ", markup, flags=re.IGNORECASE | re.DOTALL)
    text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(html.unescape(text).split())


def _attendee_set(attendees: Iterable[Any] | None) -> set[tuple[str, str]]:
    out = set()
    for a in attendees or ():
        address = ((a or {}).get("emailAddress") or {}).get("address")
        if address:
            out.add((str(address).casefold(), str(a.get("type") or "required").casefold()))
    return out


def _same(name: str, current: Any, wanted: Any) -> bool:
    """Whether the event already holds the value, so a retried update is not sent a second time."""
    if name in ("start", "end"):
        have = parse_graph_time(current)
        return have is not None and have == parse_graph_time(wanted)
    if name == "location":
        return str((current or {}).get("displayName") or "") == str(wanted.get("displayName") or "")
    if name == "attendees":
        return _attendee_set(current) == _attendee_set(wanted)
    if name == "body":  # Exchange stores HTML bodies rewrapped: compare what a reader sees
        return _visible_text(str((current or {}).get("content") or "")) == _visible_text(
            str(wanted["content"])
        )
    return (current or None) == (wanted or None)

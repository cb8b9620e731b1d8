"""Exchange transport: real meeting requests and mail through Exchange Web Services (exchangelib).

Invitations are booked as calendar items in the service mailbox's calendar, so Exchange sends the
meeting requests and tracks the attendees' answers (read back by ``sipflows.replies.exchange``). Other
notices are sent as messages with the ledger's Message-ID.

One calendar item per notice, i.e. per attendee and meeting. The ledger sends, retries and records each
notice on its own, and one item per notice keeps that exact: a retry, an update or a cancellation touches
that attendee's item only and never re-sends to the others. Each item gets its own iCalendar UID derived
from the meeting's (:func:`exchange_item_uid`) because Exchange pairs answers with the organiser's item
by UID; shared UIDs on several items would mix the attendees' answers up.

Nothing is sent twice when a run dies between Exchange accepting a send and the ledger recording it:
before booking, the calendar is searched for the item's UID; before mailing, Sent Items for the
Message-ID. Updates and cancellations use the item id the earlier send returned (``external_id``).

No exchangelib type leaves this module: callers see ``OutgoingMessage``/``SendResult``, the two send
errors and ``TransportUnavailable`` (Exchange cannot be reached, refuses our login or impersonation, or
stays busy beyond ``SIPFLOWS_EXCHANGE_MAX_WAIT_SECONDS``: no notice pays an attempt for that), so a
Microsoft Graph transport can sit beside this one. Credentials are read lazily (a Prefect
Secret block when configured), scrubbed from exchangelib's and requests-oauthlib's log records, and never
put into the messages of raised errors.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    secret_text,
)
from sipflows.transports.redact import Redactor

log = logging.getLogger(__name__)

# Loggers of the libraries that see credentials or tokens on the wire (request headers, token requests).
_LIBRARY_LOGGERS = ("exchangelib", "requests_oauthlib", "oauthlib", "requests_ntlm", "urllib3")
_MAX_ERROR_TEXT = 400

# EWS answers that say the message itself can never be delivered as it is
_PERMANENT_EWS_ERRORS = frozenset(
    {
        "ErrorInvalidRecipients",
        "ErrorMailRecipientNotFound",
        "ErrorInvalidSmtpAddress",
        "ErrorMissingRecipients",
        "ErrorMessageSizeExceeded",
        "ErrorInvalidRecipientSubfilter",
        "ErrorNonPrimarySmtpAddress",
    }
)
# The item fields a meeting notice sets, and those read back to compare and to cancel
_MEETING_FIELDS = (
    "subject",
    "start",
    "end",
    "location",
    "body",
    "required_attendees",
    "optional_attendees",
)
_READ_FIELDS = ("uid", "is_cancelled", *_MEETING_FIELDS)

# EWS answers that say the service (or our mailbox on it) cannot be used now, whatever the message
_SERVICE_EWS_ERRORS = frozenset(
    {
        "ErrorServerBusy",
        "ErrorConnectionFailed",
        "ErrorMailboxStoreUnavailable",
        "ErrorMailboxMoveInProgress",
        "ErrorInternalServerTransientError",
        "ErrorADUnavailable",
        "ErrorTimeoutExpired",
        "ErrorExceededConnectionCount",
        "ErrorTooManyObjectsOpened",
        "ErrorQuotaExceeded",  # the service mailbox is full: nothing can be saved or sent from it
    }
)
# ... and those that say our login or the service mailbox is wrong
_ACCOUNT_EWS_ERRORS = frozenset(
    {
        "ErrorImpersonateUserDenied",
        "ErrorImpersonationFailed",
        "ErrorNonExistentMailbox",
        "ErrorAccountDisabled",
        "ErrorNotDelegate",
        "ErrorAccessDenied",
        "ErrorInvalidLicense",
    }
)
# exchangelib errors raised before any EWS operation answered: the endpoint itself is the trouble
_CONNECTION_ERRORS = frozenset(
    {
        "TransportError",
        "RateLimitError",
        "MalformedResponseError",
        "RedirectError",
        "RelativeRedirect",
        "AutoDiscoverError",
        "AutoDiscoverFailed",
        "AutoDiscoverCircularRedirect",
        "CASError",
        "ConnectionError",  # requests
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "SSLError",
        "ProxyError",
    }
)
_LOGIN_ERRORS = frozenset(
    {
        "UnauthorizedError",
        "InvalidClientError",  # oauthlib: wrong client id or secret
        "InvalidClientIdError",
        "UnauthorizedClientError",
        "InvalidGrantError",
        "InvalidScopeError",
    }
)


def _endpoint_settings(settings: Settings) -> tuple[str, ...]:
    if settings.exchange_service_endpoint:
        return ("SIPFLOWS_EXCHANGE_SERVICE_ENDPOINT",)
    if settings.exchange_server:
        return ("SIPFLOWS_EXCHANGE_SERVER",)
    return ("SIPFLOWS_EXCHANGE_SERVICE_ENDPOINT", "SIPFLOWS_EXCHANGE_SERVER")


def _login_settings(settings: Settings) -> tuple[str, ...]:
    secret = (
        ("SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK",)
        if settings.exchange_credentials_block
        else ("SIPFLOWS_EXCHANGE_CLIENT_SECRET",)
        if settings.exchange_auth == "oauth2"
        else ("SIPFLOWS_EXCHANGE_PASSWORD",)
    )
    if settings.exchange_auth == "oauth2":
        return ("SIPFLOWS_EXCHANGE_CLIENT_ID", "SIPFLOWS_EXCHANGE_TENANT_ID", *secret)
    return ("SIPFLOWS_EXCHANGE_AUTH", "SIPFLOWS_EXCHANGE_USERNAME", *secret)


def _where(settings: Settings) -> str:
    if settings.exchange_service_endpoint:
        return settings.exchange_service_endpoint
    if settings.exchange_server:
        return f"server {settings.exchange_server}"
    return f"autodiscover for {settings.exchange_primary_smtp_address or settings.sender_address}"


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _refused_login(exc: BaseException) -> bool:
    """Whether Exchange answered 401 somewhere along the way (exchangelib's fault-tolerant retry policy
    treats a 401 as "busy", retries it, and finally reports only that it gave up)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if "HTTP 401" in str(seen) or type(seen).__name__ == "UnauthorizedError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def unavailable_error(exc: BaseException, settings: Settings) -> TransportUnavailable | None:
    """``TransportUnavailable`` when ``exc`` means Exchange cannot be used at all, else None."""
    name, names = type(exc).__name__, _names(exc)
    if name in _LOGIN_ERRORS or (name == "RateLimitError" and _refused_login(exc)):
        reason = describe_error(exc)
        if name == "RateLimitError":
            reason = f"Exchange refused our login (HTTP 401) until we gave up: {reason}"
        return TransportUnavailable("exchange", _where(settings), reason, _login_settings(settings))
    if name in _ACCOUNT_EWS_ERRORS:
        check = ("SIPFLOWS_EXCHANGE_PRIMARY_SMTP_ADDRESS", *_login_settings(settings))
    elif name in _SERVICE_EWS_ERRORS:
        check = _endpoint_settings(settings)
    elif {"ResponseMessageError", "SOAPError"} & names:
        return None  # an answer about this one item, not about the service
    elif names & _CONNECTION_ERRORS:
        check = _endpoint_settings(settings)
    else:
        return None
    return TransportUnavailable("exchange", _where(settings), describe_error(exc), check)


class ExchangeConfigurationError(TransportUnavailable):
    """The Exchange settings are incomplete; the message names the setting (never a secret)."""

    def __init__(
        self, reason: str, settings: tuple[str, ...] | list[str] = (), where: str = "Exchange"
    ) -> None:
        super().__init__("exchange", where, reason, settings)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.settings, self.where))


_REDACTOR = Redactor(_LIBRARY_LOGGERS)


def exchange_item_uid(meeting_uid: str, attendee_email: str) -> str:
    """The iCalendar UID of one attendee's item: the meeting's UID, "/", a digest of the address."""
    digest = hashlib.sha256(attendee_email.strip().casefold().encode()).hexdigest()[:16]
    return f"{meeting_uid}/{digest}"


def _basic_auth_forms(user: str, secret: str) -> Iterable[str]:
    """The Authorization values that carry the password (requests encodes Latin-1; NTLM adds a backslash)."""
    for name in (user, "\\" + user):
        for encoding in ("latin-1", "utf-8"):
            try:
                yield base64.b64encode(f"{name}:{secret}".encode(encoding)).decode()
            except UnicodeEncodeError:
                continue


def _secret(settings: Settings, loader: SecretLoader | None) -> str:
    block = settings.exchange_credentials_block
    if block:
        if loader is None:
            raise ExchangeConfigurationError(
                f"SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK names the Prefect Secret block {block!r}, which only "
                "the flows and the sipflows CLI can read; set SIPFLOWS_EXCHANGE_PASSWORD (or _CLIENT_SECRET) "
                "instead",
                ("SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK",),
            )
        try:
            value = loader(block)
        except Exception as exc:  # the block is missing, or the Prefect API cannot be reached
            raise ExchangeConfigurationError(
                f"the Prefect Secret block {block!r} cannot be read: {describe_error(exc)}",
                ("SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK",),
            ) from None
        text = secret_text(value, ("password", "client_secret", "secret"))
        if text is None:
            raise ExchangeConfigurationError(
                f"Prefect Secret block {block!r} holds no text secret (a string, or an object with "
                "password/client_secret)",
                ("SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK",),
            )
        return text
    if settings.exchange_auth == "oauth2":
        if settings.exchange_client_secret is None:
            raise ExchangeConfigurationError(
                "SIPFLOWS_EXCHANGE_CLIENT_SECRET (or SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK) is not set",
                ("SIPFLOWS_EXCHANGE_CLIENT_SECRET", "SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK"),
            )
        return settings.exchange_client_secret.get_secret_value()
    if settings.exchange_password is None:
        raise ExchangeConfigurationError(
            "SIPFLOWS_EXCHANGE_PASSWORD (or SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK) is not set",
            ("SIPFLOWS_EXCHANGE_PASSWORD", "SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK"),
        )
    return settings.exchange_password.get_secret_value()


def connect(settings: Settings, secret_loader: SecretLoader | None = None) -> Any:
    """An exchangelib ``Account`` for the service mailbox; no request is sent until it is used.

    OAuth2 client credentials (Exchange Online) act on the mailbox by impersonation, as app-only tokens
    must; NTLM/basic (on-premises) log in as a user with delegate access to it. ``secret_loader`` takes a
    Prefect Secret block name and returns the secret (default: load the block with Prefect).
    """
    from exchangelib import (
        BASIC,
        DELEGATE,
        IMPERSONATION,
        NTLM,
        OAUTH2,
        Account,
        Configuration,
        Credentials,
        EWSTimeZone,
        FaultTolerance,
        Identity,
        OAuth2Credentials,
    )

    address = settings.exchange_primary_smtp_address or settings.sender_address
    secret = _secret(settings, secret_loader)
    credentials: Any
    if settings.exchange_auth == "oauth2":
        if not settings.exchange_client_id or not settings.exchange_tenant_id:
            raise ExchangeConfigurationError(
                "OAuth2 needs SIPFLOWS_EXCHANGE_CLIENT_ID and SIPFLOWS_EXCHANGE_TENANT_ID",
                ("SIPFLOWS_EXCHANGE_CLIENT_ID", "SIPFLOWS_EXCHANGE_TENANT_ID"),
            )
        _REDACTOR.add(secret)
        credentials = OAuth2Credentials(
            client_id=settings.exchange_client_id,
            client_secret=secret,
            tenant_id=settings.exchange_tenant_id,
            identity=Identity(primary_smtp_address=address),
        )
        auth_type, access_type = OAUTH2, IMPERSONATION
    else:
        if not settings.exchange_username:
            raise ExchangeConfigurationError(
                f"{settings.exchange_auth} needs SIPFLOWS_EXCHANGE_USERNAME", ("SIPFLOWS_EXCHANGE_USERNAME",)
            )
        user = settings.exchange_username
        _REDACTOR.add(secret, *_basic_auth_forms(user, secret))
        credentials = Credentials(username=user, password=secret)
        auth_type = NTLM if settings.exchange_auth == "ntlm" else BASIC
        access_type = DELEGATE
    _REDACTOR.install()
    retry = FaultTolerance(max_wait=settings.exchange_max_wait_seconds)
    endpoint = settings.exchange_service_endpoint
    server = None if endpoint else settings.exchange_server
    config = Configuration(
        credentials=credentials,
        service_endpoint=endpoint,
        server=server,
        auth_type=auth_type,
        retry_policy=retry,
    )
    account = Account(
        primary_smtp_address=address,
        config=config,
        credentials=credentials,
        autodiscover=not (endpoint or server),
        access_type=access_type,
        default_timezone=EWSTimeZone(settings.timezone),
    )
    # exchangelib shares one protocol per endpoint and credentials; let this batch's retry policy rule it
    account.protocol.config.retry_policy = retry
    return account


def close(account: Any) -> None:
    """Release the account's HTTP sessions (exchangelib keeps the protocol cached for the next batch)."""
    account.protocol.close()


def describe_error(exc: BaseException) -> str:
    """The exception as text fit for a log or the ledger: credentials scrubbed, length bounded."""
    text = _REDACTOR.scrub(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"


def _send_error(exc: Exception, action: str) -> PermanentSendError | TransientSendError:
    if type(exc).__name__ in _PERMANENT_EWS_ERRORS:
        return PermanentSendError(f"Exchange rejected {action}: {describe_error(exc)}")
    return TransientSendError(f"Exchange could not {action}: {describe_error(exc)}")


class ExchangeTransport:
    """Sends notices through one Exchange service mailbox; opened once per batch."""

    name = "exchange"

    def __init__(self, settings: Settings, secret_loader: SecretLoader | None = None) -> None:
        self.settings = settings
        self._secret_loader = secret_loader
        self._account: Any = None
        self._tz: Any = None

    def __enter__(self) -> ExchangeTransport:
        from exchangelib import EWSTimeZone

        self._account = connect(self.settings, self._secret_loader)
        self._tz = EWSTimeZone(self.settings.timezone)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._account is not None:
            close(self._account)
            self._account = None

    def send(self, message: OutgoingMessage) -> SendResult:
        if self._account is None:
            raise RuntimeError("ExchangeTransport.send outside its with-block")
        meeting = message.meeting
        action = "send the notice" if meeting is None else f"send the meeting {meeting.method.lower()}"
        try:
            if meeting is None:
                return self._send_message(message)
            if meeting.method.upper() == "CANCEL":
                return self._cancel_meeting(message, meeting)
            return self._book_meeting(message, meeting)
        except (PermanentSendError, TransientSendError, TransportUnavailable):
            raise
        except Exception as exc:
            unavailable = unavailable_error(exc, self.settings)
            if unavailable is not None:
                raise unavailable from None
            log.warning("notice %s: %s", message.notice_id, describe_error(exc))
            raise _send_error(exc, action) from None

    # --- meetings --------------------------------------------------------------------------------------

    def _local(self, value: datetime) -> Any:
        from exchangelib import EWSDateTime

        if value.tzinfo is None:  # a caller's bug that no retry mends
            raise PermanentSendError("meeting times must be aware datetimes")
        local = value.astimezone(self._tz)
        return local if isinstance(local, EWSDateTime) else EWSDateTime.from_datetime(local)

    def _meeting_fields(self, message: OutgoingMessage, meeting: MeetingInfo) -> dict[str, Any]:
        from exchangelib import Attendee, HTMLBody, Mailbox

        address = message.to_address.strip()
        listed = next((a for a in meeting.attendees if a.email.casefold() == address.casefold()), None)
        required = listed.required if listed is not None else True
        name = message.to_name or (listed.name if listed is not None else None)
        attendee = Attendee(mailbox=Mailbox(email_address=address, name=name), response_type="Unknown")
        return {
            "subject": meeting.subject,
            "start": self._local(meeting.starts_at),
            "end": self._local(meeting.ends_at),
            "location": meeting.location,
            "body": HTMLBody(message.body_html),
            "required_attendees": [attendee] if required else None,
            "optional_attendees": None if required else [attendee],
        }

    def _fetch(self, item_id: str) -> Any | None:
        """The calendar item with this id, or None when Exchange no longer has it."""
        from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound

        (found,) = list(self._account.fetch(ids=[(item_id, None)], only_fields=list(_READ_FIELDS)))
        if isinstance(found, ErrorItemNotFound | ErrorInvalidIdMalformed):
            return None
        if isinstance(found, Exception):
            raise found
        return found

    def _find_by_uid(self, uid: str, meeting: MeetingInfo) -> Any | None:
        """The item an earlier attempt booked (its result never reached the ledger), by UID."""
        view = self._account.calendar.view(
            start=self._local(meeting.starts_at), end=self._local(meeting.ends_at)
        )
        for item in view.only(*_READ_FIELDS):
            if not isinstance(item, Exception) and item.uid == uid:
                return item
        return None

    def _existing(self, message: OutgoingMessage, meeting: MeetingInfo, uid: str) -> Any | None:
        if message.external_id:
            item = self._fetch(message.external_id)
            if item is not None:
                return item
            log.warning("notice %s: its earlier Exchange item is gone", message.notice_id)
        return self._find_by_uid(uid, meeting)

    def _book_meeting(self, message: OutgoingMessage, meeting: MeetingInfo) -> SendResult:
        from exchangelib import CalendarItem
        from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY

        uid = exchange_item_uid(meeting.uid, message.to_address)
        fields = self._meeting_fields(message, meeting)
        item = self._existing(message, meeting, uid)
        if item is None or item.is_cancelled:
            item = CalendarItem(account=self._account, folder=self._account.calendar, uid=uid, **fields)
            item.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
            log.info("notice %s: meeting request sent through Exchange", message.notice_id)
            return SendResult(external_id=item.id)
        changed = [name for name, value in fields.items() if not _same(name, getattr(item, name), value)]
        if changed:
            for name in changed:
                setattr(item, name, fields[name])
            item.save(update_fields=changed, send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
            log.info(
                "notice %s: meeting update sent through Exchange (%s)", message.notice_id, ", ".join(changed)
            )
        else:
            log.info("notice %s: the Exchange meeting already says this; nothing re-sent", message.notice_id)
        return SendResult(external_id=item.id)

    def _cancel_meeting(self, message: OutgoingMessage, meeting: MeetingInfo) -> SendResult:
        from exchangelib import HTMLBody

        uid = exchange_item_uid(meeting.uid, message.to_address)
        item = self._existing(message, meeting, uid)
        if item is None:
            # Never booked here, or removed in Exchange (which itself tells the attendees): nothing to cancel
            log.warning("notice %s: no Exchange meeting to cancel; nothing sent", message.notice_id)
            return SendResult(external_id=message.external_id)
        if not item.is_cancelled:
            item.cancel(new_body=HTMLBody(message.body_html))
            log.info("notice %s: meeting cancellation sent through Exchange", message.notice_id)
        return SendResult(external_id=item.id)

    # --- plain notices ---------------------------------------------------------------------------------

    def _already_sent(self, message_id: str) -> bool:
        return bool(self._account.sent.filter(message_id=message_id).only("message_id").exists())

    def _send_message(self, message: OutgoingMessage) -> SendResult:
        from exchangelib import FileAttachment, HTMLBody, Mailbox, Message

        if self._already_sent(message.message_id):
            log.info("notice %s: already in Sent Items; not sent again", message.notice_id)
            return SendResult()
        mail = Message(
            account=self._account,
            folder=self._account.sent,
            subject=message.subject,
            body=HTMLBody(message.body_html),
            to_recipients=[Mailbox(email_address=message.to_address, name=message.to_name)],
            message_id=message.message_id,
        )
        if message.ics:
            method = (message.ics_method or "PUBLISH").upper()
            mail.attach(
                FileAttachment(
                    name="invitation.ics",
                    content=message.ics.encode(),
                    content_type=f"text/calendar; charset=utf-8; method={method}",
                )
            )
        # the weekly report's HTML page and CSV figures travel as files, as over SMTP and Graph
        for attachment in message.attachments:
            mail.attach(
                FileAttachment(
                    name=attachment.filename, content=attachment.content, content_type=attachment.content_type
                )
            )
        mail.send_and_save()
        log.info("notice %s: sent through Exchange", message.notice_id)
        return SendResult()


if TYPE_CHECKING:
    _IS_A_TRANSPORT: type[Transport] = ExchangeTransport


def _addresses(attendees: Iterable[Any] | None) -> set[str]:
    return {str(a.mailbox.email_address).casefold() for a in attendees or ()}


def _visible_text(markup: str) -> str:
    text = re.sub(r"<(head|style|script)\b.*?</\1\s*>", " ", markup, flags=re.IGNORECASE | re.DOTALL)
    text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(html.unescape(text).split())


def _same(name: str, current: Any, wanted: Any) -> bool:
    """Whether the item already holds the value, so a retried update is not sent a second time."""
    if name in ("required_attendees", "optional_attendees"):
        return _addresses(current) == _addresses(wanted)
    if name in ("start", "end"):
        return current is not None and current == wanted
    if name == "body":  # Exchange stores HTML bodies rewrapped: compare what a reader sees
        return current is not None and _visible_text(str(current)) == _visible_text(str(wanted))
    return (current or None) == (wanted or None)

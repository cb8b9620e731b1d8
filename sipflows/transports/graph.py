"""Microsoft Graph transport: invitations and notices through Exchange Online once EWS is switched off.

Invitations become events in the SIP mailbox's calendar (``SIPFLOWS_GRAPH_MAILBOX``) with the attendee,
so Exchange Online sends the meeting request, tracks the answer, and sends the updates and cancellations
when sipflows PATCHes or cancels the event. Other notices are mails sent from that mailbox (``sendMail``)
with the ledger's Message-ID as ``internetMessageId``, so a resend is recognisable as with SMTP.

The model is the Exchange transport's: one event per notice, i.e. per meeting and attendee, so a retry,
an update or a cancellation touches that attendee's event only and never re-sends to the others. Graph
does not let a client choose an event's iCalendar UID, so each event carries two named MAPI properties of
our own (single-value extended properties): the *booking* key (the meeting's UID and a digest of the
attendee's address, as the Exchange transport's item UID) and the meeting's UID. A run that dies between
Graph creating the event and the ledger recording it finds the event again by its booking key before
creating anything; the create itself carries a ``transactionId`` derived from the booking and the notice
key, so Graph drops a repeated POST (a retry after a lost answer) too. Either way: one event.

App-only authentication through msal (client secret, a Prefect Secret block, or a certificate); the
token is cached per transport and, when Graph refuses it, fetched again once. Throttling (429, 503, and
the gateway's 502/504) is waited out as Graph's ``Retry-After`` asks, within a bounded total wait per
batch, and never counts against a notice. An unreachable, misconfigured or unauthorised Graph raises
``TransportUnavailable``: the transport as a whole cannot be used, no notice is to blame.

TLS is always verified, the same way for the token and the Graph calls: msal is given our httpx
connection (msal's documented minimal HTTP interface) instead of its own requests session. Left alone,
httpx would trust certifi or SSL_CERT_FILE/SSL_CERT_DIR and requests certifi or REQUESTS_CA_BUNDLE/
CURL_CA_BUNDLE; here every CA named in any of the four variables is trusted by both kinds of call.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from sipflows.notices.mime import MailMessage, check_address
from sipflows.settings import Settings
from sipflows.transports.base import (
    MeetingInfo,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    Transport,
    TransportUnavailable,
)

if TYPE_CHECKING:
    import httpx
    import msal

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
_AUTH_HEADER = re.compile(r"((?:authorization)['\"]?\s*[:=]\s*['\"]?(?:basic|bearer)\s+)[^\s'\",}]+", re.I)
_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.I)
_TOKEN_FIELD = re.compile(
    r"((?:access_token|refresh_token|id_token|client_secret|client_assertion|passphrase)['\"]?\s*[:=]\s*['\"]?)"
    r"[^\s'\"&,}]+",
    re.I,
)
_REDACTED = "[redacted]"


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


class _Scrubber(logging.Filter):
    """Keeps the client secret, the key's passphrase and bearer tokens out of log records and errors."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, *values: str | None) -> None:
        self._secrets.update(v for v in values if v and len(v) >= 3)

    def scrub(self, text: str) -> str:
        text = _AUTH_HEADER.sub(rf"\1{_REDACTED}", text)
        text = _BEARER.sub(rf"\1{_REDACTED}", text)
        text = _TOKEN_FIELD.sub(rf"\1{_REDACTED}", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business
            return True
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

    def install(self) -> None:
        existing = [n for n in logging.root.manager.loggerDict if n.startswith(_LIBRARY_LOGGERS)]
        for name in {*_LIBRARY_LOGGERS, *existing}:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)


_SCRUBBER = _Scrubber()


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


# ---------------------------------------------------------------------------------------- trust (TLS)

_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def trusted_locations(environ: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """The CA files or folders the operator named in the standard variables (each must exist)."""
    env = os.environ if environ is None else environ
    found: list[tuple[str, Path]] = []
    for variable in _CA_VARIABLES:
        value = env.get(variable)
        if not value:
            continue
        path = Path(value)
        if not path.exists():
            raise GraphConfigurationError(f"{variable} names {value}, which does not exist")
        found.append((variable, path))
    return found


def ssl_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context for the token and the Graph calls: the named CAs (all of them), else
    certifi's (what httpx and requests both trust by default). Built once per set of files."""
    locations = trusted_locations(environ)
    key = tuple((variable, str(path), path.stat().st_mtime_ns) for variable, path in locations)
    return _context_for(key)


@functools.lru_cache(maxsize=8)
def _context_for(locations: tuple[tuple[str, str, int], ...]) -> ssl.SSLContext:
    if not locations:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    # as SSL_CERT_FILE means for OpenSSL: these CAs instead of the default store, not beside it
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for variable, name, _ in locations:
        path = Path(name)
        try:
            if path.is_dir():
                context.load_verify_locations(capath=name)
            else:
                context.load_verify_locations(cafile=name)
        except (ssl.SSLError, OSError) as exc:
            raise GraphConfigurationError(
                f"{variable} ({path}) holds no usable CA certificates: {exc}"
            ) from None
    return context


# ------------------------------------------------------------------------------------------ credentials


def _prefect_secret(block_name: str) -> str:
    """The client secret from a Prefect Secret block: a string, or an object with client_secret/secret."""
    from prefect.blocks.system import Secret  # lazily: the domain library works without Prefect

    block: Any = Secret.load(block_name)
    value = block.get()
    if isinstance(value, dict):
        for key in ("client_secret", "secret", "password"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
        raise GraphConfigurationError(
            f"Prefect Secret block {block_name!r} (SIPFLOWS_GRAPH_CREDENTIALS_BLOCK) holds an object "
            "without client_secret"
        )
    if not isinstance(value, str) or not value:
        raise GraphConfigurationError(
            f"Prefect Secret block {block_name!r} (SIPFLOWS_GRAPH_CREDENTIALS_BLOCK) holds no text secret"
        )
    return value


_PEM_KEY = re.compile(r"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def certificate_credential(path: Path, passphrase: str | None) -> dict[str, str]:
    """msal's certificate credential from one PEM file holding the private key and its certificate.

    Checked here, so a wrong file or passphrase is named before any request: the key must load and
    belong to the (first) certificate, whose SHA-256 thumbprint msal sends (PS256 client assertion).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    name = "SIPFLOWS_GRAPH_CERTIFICATE_PATH"
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise GraphConfigurationError(f"{name} ({path}) cannot be read: {exc.strerror}") from None
    key_match, certs = _PEM_KEY.search(text), _PEM_CERT.findall(text)
    if key_match is None:
        raise GraphConfigurationError(f"{name} ({path}) holds no PEM private key")
    if not certs:
        raise GraphConfigurationError(f"{name} ({path}) holds no PEM certificate")
    secret = passphrase.encode() if passphrase else None
    try:
        key = serialization.load_pem_private_key(key_match.group(0).encode(), password=secret)
    except (TypeError, ValueError):
        raise GraphConfigurationError(
            f"the private key in {name} ({path}) cannot be read: wrong or missing "
            "SIPFLOWS_GRAPH_CERTIFICATE_PASSWORD, or not a key"
        ) from None
    try:
        cert = x509.load_pem_x509_certificate(certs[0].encode())
    except ValueError:
        raise GraphConfigurationError(f"the certificate in {name} ({path}) cannot be read") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise GraphConfigurationError(
            f"the private key in {name} ({path}) does not belong to its certificate"
        )
    credential = {"private_key": key_match.group(0), "public_certificate": certs[0]}
    if passphrase:
        credential["passphrase"] = passphrase
    return credential


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


# ---------------------------------------------------------------------------------------- the client


class _AuthorityHttp:
    """msal's HTTP client (its minimal ``get``/``post`` interface) on the GraphClient's httpx connection,
    so the sign-in authority is reached with the same TLS trust, proxy and timeout as Graph."""

    def __init__(self, owner: GraphClient) -> None:
        self._owner = owner

    def _client(self) -> httpx.Client:
        http = self._owner._http
        if http is None:
            raise RuntimeError("token requested outside GraphClient.open()")
        return http

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any
    ) -> httpx.Response:
        if isinstance(data, str | bytes):  # sent as it is, as msal's interface asks
            return self._client().post(url, params=params, content=data, headers=headers)
        # msal hands the signed client assertion over as bytes; a form field is text (requests decodes
        # bytes values itself, httpx would send their repr)
        form = {k: v.decode() if isinstance(v, bytes) else v for k, v in (data or {}).items()}
        return self._client().post(url, params=params, data=form, headers=headers)

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> httpx.Response:
        return self._client().get(url, params=params, headers=headers)

    def close(self) -> None:  # the connection is the GraphClient's to close
        pass


def _unreachable(exc: Exception, where: str) -> TransportUnavailable:
    hint = (
        "; a private CA is trusted through SSL_CERT_FILE or REQUESTS_CA_BUNDLE"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc)
        else ""
    )
    return _unavailable(describe(f"cannot reach {where}: {type(exc).__name__}: {exc}{hint}"))


class GraphClient:
    """App-only Microsoft Graph for one mailbox: msal token, httpx calls, throttling, errors by kind.

    ``open()`` (or ``with``) connects, fetches a token and checks that the mailbox's calendar can be read,
    so a wrong setting, permission or certificate stops everything before any notice is touched. The
    msal application (and with it the token) lives as long as this object; the HTTP connections from
    ``open`` to ``close``. ``sleep`` is how throttling is waited out (tests pass their own clock).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        secret_loader: SecretLoader | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.tenant_id = _required(settings.graph_tenant_id, "SIPFLOWS_GRAPH_TENANT_ID")
        self.client_id = _required(settings.graph_client_id, "SIPFLOWS_GRAPH_CLIENT_ID")
        mailbox = _required(settings.graph_mailbox, "SIPFLOWS_GRAPH_MAILBOX")
        try:
            self.mailbox = check_address(mailbox)
        except ValueError:
            raise GraphConfigurationError(
                f"SIPFLOWS_GRAPH_MAILBOX is not an email address: {mailbox!r}"
            ) from None
        self.base_url = _https(settings.graph_base_url, "SIPFLOWS_GRAPH_BASE_URL").rstrip("/")
        self.authority = (
            _https(settings.graph_authority_url, "SIPFLOWS_GRAPH_AUTHORITY_URL").rstrip("/")
            + "/"
            + quote(self.tenant_id, safe="")
        )
        self.scope = graph_scope(self.base_url)
        has_secret = settings.graph_client_secret is not None or bool(settings.graph_credentials_block)
        certificate = settings.graph_certificate_path
        if certificate is not None and has_secret:
            raise GraphConfigurationError(
                "set SIPFLOWS_GRAPH_CERTIFICATE_PATH or SIPFLOWS_GRAPH_CLIENT_SECRET "
                "(or SIPFLOWS_GRAPH_CREDENTIALS_BLOCK), not both"
            )
        if certificate is None and not has_secret:
            raise GraphConfigurationError(
                "SIPFLOWS_GRAPH_CLIENT_SECRET (or SIPFLOWS_GRAPH_CERTIFICATE_PATH, or "
                "SIPFLOWS_GRAPH_CREDENTIALS_BLOCK) is not set"
            )
        if certificate is not None and not certificate.is_file():
            raise GraphConfigurationError(
                f"SIPFLOWS_GRAPH_CERTIFICATE_PATH names {certificate}, which is not a file"
            )
        self._secret_loader = secret_loader
        self._sleep = sleep
        self._app: msal.ConfidentialClientApplication | None = None
        self._http: httpx.Client | None = None
        self._checked = False
        self.waited = 0.0  # seconds spent waiting out throttling since open()

    # --- connection and token -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._http is not None

    def __enter__(self) -> GraphClient:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        import httpx

        _SCRUBBER.install()
        self.waited = 0.0
        if self._http is None:
            context = ssl_context()
            self._http = httpx.Client(
                base_url=self.base_url + "/",
                verify=context,
                timeout=httpx.Timeout(self.settings.graph_timeout_seconds),
                transport=httpx.HTTPTransport(verify=context, retries=1),  # one retry of a failed connect
                headers={"User-Agent": "sipflows"},
            )
        try:
            if self._app is None:
                self._app = self._build_app()
            if not self._checked:
                self._check_mailbox()
                self._checked = True
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            http.close()

    def _credential(self) -> str | dict[str, str]:
        settings = self.settings
        if settings.graph_certificate_path is not None:
            passphrase = settings.graph_certificate_password
            secret = passphrase.get_secret_value() if passphrase is not None else None
            _SCRUBBER.add(secret)
            return certificate_credential(settings.graph_certificate_path, secret)
        if settings.graph_credentials_block:
            value = (self._secret_loader or _prefect_secret)(settings.graph_credentials_block)
        else:
            assert settings.graph_client_secret is not None  # checked in __init__
            value = settings.graph_client_secret.get_secret_value()
        _SCRUBBER.add(value, quote(value, safe=""))
        return value

    def _build_app(self) -> msal.ConfidentialClientApplication:
        """msal's client for our tenant; reads the authority's OpenID configuration (never Microsoft's
        instance discovery: a non-default authority is used exactly as given)."""
        import httpx
        import msal

        credential = self._credential()
        try:
            return msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=credential,
                authority=self.authority,
                instance_discovery=False,
                http_client=_AuthorityHttp(self),
                token_cache=msal.TokenCache(),
            )
        except httpx.HTTPError as exc:
            raise _unreachable(exc, f"the sign-in authority {self.authority}") from None
        except ValueError as exc:
            raise GraphConfigurationError(
                describe(
                    f"the sign-in authority {self.authority} has no OpenID configuration for the tenant: "
                    f"check SIPFLOWS_GRAPH_TENANT_ID and SIPFLOWS_GRAPH_AUTHORITY_URL (msal: {exc})"
                )
            ) from None

    def _token(self) -> str:
        import httpx

        assert self._app is not None
        try:
            result = self._app.acquire_token_for_client(scopes=[self.scope])
        except httpx.HTTPError as exc:
            raise _unreachable(exc, f"the sign-in authority {self.authority}") from None
        token = (result or {}).get("access_token")
        if not token:
            error = (result or {}).get("error") or "no token"
            detail = str((result or {}).get("error_description") or "").splitlines()
            raise _unavailable(
                describe(
                    f"Microsoft Entra ID refused a token for client {self.client_id}: {error}"
                    + (f": {detail[0]}" if detail else "")
                    + " — check SIPFLOWS_GRAPH_CLIENT_ID and its secret or certificate"
                )
            )
        if result.get("token_source") != "cache":
            log.info("Graph: a new app-only token from %s", self.authority)
        return str(token)

    def _drop_token(self) -> None:
        """Forget the cached token (Graph refused it: expired early or revoked) so msal fetches a new one."""
        assert self._app is not None
        cache = self._app.token_cache
        for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(entry)

    # --- requests ---------------------------------------------------------------------------------------

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        value = response.headers.get("Retry-After", "").strip()
        if value:
            try:
                return max(float(value), 0.0)
            except ValueError:
                try:
                    when = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    when = None
                if when is not None:
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=UTC)
                    # the transport edge: the only place this module looks at the clock
                    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
        return float(min(2**attempt, 60))

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        action: str,
    ) -> httpx.Response:
        """One Graph call: bearer token, a new token once on 401, throttling waited out.

        Returns Graph's response for every other status. Raises ``TransportUnavailable`` when Graph
        cannot be reached or refuses us (401 twice, 403), or keeps throttling past the batch's budget;
        ``TransientSendError`` when an answer was lost on the way (the call may have been carried out).
        """
        import httpx

        if self._http is None:
            raise RuntimeError("GraphClient used outside open()/close()")
        refreshed = False
        throttled = 0
        while True:
            token = self._token()
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                # times in UTC, and ids that survive moves between folders (they sit in the ledger)
                "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"',
                "client-request-id": str(uuid.uuid4()),
            }
            if params:  # spaces as %20, as OData wants them (not the form encoding's "+")
                url = (
                    url
                    + "?"
                    + "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in params.items())
                )
                params = None
            try:
                response = self._http.request(method, url, json=body, headers=headers)
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.ProxyError,
                httpx.UnsupportedProtocol,
            ) as exc:
                raise _unreachable(exc, f"Microsoft Graph at {self.base_url}") from None
            except httpx.TransportError as exc:  # timeouts, a dropped connection: the call's fate is unknown
                raise TransientSendError(
                    describe(f"Graph did not answer how it went with {action}: {type(exc).__name__}: {exc}")
                ) from None
            status = response.status_code
            if status == 401:
                if not refreshed:
                    log.info("Graph refused the token (%s); fetching a new one", _error_of(response)[0])
                    self._drop_token()
                    refreshed = True
                    continue
                raise _unavailable(_what_failed(response, action) + " — a fresh token was refused as well")
            if status == 403:
                raise _unavailable(
                    _what_failed(response, action)
                    + f" — the app needs Calendars.ReadWrite and Mail.Send on {self.mailbox}"
                    " (application permissions, and an access policy or RBAC scope that includes it)"
                )
            if status in _THROTTLED:
                delay = self._retry_after(response, throttled)
                throttled += 1
                budget = self.settings.graph_max_wait_seconds
                if self.waited + delay > budget:
                    raise _unavailable(
                        _what_failed(response, action)
                        + f" — Graph asks to wait {delay:.0f} s more; this batch has waited"
                        f" {self.waited:.0f} of {budget:.0f} s (SIPFLOWS_GRAPH_MAX_WAIT_SECONDS)"
                    )
                log.info("Graph is throttling (%s): waiting %.1f s as it asks", status, delay)
                self._sleep(delay)
                self.waited += delay
                continue
            return response

    def _mailbox_path(self, *parts: str) -> str:
        return "/".join(["users", quote(self.mailbox, safe="@"), *parts])

    def _event_path(self, event_id: str, *parts: str) -> str:
        return self._mailbox_path("events", quote(event_id, safe=""), *parts)

    def _fail(self, response: httpx.Response, action: str, *, item: bool = False) -> Exception:
        """What a non-success answer means: the notice's fault, a passing trouble, or the mailbox's."""
        status, (code, _) = response.status_code, _error_of(response)
        text = _what_failed(response, action)
        if status == 404 and (not item or code in _MAILBOX_ERRORS):
            return _unavailable(text + " — check SIPFLOWS_GRAPH_MAILBOX")
        if status in (400, 404, 413, 415, 422):
            return PermanentSendError(text)
        return TransientSendError(text)

    def _check_mailbox(self) -> None:
        action = f"open the calendar of {self.mailbox}"
        response = self.request(
            "GET", self._mailbox_path("calendar"), params={"$select": "id"}, action=action
        )
        if response.status_code != 200:
            error = self._fail(response, action)
            raise error if isinstance(error, TransportUnavailable) else _unavailable(str(error))

    # --- events -----------------------------------------------------------------------------------------

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """The event with this id (and our properties), or None when the mailbox no longer has it."""
        action = "read an event"
        response = self.request(
            "GET",
            self._event_path(event_id),
            params={"$select": _EVENT_FIELDS, "$expand": _EXPAND},
            action=action,
        )
        if response.status_code == 404 and _error_of(response)[0] not in _MAILBOX_ERRORS:
            return None
        if response.status_code == 400 and _error_of(response)[0] == "ErrorInvalidIdMalformed":
            return None
        if response.status_code != 200:
            raise self._fail(response, action, item=True)
        return dict(response.json())

    def find_events(self, booking: str) -> list[dict[str, Any]]:
        """The events in the mailbox that carry this booking key (normally one)."""
        value = booking.replace("'", "''")
        action = "look up an event"
        response = self.request(
            "GET",
            self._mailbox_path("events"),
            params={
                "$filter": (
                    f"singleValueExtendedProperties/any(ep: ep/id eq '{BOOKING_PROPERTY}' "
                    f"and ep/value eq '{value}')"
                ),
                "$select": _EVENT_FIELDS,
                "$expand": _EXPAND,
            },
            action=action,
        )
        if response.status_code != 200:
            raise self._fail(response, action)
        found = response.json().get("value") or []
        return [dict(e) for e in found if _property(e, BOOKING_PROPERTY) == booking]

    def create_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        action = "create the event"
        response = self.request("POST", self._mailbox_path("events"), body=event, action=action)
        if response.status_code not in (200, 201):
            raise self._fail(response, action)
        return dict(response.json())

    def update_event(self, event_id: str, changes: Mapping[str, Any]) -> None:
        action = "update the event"
        response = self.request("PATCH", self._event_path(event_id), body=changes, action=action)
        if response.status_code not in (200, 204):
            raise self._fail(response, action, item=True)

    def cancel_event(self, event_id: str, comment: str) -> bool:
        """Cancel the event (Exchange sends the cancellation); False when it is no longer there."""
        action = "cancel the event"
        response = self.request(
            "POST", self._event_path(event_id, "cancel"), body={"comment": comment}, action=action
        )
        if response.status_code == 404 and _error_of(response)[0] not in _MAILBOX_ERRORS:
            return False
        if response.status_code not in (200, 202, 204):
            raise self._fail(response, action, item=True)
        return True

    # --- mail -------------------------------------------------------------------------------------------

    def send_mail(self, payload: Mapping[str, Any]) -> None:
        action = "send the mail"
        response = self.request("POST", self._mailbox_path("sendMail"), body=payload, action=action)
        if response.status_code not in (200, 202, 204):
            raise self._fail(response, action)

    # --- answers ----------------------------------------------------------------------------------------

    def event_responses(self, event_id: str) -> EventResponses | None:
        """The attendees' answers on one event sipflows booked; None when it is gone or not ours."""
        try:
            event = self.get_event(event_id)
        except (PermanentSendError, TransientSendError) as exc:
            raise GraphReadError(str(exc)) from None
        return _responses(event) if event is not None else None

    def attendee_responses(self, start: datetime, end: datetime) -> list[EventResponses]:
        """The attendees' answers on every event sipflows booked that overlaps ``[start, end)``.

        Reads the mailbox's calendar view page by page and keeps the events that carry our properties
        (so the meeting's UID comes with each). Cancelled events are gone from the organiser's calendar.
        Raises ``TransportUnavailable`` as every call does, ``GraphReadError`` for another refusal.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be aware datetimes")
        action = "read the calendar view"
        url: str | None = self._mailbox_path("calendarView")
        params: dict[str, str] | None = {
            "startDateTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "$select": _EVENT_FIELDS,
            "$expand": _EXPAND,
            "$top": "100",
        }
        found: list[EventResponses] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            response = self.request("GET", url, params=params, action=action)
            if response.status_code != 200:
                error = self._fail(response, action)
                raise error if isinstance(error, TransportUnavailable) else GraphReadError(str(error))
            page = response.json()
            for event in page.get("value") or ():
                booked = _responses(event)
                if booked is not None:
                    found.append(booked)
            url, params = page.get("@odata.nextLink"), None
            if url is not None and not str(url).startswith(self.base_url + "/"):
                raise GraphReadError(describe(f"Graph's next page is not on {self.base_url}: {url}"))
        return found


def _required(value: str | None, variable: str) -> str:
    if value is None or not value.strip():
        raise GraphConfigurationError(f"{variable} is not set")
    return value.strip()


def _https(url: str, variable: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise GraphConfigurationError(f"{variable} must be an https:// URL, not {url!r}")
    return url.strip()


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
        for attachment in message.attachments if isinstance(message, MailMessage) else ():
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

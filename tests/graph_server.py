"""A small Microsoft Entra ID + Microsoft Graph for tests, over HTTPS with a test CA (trustme).

msal's and httpx's real code talk to it: the OpenID configuration document and the OAuth2 token endpoint
of a tenant (client credentials with a secret, in the body or as HTTP Basic, or a certificate's signed
client assertion, checked with PyJWT), and the Graph calls sipflows makes on one mailbox — the calendar,
events (create with ``transactionId``, get, list by a single-value extended property, calendarView,
PATCH, cancel) and sendMail with file attachments. It keeps its state in memory, so a test can assert
what Exchange Online would have done (``sent``: the meeting requests, updates, cancellations and mails
it would have sent), play attendees' answers back (``respond``; ``forward`` adds an attendee as a
forwarded invitation does) and make calls fail (``fail``: a status with ``Retry-After``, before or after
the call took effect, or a dropped connection). Like Graph, it refuses a calendar view over 1,825 days.

    with GraphServer(tmp_path) as graph:
        settings = Settings(graph_authority_url=graph.authority_url, graph_base_url=graph.base_url, ...)
        # and SSL_CERT_FILE / REQUESTS_CA_BUNDLE = graph.ca_file, as an operator trusts a private CA

Like Graph, it answers in UTC (sipflows asks for ``Prefer: outlook.timezone="UTC"``) and only accepts time
zones Exchange knows (Windows names, a few IANA ones).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import jwt
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# Windows zone names (and the IANA names Graph's calendar API lists) this server accepts
TIME_ZONES = {
    "UTC": "UTC",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "FLE Standard Time": "Europe/Helsinki",
    "GMT Standard Time": "Europe/London",
    "Europe/Berlin": "Europe/Berlin",
    "Europe/London": "Europe/London",
    "Europe/Paris": "Europe/Paris",
}
RESPONSES = ("none", "organizer", "tentativelyAccepted", "accepted", "declined", "notResponded")
NO_TIME = "0001-01-01T00:00:00Z"
_PROPERTY_ID = re.compile(r"String \{[0-9a-fA-F-]{36}\} Name \w+")
_ADDRESS = re.compile(r"[^@\s<>]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_MESSAGE_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")
_FILTER_BY_PROPERTY = re.compile(
    r"singleValueExtendedProperties/any\(ep:\s*ep/id eq '((?:[^']|'')*)' and ep/value eq '((?:[^']|'')*)'\)",
    re.IGNORECASE,
)
_EXPAND = re.compile(r"singleValueExtendedProperties\(\$filter=(.*)\)", re.IGNORECASE)
MAX_REQUEST = 4 * 1024 * 1024
MAX_VIEW_DAYS = 1825  # Graph refuses a longer calendarView


def graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000")


def parse_time(obj: Any) -> datetime:
    """A dateTimeTimeZone as sent by a client; ValueError for anything Graph would refuse."""
    if not isinstance(obj, dict) or not isinstance(obj.get("dateTime"), str):
        raise ValueError("dateTimeTimeZone expected")
    zone = obj.get("timeZone") or "UTC"
    if zone not in TIME_ZONES:
        raise LookupError(zone)
    local = datetime.fromisoformat(obj["dateTime"][:26])
    if local.tzinfo is not None:
        raise ValueError("dateTime carries an offset")
    return local.replace(tzinfo=ZoneInfo(TIME_ZONES[zone])).astimezone(UTC)


def make_client_certificate(
    path: Path, passphrase: str | None = None, common_name: str = "sipflows"
) -> bytes:
    """An RSA key and its self-signed certificate in one PEM file (as an admin uploads the .cer part to
    the app registration); returns the certificate's PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(key_pem + cert_pem)
    return cert_pem


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class SentMail:
    """What the mailbox would have sent: a meeting request, update or cancellation, or a mail."""

    kind: str  # meeting_request | meeting_update | meeting_cancellation | message
    recipients: tuple[str, ...]
    subject: str | None
    event_id: str | None = None
    message: dict[str, Any] | None = None  # the mail as sendMail got it

    @property
    def internet_message_id(self) -> str | None:
        return (self.message or {}).get("internetMessageId")

    def attachments(self) -> list[tuple[str, str, bytes]]:
        """(name, contentType, content) of each file attachment."""
        return [
            (a["name"], a.get("contentType", ""), base64.b64decode(a["contentBytes"]))
            for a in (self.message or {}).get("attachments") or ()
        ]


@dataclass
class Event:
    id: str
    data: dict[str, Any]  # as the client sent it, with Graph's own fields added
    starts_at: datetime
    ends_at: datetime
    created: datetime
    modified: datetime
    cancelled: bool = False  # cancelled by the organiser: moved to Deleted Items
    deleted: bool = False  # gone altogether (someone emptied Deleted Items)

    @property
    def attendees(self) -> list[dict[str, Any]]:
        return list(self.data.get("attendees") or [])

    def attendee_addresses(self) -> list[str]:
        return [a["emailAddress"]["address"] for a in self.attendees]

    def prop(self, property_id: str) -> str | None:
        for p in self.data.get("singleValueExtendedProperties") or ():
            if p["id"].casefold() == property_id.casefold():
                return str(p["value"])
        return None

    @property
    def location(self) -> str | None:
        return (self.data.get("location") or {}).get("displayName")

    @property
    def subject(self) -> str | None:
        return self.data.get("subject")


@dataclass
class _Fault:
    method: str | None
    path: str | None  # a substring of the path (after the version)
    status: int
    times: int
    retry_after: str | None
    code: str
    after: bool  # carry the call out first, then answer with the fault (the answer is lost)
    drop: bool  # close the connection without an answer
    hits: int = 0


@dataclass
class _Token:
    value: str
    expires: float
    client_id: str
    scope: str


@dataclass
class _State:
    events: dict[str, Event] = field(default_factory=dict)
    transactions: dict[str, str] = field(default_factory=dict)


class GraphServer:
    """Entra ID's token endpoint and a Graph mailbox on https://127.0.0.1:<free port>."""

    def __init__(
        self,
        folder: Path,
        *,
        tenant: str = "kommun.onmicrosoft.example",
        client_id: str = "9f0c1d2e-app",
        client_secret: str | None = "client-secret-~8Q.abc",
        client_certificate: bytes | None = None,  # PEM, as uploaded to the app registration
        mailbox: str = "sip@kommun.example.se",
        token_lifetime: int = 3599,
        permissions: tuple[str, ...] = ("Calendars.ReadWrite", "Mail.Send"),
    ) -> None:
        self.folder = folder
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.client_certificate = (
            x509.load_pem_x509_certificate(client_certificate) if client_certificate else None
        )
        self.mailbox = mailbox
        self.token_lifetime = token_lifetime
        self.permissions = set(permissions)
        self.requests: list[Recorded] = []
        self.token_requests: list[dict[str, str]] = []
        self.sent: list[SentMail] = []
        self.rejected_recipients: set[str] = set()  # addresses Exchange refuses (ErrorInvalidRecipients)
        self.resource: str | None = None  # the Graph origin tokens are for, when not this server
        self.page_size = 100  # Graph pages long answers whatever $top asks
        self.state = _State()
        self._tokens: dict[str, _Token] = {}
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca = trustme.CA()
        self.ca_file = folder / "graph-test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._server_cert = self.ca.issue_cert("127.0.0.1", "localhost")

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> GraphServer:
        server = self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_cert.configure_cert(context)

        class Handler(_Handler):
            graph = server

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                try:  # the TLS handshake happens here, in the request's own thread
                    tls = context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # e.g. a client that does not trust our CA hangs up
                try:
                    super().finish_request(tls, client_address)
                finally:
                    with contextlib.suppress(OSError):
                        tls.close()

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def authority_url(self) -> str:
        return self.url

    @property
    def base_url(self) -> str:
        return self.url + "/v1.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        """The app-only scope of the Graph this authority issues tokens for (``resource`` or our own)."""
        return (self.resource or self.url) + "/.default"

    # --- test controls ---------------------------------------------------------------------------------

    def fail(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: float | str | None = None,
        code: str | None = None,
        after: bool = False,
        drop: bool = False,
    ) -> None:
        """Answer the next ``times`` Graph calls matching ``method`` and ``path`` (a substring) with
        ``status`` (and ``Retry-After``); ``after``: only once the call took effect; ``drop``: hang up."""
        default = {
            429: "TooManyRequests",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
            500: "InternalServerError",
        }.get(status, "ErrorInvalidRequest")
        with self._lock:
            self._faults.append(
                _Fault(
                    method,
                    path,
                    status,
                    times,
                    None if retry_after is None else str(retry_after),
                    code or default,
                    after,
                    drop,
                )
            )

    def expire_tokens(self) -> None:
        """Every token handed out so far is refused from now on (expired early, or revoked)."""
        with self._lock:
            self._tokens.clear()

    def respond(self, event_id: str, address: str, response: str, when: datetime | None) -> None:
        """An attendee answers: Exchange records it on the organiser's event."""
        assert response in RESPONSES
        with self._lock:
            event = self.state.events[event_id]
            for attendee in event.data["attendees"]:
                if attendee["emailAddress"]["address"].casefold() == address.casefold():
                    attendee["status"] = {
                        "response": response,
                        "time": (when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else NO_TIME),
                    }
                    return
            raise KeyError(address)

    def forward(self, event_id: str, address: str, name: str | None = None) -> None:
        """An attendee forwards the invitation: Exchange adds the new attendee to the organiser's event
        (from the meeting forward notification), with no answer yet."""
        with self._lock:
            event = self.state.events[event_id]
            event.data["attendees"].append(
                {
                    "type": "required",
                    "emailAddress": {"address": address, "name": name or address},
                    "status": {"response": "none", "time": NO_TIME},
                }
            )

    def events(self, *, include_cancelled: bool = True) -> list[Event]:
        with self._lock:
            return [
                e
                for e in self.state.events.values()
                if not e.deleted and (include_cancelled or not e.cancelled)
            ]

    def graph_requests(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if "/v1.0/" in r.path
            and (method is None or r.method == method)
            and (path is None or path in r.path)
        ]

    # --- internals used by the handler -----------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.hits >= fault.times:
                    continue
                if fault.method not in (None, method) or (fault.path is not None and fault.path not in path):
                    continue
                fault.hits += 1
                return fault
        return None

    def issue_token(self, client_id: str, scope: str) -> _Token:
        token = _Token(
            "eyJ0eXAi." + secrets.token_urlsafe(32), time.monotonic() + self.token_lifetime, client_id, scope
        )
        with self._lock:
            self._tokens[token.value] = token
        return token

    def valid_token(self, value: str) -> bool:
        with self._lock:
            token = self._tokens.get(value)
            return token is not None and token.expires > time.monotonic()

    def new_id(self) -> str:
        # long, with characters that must be escaped in a URL path, as Exchange's ids are
        return "AAMkAGI2" + base64.b64encode(f"sip-event-{next(self._ids)}".encode()).decode() + "+/AAA="


class _Handler(BaseHTTPRequestHandler):
    graph: GraphServer
    protocol_version = "HTTP/1.1"
    # one write per answer and no Nagle: otherwise each call waits out a delayed ACK
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    _recorded: Recorded | None = None
    server_version = "GraphTest/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # --- plumbing --------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req-{len(self.graph.requests)}")
        if self.headers.get("client-request-id"):
            self.send_header("client-request-id", self.headers["client-request-id"])
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if data:
            self.wfile.write(data)
        if self._recorded is not None:
            self._recorded.status = status

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw = self._body()
        content_type = self.headers.get("Content-Type", "")
        body: Any = raw.decode("utf-8", "replace")
        if raw and "json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        elif "x-www-form-urlencoded" in content_type:
            body = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        self._recorded = Recorded(method, path, query, dict(self.headers.items()), body)
        with self.graph._lock:
            self.graph.requests.append(self._recorded)
        tenant = "/" + self.graph.tenant + "/"
        if path.startswith(tenant) or path.startswith("/common/"):
            self._identity(method, path, body)
        elif path.startswith("/v1.0/"):
            # routed on the raw path: an id may hold an escaped "/"
            self._graph(method, parts.path[len("/v1.0") :], query, body, raw)
        elif re.match(r"^/[^/]+/(v2\.0|oauth2)/", path):
            self._error(400, "invalid_tenant", f"AADSTS90002: Tenant '{path.split('/')[1]}' not found.")
        else:
            self._error(404, "ResourceNotFound", f"no route {path}")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # --- Entra ID --------------------------------------------------------------------------------------

    def _identity(self, method: str, path: str, body: Any) -> None:
        g = self.graph
        base = f"{g.url}/{g.tenant}"
        if method == "GET" and path == f"/{g.tenant}/v2.0/.well-known/openid-configuration":
            self._send(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "tenant_region_scope": "EU",
                },
            )
            return
        if method == "POST" and path == f"/{g.tenant}/oauth2/v2.0/token" and isinstance(body, dict):
            self._token(body)
            return
        self._error(404, "not_found", f"no route {method} {path}")

    def _token(self, form: dict[str, str]) -> None:
        g = self.graph
        with g._lock:
            g.token_requests.append(dict(form))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):  # RFC 6749 2.3.1: client_secret_basic
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, secret = unquote(user.replace("+", " ")), unquote(password.replace("+", " "))
        if form.get("grant_type") != "client_credentials":
            self._oauth_error(400, "unsupported_grant_type", "AADSTS70003: unsupported grant type")
            return
        if client_id != g.client_id:
            self._oauth_error(
                400, "unauthorized_client", f"AADSTS700016: Application '{client_id}' was not found."
            )
            return
        if form.get("scope") != g.scope:
            self._oauth_error(400, "invalid_scope", f"AADSTS1002012: scope {form.get('scope')} is not valid.")
            return
        assertion = form.get("client_assertion")
        if assertion is not None:
            problem = self._check_assertion(assertion, form.get("client_assertion_type"))
            if problem:
                self._oauth_error(401, "invalid_client", problem)
                return
        elif g.client_secret is None or secret != g.client_secret:
            self._oauth_error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
            return
        token = g.issue_token(client_id, g.scope)
        self._send(
            200,
            {
                "token_type": "Bearer",
                "expires_in": g.token_lifetime,
                "ext_expires_in": g.token_lifetime,
                "access_token": token.value,
            },
        )

    def _check_assertion(self, assertion: str, kind: str | None) -> str | None:
        g = self.graph
        if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "AADSTS700025: client_assertion_type is not jwt-bearer"
        if g.client_certificate is None:
            return "AADSTS700027: no certificate registered for the app"
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            return f"AADSTS50027: invalid JWT: {exc}"
        der = g.client_certificate.public_bytes(serialization.Encoding.DER)
        sha256 = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
        sha1 = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")  # noqa: S324
        # base64url, with or without padding (msal pads it)
        sent = {k: str(header.get(k) or "").rstrip("=") for k in ("x5t#S256", "x5t")}
        if sent["x5t#S256"] != sha256 and sent["x5t"] != sha1:
            return "AADSTS700027: the key was not found: no registered certificate has this thumbprint"
        try:
            claims = jwt.decode(
                assertion,
                key=g.client_certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=g.token_endpoint,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: client assertion failed signature validation: {exc}"
        if claims.get("iss") != g.client_id or claims.get("sub") != g.client_id:
            return "AADSTS700021: client assertion iss/sub is not the client id"
        return None

    def _oauth_error(self, status: int, error: str, description: str) -> None:
        self._send(
            status,
            {
                "error": error,
                "error_description": f"{description}\r\nTrace ID: 0000\r\nTimestamp: 2026-01-01 00:00:00Z",
                "error_codes": [int(re.sub(r"\D", "", description.split(":")[0]) or 0)],
            },
        )

    # --- Graph -----------------------------------------------------------------------------------------

    def _graph(self, method: str, path: str, query: dict[str, str], body: Any, raw: bytes) -> None:
        g = self.graph
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not g.valid_token(auth[7:]):
            self._error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
            return
        fault = g.take_fault(method, path)
        if fault is not None and not fault.after:
            self._fault(fault)
            return
        match = re.fullmatch(r"/users/([^/]+)(/.*)?", path)
        if match is None:
            self._error(400, "BadRequest", f"Resource not found for the segment '{path}'.")
            return
        user, rest = unquote(match.group(1)), match.group(2) or ""
        if user.casefold() != g.mailbox.casefold():
            self._error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
            return
        needed = "Mail.Send" if rest == "/sendMail" else "Calendars.ReadWrite"
        if needed not in g.permissions:
            self._error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return
        if len(raw) > MAX_REQUEST:
            self._error(413, "ErrorRequestEntityTooLarge", "The request is too large.")
            return
        with g._lock:
            outcome = self._route(method, rest, query, body)
        if fault is not None:  # it took effect, but the client never hears how it went
            self._fault(fault)
            return
        self._send(*outcome)

    def _fault(self, fault: _Fault) -> None:
        if fault.drop:  # hang up without a word
            self.close_connection = True
            return
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        self._error(fault.status, fault.code, f"injected {fault.status}", headers)

    def _route(self, method: str, rest: str, query: dict[str, str], body: Any) -> tuple[Any, ...]:
        if method == "GET" and rest == "/calendar":
            return 200, {"id": "calendar-1", "name": "Calendar"}
        if method == "POST" and rest == "/events":
            return self._create(body, query)
        if method == "GET" and rest == "/events":
            return self._list(query)
        if method == "GET" and rest == "/calendarView":
            return self._view(query)
        if method == "POST" and rest == "/sendMail":
            return self._mail(body)
        match = re.fullmatch(r"/events/([^/]+)(/cancel)?", rest)
        if match is not None:
            event = self.graph.state.events.get(unquote(match.group(1)))
            if event is None or event.deleted:
                return 404, _err("ErrorItemNotFound", "The specified object was not found in the store.")
            if match.group(2) and method == "POST":
                return self._cancel(event, body)
            if method == "GET":
                return 200, self._render(event, query)
            if method == "PATCH":
                return self._update(event, body, query)
        return 405, _err("ErrorInvalidRequest", f"{method} {rest} is not supported here")

    # events

    def _check_event(self, body: Any, creating: bool) -> tuple[Any, ...] | None:
        if not isinstance(body, dict):
            return 400, _err("RequestBodyRead", "The request body is not a JSON object.")
        try:
            for name in ("start", "end"):
                if name in body or creating:
                    parse_time(body.get(name))
        except LookupError as exc:
            return 400, _err(
                "TimeZoneNotSupportedException", f"A valid TimeZone value must be specified: {exc}"
            )
        except ValueError as exc:
            return 400, _err("RequestBodyRead", f"Cannot read dateTimeTimeZone: {exc}")
        if creating and not isinstance(body.get("subject"), str):
            return 400, _err("ErrorInvalidRequest", "subject is required")
        if "body" in body and str((body["body"] or {}).get("contentType", "")).lower() not in (
            "html",
            "text",
        ):
            return 400, _err("RequestBodyRead", "body.contentType must be html or text")
        for attendee in body.get("attendees") or ():
            address = (attendee.get("emailAddress") or {}).get("address", "")
            if not _ADDRESS.fullmatch(address) or attendee.get("type") not in (
                "required",
                "optional",
                "resource",
            ):
                return 400, _err("ErrorInvalidRecipients", f"invalid attendee {address!r}")
        for prop in body.get("singleValueExtendedProperties") or ():
            if not _PROPERTY_ID.fullmatch(str(prop.get("id", ""))):
                return 400, _err("ErrorInvalidProperty", f"invalid extended property id {prop.get('id')!r}")
        return None

    def _create(self, body: Any, query: dict[str, str]) -> tuple[Any, ...]:
        g = self.graph
        problem = self._check_event(body, creating=True)
        if problem:
            return problem
        transaction = body.get("transactionId")
        if transaction and transaction in g.state.transactions:  # a retried POST: the same event
            return 201, self._render(g.state.events[g.state.transactions[transaction]], query)
        now = datetime.now(UTC)
        event_id = g.new_id()
        data = json.loads(json.dumps(body))
        for attendee in data.get("attendees") or ():
            attendee["status"] = {"response": "none", "time": NO_TIME}
        content = (data.get("body") or {}).get("content", "")
        data["body"] = {
            "contentType": "html",
            # Exchange keeps HTML bodies wrapped in a document of its own
            "content": f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f"</head><body>{content}</body></html>",
        }
        event = Event(event_id, data, parse_time(body["start"]), parse_time(body["end"]), now, now)
        g.state.events[event_id] = event
        if transaction:
            g.state.transactions[transaction] = event_id
        if event.attendees:
            g.sent.append(
                SentMail("meeting_request", tuple(event.attendee_addresses()), event.subject, event_id)
            )
        return 201, self._render(event, query)

    def _update(self, event: Event, body: Any, query: dict[str, str]) -> tuple[Any, ...]:
        problem = self._check_event(body, creating=False)
        if problem:
            return problem
        if event.cancelled:
            return 400, _err("ErrorCalendarIsCancelledForUpdate", "The meeting is cancelled.")
        changed = False
        for name, value in body.items():
            if name in ("id", "transactionId", "singleValueExtendedProperties"):
                continue
            if name == "body":
                value = {
                    "contentType": "html",
                    "content": f"<html><head></head><body>{(value or {}).get('content', '')}</body></html>",
                }
            if name == "attendees":
                statuses = {a["emailAddress"]["address"].casefold(): a.get("status") for a in event.attendees}
                value = [
                    {
                        **a,
                        "status": statuses.get(a["emailAddress"]["address"].casefold())
                        or {"response": "none", "time": NO_TIME},
                    }
                    for a in value
                ]
            if event.data.get(name) != value:
                changed = True
            event.data[name] = value
        if "start" in body:
            event.starts_at = parse_time(body["start"])
        if "end" in body:
            event.ends_at = parse_time(body["end"])
        if changed:
            event.modified = datetime.now(UTC)
            if event.attendees:
                self.graph.sent.append(
                    SentMail("meeting_update", tuple(event.attendee_addresses()), event.subject, event.id)
                )
        return 200, self._render(event, query)

    def _cancel(self, event: Event, body: Any) -> tuple[Any, ...]:
        if event.cancelled:
            return 400, _err("ErrorItemNotFound", "The meeting is already cancelled.")
        if not isinstance(body, dict) or not isinstance(body.get("comment", body.get("Comment", "")), str):
            return 400, _err("RequestBodyRead", "comment must be a string")
        event.cancelled = True
        event.modified = datetime.now(UTC)
        self.graph.sent.append(
            SentMail("meeting_cancellation", tuple(event.attendee_addresses()), event.subject, event.id)
        )
        return 202, None

    def _list(self, query: dict[str, str]) -> tuple[Any, ...]:
        condition = query.get("$filter", "")
        match = _FILTER_BY_PROPERTY.fullmatch(condition.strip())
        if match is None:
            return 400, _err(
                "ErrorInvalidUrlQueryFilter", f"The query filter '{condition}' is not supported."
            )
        prop, value = (m.replace("''", "'") for m in match.groups())
        found = [
            e
            for e in self.graph.state.events.values()
            if not e.deleted and not e.cancelled and e.prop(prop) == value
        ]
        return 200, {"value": [self._render(e, query) for e in found]}

    def _view(self, query: dict[str, str]) -> tuple[Any, ...]:
        try:
            start = datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return 400, _err(
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query "
                "string parameters StartDateTime and EndDateTime.",
            )
        if end - start > timedelta(days=MAX_VIEW_DAYS):
            return 400, _err(
                "ErrorInvalidRequest",
                "Your request can't be completed. The range between the start and end dates is greater "
                f"than the allowed range. Maximum number of days: {MAX_VIEW_DAYS}",
            )
        top, skip = min(int(query.get("$top", "10")), self.graph.page_size), int(query.get("$skip", "0"))
        found = sorted(
            (
                e
                for e in self.graph.state.events.values()
                if not e.deleted and not e.cancelled and e.starts_at < end and e.ends_at > start
            ),
            key=lambda e: (e.starts_at, e.id),
        )
        page = found[skip : skip + top]
        body: dict[str, Any] = {"value": [self._render(e, query) for e in page]}
        if skip + top < len(found):
            rest = {k: v for k, v in query.items() if k != "$skip"}
            rest["$skip"] = str(skip + top)
            body["@odata.nextLink"] = (
                f"{self.graph.base_url}/users/{self.graph.mailbox}/calendarView?" + urlencode(rest)
            )
        return 200, body

    def _render(self, event: Event, query: dict[str, str]) -> dict[str, Any]:
        data = {k: v for k, v in event.data.items() if k != "singleValueExtendedProperties"}
        data.update(
            {
                "@odata.etag": f'W/"{event.modified.timestamp()}"',
                "id": event.id,
                "createdDateTime": graph_time(event.created) + "Z",
                "lastModifiedDateTime": graph_time(event.modified) + "Z",
                "iCalUId": "040000008200E00074C5B7101A82E008" + hashlib.md5(event.id.encode()).hexdigest(),  # noqa: S324
                "isCancelled": event.cancelled,
                "isOrganizer": True,
                "organizer": {"emailAddress": {"name": "SIP", "address": self.graph.mailbox}},
                "start": {"dateTime": graph_time(event.starts_at), "timeZone": "UTC"},
                "end": {"dateTime": graph_time(event.ends_at), "timeZone": "UTC"},
                "location": {
                    **(event.data.get("location") or {"displayName": ""}),
                    "locationType": "default",
                },
            }
        )
        expand = _EXPAND.fullmatch(query.get("$expand", "").strip())
        if expand:
            wanted = {m.casefold() for m in re.findall(r"id eq '([^']*)'", expand.group(1))}
            data["singleValueExtendedProperties"] = [
                p
                for p in event.data.get("singleValueExtendedProperties") or ()
                if p["id"].casefold() in wanted
            ]
        return data

    # mail

    def _mail(self, body: Any) -> tuple[Any, ...]:
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return 400, _err("ErrorInvalidRequest", "message is required")
        recipients = [
            (r.get("emailAddress") or {}).get("address", "") for r in message.get("toRecipients") or ()
        ]
        if not recipients:
            return 400, _err("ErrorInvalidRecipients", "At least one recipient is not valid.")
        for address in recipients:
            if not _ADDRESS.fullmatch(address) or address.casefold() in {
                a.casefold() for a in self.graph.rejected_recipients
            }:
                return 400, _err(
                    "ErrorInvalidRecipients", f"At least one recipient is not valid., Recipient '{address}'"
                )
        message_id = message.get("internetMessageId")
        if message_id is not None and not _MESSAGE_ID.fullmatch(message_id):
            return 400, _err("InvalidInternetMessageHeader", "internetMessageId is not an RFC 5322 msg-id")
        for header in message.get("internetMessageHeaders") or ():
            if not str(header.get("name", "")).lower().startswith("x-"):
                return 400, _err(
                    "InvalidInternetMessageHeader",
                    "The internet message header name should start with 'x-' or 'X-'.",
                )
        for attachment in message.get("attachments") or ():
            if attachment.get("@odata.type") != "#microsoft.graph.fileAttachment" or not attachment.get(
                "name"
            ):
                return 400, _err("ErrorInvalidRequest", "attachment must be a named fileAttachment")
            try:
                base64.b64decode(attachment.get("contentBytes", ""), validate=True)
            except (binascii.Error, ValueError):
                return 400, _err("ErrorInvalidRequest", "contentBytes is not base64")
        self.graph.sent.append(SentMail("message", tuple(recipients), message.get("subject"), None, message))
        return 202, None


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: Graph "unreachable"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iter_sent(server: GraphServer, kind: str) -> Iterator[SentMail]:
    return (s for s in server.sent if s.kind == kind)

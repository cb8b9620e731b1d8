"""The calls sipflows makes to Graph: token, calendar, events, sendMail, with throttling and paging."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from sipflows.addresses import check_address
from sipflows.settings import Settings
from sipflows.transports.base import (
    PermanentSendError,
    SecretLoader,
    TransientSendError,
    TransportUnavailable,
    secret_text,
)
from sipflows.transports.graph.auth import certificate_credential, ssl_context
from sipflows.transports.graph.common import (
    _EVENT_FIELDS,
    _EXPAND,
    _MAILBOX_ERRORS,
    _MAX_PAGES,
    _SCRUBBER,
    _THROTTLED,
    BOOKING_PROPERTY,
    EventResponses,
    GraphConfigurationError,
    GraphReadError,
    _error_of,
    _property,
    _responses,
    _unavailable,
    _what_failed,
    describe,
    graph_scope,
)

if TYPE_CHECKING:
    import httpx
    import msal

log = logging.getLogger(__name__)


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
            value = self._block_secret(settings.graph_credentials_block)
        else:
            assert settings.graph_client_secret is not None  # checked in __init__
            value = settings.graph_client_secret.get_secret_value()
        _SCRUBBER.add(value, quote(value, safe=""))
        return value

    def _block_secret(self, block: str) -> str:
        if self._secret_loader is None:
            raise GraphConfigurationError(
                f"SIPFLOWS_GRAPH_CREDENTIALS_BLOCK names the Prefect Secret block {block!r}, which only the "
                "flows and the sipflows CLI can read; set SIPFLOWS_GRAPH_CLIENT_SECRET instead"
            )
        value = self._secret_loader(block)
        text = secret_text(value, ("client_secret", "secret", "password"))
        if text is None:
            raise GraphConfigurationError(
                f"Prefect Secret block {block!r} (SIPFLOWS_GRAPH_CREDENTIALS_BLOCK) holds no text secret "
                "(a string, or an object with client_secret)"
            )
        return text

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

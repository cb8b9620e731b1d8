"""The Microsoft Graph transport: msal's and httpx's real code against tests/graph_server.py over HTTPS."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sipflows.settings import Settings
from sipflows.transports.base import (
    Attachment,
    MeetingInfo,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    TransportUnavailable,
)
from sipflows.transports.factory import make_transport
from sipflows.transports.graph import (
    BOOKING_PROPERTY,
    MEETING_PROPERTY,
    GraphClient,
    GraphConfigurationError,
    GraphReadError,
    GraphTransport,
    booking_key,
    parse_graph_time,
    transaction_id,
)
from tests import transport_messages
from tests.graph_server import GraphServer, closed_port, make_client_certificate
from tests.transport_messages import STARTS, outgoing

SECRET = "client-secret-~8Q.abc"
MAILBOX = "sip@kommun.example.se"
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    """The server, its test CA trusted as an operator trusts a private CA (SSL_CERT_FILE)."""
    with GraphServer(tmp_path, client_secret=SECRET, mailbox=MAILBOX) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        yield server


def graph_settings(graph: GraphServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "transport": "graph",
        "graph_tenant_id": graph.tenant,
        "graph_client_id": graph.client_id,
        "graph_client_secret": SecretStr(SECRET),
        "graph_mailbox": MAILBOX,
        "graph_base_url": graph.base_url,
        "graph_authority_url": graph.authority_url,
        "graph_max_wait_seconds": 60,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def meeting_info(**kwargs: Any) -> MeetingInfo:
    return transport_messages.meeting_info(("sara@kommun.example.se", "Sara"), **kwargs)


class Naps:
    """The transport's clock for throttling: records each wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def send(settings: Settings, *messages: OutgoingMessage, sleep: Naps | None = None) -> list[SendResult]:
    with GraphTransport(settings, sleep=sleep or Naps()) as transport:
        return [transport.send(m) for m in messages]


# --- invitations -----------------------------------------------------------------------------------------


def test_invitation_becomes_an_event_with_the_attendee(graph: GraphServer) -> None:
    (result,) = send(graph_settings(graph), outgoing(meeting=meeting_info()))

    (event,) = graph.events()
    assert result.external_id == event.id
    assert event.subject == "SIP-möte SIP-2026-7"
    assert (event.starts_at, event.ends_at) == (STARTS, STARTS + timedelta(minutes=90))
    # wall-clock Stockholm time in the zone Exchange knows it by
    assert event.data["start"] == {"dateTime": "2026-03-10T09:00:00", "timeZone": "W. Europe Standard Time"}
    assert event.location == "Köpings vårdcentral, rum 3"
    assert "<b>SIP-möte</b>" in event.data["body"]["content"]
    assert [(a["emailAddress"]["address"], a["type"]) for a in event.attendees] == [
        ("sara@kommun.example.se", "required")
    ]
    assert event.data["responseRequested"] is True and event.data["allowNewTimeProposals"] is False
    booking = booking_key("m1-sip-2026-7@sipflows.test", "sara@kommun.example.se")
    assert event.prop(BOOKING_PROPERTY) == booking
    assert event.prop(MEETING_PROPERTY) == "m1-sip-2026-7@sipflows.test"
    assert event.data["transactionId"] == transaction_id(booking, "invitation:m1:c1:0")
    assert [(s.kind, s.recipients) for s in graph.sent] == [("meeting_request", ("sara@kommun.example.se",))]


def test_sign_in_uses_the_authority_as_given_and_one_cached_token(graph: GraphServer) -> None:
    send(graph_settings(graph), outgoing(meeting=meeting_info()), outgoing(key="reminder:x"))

    identity = [(r.method, r.path) for r in graph.requests if "/v1.0/" not in r.path]
    assert identity == [
        ("GET", f"/{graph.tenant}/v2.0/.well-known/openid-configuration"),  # no instance discovery
        ("POST", f"/{graph.tenant}/oauth2/v2.0/token"),
    ]
    (token_request,) = graph.token_requests
    assert token_request["grant_type"] == "client_credentials"
    assert token_request["scope"] == graph.scope  # the Graph origin's /.default, national clouds alike
    calls = graph.graph_requests()
    assert calls and all(r.headers["Authorization"].startswith("Bearer eyJ0eXAi.") for r in calls)
    assert all('IdType="ImmutableId"' in r.headers["Prefer"] for r in calls)
    assert calls[0].path == f"/v1.0/users/{MAILBOX}/calendar"  # the mailbox is checked on opening


def test_optional_attendee_is_invited_as_optional(graph: GraphServer) -> None:
    send(graph_settings(graph), outgoing(to="FK@fk.example.se", meeting=meeting_info()))

    (event,) = graph.events()
    assert [(a["emailAddress"]["address"], a["type"]) for a in event.attendees] == [
        ("FK@fk.example.se", "optional")
    ]


def test_each_attendee_gets_an_event_of_their_own(graph: GraphServer) -> None:
    info = meeting_info()
    results = send(
        graph_settings(graph),
        outgoing(meeting=info),
        outgoing(to="fk@fk.example.se", meeting=info, notice_id=2, key="invitation:m1:c2:0"),
    )

    assert len({r.external_id for r in results}) == 2
    assert sorted(e.attendee_addresses()[0] for e in graph.events()) == [
        "fk@fk.example.se",
        "sara@kommun.example.se",
    ]
    assert sorted(s.recipients for s in graph.sent) == [("fk@fk.example.se",), ("sara@kommun.example.se",)]


def test_crash_between_send_and_record_books_no_second_event(graph: GraphServer) -> None:
    """Graph created the event, the run died before the ledger recorded it: the resend finds it."""
    settings = graph_settings(graph)
    (first,) = send(settings, outgoing(meeting=meeting_info()))
    (again,) = send(settings, outgoing(meeting=meeting_info()))  # the ledger still has no external_id

    assert again.external_id == first.external_id
    assert len(graph.events()) == 1
    assert [s.kind for s in graph.sent] == ["meeting_request"]
    assert len(graph.graph_requests("POST", "/events")) == 1


@pytest.mark.parametrize("lost", ["gateway-timeout", "dropped"])
def test_lost_answer_to_the_create_still_makes_one_event(graph: GraphServer, lost: str) -> None:
    """Graph created the event but its answer never arrived: transactionId, or the lookup, finds it."""
    settings = graph_settings(graph)
    if lost == "gateway-timeout":  # retried at once with the same transactionId
        graph.fail("POST", "/events", status=504, retry_after=2, after=True)
        (result,) = send(settings, outgoing(meeting=meeting_info()))
    else:  # the notice fails for now; its retry looks the event up before creating one
        graph.fail("POST", "/events", after=True, drop=True)
        with pytest.raises(TransientSendError, match="did not answer"):
            send(settings, outgoing(meeting=meeting_info()))
        (result,) = send(settings, outgoing(meeting=meeting_info()))

    (event,) = graph.events()
    assert result.external_id == event.id
    assert [s.kind for s in graph.sent] == ["meeting_request"]


def test_moved_meeting_updates_the_event_once(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    moved = meeting_info(starts_at=STARTS + timedelta(days=1, hours=4), location="Digitalt möte")
    update = outgoing(meeting=moved, external_id=booked.external_id, notice_id=2, key="invitation:m1:c1:1")

    (result,) = send(settings, update)
    (retry,) = send(settings, update)  # a retry of a send that did reach Graph

    assert result.external_id == retry.external_id == booked.external_id
    (event,) = graph.events()
    assert event.starts_at == STARTS + timedelta(days=1, hours=4)
    assert event.ends_at == STARTS + timedelta(days=1, hours=4, minutes=90)
    assert event.location == "Digitalt möte"
    assert [s.kind for s in graph.sent] == ["meeting_request", "meeting_update"]
    (patch,) = graph.graph_requests("PATCH")
    assert set(patch.body) == {"start", "end", "location"}  # only what changed
    assert patch.body["start"] == {"dateTime": "2026-03-11T13:00:00", "timeZone": "W. Europe Standard Time"}


def test_update_of_an_event_deleted_in_the_mailbox_books_it_again(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    graph.state.events[str(booked.external_id)].deleted = True

    (result,) = send(
        settings,
        outgoing(
            meeting=meeting_info(location="Rum 4"), external_id=booked.external_id, key="invitation:m1:c1:1"
        ),
    )

    (event,) = graph.events()
    assert result.external_id == event.id != booked.external_id
    assert event.location == "Rum 4"
    assert [s.kind for s in graph.sent] == ["meeting_request", "meeting_request"]


def test_an_id_recorded_for_another_booking_is_never_touched(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    (other,) = send(settings, outgoing(meeting=meeting_info(uid="other@sipflows.test")))

    (result,) = send(settings, outgoing(meeting=meeting_info(), external_id=other.external_id))

    assert result.external_id != other.external_id
    assert graph.graph_requests("PATCH") == []
    assert sorted(e.prop(MEETING_PROPERTY) for e in graph.events()) == [
        "m1-sip-2026-7@sipflows.test",
        "other@sipflows.test",
    ]


def test_cancel_sends_one_cancellation(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    cancel = outgoing(
        meeting=meeting_info(method="CANCEL"), external_id=booked.external_id, notice_id=3, key="cancel:m1:c1"
    )

    (result,) = send(settings, cancel)
    (retry,) = send(settings, cancel)

    assert result.external_id == retry.external_id == booked.external_id
    (event,) = graph.events()
    assert event.cancelled
    assert [(s.kind, s.recipients) for s in graph.sent] == [
        ("meeting_request", ("sara@kommun.example.se",)),
        ("meeting_cancellation", ("sara@kommun.example.se",)),
    ]
    (cancel_call,) = graph.graph_requests("POST", "/cancel")
    assert cancel_call.body == {"comment": "Kallelse till SIP-möte."}


def test_cancel_without_an_id_finds_the_attendees_event(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    send(
        settings,
        outgoing(meeting=meeting_info()),
        outgoing(to="fk@fk.example.se", meeting=meeting_info(), key="invitation:m1:c2:0"),
    )

    send(settings, outgoing(meeting=meeting_info(method="CANCEL"), key="cancel:m1:c1"))

    assert sorted((e.attendee_addresses(), e.cancelled) for e in graph.events()) == [
        (["fk@fk.example.se"], False),
        (["sara@kommun.example.se"], True),
    ]


def test_cancel_of_a_meeting_never_booked_sends_nothing(graph: GraphServer) -> None:
    (result,) = send(
        graph_settings(graph), outgoing(meeting=meeting_info(method="CANCEL"), key="cancel:m1:c1")
    )

    assert result.external_id is None
    assert graph.sent == [] and graph.events() == []


def test_naive_meeting_times_are_refused_without_a_call(graph: GraphServer) -> None:
    naive = replace(
        meeting_info(), starts_at=datetime(2026, 3, 10, 9, 0), ends_at=datetime(2026, 3, 10, 10, 0)
    )
    with pytest.raises(PermanentSendError, match="aware"):
        send(graph_settings(graph), outgoing(meeting=naive))
    assert graph.graph_requests("POST") == []


# --- mail ------------------------------------------------------------------------------------------------


def test_reminder_is_a_mail_from_the_mailbox_with_the_ledgers_message_id(graph: GraphServer) -> None:
    notice = outgoing(key="documentation.reminder:case7:c1")

    (result,) = send(graph_settings(graph), notice)

    assert result.external_id is None
    (mail,) = graph.sent
    assert (mail.kind, mail.recipients) == ("message", ("sara@kommun.example.se",))
    assert mail.internet_message_id == notice.message_id  # a resend is recognisable as the same message
    message = mail.message or {}
    assert message["subject"] == "Kallelse: SIP-möte SIP-2026-7"
    assert message["body"] == {"contentType": "html", "content": notice.body_html}
    assert message["toRecipients"] == [
        {"emailAddress": {"address": "sara@kommun.example.se", "name": "Sara Socialsekreterare"}}
    ]
    assert {"name": "X-Auto-Response-Suppress", "value": "OOF, AutoReply"} in message[
        "internetMessageHeaders"
    ]
    assert "attachments" not in message
    (call,) = graph.graph_requests("POST", "/sendMail")
    assert call.path == f"/v1.0/users/{MAILBOX}/sendMail" and call.body["saveToSentItems"] is True
    assert graph.events() == []


def test_weekly_report_travels_with_its_html_and_csv(graph: GraphServer) -> None:
    html = "<!doctype html><html><body><h1>SIP-statistik vecka 9</h1><img src='data:image/png;base64,iVBO'>"
    csv = "\ufeffmått;värde\r\nplaner identifierade;12\r\n".encode()
    report = outgoing(
        key="report.weekly:2026-03-01:contact:4",
        attachments=(
            Attachment("sip-rapport-2026-03-01.html", "text/html", html.encode()),
            Attachment("sip-siffror-2026-03-01.csv", "text/csv", csv),
        ),
    )

    send(graph_settings(graph), report)

    (mail,) = graph.sent
    assert mail.attachments() == [
        ("sip-rapport-2026-03-01.html", "text/html; charset=utf-8", html.encode()),
        ("sip-siffror-2026-03-01.csv", "text/csv; charset=utf-8", csv),
    ]
    assert mail.internet_message_id == report.message_id


def test_calendar_part_of_a_plain_notice_travels_as_an_attachment(graph: GraphServer) -> None:
    ics = "BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n"
    send(graph_settings(graph), replace(outgoing(key="followup:case7:c1"), ics=ics, ics_method="PUBLISH"))

    (mail,) = graph.sent
    assert mail.attachments() == [
        ("invitation.ics", "text/calendar; charset=utf-8; method=PUBLISH", ics.encode())
    ]


def test_too_large_a_mail_fails_alone_and_says_why(graph: GraphServer) -> None:
    huge = outgoing(key="report.weekly:x", attachments=(Attachment("r.html", "text/html", b"x" * 3_500_000),))

    with GraphTransport(graph_settings(graph)) as transport:
        with pytest.raises(PermanentSendError, match="at most 4,000,000"):
            transport.send(huge)
        transport.send(outgoing(key="reminder:after"))  # the next notice goes out as ever

    assert [s.kind for s in graph.sent] == ["message"]


def test_rejected_or_invalid_recipient_fails_that_notice_alone(graph: GraphServer) -> None:
    graph.rejected_recipients.add("nobody@kommun.example.se")

    with GraphTransport(graph_settings(graph)) as transport:
        with pytest.raises(PermanentSendError, match="400 ErrorInvalidRecipients"):
            transport.send(outgoing(to="nobody@kommun.example.se", key="reminder:a"))
        with pytest.raises(PermanentSendError, match="not a usable email address"):
            transport.send(outgoing(to="sara at kommun", key="reminder:b"))
        transport.send(outgoing(key="reminder:c"))

    assert [s.recipients for s in graph.sent] == [("sara@kommun.example.se",)]


# --- throttling ------------------------------------------------------------------------------------------


def test_throttling_is_waited_out_as_graph_asks(graph: GraphServer) -> None:
    graph.fail("POST", "/events", status=429, retry_after=7, times=2)
    graph.fail("POST", "/sendMail", status=503, retry_after="3")
    naps = Naps()

    results = send(
        graph_settings(graph), outgoing(meeting=meeting_info()), outgoing(key="reminder:x"), sleep=naps
    )

    assert naps.waits == [7.0, 7.0, 3.0]
    assert results[0].external_id == graph.events()[0].id
    assert [s.kind for s in graph.sent] == ["meeting_request", "message"]
    assert [r.status for r in graph.graph_requests("POST", "/events")] == [429, 429, 201]


def test_throttling_without_retry_after_backs_off_exponentially(graph: GraphServer) -> None:
    graph.fail("POST", "/sendMail", status=429, times=3)
    naps = Naps()

    send(graph_settings(graph), outgoing(key="reminder:x"), sleep=naps)

    assert naps.waits == [1.0, 2.0, 4.0]


def test_throttling_past_the_budget_is_the_transports_failure(graph: GraphServer) -> None:
    graph.fail("POST", "/sendMail", status=429, retry_after=25, times=10)
    naps = Naps()

    settings = graph_settings(graph, graph_max_wait_seconds=60)
    with (
        GraphTransport(settings, sleep=naps) as transport,
        pytest.raises(TransportUnavailable, match="SIPFLOWS_GRAPH_MAX_WAIT_SECONDS"),
    ):
        transport.send(outgoing(key="reminder:x"))

    assert naps.waits == [25.0, 25.0]  # a third wait would pass the 60 s the batch may spend
    assert graph.sent == []


def test_server_error_is_transient_for_that_notice(graph: GraphServer) -> None:
    graph.fail("POST", "/events", status=500)

    with GraphTransport(graph_settings(graph)) as transport:
        with pytest.raises(TransientSendError, match="500 InternalServerError"):
            transport.send(outgoing(meeting=meeting_info()))
        transport.send(outgoing(meeting=meeting_info()))  # the retry books it

    assert len(graph.events()) == 1


# --- the token -------------------------------------------------------------------------------------------


def test_expired_token_is_replaced_once(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    transport = GraphTransport(settings)
    with transport:
        transport.send(outgoing(key="reminder:a"))
    graph.expire_tokens()  # expired early or revoked: Graph says 401 while msal still trusts it
    with transport:  # the next batch: same transport, same msal cache
        transport.send(outgoing(key="reminder:b"))

    assert len(graph.token_requests) == 2
    assert [r.status for r in graph.graph_requests("GET", "/calendar")] == [200]  # checked once
    assert [r.status for r in graph.graph_requests("POST", "/sendMail")] == [202, 401, 202]
    assert len(graph.sent) == 2


def test_a_token_refused_twice_is_the_transports_failure(graph: GraphServer) -> None:
    with GraphTransport(graph_settings(graph)) as transport:
        graph.fail("POST", "/sendMail", status=401, code="InvalidAuthenticationToken", times=2)
        with pytest.raises(TransportUnavailable, match="fresh token was refused as well"):
            transport.send(outgoing(key="reminder:a"))
    assert len(graph.token_requests) == 2 and graph.sent == []


def test_wrong_secret_is_refused_before_any_notice(
    graph: GraphServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Fel-hemlighet-99?"

    with pytest.raises(TransportUnavailable, match="invalid_client: AADSTS7000215") as raised:
        GraphTransport(graph_settings(graph, graph_client_secret=SecretStr(wrong))).__enter__()

    assert graph.graph_requests() == []
    assert wrong not in str(raised.value) and wrong not in caplog.text


@pytest.mark.parametrize(
    ("permissions", "message"),
    [(("Mail.Send",), "open the calendar of .*"), (("Calendars.ReadWrite",), "send the mail")],
)
def test_missing_permission_is_the_transports_failure(
    graph: GraphServer, permissions: tuple[str, ...], message: str
) -> None:
    graph.permissions = set(permissions)

    with pytest.raises(TransportUnavailable, match=f"{message}: 403 ErrorAccessDenied.*Mail.Send"):
        send(graph_settings(graph), outgoing(key="reminder:a"))
    assert graph.sent == []


def test_wrong_mailbox_is_named(graph: GraphServer) -> None:
    with pytest.raises(TransportUnavailable, match="ErrorInvalidUser.*SIPFLOWS_GRAPH_MAILBOX"):
        send(graph_settings(graph, graph_mailbox="sip@annan.example.se"), outgoing(key="reminder:a"))


def test_wrong_tenant_is_named(graph: GraphServer) -> None:
    with pytest.raises(GraphConfigurationError, match="SIPFLOWS_GRAPH_TENANT_ID"):
        send(graph_settings(graph, graph_tenant_id="another-tenant"), outgoing(key="reminder:a"))


def test_certificate_credentials_sign_a_client_assertion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = tmp_path / "sipflows-app.pem"
    certificate = make_client_certificate(pem, passphrase="lösen-för-nyckeln")
    with GraphServer(tmp_path, client_secret=None, client_certificate=certificate, mailbox=MAILBOX) as graph:
        monkeypatch.setenv("SSL_CERT_FILE", str(graph.ca_file))
        settings = graph_settings(
            graph,
            graph_client_secret=None,
            graph_certificate_path=pem,
            graph_certificate_password=SecretStr("lösen-för-nyckeln"),
        )
        send(settings, outgoing(key="reminder:a"))

        (token_request,) = graph.token_requests
        assert (
            token_request["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        )
        assert "client_secret" not in token_request
        assert len(graph.sent) == 1

        with pytest.raises(GraphConfigurationError, match="SIPFLOWS_GRAPH_CERTIFICATE_PASSWORD"):
            GraphTransport(
                replace_settings(settings, graph_certificate_password=SecretStr("fel"))
            ).__enter__()
        other = tmp_path / "other.pem"
        make_client_certificate(other)  # a valid certificate the app registration does not know
        with pytest.raises(TransportUnavailable, match="AADSTS700027"):
            GraphTransport(
                replace_settings(settings, graph_certificate_path=other, graph_certificate_password=None)
            ).__enter__()


def replace_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


def test_certificate_file_must_hold_a_matching_key_and_certificate(tmp_path: Path) -> None:
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    make_client_certificate(first)
    make_client_certificate(second)
    mixed = tmp_path / "mixed.pem"
    key_part = first.read_text().split("-----BEGIN CERTIFICATE-----")[0]
    cert_part = "-----BEGIN CERTIFICATE-----" + second.read_text().split("-----BEGIN CERTIFICATE-----")[1]
    mixed.write_text(key_part + cert_part)
    only_cert = tmp_path / "cert.pem"
    only_cert.write_text(cert_part)
    from sipflows.transports.graph import certificate_credential

    with pytest.raises(GraphConfigurationError, match="does not belong to its certificate"):
        certificate_credential(mixed, None)
    with pytest.raises(GraphConfigurationError, match="holds no PEM private key"):
        certificate_credential(only_cert, None)


def test_a_credentials_block_holding_an_object_gives_its_client_secret(graph: GraphServer) -> None:
    settings = graph_settings(graph, graph_client_secret=None, graph_credentials_block="graph-sip")
    stored = {"client_secret": SECRET, "note": "rotated 2026-11"}
    with GraphTransport(settings, secret_loader=lambda block: stored) as transport:
        transport.send(outgoing(key="reminder:a"))
    assert len(graph.sent) == 1


def test_a_credentials_block_without_a_secret_store_names_the_setting(graph: GraphServer) -> None:
    """The library reads no secret store of its own: without the entry point's loader it says so."""
    settings = graph_settings(graph, graph_client_secret=None, graph_credentials_block="graph-sip")
    with pytest.raises(GraphConfigurationError) as raised, GraphTransport(settings):
        pass
    message = str(raised.value)
    assert "SIPFLOWS_GRAPH_CREDENTIALS_BLOCK" in message and "SIPFLOWS_GRAPH_CLIENT_SECRET" in message
    assert graph.sent == [] and graph.token_requests == []


def test_secret_comes_lazily_from_the_credentials_block(graph: GraphServer) -> None:
    asked: list[str] = []

    def loader(block: str) -> str:
        asked.append(block)
        return SECRET

    settings = graph_settings(graph, graph_client_secret=None, graph_credentials_block="graph-sip")
    transport = GraphTransport(settings, secret_loader=loader)
    assert asked == []
    with transport:
        transport.send(outgoing(key="reminder:a"))
    with transport:  # the next batch reuses the msal application and its token
        transport.send(outgoing(key="reminder:b"))
    assert asked == ["graph-sip"]
    assert len(graph.sent) == 2 and len(graph.token_requests) == 1


def test_credentials_never_reach_errors_or_logs(graph: GraphServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    send(graph_settings(graph), outgoing(meeting=meeting_info()), outgoing(key="reminder:x"))
    graph.fail("POST", "/sendMail", status=401, times=2)
    with pytest.raises(TransportUnavailable) as raised:
        send(graph_settings(graph), outgoing(key="reminder:y"))

    tokens = [r.headers["Authorization"].split()[1] for r in graph.graph_requests()]
    assert tokens and "HTTP Request" in caplog.text  # httpx did log its requests ...
    for secret in (SECRET, *tokens):
        assert secret not in caplog.text  # ... never a credential
        assert secret not in str(raised.value)


# --- reaching Graph --------------------------------------------------------------------------------------


def test_unreachable_graph_is_the_transports_failure(graph: GraphServer) -> None:
    nowhere = f"https://127.0.0.1:{closed_port()}"
    graph.resource = nowhere  # Entra ID issues tokens for that Graph; it just cannot be reached
    settings = graph_settings(graph, graph_base_url=f"{nowhere}/v1.0")

    with pytest.raises(TransportUnavailable, match="cannot reach Microsoft Graph"):
        send(settings, outgoing(key="reminder:a"))


def test_unreachable_sign_in_is_the_transports_failure(graph: GraphServer) -> None:
    settings = graph_settings(graph, graph_authority_url=f"https://127.0.0.1:{closed_port()}")

    with pytest.raises(TransportUnavailable, match="cannot reach the sign-in authority"):
        send(settings, outgoing(key="reminder:a"))
    assert graph.requests == []


def test_an_untrusted_certificate_is_refused(graph: GraphServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)  # certifi's CAs only: ours is not among them

    with pytest.raises(
        TransportUnavailable, match="CERTIFICATE_VERIFY_FAILED.*SSL_CERT_FILE or REQUESTS_CA_BUNDLE"
    ):
        send(graph_settings(graph), outgoing(key="reminder:a"))
    assert graph.requests == []


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_a_private_ca_is_trusted_whichever_variable_names_it(
    graph: GraphServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for other in CA_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    if variable == "SSL_CERT_DIR":
        folder = graph.folder / "certs"
        folder.mkdir()
        # a hashed CA folder, as c_rehash/update-ca-certificates leave it
        import ssl

        der = ssl.PEM_cert_to_DER_cert(graph.ca_file.read_text())
        from cryptography import x509

        name_hash = _subject_hash(x509.load_der_x509_certificate(der))
        (folder / f"{name_hash}.0").write_text(graph.ca_file.read_text())
        monkeypatch.setenv(variable, str(folder))
    else:
        monkeypatch.setenv(variable, str(graph.ca_file))

    send(graph_settings(graph), outgoing(key="reminder:a"))  # the token and the Graph call both trust it

    assert len(graph.token_requests) == 1 and len(graph.sent) == 1


def _subject_hash(cert: object) -> str:
    """OpenSSL's subject name hash (as ``openssl x509 -hash`` prints it), for a CA folder."""
    import subprocess

    from cryptography.hazmat.primitives import serialization

    pem = cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]
    done = subprocess.run(["openssl", "x509", "-noout", "-hash"], input=pem, capture_output=True, check=True)
    return done.stdout.decode().strip()


def test_a_named_ca_file_that_is_missing_is_named(
    graph: GraphServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nowhere/ca.pem")

    with pytest.raises(GraphConfigurationError, match="REQUESTS_CA_BUNDLE names /nowhere/ca.pem"):
        send(graph_settings(graph), outgoing(key="reminder:a"))


# --- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"graph_tenant_id": None}, "SIPFLOWS_GRAPH_TENANT_ID is not set"),
        ({"graph_client_id": " "}, "SIPFLOWS_GRAPH_CLIENT_ID is not set"),
        ({"graph_mailbox": None}, "SIPFLOWS_GRAPH_MAILBOX is not set"),
        ({"graph_mailbox": "sip-brevlådan"}, "SIPFLOWS_GRAPH_MAILBOX is not an email address"),
        ({"graph_client_secret": None}, "SIPFLOWS_GRAPH_CLIENT_SECRET .* is not set"),
        ({"graph_certificate_path": Path("/nowhere.pem")}, "not both"),
        (
            {"graph_client_secret": None, "graph_certificate_path": Path("/nowhere.pem")},
            "SIPFLOWS_GRAPH_CERTIFICATE_PATH names /nowhere.pem",
        ),
        ({"graph_base_url": "http://graph.example/v1.0"}, "SIPFLOWS_GRAPH_BASE_URL must be an https://"),
        ({"graph_authority_url": "login.example"}, "SIPFLOWS_GRAPH_AUTHORITY_URL must be an https://"),
    ],
)
def test_incomplete_settings_name_what_is_missing(
    graph: GraphServer, overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(GraphConfigurationError, match=named) as raised:
        make_transport(graph_settings(graph, **overrides))
    assert SECRET not in str(raised.value)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TransportUnavailable)
    assert graph.requests == []


def test_defaults_are_microsofts_public_cloud() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.graph_authority_url == "https://login.microsoftonline.com"
    client = GraphClient(
        replace_settings(
            settings,
            graph_tenant_id="t",
            graph_client_id="c",
            graph_client_secret=SecretStr("s"),
            graph_mailbox=MAILBOX,
        )
    )
    assert client.scope == "https://graph.microsoft.com/.default"
    assert client.authority == "https://login.microsoftonline.com/t"


# --- answers ---------------------------------------------------------------------------------------------


def test_attendee_responses_of_the_events_sipflows_booked(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    first, second = meeting_info(), meeting_info(uid="m2@sipflows.test", starts_at=STARTS + timedelta(days=2))
    results = send(
        settings,
        outgoing(meeting=first),
        outgoing(to="fk@fk.example.se", meeting=first, key="invitation:m1:c2:0"),
        outgoing(meeting=second, key="invitation:m2:c1:0"),
    )
    accepted_at = datetime(2026, 2, 21, 13, 5, tzinfo=UTC)
    graph.respond(str(results[0].external_id), "sara@kommun.example.se", "accepted", accepted_at)
    graph.respond(
        str(results[1].external_id), "fk@fk.example.se", "declined", accepted_at + timedelta(hours=2)
    )
    graph.state.events["foreign"] = replace(
        graph.events()[0], id="foreign", data={"attendees": [], "subject": "x"}
    )
    graph.page_size = 2  # Graph pages the answer

    with GraphClient(settings) as client:
        found = client.attendee_responses(STARTS - timedelta(days=1), STARTS + timedelta(days=30))

    assert len(graph.graph_requests("GET", "/calendarView")) == 2
    by_id = {e.event_id: e for e in found}
    assert set(by_id) == {str(r.external_id) for r in results}  # the foreign event is not ours
    sara = by_id[str(results[0].external_id)]
    assert (sara.meeting_uid, sara.booking) == (first.uid, booking_key(first.uid, "sara@kommun.example.se"))
    assert (sara.starts_at, sara.ends_at, sara.cancelled) == (STARTS, STARTS + timedelta(minutes=90), False)
    assert [(a.email, a.response, a.responded_at, a.answered) for a in sara.attendees] == [
        ("sara@kommun.example.se", "accepted", accepted_at, True)
    ]
    fk = by_id[str(results[1].external_id)]
    assert [(a.email, a.response, a.required) for a in fk.attendees] == [
        ("fk@fk.example.se", "declined", False)
    ]
    later = by_id[str(results[2].external_id)]
    assert [(a.response, a.responded_at, a.answered) for a in later.attendees] == [("none", None, False)]
    assert sara.booked_for == sara.attendees[0]


def test_only_the_booked_attendees_answer_counts(graph: GraphServer) -> None:
    settings = graph_settings(graph)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    event = graph.state.events[str(booked.external_id)]
    # Sara forwarded the invitation; Exchange added the new attendee to the organiser's event
    event.data["attendees"].append(
        {"type": "required", "emailAddress": {"address": "vidare@kommun.example.se", "name": "V"}}
    )
    graph.respond(event.id, "vidare@kommun.example.se", "accepted", STARTS - timedelta(days=3))

    with GraphClient(settings) as client:
        (found,) = client.attendee_responses(STARTS - timedelta(days=1), STARTS + timedelta(days=1))

    assert found.event_id == event.id
    assert [(a.email, a.answered) for a in found.attendees] == [
        ("sara@kommun.example.se", False),
        ("vidare@kommun.example.se", True),
    ]
    assert found.booked_for is not None and found.booked_for.email == "sara@kommun.example.se"
    assert not found.booked_for.answered


def test_attendee_responses_outside_the_window_and_of_cancelled_events_are_not_listed(
    graph: GraphServer,
) -> None:
    settings = graph_settings(graph)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    send(settings, outgoing(meeting=meeting_info(method="CANCEL"), external_id=booked.external_id, key="c"))

    with GraphClient(settings) as client:
        assert client.attendee_responses(STARTS - timedelta(days=1), STARTS + timedelta(days=1)) == []
        with pytest.raises(ValueError, match="aware"):
            client.attendee_responses(datetime(2026, 3, 1), datetime(2026, 3, 2))


def test_a_refused_read_is_a_read_error(graph: GraphServer) -> None:
    graph.fail("GET", "/calendarView", status=400, code="ErrorInvalidParameter")
    with (
        GraphClient(graph_settings(graph)) as client,
        pytest.raises(GraphReadError, match="ErrorInvalidParameter"),
    ):
        client.attendee_responses(STARTS, STARTS + timedelta(days=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-21T13:05:00.1234567Z", datetime(2026, 2, 21, 13, 5, 0, 123456, tzinfo=UTC)),
        ("2026-02-21T13:05:00Z", datetime(2026, 2, 21, 13, 5, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ({"dateTime": "2026-03-10T08:00:00.0000000", "timeZone": "UTC"}, STARTS),
        ({"dateTime": "2026-03-10T09:00:00", "timeZone": "W. Europe Standard Time"}, STARTS),
        ("in a while", None),
        (None, None),
    ],
)
def test_graph_times(value: object, expected: datetime | None) -> None:
    assert parse_graph_time(value) == expected

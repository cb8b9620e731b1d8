"""The SMTP transport against a real aiosmtpd server: TLS, STARTTLS, login, refusals, lost connections.

A server that cannot be used at all (refused, silent, TLS or login trouble, 421) is ``TransportUnavailable``
naming the host and the settings to check; one message's refusal fails that message alone. Credentials
must never surface: every error, ledger row and log line is checked for the password.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from sipflows.models import Notice
from sipflows.notices.dispatch import dispatch
from sipflows.transports.base import (
    OutgoingMessage,
    PermanentSendError,
    TransientSendError,
    TransportUnavailable,
)
from sipflows.transports.smtp import SmtpTransport
from tests import smtp_server as smtp_helpers
from tests.smtp_server import SmtpTestServer, TlsFiles, make_tls, settings_for, start_smtp_server
from tests.test_dispatch import NOW, add, draft, ledger

smtp_server = smtp_helpers.smtp_server  # the fixture

PASSWORD = "Pw-k7#Zq!tango-42"
USER = "sip-robot"


def message(n: int = 1, to: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        notice_id=n,
        key=f"test:{n}",
        message_id=f"<test-{n}@sipflows.test>",
        to_address=to or f"person{n}@kommun.example.se",
        to_name="Kurator Sven",
        subject=f"Påminnelse {n}",
        body_text="Hej!\n",
        body_html="<p>Hej!</p>",
        date=datetime(2026, 3, 2, 7, 0, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def stop_later():
    servers: list[SmtpTestServer] = []
    yield servers.append
    for s in servers:
        s.stop()


def assert_no_password(*texts: object) -> None:
    forms = (
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    )
    for text in texts:
        for form in forms:
            assert form not in str(text)


def test_starttls_with_login(tls, stop_later):
    server = start_smtp_server(tls=tls, require_starttls=True, users={USER: PASSWORD})
    stop_later(server)
    settings = settings_for(server, smtp_security="starttls", smtp_username=USER, smtp_password=PASSWORD)
    with SmtpTransport(settings, ssl_context=server.tls_client_context) as transport:
        transport.send(message(1))
        transport.send(message(2))
    (first, second) = server.deliveries
    assert (first.tls, first.authenticated_as) == (True, USER)
    assert first.connection == second.connection
    assert [d.message["Message-ID"] for d in server.deliveries] == [
        "<test-1@sipflows.test>",
        "<test-2@sipflows.test>",
    ]


def test_implicit_tls(tls, stop_later):
    server = start_smtp_server(tls=tls, implicit_tls=True)
    stop_later(server)
    settings = settings_for(server, smtp_security="ssl")
    with SmtpTransport(settings, ssl_context=server.tls_client_context) as transport:
        transport.send(message())
    (delivery,) = server.deliveries
    assert delivery.tls and delivery.authenticated_as is None


def test_login_without_tls_where_the_server_allows_it(stop_later):
    server = start_smtp_server(users={USER: PASSWORD}, auth_require_tls=False)
    stop_later(server)
    settings = settings_for(server, smtp_username=USER, smtp_password=PASSWORD)
    with SmtpTransport(settings) as transport:
        transport.send(message())
    (delivery,) = server.deliveries
    assert (delivery.tls, delivery.authenticated_as) == (False, USER)


def test_a_certificate_we_do_not_trust_is_refused(tls, stop_later):
    server = start_smtp_server(tls=tls, require_starttls=True)
    stop_later(server)
    settings = settings_for(server, smtp_security="starttls")
    with pytest.raises(TransportUnavailable, match="CERTIFICATE_VERIFY_FAILED") as raised:
        SmtpTransport(settings).__enter__()  # the system trust store does not know the test CA
    assert "TLS failed" in str(raised.value) and "SIPFLOWS_SMTP_SECURITY" in str(raised.value)
    assert server.deliveries == []


def test_tls_asked_of_a_plain_server_is_unavailable(smtp_server):
    settings = settings_for(smtp_server, smtp_security="ssl", smtp_timeout=5)
    with pytest.raises(TransportUnavailable, match="TLS failed") as raised:
        SmtpTransport(settings).__enter__()
    assert raised.value.settings == ("SIPFLOWS_SMTP_SECURITY", "SIPFLOWS_SMTP_HOST", "SIPFLOWS_SMTP_PORT")


def test_starttls_asked_for_but_not_offered(smtp_server):
    settings = settings_for(smtp_server, smtp_security="starttls")
    with pytest.raises(TransportUnavailable, match="STARTTLS") as raised:
        SmtpTransport(settings).__enter__()
    assert "SIPFLOWS_SMTP_SECURITY" in raised.value.settings


def test_refused_login_never_shows_the_password(engine, tls, stop_later, caplog):
    # a careless server that echoes the password it received in its refusal
    server = start_smtp_server(
        tls=tls,
        require_starttls=True,
        users={USER: "the-right-one"},
        auth_reject_reply="535 5.7.8 credentials {password} rejected",
    )
    stop_later(server)
    settings = settings_for(server, smtp_security="starttls", smtp_username=USER, smtp_password=PASSWORD)
    transport = SmtpTransport(settings, ssl_context=server.tls_client_context)
    with pytest.raises(TransportUnavailable) as raised:
        transport.__enter__()
    assert "login as sip-robot refused: 535" in str(raised.value) and "***" in str(raised.value)
    assert raised.value.settings == ("SIPFLOWS_SMTP_USERNAME", "SIPFLOWS_SMTP_PASSWORD")
    assert raised.value.__suppress_context__  # the library's exception (and its locals) stay behind
    assert_no_password(raised.value, repr(raised.value), repr(transport), transport.__dict__.get("_password"))

    add(engine, [draft(1), draft(2)])
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransportUnavailable) as stopped:
        dispatch(engine, transport, NOW, settings)
    done = stopped.value.summary
    assert (done.sent, done.failed, done.held_back) == (0, 0, 2)  # nobody's attempt: the login is wrong
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]  # not the server's
    assert any("login as sip-robot refused" in line for line in ours)
    rows = ledger(engine).values()
    assert {(n.attempts, n.last_error) for n in rows} == {(0, None)}
    assert_no_password(stopped.value, *ours)
    with Session(engine) as s:
        assert_no_password(*(n.last_error for n in s.query(Notice)))
    assert server.deliveries == []


def test_a_non_ascii_password_fails_clearly_without_showing_it(stop_later):
    server = start_smtp_server(users={USER: "x"}, auth_require_tls=False)
    stop_later(server)
    secret = "Lösenord-Åäö-77"
    settings = settings_for(server, smtp_username=USER, smtp_password=secret)
    with pytest.raises(TransportUnavailable, match="must be ASCII") as raised:
        SmtpTransport(settings).__enter__()
    assert secret not in str(raised.value)


def test_refusals_at_data_fail_the_message_and_the_connection_carries_on(smtp_server):
    settings = settings_for(smtp_server)
    with SmtpTransport(settings) as transport:
        smtp_server.handler.data_reply = "554 5.7.1 message rejected as spam"
        with pytest.raises(PermanentSendError, match="554 5.7.1"):
            transport.send(message(1))
        smtp_server.handler.data_reply = "451 4.3.0 temporary local problem"
        with pytest.raises(TransientSendError, match="451 4.3.0"):
            transport.send(message(2))
        smtp_server.handler.data_reply = None
        smtp_server.refuse("gone@x.example.se")
        with pytest.raises(PermanentSendError, match="gone@x.example.se refused: 550"):
            transport.send(message(3, to="gone@x.example.se"))
        smtp_server.refuse("busy@x.example.se", "450 4.2.1 mailbox busy")
        with pytest.raises(TransientSendError, match="450"):
            transport.send(message(4, to="busy@x.example.se"))
        transport.send(message(5))
        transport.send(message(6))
    assert [d.message["Message-ID"] for d in smtp_server.deliveries] == [
        "<test-5@sipflows.test>",
        "<test-6@sipflows.test>",
    ]
    assert {d.connection for d in smtp_server.deliveries} == {1}  # still the batch's one connection


def test_an_unusable_address_is_permanent_before_any_smtp(smtp_server):
    with SmtpTransport(settings_for(smtp_server)) as transport:
        with pytest.raises(PermanentSendError, match="not a usable email address"):
            transport.send(message(1, to="Anna Andersson, kommunen"))
        transport.send(message(2))
    assert len(smtp_server.deliveries) == 1


def test_a_lost_connection_is_transient_and_the_next_message_reconnects(stop_later):
    server = start_smtp_server()
    settings = settings_for(server)
    transport = SmtpTransport(settings)
    with transport:
        transport.send(message(1))
        server.stop()  # the server goes away mid-batch
        with pytest.raises(TransientSendError):
            transport.send(message(2))
        with pytest.raises(TransportUnavailable, match="cannot connect"):
            transport.send(message(3))  # the reconnect finds the server down: unavailable, not this message
        back = start_smtp_server(port=server.port)
        stop_later(back)
        transport.send(message(4))
    assert [d.message["Message-ID"] for d in server.deliveries] == ["<test-1@sipflows.test>"]
    assert [d.message["Message-ID"] for d in back.deliveries] == ["<test-4@sipflows.test>"]


def test_closed_port_is_unavailable_naming_host_and_settings():
    settings = settings_for(None)
    with pytest.raises(TransportUnavailable) as raised:
        SmtpTransport(settings).__enter__()
    text = str(raised.value)
    assert f"SMTP 127.0.0.1:{settings.smtp_port}" in text and "Connection refused" in text
    assert "SIPFLOWS_SMTP_HOST" in text and "SIPFLOWS_SMTP_PORT" in text


def test_a_server_that_never_answers_is_unavailable_after_the_timeout(tmp_path):
    import socket

    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        settings = settings_for(None, smtp_port=silent.getsockname()[1], smtp_timeout=1)
        with pytest.raises(TransportUnavailable, match="no answer") as raised:
            SmtpTransport(settings).__enter__()
    assert raised.value.transport == "smtp"


def test_a_server_closing_shop_with_421_is_unavailable(stop_later):
    server = start_smtp_server()
    stop_later(server)
    with SmtpTransport(settings_for(server)) as transport:
        server.handler.data_reply = "421 4.3.2 System shutting down"
        with pytest.raises(TransportUnavailable, match="421 4.3.2"):
            transport.send(message(1))
        server.handler.data_reply = None
        server.refuse("person2@kommun.example.se", "421 4.7.0 too busy, closing")
        with pytest.raises(TransportUnavailable, match="421 4.7.0"):
            transport.send(message(2))
    assert server.deliveries == []


def test_our_sender_refused_for_good_is_unavailable_naming_the_sender_setting(stop_later):
    class RefuseSender(smtp_helpers.RecordingHandler):
        async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
            return "553 5.7.1 sender address rejected: not owned by user"

    server = start_smtp_server(handler=RefuseSender())
    stop_later(server)
    with SmtpTransport(settings_for(server)) as transport, pytest.raises(TransportUnavailable) as raised:
        transport.send(message(1))
    assert raised.value.settings == ("SIPFLOWS_SENDER_ADDRESS",) and "553" in str(raised.value)


def test_every_message_goes_to_its_one_recipient_only(smtp_server):
    with SmtpTransport(settings_for(smtp_server)) as transport:
        transport.send(replace(message(1), to_address="a@x.example.se"))
        transport.send(replace(message(2), to_address="b@x.example.se"))
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [("a@x.example.se",), ("b@x.example.se",)]


def test_before_commit_runs_after_the_envelope_and_its_error_abandons_the_message(smtp_server):
    """Dispatch waits for earlier outcomes between a message's envelope and its DATA; if that wait fails
    (the database went away), the message must not be delivered and the error must come out as it is."""
    settings = settings_for(smtp_server)
    calls: list[int] = []

    class LedgerGone(RuntimeError):
        pass

    def gone() -> None:
        raise LedgerGone("database unavailable")

    with SmtpTransport(settings) as transport:
        transport.send(message(1), before_commit=lambda: calls.append(len(smtp_server.deliveries)))
        with pytest.raises(LedgerGone, match="database unavailable"):
            transport.send(message(2), before_commit=gone)
        smtp_server.refuse("gone@x.example.se")
        with pytest.raises(PermanentSendError, match="gone@x.example.se refused: 550"):
            transport.send(message(3, to="gone@x.example.se"), before_commit=lambda: calls.append(-1))
        smtp_server.handler.data_reply = "451 4.3.0 temporary local problem"
        with pytest.raises(TransientSendError, match="451 4.3.0"):
            transport.send(message(4), before_commit=lambda: calls.append(len(smtp_server.deliveries)))
        smtp_server.handler.data_reply = None
        transport.send(message(5), before_commit=lambda: calls.append(len(smtp_server.deliveries)))
    # called once the envelope was accepted (never for a refused recipient), before the message went
    assert calls == [0, 1, 1]
    assert [d.message["Message-ID"] for d in smtp_server.deliveries] == [
        "<test-1@sipflows.test>",
        "<test-5@sipflows.test>",
    ]
    assert {d.connection for d in smtp_server.deliveries} == {1}  # the connection carried on

"""The SMTP transport against a real aiosmtpd server: TLS, STARTTLS, login, refusals, lost connections.

Credentials must never surface: every error, ledger row and log line is checked for the password.
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
from sipflows.notices.mime import MailMessage
from sipflows.transports.base import PermanentSendError, TransientSendError
from sipflows.transports.smtp import SmtpTransport
from tests import smtp_server as smtp_helpers
from tests.smtp_server import SmtpTestServer, TlsFiles, make_tls, settings_for, start_smtp_server
from tests.test_dispatch import NOW, add, draft, ledger

smtp_server = smtp_helpers.smtp_server  # the fixture

PASSWORD = "Pw-k7#Zq!tango-42"
USER = "sip-robot"


def message(n: int = 1, to: str | None = None) -> MailMessage:
    return MailMessage(
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
    with pytest.raises(TransientSendError, match="CERTIFICATE_VERIFY_FAILED"):
        SmtpTransport(settings).__enter__()  # the system trust store does not know the test CA
    assert server.deliveries == []


def test_starttls_asked_for_but_not_offered(smtp_server):
    settings = settings_for(smtp_server, smtp_security="starttls")
    with pytest.raises(TransientSendError, match="STARTTLS"):
        SmtpTransport(settings).__enter__()


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
    with pytest.raises(TransientSendError) as raised:
        transport.__enter__()
    assert "refused login as sip-robot: 535" in str(raised.value) and "***" in str(raised.value)
    assert raised.value.__suppress_context__  # the library's exception (and its locals) stay behind
    assert_no_password(raised.value, repr(raised.value), repr(transport), transport.__dict__.get("_password"))

    add(engine, [draft(1), draft(2)])
    caplog.set_level(logging.DEBUG)
    summary = dispatch(engine, transport, NOW, settings)
    assert (summary.sent, summary.failed) == (0, 2)
    assert all("refused login" in f.reason for f in summary.failures)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]  # not the server's
    assert any("refused login" in line for line in ours)
    assert_no_password(*summary.failures, *(n.last_error for n in ledger(engine).values()), *ours)
    with Session(engine) as s:
        assert_no_password(*(n.last_error for n in s.query(Notice)))
    assert server.deliveries == []


def test_a_non_ascii_password_fails_clearly_without_showing_it(stop_later):
    server = start_smtp_server(users={USER: "x"}, auth_require_tls=False)
    stop_later(server)
    secret = "Lösenord-Åäö-77"
    settings = settings_for(server, smtp_username=USER, smtp_password=secret)
    with pytest.raises(TransientSendError, match="must be ASCII") as raised:
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
        with pytest.raises(TransientSendError, match="cannot reach"):
            transport.send(message(3))  # one reconnect attempt per message, which fails while it is down
        back = start_smtp_server(port=server.port)
        stop_later(back)
        transport.send(message(4))
    assert [d.message["Message-ID"] for d in server.deliveries] == ["<test-1@sipflows.test>"]
    assert [d.message["Message-ID"] for d in back.deliveries] == ["<test-4@sipflows.test>"]


def test_closed_port_is_transient():
    settings = settings_for(None)
    with pytest.raises(TransientSendError, match=f"cannot reach SMTP 127.0.0.1:{settings.smtp_port}"):
        SmtpTransport(settings).__enter__()


def test_every_message_goes_to_its_one_recipient_only(smtp_server):
    with SmtpTransport(settings_for(smtp_server)) as transport:
        transport.send(replace(message(1), to_address="a@x.example.se"))
        transport.send(replace(message(2), to_address="b@x.example.se"))
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [("a@x.example.se",), ("b@x.example.se",)]

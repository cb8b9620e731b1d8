"""A real SMTP server for tests: aiosmtpd in this process, on a free port, recording what arrives.

Use the ``smtp_server`` fixture (plain SMTP, no auth), or ``start_smtp_server(...)`` for TLS, STARTTLS,
AUTH or refused recipients. Tests assert on ``server.deliveries`` / ``server.messages()``: what really
went over the wire, parsed back with the standard library.

    from tests import smtp_server as smtp_helpers
    from tests.smtp_server import SmtpTestServer, make_tls, settings_for, start_smtp_server

    smtp_server = smtp_helpers.smtp_server  # the fixture (an alias keeps ruff's F811 quiet)

``Delivery.connection`` numbers the SMTP sessions, so a test can assert one connection per batch.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sipflows.settings import Settings


def free_port() -> int:
    """A port nobody listens on right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    authenticated_as: str | None
    tls: bool
    connection: int  # numbers the SMTP connections (sessions) in order of their first message

    @property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class RecordingHandler:
    """Accepts everything except the recipients told to refuse, and records each accepted DATA."""

    deliveries: list[Delivery] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address (lower case) -> full reply
    data_reply: str | None = None  # e.g. "451 4.3.0 try later" to refuse every message at DATA
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.lock:
            connection = getattr(session, "test_connection_number", None)
            if connection is None:
                connection = self.connections = self.connections + 1
                session.test_connection_number = connection  # type: ignore[attr-defined]
            self.deliveries.append(
                Delivery(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    content=content,
                    authenticated_as=login,
                    tls=session.ssl is not None  # STARTTLS
                    or (
                        server.transport is not None
                        and server.transport.get_extra_info("ssl_object") is not None
                    ),
                    connection=connection,
                )
            )
        return "250 2.0.0 queued"


def password_authenticator(
    users: dict[str, str], reject_reply: str | None = None
) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator accepting ``users``; ``reject_reply`` replaces the 535 on failure."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
            if reject_reply:
                reply = reject_reply.format(password=password)  # a server careless enough to echo it
                return AuthResult(success=False, handled=False, message=reply)
        return AuthResult(success=False, handled=False)

    return authenticate


@dataclass
class SmtpTestServer:
    host: str
    port: int
    handler: RecordingHandler
    controller: Controller | None = None
    tls_client_context: ssl.SSLContext | None = None

    @property
    def deliveries(self) -> list[Delivery]:
        with self.handler.lock:
            return list(self.handler.deliveries)

    def messages(self) -> list[EmailMessage]:
        return [d.message for d in self.deliveries]

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages()]

    def refuse(self, address: str, reply: str = "550 5.1.1 mailbox unavailable") -> None:
        self.handler.refuse[address.lower()] = reply

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def start_smtp_server(
    *,
    port: int | None = None,
    handler: RecordingHandler | None = None,
    tls: TlsFiles | None = None,
    implicit_tls: bool = False,
    require_starttls: bool = False,
    users: dict[str, str] | None = None,
    auth_require_tls: bool = True,
    auth_reject_reply: str | None = None,
) -> SmtpTestServer:
    """Start a server; ``tls`` enables STARTTLS (or implicit TLS with ``implicit_tls``)."""
    handler = handler or RecordingHandler()
    port = port or free_port()
    kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10.0}
    if tls is not None:
        if implicit_tls:
            kwargs["ssl_context"] = tls.server_context()
        else:
            kwargs["tls_context"] = tls.server_context()
            kwargs["require_starttls"] = require_starttls
    if users is not None:
        kwargs["authenticator"] = password_authenticator(users, auth_reject_reply)
        kwargs["auth_require_tls"] = auth_require_tls
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return SmtpTestServer(
        host="127.0.0.1",
        port=port,
        handler=handler,
        controller=controller,
        tls_client_context=tls.client_context() if tls else None,
    )


def settings_for(server: SmtpTestServer | None = None, **overrides: Any) -> Settings:
    """Settings that send through ``server`` (fast backoff-free defaults the tests can override)."""
    values: dict[str, Any] = {
        "transport": "smtp",
        "smtp_host": server.host if server else "127.0.0.1",
        "smtp_port": server.port if server else free_port(),
        "smtp_timeout": 10.0,
        "sender_address": "sip-noreply@sipflows.test",
        "sender_name": "SIP-påminnelser",
        "mail_domain": "sipflows.test",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a certificate for 127.0.0.1/localhost signed by it."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_tls(folder: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipflows test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca_cert=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A plain SMTP server (no TLS, no auth) on a free port, stopped after the test."""
    server = start_smtp_server()
    try:
        yield server
    finally:
        server.stop()

"""A real IMAP server in the test process: pymap's in-memory ``dict`` backend on a free local port.

The server runs its own asyncio loop in a background thread, so tests talk to it with a blocking client
(:mod:`imaplib`, exactly as the code under test does). Each server starts with an empty mailbox for one
user. Use the ``imap_server`` fixture (``pytest_plugins = ["tests.imap_server"]``) or
``running_imap_server()``.
"""

from __future__ import annotations

import asyncio
import imaplib
import threading
from argparse import Namespace
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime

import pytest
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import DictBackend
from pymap.imap import IMAPServer
from pysasl.hashing import Cleartext

USER = "sip-svar@region.example.se"
PASSWORD = "s3cret-Imap-Password!"


def _backend_args(user: str, password: str) -> Namespace:
    # what pymap's own command line would parse for `pymap dict --demo-user … --no-tls`
    return Namespace(
        host="127.0.0.1",
        port=0,
        debug=False,
        cert=None,
        key=None,
        tls=False,
        passlib_cfg=None,
        proxy_protocol=None,
        inherited_sockets=None,
        demo_data=False,
        demo_user=user,
        demo_password=password,
    )


def _quoted(mailbox: str) -> str:
    """Mailbox names are given as on the wire (modified UTF-7), quoted here."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ImapTestServer:
    host: str = "127.0.0.1"
    port: int = 0
    user: str = USER
    password: str = PASSWORD
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _stop: asyncio.Event | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: BaseException | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0) -> None:
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            # cleartext storage spares a slow pbkdf2 per login; pysasl compares it only for ASCII passwords
            fast = Cleartext() if self.password.isascii() else None
            backend, config = await DictBackend.init(
                _backend_args(self.user, self.password), hash_context=fast, invalid_user_sleep=0.0
            )
            config.apply_context()
            imap = IMAPServer(backend.login, config)
            callback = ProxyProtocolReader(config.proxy_protocol).get_callback(imap)
            async with AsyncExitStack() as stack:
                await backend.start(stack)
                server = await asyncio.start_server(callback, host=self.host, port=0)
                await stack.enter_async_context(server)
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self._stop.wait()

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # surfaced to the test by start()
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="pymap-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"pymap test server did not start: {self._error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        conn = imaplib.IMAP4(self.host, self.port, timeout=60)  # pymap is slow on deep MIME
        try:
            # LOGIN takes ASCII only; SASL PLAIN carries UTF-8
            conn.authenticate("PLAIN", lambda _: f"\0{self.user}\0{self.password}".encode())
            yield conn
        finally:
            with suppress(OSError, imaplib.IMAP4.error):
                conn.logout()

    def append(
        self, raw: bytes, mailbox: str = "INBOX", flags: str = "", received: datetime | None = None
    ) -> None:
        """Deliver a message as a mail server would (APPEND, unseen unless ``flags`` say otherwise);
        ``received`` sets its INTERNALDATE (default: now)."""
        when = imaplib.Time2Internaldate(received) if received is not None else None
        with self.client() as conn:
            typ, data = conn.append(_quoted(mailbox), f"({flags})" if flags else None, when, raw)
            assert typ == "OK", data

    def append_all(self, raws: list[bytes], mailbox: str = "INBOX", received: datetime | None = None) -> None:
        """Deliver many messages over one connection."""
        when = imaplib.Time2Internaldate(received) if received is not None else None
        with self.client() as conn:
            for raw in raws:
                typ, data = conn.append(_quoted(mailbox), None, when, raw)
                assert typ == "OK", data

    def mailboxes(self) -> list[str]:
        with self.client() as conn:
            typ, data = conn.list()
            assert typ == "OK", data
            names = [line.decode().rsplit(' "/" ', 1)[1] for line in data if isinstance(line, bytes)]
            return [name.strip('"') for name in names]

    def messages(self, mailbox: str = "INBOX") -> list[bytes]:
        """Each message's full content, in mailbox order (read without marking anything seen)."""
        with self.client() as conn:
            typ, data = conn.select(_quoted(mailbox), readonly=True)
            assert typ == "OK", data
            typ, data = conn.fetch("1:*", "(BODY.PEEK[])")
            if typ != "OK" or not data or data[0] is None:
                return []
            return [item[1] for item in data if isinstance(item, tuple)]

    def flags(self, mailbox: str = "INBOX") -> list[set[str]]:
        """Each message's flags, in mailbox order."""
        with self.client() as conn:
            typ, data = conn.select(_quoted(mailbox), readonly=True)
            assert typ == "OK", data
            typ, data = conn.fetch("1:*", "(FLAGS)")
            assert typ == "OK", data
            if data == [None]:
                return []
            out: list[set[str]] = []
            for item in data:
                if not isinstance(item, bytes):
                    continue
                inner = item.decode().split("FLAGS (", 1)[1].split(")", 1)[0]
                out.append(set(inner.split()))
            return out


@contextmanager
def running_imap_server(user: str = USER, password: str = PASSWORD) -> Iterator[ImapTestServer]:
    server = ImapTestServer(user=user, password=password)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_server() -> Iterator[ImapTestServer]:
    """A fresh IMAP server with an empty INBOX for ``USER``/``PASSWORD`` on 127.0.0.1 and a free port."""
    with running_imap_server() as server:
        yield server

"""SMTP: one connection per dispatch batch (plain, STARTTLS or implicit TLS, optional login).

Two kinds of failure, kept apart:

- the server cannot be used at all — connection refused or timed out, TLS or certificate trouble, login
  refused, a 421 "service not available", our own sender refused for good: ``TransportUnavailable``,
  naming the host and the ``SIPFLOWS_SMTP_*`` settings to check. Dispatch stops and no notice pays an
  attempt for it;
- one message failed: a refused recipient fails alone (smtplib resets the transaction itself, and so do
  we after any other reply error, so the connection carries on with the rest of the batch). Replies 5xx
  are permanent (``PermanentSendError``); 4xx and a connection lost in the middle of a message are
  transient. A dropped connection is reopened for the next message; if that fails, the server is
  unavailable.

Nothing raised here contains the password: every message is built from reply codes and server text,
then scrubbed of the password in every form it crossed the wire.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from sipflows.settings import Settings
from sipflows.transports.base import (
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    TransportUnavailable,
)
from sipflows.transports.mime import mime_bytes, sender_address

log = logging.getLogger(__name__)

_MAX_REASON = 300
_SERVICE_NOT_AVAILABLE = 421  # RFC 5321: the server is closing the channel, for every message alike
_WHERE = ("SIPFLOWS_SMTP_HOST", "SIPFLOWS_SMTP_PORT")
_LOGIN = ("SIPFLOWS_SMTP_USERNAME", "SIPFLOWS_SMTP_PASSWORD")
_TLS = ("SIPFLOWS_SMTP_SECURITY", "SIPFLOWS_SMTP_HOST", "SIPFLOWS_SMTP_PORT")


def _text(resp: bytes | str) -> str:
    return (resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)).strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


_LEADING_DOT = re.compile(rb"(?m)^\.")  # smtplib's own rule for dot-stuffing


def _nothing() -> None:
    pass


class _NotCommitted(Exception):
    """``before_commit`` raised: carries its exception past the SMTP error handling, untouched."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class PreparedMail:
    """A message made ready for the wire ahead of its turn (``SmtpTransport.prepare``)."""

    recipient: str  # the RCPT TO argument: the address in angle brackets
    size: int  # the message's size in bytes, for the SIZE extension
    data: bytes  # what goes after DATA: dot-stuffed, ending with CRLF "." CRLF


class SmtpTransport:
    name = "smtp"

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context`` overrides the system trust store (a private CA; the tests' own CA)."""
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.timeout = settings.smtp_timeout
        self.username = settings.smtp_username
        self._password = settings.smtp_password
        self.sender = sender_address(settings.sender_address, settings.sender_name)
        self._mail_from = smtplib.quoteaddr(self.sender.addr_spec)
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._secrets = self._secret_forms()

    # -- credentials never leave in what we raise -------------------------------------------------------

    def _secret_forms(self) -> tuple[str, ...]:
        if self._password is None or not self._password.get_secret_value():
            return ()
        pw = self._password.get_secret_value()
        user = self.username or ""
        forms = {
            pw,
            base64.b64encode(pw.encode()).decode(),  # AUTH LOGIN
            base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),  # AUTH PLAIN
        }
        return tuple(sorted(forms, key=len, reverse=True))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_MAX_REASON]

    # -- connection -------------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _where(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def _unavailable(self, reason: str, settings: tuple[str, ...] = _WHERE) -> TransportUnavailable:
        return TransportUnavailable("smtp", self._where(), self._scrub(reason), settings)

    def _connect(self) -> smtplib.SMTP:
        """A logged-in connection, or ``TransportUnavailable`` saying why there is none."""
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                password = self._password.get_secret_value() if self._password else ""
                smtp.login(self.username, password)
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(smtp)
            raise self._unavailable(
                f"login as {self.username} refused: {exc.smtp_code} {_text(exc.smtp_error)}", _LOGIN
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            self._discard(smtp)
            raise self._unavailable(str(exc), ("SIPFLOWS_SMTP_SECURITY", "SIPFLOWS_SMTP_USERNAME")) from None
        except smtplib.SMTPResponseException as exc:
            self._discard(smtp)
            raise self._unavailable(f"answered {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except UnicodeError:
            # smtplib sends AUTH data as ASCII only; say so without repeating what failed to encode
            self._discard(smtp)
            raise self._unavailable(
                "the SMTP username and password must be ASCII to log in", _LOGIN
            ) from None
        except ssl.SSLError as exc:
            self._discard(smtp)
            detail = ": ".join(
                str(part) for part in (exc.reason, getattr(exc, "verify_message", None)) if part
            )
            raise self._unavailable(f"TLS failed: {detail or exc}", _TLS) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(smtp)
            if isinstance(exc, TimeoutError) or "timed out" in str(exc):
                raise self._unavailable(
                    f"no answer within {self.timeout:g} s (SIPFLOWS_SMTP_TIMEOUT)"
                ) from None
            raise self._unavailable(f"cannot connect: {_describe(exc)}") from None
        log.debug("connected to %s (%s)", self._where(), self.security)
        self._smtp = smtp
        return smtp

    @staticmethod
    def _discard(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may fail; it is gone anyway
                smtp.close()

    def __enter__(self) -> SmtpTransport:
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._discard(smtp)

    # -- sending ----------------------------------------------------------------------------------------

    def _after_reply_error(self, smtp: smtplib.SMTP) -> None:
        """Keep the connection usable for the rest of the batch, or drop it if the server hung up."""
        if smtp.sock is None:  # smtplib closes on 421
            self._smtp = None
            return
        self._reset(smtp)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """RSET, so the connection serves the rest of the batch; dropped if even that fails."""
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._discard(smtp)
            self._smtp = None

    def prepare(self, message: OutgoingMessage) -> PreparedMail:
        """The message as it goes over the wire, written before its turn (dispatch does this on another
        thread while the previous message travels). ``PermanentSendError`` when it cannot be written."""
        try:
            data = mime_bytes(message, self.sender)
        except ValueError as exc:
            raise PermanentSendError(self._scrub(str(exc))) from None
        # what smtplib.SMTP.data() does to the message before it sends it
        stuffed = _LEADING_DOT.sub(b"..", data) if data.startswith(b".") or b"\n." in data else data
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        # mime_bytes accepted the address as a plain local@domain: smtplib.quoteaddr would only add <>
        recipient = f"<{message.to_address.strip()}>"
        return PreparedMail(recipient, len(data), stuffed + b".\r\n")

    def _sendmail(self, smtp: smtplib.SMTP, mail: PreparedMail, before_commit: Callable[[], None]) -> None:
        """``smtplib.SMTP.sendmail`` for one recipient, calling ``before_commit`` before DATA.

        Until DATA ends the server has accepted nothing: if ``before_commit`` raises, the transaction is
        reset and nothing is delivered. The same exceptions as ``sendmail`` come out of every reply.
        """
        smtp.ehlo_or_helo_if_needed()
        size = f" size={mail.size}" if smtp.does_esmtp and smtp.has_extn("size") else ""
        smtp.putcmd("mail", f"from:{self._mail_from}{size}")
        code, resp = smtp.getreply()
        if code != 250:
            self._abandon(smtp, code)
            raise smtplib.SMTPSenderRefused(code, resp, self.sender.addr_spec)
        smtp.putcmd("rcpt", f"to:{mail.recipient}")
        code, resp = smtp.getreply()
        if code not in (250, 251):
            self._abandon(smtp, code)
            raise smtplib.SMTPRecipientsRefused({mail.recipient[1:-1]: (code, resp)})
        try:
            before_commit()
        except BaseException as exc:
            self._abandon(smtp, 0)
            raise _NotCommitted(exc) from exc
        smtp.putcmd("data")
        code, resp = smtp.getreply()
        if code == 354:
            smtp.send(mail.data)
            code, resp = smtp.getreply()
        if code != 250:
            self._abandon(smtp, code)
            raise smtplib.SMTPDataError(code, resp)

    def _abandon(self, smtp: smtplib.SMTP, code: int) -> None:
        """What ``sendmail`` does after a refusal: hang up on 421, otherwise reset the transaction."""
        if code == _SERVICE_NOT_AVAILABLE:
            smtp.close()
            self._smtp = None
            return
        self._reset(smtp)

    def send(
        self,
        message: OutgoingMessage,
        *,
        before_commit: Callable[[], None] | None = None,
        prepared: PreparedMail | None = None,
    ) -> SendResult:
        """Send one message. ``before_commit`` is called once its envelope is accepted, right before the
        message itself goes; an exception from it abandons the message (nothing is delivered) and is
        raised as it is. ``prepared`` is what ``prepare`` made of this same message, if it ran."""
        mail = prepared or self.prepare(message)
        smtp = self._smtp or self._connect()
        try:
            self._sendmail(smtp, mail, before_commit or _nothing)
        except _NotCommitted as exc:
            raise exc.error from exc.error.__cause__  # the caller's own exception, as it was raised
        except smtplib.SMTPRecipientsRefused as exc:
            # smtplib has already sent RSET; with one recipient per message it names exactly this one
            code, resp = next(iter(exc.recipients.values()), (0, b""))
            if smtp.sock is None:
                self._smtp = None
            if code == _SERVICE_NOT_AVAILABLE:
                raise self._unavailable(f"answered {code} {_text(resp)}") from None
            reason = self._scrub(f"recipient {message.to_address} refused: {code} {_text(resp)}")
            raise (PermanentSendError if code >= 500 else TransientSendError)(reason) from None
        except smtplib.SMTPSenderRefused as exc:
            self._after_reply_error(smtp)
            reason = f"sender {exc.sender!r} refused: {exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code == _SERVICE_NOT_AVAILABLE:
                raise self._unavailable(reason) from None
            if exc.smtp_code >= 500:
                # our own From is refused for good: no notice can go until the setting is fixed
                raise self._unavailable(reason, ("SIPFLOWS_SENDER_ADDRESS",)) from None
            raise TransientSendError(self._scrub(reason)) from None
        except smtplib.SMTPResponseException as exc:
            self._after_reply_error(smtp)
            reason = f"{self._where()} answered {exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code == _SERVICE_NOT_AVAILABLE:
                raise self._unavailable(f"answered {exc.smtp_code} {_text(exc.smtp_error)}") from None
            raise (PermanentSendError if exc.smtp_code >= 500 else TransientSendError)(
                self._scrub(reason)
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            # e.g. an address that needs SMTPUTF8 on a server without it: this message can never go
            raise PermanentSendError(self._scrub(str(exc))) from None
        except (smtplib.SMTPException, OSError) as exc:
            # lost in the middle of this message (it may even have arrived): this message is retried,
            # and the next one reconnects — or finds the server unavailable
            self._discard(smtp)
            self._smtp = None
            raise TransientSendError(
                self._scrub(f"{self._where()} connection lost: {_describe(exc)}")
            ) from None
        return SendResult()

"""A notice as an RFC 5322 message, shaped the way Outlook, Exchange, Gmail and Apple Mail expect.

Without attachments the message is ``multipart/alternative``: text/plain, text/html and, for an
invitation or cancellation, ``text/calendar; method=REQUEST|CANCEL; charset=utf-8``. That is what
Exchange and Outlook themselves send (RFC 6047 iMIP) and what every common client turns into an
"Accept / Tentative / Decline" bar. We deliberately do NOT add a second copy of the .ics as an
attachment (Google Calendar does): Outlook and Thunderbird then show a stray ``invite.ics`` file or a
second event, and the message would have to become ``multipart/mixed`` for no gain. Only real files
(the weekly report's attachments) make it ``multipart/mixed``, with the alternative part first.

The Message-ID is the ledger's, derived from the notice key, so a resend after a crash carries the same
one and mail clients treat it as the same message.
"""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email import base64mime, encoders, quoprimime
from email.charset import BASE64, QP, Charset
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, formataddr
from typing import Any

from sipflows.addresses import check_address
from sipflows.transports.base import Attachment, OutgoingMessage

_MAX_LINE = 78  # RFC 5322 2.1.1


class _MailPolicy(Compat32):
    """The classic policy with CRLF line ends (iCalendar requires them, RFC 5545 3.1; .eml files and SMTP
    use them anyway), writing headers that are already ASCII and folded exactly as they are.

    We build with the standard library's classic MIME classes and encode non-ASCII header text
    ourselves: EmailMessage's header parsing and refolding (and the classic Header splitter) took most
    of dispatch's time, several times what the SMTP conversation takes.
    """

    def _folded(self, name: str, value: object) -> str | None:
        if not isinstance(value, str) or not value.isascii():
            return None
        lines = value.split("\r\n")
        if len(name) + 2 + len(lines[0]) > _MAX_LINE:
            return None
        for line in lines:
            if "\r" in line or "\n" in line:
                return None
        for line in lines[1:]:
            if not line.startswith(" ") or len(line) > _MAX_LINE:
                return None
        return f"{name}: {self.linesep.join(lines)}{self.linesep}"

    def fold(self, name: str, value: Any) -> str:
        return self._folded(name, value) or super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        done = self._folded(name, value)
        return done.encode("ascii") if done is not None else super().fold_binary(name, value)


MIME_POLICY = _MailPolicy(linesep="\r\n")

ICS_METHODS = ("REQUEST", "CANCEL")


def sender_address(address: str, name: str | None = None) -> Address:
    """The From address; ``ValueError`` when ``address`` is not a plain ``local@domain``."""
    local, _, domain = check_address(address).rpartition("@")
    return Address(display_name=_one_line(name or ""), username=local, domain=domain)


def _usable(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return check_address(address)
    except ValueError:
        return None


def _one_line(text: str) -> str:
    # a header value must never carry a line break (header injection); collapse any whitespace run
    return " ".join(text.split())


def _text_part(text: str, subtype: str, encoding: int) -> MIMENonMultipart:
    """A UTF-8 text part in the transfer encoding we choose (the default would be base64)."""
    charset = Charset("utf-8")
    charset.body_encoding = encoding
    part = MIMENonMultipart("text", subtype, policy=MIME_POLICY, charset="utf-8")
    part.set_payload(text, charset)
    return part


def encoded_words(text: str, max_bytes: int = 42) -> str:
    """RFC 2047 encoded-words (UTF-8, base64), split between characters and folded with CRLF + space.

    42 bytes make 68-character words, so even ``Subject: `` plus the first word stays within 78.
    """
    data = text.encode("utf-8")
    words: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + max_bytes, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # never split a character
            end -= 1
        if end == start:  # a single character longer than max_bytes: it goes whole
            end = start + 1
            while end < len(data) and data[end] & 0xC0 == 0x80:
                end += 1
        words.append(data[start:end])
        start = end
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words)


@functools.lru_cache(maxsize=64)  # the sender's, and a convener's on each of a meeting's invitations
def _address_header(name: str | None, address: str) -> str:
    name = _one_line(name or "")
    if name.isascii():
        return formataddr((name, address))
    return f"{encoded_words(name)} <{address}>"


def _subject(subject: str) -> str:
    subject = _one_line(subject)
    return subject if subject.isascii() else encoded_words(subject)


def _attachment_part(a: Attachment) -> MIMEBase:
    maintype, subtype = a.content_type.split("/", 1)
    part = MIMEBase(maintype, subtype, policy=MIME_POLICY)
    part.set_payload(a.content)
    encoders.encode_base64(part)
    if maintype == "text":
        # without a charset readers assume ASCII; the report's CSV files are UTF-8
        try:
            a.content.decode("utf-8")
            part.set_param("charset", "utf-8")
        except UnicodeDecodeError:
            pass
    filename = _one_line(a.filename)
    if filename.isascii():
        part.add_header("Content-Disposition", "attachment", filename=filename)
    else:
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    return part


def _boundary() -> str:
    """A fresh multipart boundary that no part of ours can contain.

    Every part we write is quoted-printable or base64. In both, "=" is only ever followed by two hex
    digits, a line end, another "=" or the end of a line (base64 padding), so "=_" occurs in no encoded
    body line, and no line of a body can be a delimiter. The random part keeps an inner boundary apart from
    an outer one. Choosing the boundary ourselves spares the standard library's generator its search for
    one, which compiles a new regular expression for every message.
    """
    return f"=_sipflows_{random.getrandbits(96):024x}"


def _checked(message: OutgoingMessage, now: datetime | None) -> tuple[datetime, str, str | None]:
    """(Date, recipient, ics method) — or ``ValueError`` when the message cannot be written."""
    date = now or (message.date)
    if date is None:
        # the transport edge is the only place allowed to read the clock, and only as a fallback
        date = datetime.now(UTC)
    to_address = check_address(message.to_address)
    method = None
    if message.ics:
        method = (message.ics_method or "REQUEST").upper()
        if method not in ICS_METHODS:
            raise ValueError(f"ics method must be one of {', '.join(ICS_METHODS)}, not {method!r}")
    return date, to_address, method


@functools.lru_cache(maxsize=4)  # a dispatch stamps every message with the run's time
def _date_header(date: datetime) -> str:
    return format_datetime(date.astimezone(UTC))


def _headers(
    message: OutgoingMessage, sender: Address, date: datetime, to_address: str
) -> list[tuple[str, str]]:
    """The top-level headers after Content-Type and MIME-Version, in order, as ASCII values."""
    headers = [
        ("Message-ID", _one_line(message.message_id)),
        ("Date", _date_header(date)),
        ("From", _address_header(sender.display_name, sender.addr_spec)),
        ("To", _address_header(message.to_name, to_address)),
    ]
    reply_to = _usable(message.reply_to)
    if reply_to is not None and reply_to.casefold() != to_address.casefold():
        # a person answering the mail reaches the convener, not the mailbox that collects calendar replies
        headers.append(("Reply-To", _address_header(message.reply_to_name, reply_to)))
    headers += [
        ("Subject", _subject(message.subject)),
        # RFC 3834 and Exchange's equivalent: out-of-office replies to an automatic notice help nobody
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "OOF, AutoReply"),
    ]
    return headers


def render_mime(
    message: OutgoingMessage,
    sender: Address,
    *,
    now: datetime | None = None,
    attachments: Sequence[Attachment] | None = None,
) -> Message:
    """The message to send or store, as the standard library's classes. ``now`` (or the message's
    ``date``) becomes the Date header.

    Raises ``ValueError`` when the recipient or ics method cannot be put into a message.
    """
    date, to_address, method = _checked(message, now)
    if attachments is None:
        attachments = message.attachments

    body = MIMEMultipart("alternative", boundary=_boundary(), policy=MIME_POLICY)
    body.attach(_text_part(message.body_text, "plain", QP))
    body.attach(_text_part(message.body_html, "html", QP))
    if message.ics and method:
        # base64 as Exchange sends it: no transfer encoding can disturb RFC 5545 line folding
        calendar = _text_part(message.ics, "calendar", BASE64)
        calendar.set_param("method", method)
        body.attach(calendar)
    root: Message = body
    if attachments:
        root = MIMEMultipart("mixed", boundary=_boundary(), policy=MIME_POLICY)
        root.attach(body)
        for a in attachments:
            root.attach(_attachment_part(a))
    for part in root.walk():
        if part is not root:
            del part["MIME-Version"]  # the classes stamp it on every part; RFC 2045 wants it once
    for name, value in _headers(message, sender, date, to_address):
        root[name] = value
    return root


_CRLF = b"\r\n"
_TEXT_HEADERS = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n'


# The bodies and calendar parts of a meeting's invitations are the same for every invitee (they are
# rendered once per meeting and language), and dispatch sends them one after the other: each is encoded
# once. The caches hold the last few texts only.
@functools.lru_cache(maxsize=32)
def _qp(text: str) -> bytes:
    # the standard library's own encoder, as Charset("utf-8") with QP body encoding uses it
    return quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), eol="\r\n").encode("ascii")


@functools.lru_cache(maxsize=16)
def _base64(text: str) -> bytes:
    return base64mime.body_encode(text.encode("utf-8"), eol="\r\n").encode("ascii")


def _alternative_bytes(message: OutgoingMessage, method: str | None) -> tuple[bytes, bytes]:
    """(Content-Type value, body) of the ``multipart/alternative`` written straight to bytes."""
    parts = [
        _TEXT_HEADERS % (b"plain", b"quoted-printable") + _CRLF + _qp(message.body_text),
        _TEXT_HEADERS % (b"html", b"quoted-printable") + _CRLF + _qp(message.body_html),
    ]
    if message.ics and method:
        # base64 as Exchange sends it: no transfer encoding can disturb RFC 5545 line folding
        calendar = _base64(message.ics)
        headers = (
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Type: text/calendar; charset="utf-8"; method="%s"\r\n' % method.encode("ascii")
        )
        parts.append(headers + _CRLF + calendar)
    while True:
        boundary = _boundary().encode("ascii")
        if not any(boundary in part for part in parts):  # cannot happen (see _boundary); checked anyway
            break
    delimiter = b"\r\n--" + boundary + b"\r\n"
    body = b"--" + boundary + _CRLF + delimiter.join(parts) + b"\r\n--" + boundary + b"--\r\n"
    return b'multipart/alternative;\r\n boundary="' + boundary + b'"', body


def mime_bytes(
    message: OutgoingMessage,
    sender: Address,
    *,
    now: datetime | None = None,
    attachments: Sequence[Attachment] | None = None,
) -> bytes:
    """What goes over the wire or into the .eml file (CRLF line ends).

    A notice without files (all but the weekly report) is written straight to bytes: the same headers,
    parts and encodings as ``render_mime`` gives, without building and flattening the standard library's
    object tree, which cost several times the SMTP conversation. With files, ``render_mime`` writes it.
    """
    if attachments is None:
        attachments = message.attachments
    if attachments:
        return render_mime(message, sender, now=now, attachments=attachments).as_bytes(policy=MIME_POLICY)
    date, to_address, method = _checked(message, now)
    content_type, body = _alternative_bytes(message, method)
    fold = MIME_POLICY.fold_binary
    head = [b"Content-Type: " + content_type + _CRLF, b"MIME-Version: 1.0\r\n"]
    head += [fold(name, value) for name, value in _headers(message, sender, date, to_address)]
    return b"".join(head) + _CRLF + body

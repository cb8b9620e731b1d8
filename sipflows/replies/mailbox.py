"""Calendar replies from a mailbox: an IMAP folder, or a folder of ``.eml`` files.

Every message is handled on its own, in its own transaction, and whatever it holds or raises it cannot
stop the run: a message that gives no answer sipflows may record is *set aside* — the folder source moves
it into ``rejected/`` with a ``.reason`` file beside it; IMAP moves it into
``SIPFLOWS_IMAP_REJECTED_FOLDER`` (created when missing), or flags it ``\\Seen \\Flagged`` when that
setting is empty — logged without its content, counted and listed in the run's summary, and the next
message is read. Only a failure of the source itself (the folder gone, the IMAP connection lost) or of
the register stops a source, and then the message in hand stays where it was for the next run.

A message is marked handled (IMAP ``\\Seen``, file moved to ``processed/``) only after its answer is
committed, so a run killed at any point is simply run again: answers are state and apply once.

Received time: the IMAP server's INTERNALDATE, or the file's modification time — capped at the run's
``now``. It dates an answer whose own DTSTAMP cannot be believed (see ``sipflows.replies.answers``).
"""

from __future__ import annotations

import base64
import imaplib
import logging
import os
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from sipflows.db import session_scope
from sipflows.replies.answers import (
    Outcome,
    ReplyIngestError,
    ReplySummary,
    SetAside,
    load_meeting,
)
from sipflows.replies.itip import MAX_MESSAGE_BYTES, RejectedReply, read_reply
from sipflows.settings import Settings

log = logging.getLogger("sipflows.replies")

IMAP_TIMEOUT_SECONDS = 60.0
PROCESSED_DIR = "processed"
REJECTED_DIR = "rejected"
REASON_SUFFIX = ".reason"


@dataclass(frozen=True)
class Handling:
    """What became of one message: handled (its answer applied, kept or not recordable) or set aside."""

    set_aside: bool
    reason: str  # for the log and the .reason file; never the message's content


def _set_aside(summary: ReplySummary, where: str, category: str, reason: str) -> Handling:
    setattr(summary, category, getattr(summary, category) + 1)
    summary.rejected += 1
    summary.set_aside.append(SetAside(where, reason))
    log.warning("%s set aside: %s", where, reason)
    return Handling(True, reason)


def handle_message(
    engine: Engine, raw: bytes, where: str, received_at: datetime, summary: ReplySummary
) -> Handling:
    """Read one message and apply the answer it may give, in its own transaction.

    Never raises for anything the message holds. Raises ``ReplyIngestError`` only when the register
    cannot be reached, which is no fault of the message (it is then left for the next run).
    """
    summary.messages += 1
    try:
        reply = read_reply(raw)
        a = reply.answer
        with session_scope(engine) as session:
            record = load_meeting(session, a.uid)
            if record is None:
                log.warning("answer from %s ignored: no meeting has its UID", where)
                outcome = Outcome.UNKNOWN_MEETING
            else:
                outcome = record.apply(
                    a.attendee, a.answer, a.answered_at, received_at, where, sequence=a.sequence
                )
    except RejectedReply as exc:
        return _set_aside(summary, where, exc.category, str(exc))
    except (OperationalError, InterfaceError) as exc:
        raise ReplyIngestError(f"the register cannot be reached: {type(exc.orig).__name__}") from None
    except Exception as exc:  # whatever a hostile message provokes must not stop the rest
        log.error("%s: handling it failed with %s; set aside", where, type(exc).__name__)
        return _set_aside(summary, where, "errors", f"handling failed ({type(exc).__name__})")
    if reply.other_attendees:
        log.warning(
            "%s names %d other attendee(s) besides its sender: only the sender's answer is taken",
            where,
            reply.other_attendees,
        )
    summary.count(outcome)
    if outcome.set_aside:
        category = "untrusted" if outcome is Outcome.UNSENT_VERSION else "unknown"
        summary.rejected += 1
        reason = {
            Outcome.UNKNOWN_MEETING: "no meeting in the register has the reply's UID",
            Outcome.UNKNOWN_ATTENDEE: "the sender is not invited to the meeting",
            Outcome.UNSENT_VERSION: "the reply answers a version of the meeting that was never sent",
        }[outcome]
        summary.set_aside.append(SetAside(where, reason))
        log.warning("%s set aside (%s): %s", where, category, reason)
        return Handling(True, reason)
    return Handling(False, outcome.value)


def _cap(received: datetime, now: datetime) -> datetime:
    return min(received.astimezone(UTC), now)


# --- a folder of .eml files ------------------------------------------------------------------------------


def _move_into(path: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
        target = folder / f"{path.stem}-{n}{path.suffix}"
        n += 1
    os.replace(path, target)
    return target


def ingest_folder(engine: Engine, folder: Path, now: datetime) -> ReplySummary:
    """Every ``*.eml`` directly in ``folder``, oldest name first: handled ones move to ``processed/``, the
    ones set aside to ``rejected/`` with ``<name>.reason`` beside, so a rerun finds only what is new."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not folder.is_dir():
        raise ReplyIngestError(f"replies folder {folder} does not exist")
    summary = ReplySummary()
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".eml" and p.is_file()):
        where = f"file {path.name}"
        try:
            stat = path.stat()
            received = _cap(datetime.fromtimestamp(stat.st_mtime, UTC), now)
            if stat.st_size > MAX_MESSAGE_BYTES:
                summary.messages += 1
                too_large = f"the message is larger than {MAX_MESSAGE_BYTES // 2**20} MB"
                handling = _set_aside(summary, where, "malformed", too_large)
            else:
                handling = handle_message(engine, path.read_bytes(), where, received, summary)
        except ReplyIngestError as exc:
            exc.summary = summary
            raise
        except FileNotFoundError:  # taken by a concurrent run
            continue
        except OSError as exc:
            log.warning("%s cannot be read (%s); left for the next run", where, exc.strerror)
            continue
        try:
            if not handling.set_aside:
                _move_into(path, folder / PROCESSED_DIR)
            else:
                moved = _move_into(path, folder / REJECTED_DIR)
                moved.with_name(moved.name + REASON_SUFFIX).write_text(
                    f"{now.isoformat()} {handling.reason}\n", encoding="utf-8"
                )
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("%s could not be moved (%s); it is read again next run", where, exc.strerror)
    log.info("replies folder %s: %s", folder, summary.describe())
    return summary


# --- IMAP -------------------------------------------------------------------------------------------------


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3): "Svar på" is sent as "Svar p&AOU-"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quote_mailbox(name: str) -> str:
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_login(conn: imaplib.IMAP4, user: str, password: Callable[[], str]) -> None:
    """LOGIN carries ASCII only; a UTF-8 user or password (å, ä, ö) goes by SASL PLAIN."""
    try:
        user.encode("ascii")
        password().encode("ascii")
    except UnicodeEncodeError:
        if "AUTH=PLAIN" not in conn.capabilities:
            raise ReplyIngestError(
                "IMAP: non-ASCII credentials need AUTH=PLAIN, which the server lacks"
            ) from None
        conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password()}".encode())
        return
    conn.login(user, password())


def _connect(settings: Settings) -> imaplib.IMAP4:
    host, port = settings.imap_host, settings.imap_port
    if not host:
        raise ReplyIngestError("IMAP is not configured: set SIPFLOWS_IMAP_HOST")
    if not settings.imap_username or settings.imap_password is None:
        raise ReplyIngestError("IMAP needs SIPFLOWS_IMAP_USERNAME and SIPFLOWS_IMAP_PASSWORD")
    secret = settings.imap_password
    try:
        if settings.imap_ssl:
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, timeout=IMAP_TIMEOUT_SECONDS)
        else:
            conn = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT_SECONDS)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ReplyIngestError(f"cannot reach IMAP server {host}:{port}: {exc}") from None
    try:
        _imap_login(conn, settings.imap_username, secret.get_secret_value)
    except imaplib.IMAP4.error:
        conn.shutdown()
        raise ReplyIngestError(
            f"IMAP server {host}:{port} refused the login of {settings.imap_username}"
        ) from None
    except BaseException:
        conn.shutdown()
        raise
    return conn


def _capabilities(conn: imaplib.IMAP4) -> set[str]:
    """What the server offers once logged in (MOVE, UIDPLUS); imaplib keeps only the greeting's."""
    typ, data = conn.capability()
    words: set[str] = set(conn.capabilities)
    if typ == "OK":
        for line in data:
            if isinstance(line, bytes):
                words.update(line.decode("ascii", "replace").upper().split())
    return words


def _fetched_message(data: list[object]) -> bytes | None:
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


_SIZE = re.compile(rb"RFC822\.SIZE (\d+)", re.IGNORECASE)
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"', re.IGNORECASE)


def _message_facts(data: list[object]) -> tuple[int | None, datetime | None]:
    """RFC822.SIZE and INTERNALDATE (when the server received the message) from a FETCH answer."""
    text = b" ".join(i if isinstance(i, bytes) else b"" for i in data)
    size = _SIZE.search(text)
    date = _INTERNALDATE.search(text)
    received = None
    if date:
        with suppress(ValueError):
            received = datetime.strptime(date.group(1).decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    return (int(size.group(1)) if size else None), received


class _Rejects:
    """Puts messages aside: moved into the rejected folder (created once, when first needed), or flagged
    ``\\Seen \\Flagged`` when no folder is configured or moving is impossible."""

    def __init__(self, conn: imaplib.IMAP4, folder: str | None, capabilities: set[str], where: str) -> None:
        self.conn, self.folder, self.capabilities, self.where = conn, folder, capabilities, where
        self._ready: bool | None = None

    def _ensure_folder(self) -> bool:
        if self._ready is None:
            assert self.folder
            name = _quote_mailbox(self.folder)
            typ, data = self.conn.list('""', name)
            exists = typ == "OK" and any(isinstance(line, bytes) and line for line in data)
            if not exists:
                typ, _ = self.conn.create(name)
                if typ != "OK":
                    log.warning("%s: cannot create the rejected folder; flagging instead", self.where)
            self._ready = exists or typ == "OK"
        return self._ready

    def put_aside(self, uid: str) -> None:
        self.conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Flagged)")
        if self.folder and self._ensure_folder() and self._move(uid):
            return
        typ, _ = self.conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen \Flagged)")
        if typ != "OK":
            log.warning("%s: could not flag message uid %s; it will be read again", self.where, uid)

    def _move(self, uid: str) -> bool:
        assert self.folder
        target = _quote_mailbox(self.folder)
        if "MOVE" in self.capabilities:
            typ, _ = self.conn.uid("MOVE", uid, target)
            return typ == "OK"
        typ, _ = self.conn.uid("COPY", uid, target)
        if typ != "OK":
            return False
        self.conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen \Deleted)")
        if "UIDPLUS" in self.capabilities:
            self.conn.uid("EXPUNGE", uid)
        return True


def ingest_imap(engine: Engine, settings: Settings, now: datetime) -> ReplySummary:
    """Every unseen message in ``settings.imap_folder``, each handled on its own (see the module).

    Messages are read with ``BODY.PEEK[]`` (which leaves them unseen) and flagged ``\\Seen`` only after
    their answers are committed; those set aside go to ``settings.imap_rejected_folder``. A run that dies
    midway leaves the rest unseen for the next run.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    rejected_folder = (settings.imap_rejected_folder or "").strip() or None
    if rejected_folder is not None and rejected_folder.casefold() == settings.imap_folder.strip().casefold():
        raise ReplyIngestError("SIPFLOWS_IMAP_REJECTED_FOLDER must differ from SIPFLOWS_IMAP_FOLDER")
    summary = ReplySummary()
    conn = _connect(settings)
    where = f"IMAP {settings.imap_host}/{settings.imap_folder}"
    try:
        rejects = _Rejects(conn, rejected_folder, _capabilities(conn), where)
        typ, data = conn.select(_quote_mailbox(settings.imap_folder))
        if typ != "OK":
            raise ReplyIngestError(f"{where}: cannot open the folder")
        typ, data = conn.uid("SEARCH", "UNSEEN")
        if typ != "OK":
            raise ReplyIngestError(f"{where}: search for unseen messages failed")
        uids = [u.decode() for u in (data[0] or b"").split()] if data and isinstance(data[0], bytes) else []
        for uid in uids:
            name = f"IMAP message uid {uid}"
            typ, data = conn.uid("FETCH", uid, "(RFC822.SIZE INTERNALDATE)")
            size, received = _message_facts(list(data)) if typ == "OK" else (None, None)
            received = _cap(received or now, now)
            if size is not None and size > MAX_MESSAGE_BYTES:
                summary.messages += 1
                too_large = f"the message is larger than {MAX_MESSAGE_BYTES // 2**20} MB"
                handling = _set_aside(summary, name, "malformed", too_large)
            else:
                typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = _fetched_message(list(data)) if typ == "OK" else None
                if raw is None:
                    log.warning("%s: message uid %s could not be fetched; left for the next run", where, uid)
                    continue
                handling = handle_message(engine, raw, name, received, summary)
            if handling.set_aside:
                rejects.put_aside(uid)
            else:
                typ, _ = conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)")
                if typ != "OK":
                    log.warning("%s: could not flag message uid %s; it will be read again", where, uid)
    except ReplyIngestError as exc:
        exc.summary = summary
        raise
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ReplyIngestError(f"{where}: connection failed: {exc}", summary) from None
    finally:
        with suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
    log.info("%s: %s", where, summary.describe())
    return summary

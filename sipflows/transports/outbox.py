"""The default transport: one ``.eml`` file per notice in a folder, so nothing leaves the machine.

Files are named from the notice key (readable, plus a hash so two keys never share a name) and written
atomically (temporary file, fsync, rename): a resend after a crash replaces the file, never adds one,
and a reader never sees half a message. A write killed midway leaves its hidden ``.*.eml.tmp`` behind;
the next run removes it. The writer holds an advisory lock on its temporary file while it writes, so a
second dispatcher's clean-up never takes a file that is still being written. A folder that cannot be
written is the transport being unavailable (``SIPFLOWS_OUTBOX_DIR``), not a failure of the notice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from email.headerregistry import Address
from pathlib import Path

try:  # POSIX; elsewhere stale files are recognised by their age alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from sipflows.transports.base import OutgoingMessage, PermanentSendError, SendResult, TransportUnavailable
from sipflows.transports.mime import mime_bytes, sender_address

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
TEMP_PREFIX, TEMP_SUFFIX = ".", ".eml.tmp"
_STALE_WITHOUT_LOCKS = 600  # seconds, where advisory locks are not available

log = logging.getLogger(__name__)


def eml_filename(key: str) -> str:
    """A deterministic, filesystem-safe name for the notice with ``key``."""
    readable = _UNSAFE.sub("_", key).strip("._")[:100] or "notice"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{readable}-{digest}.eml"


class OutboxTransport:
    name = "outbox"

    def __init__(self, folder: Path | str, sender: Address | None = None) -> None:
        self.folder = Path(folder)
        self.sender = sender or sender_address("sip-noreply@example.se", "SIP-påminnelser")
        # a transport is made per run: what a killed run left behind goes now, even if nothing is due
        self.remove_stale_temp_files()

    def __enter__(self) -> OutboxTransport:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(f"the folder cannot be created: {exc.strerror}") from None
        self.remove_stale_temp_files()
        return self

    def _unavailable(self, reason: str) -> TransportUnavailable:
        # a folder that cannot be written (gone, read-only, disk full) fails every notice alike
        return TransportUnavailable("outbox", f"folder {self.folder}", reason, ("SIPFLOWS_OUTBOX_DIR",))

    def remove_stale_temp_files(self) -> int:
        """Delete the temporary files of writes that were killed; returns how many. A file another
        process is still writing is locked by it and left alone."""
        try:
            candidates = [p for p in self.folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}") if p.is_file()]
        except OSError:
            return 0
        removed = 0
        for path in candidates:
            try:
                if _abandoned(path):
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError as exc:
                log.warning("outbox: cannot remove %s: %s", path.name, exc.strerror)
        if removed:
            log.info("outbox: removed %d temporary file(s) left by an interrupted write", removed)
        return removed

    def __exit__(self, *exc: object) -> None:
        return None

    def path_for(self, message: OutgoingMessage) -> Path:
        return self.folder / eml_filename(message.key)

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            data = mime_bytes(message, self.sender)
        except ValueError as exc:
            raise PermanentSendError(str(exc)) from None
        target = self.path_for(message)
        try:
            fd, tmp = _locked_temp_file(self.folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    os.replace(tmp, target)  # still locked: no clean-up can take it before the rename
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._unavailable(f"cannot write {target.name}: {exc.strerror}") from None
        # no external_id: it is reserved for a calendar item id that a later update can refer to
        return SendResult()


def _locked_temp_file(folder: Path) -> tuple[int, str]:
    """A new hidden temporary file in ``folder``, locked by this process for as long as it is open."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        # another dispatcher's clean-up took it between creation and lock: make another
        os.close(fd)


def _abandoned(path: Path) -> bool:
    """True when no live process holds the file's lock (its writer was killed), or, without locks, when
    it is older than any write takes."""
    if fcntl is None:  # pragma: no cover - Windows
        return time.time() - path.stat().st_mtime > _STALE_WITHOUT_LOCKS
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # being written right now
    finally:
        os.close(fd)  # releases the lock if we took it
    return True

"""The default transport: one ``.eml`` file per notice in a folder, so nothing leaves the machine.

Files are named from the notice key (readable, plus a hash so two keys never share a name) and written
atomically (temporary file, fsync, rename): a resend after a crash replaces the file, never adds one,
and a reader never sees half a message. A folder that cannot be written is the transport being
unavailable (``SIPFLOWS_OUTBOX_DIR``), not a failure of the notice.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from email.headerregistry import Address
from pathlib import Path

from sipflows.notices.mime import mime_bytes, sender_address
from sipflows.transports.base import OutgoingMessage, PermanentSendError, SendResult, TransportUnavailable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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

    def __enter__(self) -> OutboxTransport:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(f"the folder cannot be created: {exc.strerror}") from None
        return self

    def _unavailable(self, reason: str) -> TransportUnavailable:
        # a folder that cannot be written (gone, read-only, disk full) fails every notice alike
        return TransportUnavailable("outbox", f"folder {self.folder}", reason, ("SIPFLOWS_OUTBOX_DIR",))

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
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".eml.tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._unavailable(f"cannot write {target.name}: {exc.strerror}") from None
        # no external_id: it is reserved for a calendar item id that a later update can refer to
        return SendResult()

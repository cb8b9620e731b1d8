"""Credentials out of logs and error texts, for the transports that hold them (Exchange, Graph).

The libraries under the transports (exchangelib, msal, requests, httpx) log request headers and token
exchanges at debug level, and their exceptions can quote them; a secret in a flow run's log is a secret
shown to everyone who can open the Prefect UI. One filter per transport, attached to its libraries'
loggers, scrubs what the transport knows to be secret and whatever is shaped like a credential.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_AUTH_HEADER = re.compile(
    r"(authorization['\"]?\s*[:=]\s*['\"]?(?:basic|bearer|ntlm|negotiate)\s+)[^\s'\",}]+", re.IGNORECASE
)
_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_TOKEN_FIELD = re.compile(
    r"((?:access_token|refresh_token|id_token|client_secret|client_assertion|passphrase|password)"
    r"['\"]?\s*[:=]\s*['\"]?)[^\s'\"&,}]+",
    re.IGNORECASE,
)


class Redactor(logging.Filter):
    """Scrubs known secrets, auth headers, bearer tokens and token fields from log records and texts."""

    def __init__(self, loggers: tuple[str, ...]) -> None:
        super().__init__()
        self._loggers = loggers
        self._secrets: set[str] = set()

    def add(self, *values: str | None) -> None:
        self._secrets.update(v for v in values if v and len(v) >= 3)

    def scrub(self, text: str) -> str:
        text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
        text = _BEARER.sub(rf"\1{REDACTED}", text)
        text = _TOKEN_FIELD.sub(rf"\1{REDACTED}", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

    def install(self) -> None:
        """Attach to the libraries' loggers (a logger's filter only sees that logger's own records)."""
        existing = [name for name in logging.root.manager.loggerDict if name.startswith(self._loggers)]
        for name in {*self._loggers, *existing}:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

"""What a dispatch did (``DispatchSummary``), the retry schedule, and failure reasons fit for the ledger."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from sipflows.models import NoticeStatus
from sipflows.notices.dispatch.claims import Row
from sipflows.settings import Settings
from sipflows.transports.base import PermanentSendError, TransientSendError

log = logging.getLogger("sipflows.notices.dispatch")

_MAX_ERROR = 500


class Failure(NamedTuple):
    notice_id: int
    key: str
    kind: str
    reason: str


@dataclass
class DispatchSummary:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    failures: list[Failure] = field(default_factory=list)
    dead_ids: list[int] = field(default_factory=list)  # which of the failures are final
    batches: int = 0
    held_back: int = 0  # claimed, then given back untouched because the transport was unavailable


def backoff(attempts: int, settings: Settings) -> timedelta:
    """The wait before the next try after ``attempts`` failed tries (1, 2, ...)."""
    exponent = min(max(attempts - 1, 0), 62)  # bounded: 2**62 * base already exceeds any sane maximum
    return timedelta(seconds=min(settings.backoff_base_seconds * 2**exponent, settings.backoff_max_seconds))


def _secrets(settings: Settings) -> list[str]:
    values = (
        settings.smtp_password,
        settings.exchange_password,
        settings.exchange_client_secret,
        settings.graph_client_secret,
        settings.graph_certificate_password,
        settings.imap_password,
    )
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def reason_for(exc: BaseException, settings: Settings) -> str:
    """A short reason for the ledger and logs; any configured secret is blanked out, whoever raised."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, PermanentSendError | TransientSendError):
        text = f"{type(exc).__name__}: {text}"
    for secret in _secrets(settings):
        text = text.replace(secret, "***")
    return " ".join(text.split())[:_MAX_ERROR]


def count_failure(summary: DispatchSummary, row: Row, reason: str, status: NoticeStatus) -> None:
    if status == NoticeStatus.DEAD:
        summary.dead += 1
        summary.dead_ids.append(row["id"])
    else:
        summary.failed += 1
    summary.failures.append(Failure(row["id"], row["key"], row["kind"], reason))
    log.warning("notice %s (%s) %s: %s", row["key"], row["kind"], status.value, reason)

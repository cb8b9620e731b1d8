"""The notice ledger: one row per idempotency key, inserted at most once on SQLite and PostgreSQL alike.

``INSERT … ON CONFLICT (key) DO NOTHING`` lets the database settle races: two sweeps at the same moment
in two processes cannot enqueue the same notice twice, and a rerun enqueues nothing new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sipflows.models import Contact, Notice, NoticeStatus

# Keep each statement well below SQLite's and psycopg's parameter limits.
_CHUNK = 500


@dataclass(frozen=True)
class NoticeDraft:
    """A rendered notice, ready for the ledger."""

    key: str
    kind: str
    address: str
    subject: str
    body_text: str
    body_html: str
    case_id: int | None = None
    meeting_id: int | None = None
    contact_id: int | None = None
    ics: str | None = None
    ics_method: str | None = None
    ics_sequence: int | None = None
    attachments: dict[str, Any] | None = None


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID is derived from the key: a resend after a crash carries the same one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _insert_ignoring_duplicates(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Notice).on_conflict_do_nothing(index_elements=["key"])
    if dialect == "sqlite":
        return sqlite.insert(Notice).on_conflict_do_nothing(index_elements=["key"])
    raise NotImplementedError(f"the ledger supports SQLite and PostgreSQL, not {dialect}")


def enqueue(session: Session, drafts: Sequence[NoticeDraft], now: datetime, mail_domain: str) -> int:
    """Insert the drafts whose keys are new; returns how many were inserted. Does not commit.

    Drafts are inserted in key order (the first of equal keys wins): two transactions enqueueing
    overlapping batches then wait on each other's keys in the same order and cannot deadlock.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    drafts = sorted({d.key: d for d in reversed(drafts)}.values(), key=lambda d: d.key)
    inserted = 0
    for start in range(0, len(drafts), _CHUNK):
        rows = [
            {
                **asdict(d),
                "status": NoticeStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "message_id": message_id_for(d.key, mail_domain),
            }
            for d in drafts[start : start + _CHUNK]
        ]
        stmt = _insert_ignoring_duplicates(session).returning(Notice.id)
        inserted += len(session.execute(stmt, rows).all())
    return inserted


def requeue_dead(session: Session, now: datetime, keys: Sequence[str] | None = None) -> int:
    """Give dead notices (all, or those with ``keys``) a fresh set of attempts, due at ``now``.

    For after a person fixed the cause, typically a contact's address: the address is read again from the
    contact. Key and Message-ID stay, so a notice is still never sent under two identities.
    """
    current_email = select(Contact.email).where(Contact.id == Notice.contact_id).scalar_subquery()
    stmt = (
        update(Notice)
        .where(Notice.status == NoticeStatus.DEAD)
        .values(
            status=NoticeStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            claimed_until=None,
            claimed_by=None,
            last_error=None,
            address=func.coalesce(current_email, Notice.address),
        )
        .execution_options(synchronize_session=False)
    )
    if keys is None:
        return cast(CursorResult[Any], session.execute(stmt)).rowcount
    total = 0
    keys = list(keys)
    for start in range(0, len(keys), _CHUNK):
        chunk = stmt.where(Notice.key.in_(keys[start : start + _CHUNK]))
        total += cast(CursorResult[Any], session.execute(chunk)).rowcount
    return total

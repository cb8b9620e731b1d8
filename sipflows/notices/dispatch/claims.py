"""Claims and leases: which dispatcher may send which notices, for how long.

A batch is claimed in one short transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, under
``BEGIN IMMEDIATE`` on SQLite. Leases run on the database server's clock on PostgreSQL and on the
machine's on SQLite, never on the run's ``now``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, func, or_, select, update

from sipflows.models import Notice, NoticeStatus

notices = cast(Table, Notice.__table__)

Row = Mapping[Any, Any]  # a ledger row as SQLAlchemy returns it (RowMapping)

# what sending and recording a claimed notice read of its row (not its status, times or last error)
_SENDING = [
    notices.c[name]
    for name in (
        "id",
        "key",
        "kind",
        "meeting_id",
        "contact_id",
        "address",
        "subject",
        "body_text",
        "body_html",
        "ics",
        "ics_method",
        "ics_sequence",
        "attachments",
        "attempts",
        "message_id",
        "external_id",
    )
]

LeaseClock = Callable[[], datetime]


def wall_clock() -> datetime:
    """The machine's clock, for leases on SQLite (which has no server clock of its own)."""
    return datetime.now(UTC)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]


def _due(now: datetime, clock_now: Any) -> Any:
    return and_(
        notices.c.status.in_([NoticeStatus.PENDING, NoticeStatus.FAILED]),
        notices.c.next_attempt_at <= now,
        or_(notices.c.claimed_until.is_(None), notices.c.claimed_until < clock_now),
    )


def _claim_in(
    conn: Connection, now: datetime, limit: int, worker_id: str, lease: timedelta, lease_clock: LeaseClock
) -> list[Row]:
    """One statement: the ids of the first due notices (only they are sorted and locked), claimed, and
    what sending them needs returned. Reading the wide rows in the select would sort every due notice
    with its bodies, a cost that grows with the backlog."""
    # PostgreSQL: the server's clock, the same for every dispatcher; SQLite: the machine's
    clock_now: Any = func.now() if conn.dialect.name == "postgresql" else lease_clock()
    first = select(notices.c.id).where(_due(now, clock_now)).order_by(notices.c.id).limit(limit)
    if conn.dialect.name != "sqlite":
        first = first.with_for_update(skip_locked=True)
    stmt = (
        update(notices)
        .where(notices.c.id.in_(first.scalar_subquery()))
        .values(claimed_until=clock_now + lease, claimed_by=worker_id)
        .returning(*_SENDING)
    )
    rows: list[Row] = list(conn.execute(stmt).mappings())
    rows.sort(key=lambda r: r["id"])  # RETURNING follows no order
    return rows


def claim(
    engine: Engine,
    now: datetime,
    limit: int,
    worker_id: str,
    lease_seconds: float,
    lease_clock: LeaseClock | None = None,
) -> list[Row]:
    """Claim up to ``limit`` notices due at ``now`` for ``worker_id``, in id order; returns their rows.

    The claim lasts ``lease_seconds`` on the lease clock: PostgreSQL's own ``now()``, or ``lease_clock``
    (default: the machine's clock) on SQLite. A claim is live while ``claimed_until`` is not before it.
    """
    lease = timedelta(seconds=lease_seconds)
    clock = lease_clock or wall_clock
    if engine.dialect.name == "sqlite":
        # pysqlite would open a deferred transaction; a deferred reader that later writes loses the race
        # with SQLITE_BUSY. BEGIN IMMEDIATE takes the write lock first (waiting out busy_timeout).
        with engine.connect() as base:
            conn = base.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                rows = _claim_in(conn, now, limit, worker_id, lease, clock)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            return rows
    with engine.begin() as conn:
        return _claim_in(conn, now, limit, worker_id, lease, clock)


def release(engine: Engine, ids: Iterable[int], worker_id: str) -> None:
    """Give back claims we did not get to (after an error, or slow sending), so nobody waits the lease."""
    ids = list(ids)
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(notices)
            .where(notices.c.id.in_(ids), notices.c.claimed_by == worker_id)
            .values(claimed_until=None)
        )

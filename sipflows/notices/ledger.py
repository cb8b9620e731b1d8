"""The notice ledger: one row per idempotency key, inserted at most once on SQLite and PostgreSQL alike.

``INSERT … ON CONFLICT (key) DO NOTHING`` lets the database settle races: two sweeps at the same moment
in two processes cannot enqueue the same notice twice, and a rerun enqueues nothing new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import repeat
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Integer,
    String,
    Table,
    Text,
    any_,
    bindparam,
    column,
    func,
    literal,
    select,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from sipflows.db import driver_cursor
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


_DRAFT_FIELDS = tuple(f.name for f in fields(NoticeDraft))


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID is derived from the key: a resend after a crash carries the same one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def enqueue(session: Session, drafts: Sequence[NoticeDraft], now: datetime, mail_domain: str) -> int:
    """Insert the drafts whose keys are new; returns how many were inserted. Does not commit.

    Drafts are inserted in key order (the first of equal keys wins): two transactions enqueueing
    overlapping batches then wait on each other's keys in the same order and cannot deadlock.
    """
    return enqueue_on(session.connection(), drafts, now, mail_domain)


def enqueue_on(connection: Connection, drafts: Sequence[NoticeDraft], now: datetime, mail_domain: str) -> int:
    """:func:`enqueue` on the session's connection (``session.connection()``), in its transaction."""
    return len(insert_drafts(connection, drafts, now, mail_domain))


def insert_drafts(
    connection: Connection, drafts: Sequence[NoticeDraft], now: datetime, mail_domain: str
) -> list[str]:
    """:func:`enqueue_on`, returning the keys it inserted (the others were in the ledger already), so a
    caller can tell what is new without reading the rows back.

    It uses nothing but ``connection``: the sweep runs it on PostgreSQL in a thread of its own, while
    the caller renders the next batch and leaves the connection alone until this returns."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    drafts = sorted({d.key: d for d in reversed(drafts)}.values(), key=lambda d: d.key)
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return _enqueue_postgresql(connection, drafts, now, mail_domain)
    if dialect == "sqlite":
        return _enqueue_sqlite(connection, drafts, now, mail_domain)
    raise NotImplementedError(f"the ledger supports SQLite and PostgreSQL, not {dialect}")


# Drafts per statement (PostgreSQL) or executemany call (SQLite): bounds the memory of one chunk's values.
_ROWS_PER_CALL = 5_000


def _enqueue_sqlite(conn: Connection, drafts: Sequence[NoticeDraft], now: datetime, domain: str) -> list[str]:
    """``INSERT … ON CONFLICT (key) DO NOTHING`` through the driver's ``executemany`` (a loop in C); the
    driver's row count is the number inserted: all of a chunk's keys when it is the chunk's size (the
    usual case), else those of its newest rows. Each value goes through its column type's bind processor
    first, as SQLAlchemy would send it; the values every row shares (status, times) are processed once."""
    dialect = conn.dialect
    table = cast(Table, Notice.__table__)
    shared: dict[str, Any] = {
        "status": NoticeStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    names = [*_DRAFT_FIELDS, "message_id", *shared]
    processors = {n: table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names}
    for name, value in shared.items():
        process = processors[name]
        shared[name] = process(value) if process is not None else value
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(n) for n in names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({quote('key')}) DO NOTHING"
    )
    inserted: list[str] = []
    with driver_cursor(conn, sql) as cursor:
        for start in range(0, len(drafts), _ROWS_PER_CALL):
            chunk = drafts[start : start + _ROWS_PER_CALL]
            columns: list[Iterable[Any]] = []
            for name in names:
                if name in shared:
                    columns.append(repeat(shared[name], len(chunk)))
                    continue
                if name == "message_id":
                    values = [message_id_for(d.key, domain) for d in chunk]
                else:
                    values = [getattr(d, name) for d in chunk]
                process = processors[name]
                columns.append(values if process is None else [process(v) for v in values])
            cursor.executemany(sql, list(zip(*columns, strict=True)))
            keys = [d.key for d in chunk]
            if cursor.rowcount != len(chunk):  # executemany sums the rows each execution inserted
                keys = _last_inserted(conn, keys, cursor.rowcount)
            inserted.extend(keys)
    return inserted


def _last_inserted(conn: Connection, keys: Sequence[str], count: int) -> list[str]:
    """Which of ``keys`` the chunk's ``count`` inserted rows hold, when some keys were there already.

    From its first insert the chunk's transaction holds SQLite's only write lock, and SQLite gives each
    new row the id after the largest: the chunk's rows are the ``count`` newest."""
    if count == 0:
        return []
    newest = select(func.max(Notice.id)).scalar_subquery()
    stmt = select(Notice.key).where(Notice.id > newest - count)
    found = set(conn.execute(stmt).scalars())
    return [k for k in keys if k in found]


# Columns that vary per draft, with the type PostgreSQL reads each as from the drafts' JSON records.
_RECORD_COLUMNS: dict[str, Any] = {
    "key": String(),
    "kind": String(),
    "address": String(),
    "subject": String(),
    "body_text": Text(),
    "body_html": Text(),
    "case_id": Integer(),
    "meeting_id": Integer(),
    "contact_id": Integer(),
    "ics": Text(),
    "ics_method": String(),
    "ics_sequence": Integer(),
    "attachments": Text(),  # JSON text, cast to the column's type
    "message_id": String(),
}
# The draft's fields taken as they are, in the order of _RECORD_COLUMNS (the two last are derived).
_PLAIN_FIELDS = tuple(_RECORD_COLUMNS)[:-2]
assert set(_PLAIN_FIELDS) == set(_DRAFT_FIELDS) - {"attachments"}


# From this many drafts in one call a staging table is worth its creation (see _enqueue_postgresql).
_STAGE_FROM = 1_000
_STAGE_TABLE = "sipflows_drafts"
_STAGE = f"pg_temp.{_STAGE_TABLE}"


def _enqueue_postgresql(
    conn: Connection, drafts: Sequence[NoticeDraft], now: datetime, domain: str
) -> list[str]:
    """``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING key`` per chunk, from one of two sources.

    A few drafts (a meeting's invitations) travel as one JSON document in one parameter, read by
    ``json_to_recordset``. Many (a sweep's batch of 2,000 findings) are first ``COPY``-ed into a temporary
    table: the client writes rows in COPY's text form (in C) and the server reads them without parsing
    JSON, which was about a third of its work per inserted notice, and writes no WAL for them. The table
    is created by the first such call in a transaction, emptied before each chunk and dropped at commit
    or rollback; a small call creates none. A role without the TEMPORARY privilege takes the JSON
    document whatever the number. Either way the rows reach the ledger in key order (a function scan and
    a fresh temporary table are read in the order written). Arrays per column made psycopg escape every
    body in Python; a multi-row VALUES list made both sides parse a statement with thousands of
    placeholders per chunk.
    """
    staged = len(drafts) >= _STAGE_FROM and _may_create_temporary_tables(conn)
    if staged:
        records: Any = sa_table(
            _STAGE_TABLE, *(column(n, t) for n, t in _RECORD_COLUMNS.items()), schema="pg_temp"
        )
        types = ", ".join(
            f"{n} {'integer' if isinstance(t, Integer) else 'text'}" for n, t in _RECORD_COLUMNS.items()
        )
        # once per transaction (a later call finds it); emptied before each chunk, whatever a failed call left
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} ({types}) ON COMMIT DROP")
    else:
        records = (
            func.json_to_recordset(cast_(bindparam("drafts", type_=Text()), postgresql.JSON()))
            .table_valued(*(column(name, type_) for name, type_ in _RECORD_COLUMNS.items()))
            .render_derived(name="draft", with_types=True)
        )
    source = select(
        *(records.c[name] for name in _RECORD_COLUMNS if name != "attachments"),
        cast_(records.c.attachments, Notice.attachments.type),
        literal(NoticeStatus.PENDING, Notice.status.type),
        literal(0, Integer()),
        bindparam("now", type_=Notice.next_attempt_at.type),
        bindparam("now", type_=Notice.created_at.type),
    )
    columns = [*(c for c in _RECORD_COLUMNS if c != "attachments"), "attachments"]
    columns += ["status", "attempts", "next_attempt_at", "created_at"]
    stmt = (
        postgresql.insert(Notice)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Notice.key)
    )
    inserted: list[str] = []
    for start in range(0, len(drafts), _ROWS_PER_CALL):
        chunk = drafts[start : start + _ROWS_PER_CALL]
        rows = [
            (
                *(getattr(d, name) for name in _PLAIN_FIELDS),
                None if d.attachments is None else json.dumps(d.attachments),
                message_id_for(d.key, domain),
            )
            for d in chunk
        ]
        if staged:
            conn.exec_driver_sql(f"TRUNCATE {_STAGE}")
            _copy_rows(conn, rows)
            inserted.extend(conn.execute(stmt, {"now": now}).scalars())
        else:
            records_json = [dict(zip(_RECORD_COLUMNS, row, strict=True)) for row in rows]
            params = {"drafts": json.dumps(records_json, ensure_ascii=False), "now": now}
            inserted.extend(conn.execute(stmt, params).scalars())  # Core, not ORM bulk
    return inserted


def _may_create_temporary_tables(conn: Connection) -> bool:
    """Whether the role may stage (the TEMPORARY privilege, PUBLIC's by default, which a hardened
    database may revoke): without it, every call takes the JSON document."""
    query = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
    return bool(conn.exec_driver_sql(query).scalar())


def _copy_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """The rows into the staging table by ``COPY … FROM STDIN`` (psycopg formats them in C)."""
    sql = f"COPY {_STAGE} ({', '.join(_RECORD_COLUMNS)}) FROM STDIN"
    with driver_cursor(conn, sql) as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


# Keys per look-up statement: one bound parameter (a JSON or array value) however many there are.
KEY_CHUNK = 10_000


def key_in(session: Session, keys: Sequence[str]) -> ColumnElement[bool]:
    """``Notice.key`` among ``keys``, in a single bound value however many there are: a text array on
    PostgreSQL (``= ANY``: an index scan, or a hashed look-up in a scan — never a join the planner may
    turn into a scan of the ledger per key when its statistics predate today's inserts), a JSON array
    read by ``json_each`` on SQLite."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return Notice.key == any_(bindparam("keys", list(keys), type_=postgresql.ARRAY(String())))
    if dialect == "sqlite":
        each = func.json_each(bindparam("keys", json.dumps(list(keys)), type_=String())).table_valued("value")
        return Notice.key.in_(select(each.c.value))
    raise NotImplementedError(f"the ledger supports SQLite and PostgreSQL, not {dialect}")


def missing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The keys among ``keys`` that the ledger does not hold: what is new, found set-based."""
    missing: set[str] = set()
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        held = set(session.execute(select(Notice.key).where(key_in(session, chunk))).scalars())
        missing.update(k for k in chunk if k not in held)
    return missing


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

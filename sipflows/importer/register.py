"""The register side of an import: look-ups by code in one statement, bulk INSERT/UPDATE through the
driver, and ``_Job`` (one table being imported in one transaction: its errors and references)."""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy import any_, bindparam, func, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session

from sipflows.db import driver_cursor
from sipflows.hygiene import shown
from sipflows.importer.csvfile import Record, Table
from sipflows.importer.results import FileResult, ImportErrors, ImportIssue
from sipflows.importer.specs import KEYS, PERSONAL_KINDS
from sipflows.models import (
    Base,
    CaseStatus,
    Contact,
    Meeting,
    Organisation,
    SipCase,
)

# Keep every IN list well below SQLite's and psycopg's parameter limits.
_CHUNK = 900


def _unique(values: Iterable[Any]) -> list[Any]:
    """The values without None and repeats, in the order first seen."""
    distinct = dict.fromkeys(values)
    distinct.pop(None, None)
    return list(distinct)


def _select_in(
    session: Session, columns: Sequence[Any], in_column: Any, values: Iterable[Any]
) -> list[tuple[Any, ...]]:
    """``SELECT columns WHERE in_column IN values`` as plain tuples, the values sent as one parameter
    whatever their number: on PostgreSQL an array (``= ANY(…)``), on SQLite a JSON array read by
    ``json_each``; a file of 100 000 codes is one statement, not 112 with 900 placeholders each.

    Read through the session's connection with the driver's cursor; each column's result processor (the
    one SQLAlchemy would apply: enums, UTC times) runs once per distinct value."""
    wanted = _unique(values)
    if not wanted:
        return []
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name not in ("postgresql", "sqlite"):  # any other database: IN lists of _CHUNK values
        found: list[tuple[Any, ...]] = []
        for i in range(0, len(wanted), _CHUNK):
            statement = select(*columns).where(in_column.in_(wanted[i : i + _CHUNK]))
            found.extend(tuple(row) for row in conn.execute(statement))
        return found
    if not all(type(v) in (str, int) for v in wanted):
        raise TypeError("look-ups by code or id only (text or integer keys)")
    if dialect.name == "postgresql":
        # an array parameter: in the plan it is a constant, so the planner sees every key (a hashed
        # = ANY over one scan). Not a text cast to an array on the server: that cast is not folded into a
        # constant, and = ANY then parses the whole array again for every row it tests.
        array = bindparam("keys", wanted, type_=postgresql.ARRAY(in_column.type))
        condition = in_column == any_(array)
    else:  # SQLite: a JSON array read by json_each
        keys: sa.BindParameter[str] = bindparam("keys", json.dumps(wanted))
        condition = in_column.in_(select(literal_column("value")).select_from(func.json_each(keys)))
    compiled = select(*columns).where(condition).compile(dialect=dialect)
    params = compiled.construct_params()
    arguments: Any = (
        tuple(params[name] for name in compiled.positiontup or ()) if dialect.positional else params
    )
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), arguments)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return []
    processed = []
    for column, values_of in zip(columns, zip(*rows, strict=True), strict=True):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        processed.append(_each_distinct(process, list(values_of)) if process else values_of)
    return list(zip(*processed, strict=True))


def _select_dicts(
    session: Session, columns: Sequence[Any], in_column: Any, values: Iterable[Any]
) -> list[dict[str, Any]]:
    """``_select_in`` with each row as a dict by column key (the attribute names of the model)."""
    names = [column.key for column in columns]
    return [dict(zip(names, row, strict=True)) for row in _select_in(session, columns, in_column, values)]


def _write(
    session: Session, model: type[Base], inserts: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    """Bulk INSERT and bulk UPDATE by primary key, grouped so each statement has one set of columns.

    The rows go to the driver in one call per statement: ``executemany`` (SQLite's runs in C; psycopg's
    pipelines the UPDATEs) and on PostgreSQL ``COPY … FROM STDIN`` for the INSERTs. Each value passes
    through its column type's bind processor first, exactly what SQLAlchemy would send, so enums, booleans
    and UTC times are stored as everywhere else. Not the ORM's bulk INSERT: it starts a new statement
    wherever the set of non-NULL columns changes and splices the RETURNING results of every batch, which is
    quadratic on a file whose optional cells alternate between empty and filled."""
    table = cast(sa.Table, model.__table__)
    conn = session.connection()
    for rows in _same_columns(inserts):
        _bulk(conn, table, rows, by_id=False)
    for rows in _same_columns(updates):
        _bulk(conn, table, rows, by_id=True)


def _bulk(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], *, by_id: bool) -> None:
    dialect = conn.dialect
    names = [n for n in rows[0] if n != "id"] + (["id"] if by_id else [])
    absent = [c for c in table.c if c.name not in names and (c.default is not None or c.onupdate is not None)]
    if absent and not by_id:
        raise ValueError(f"insert into {table.name} without {absent[0].name}, which has a Python default")
    # the dialect's own type: a UTC time on SQLite must be stored as SQLAlchemy's SQLite DATETIME writes it
    # (with microseconds), or the text a query compares it with differs at the very same instant
    processors = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    # column by column, each distinct value of a column processed once: no per-row Python beyond
    # building the tuples
    columns = [list(map(operator.itemgetter(n), rows)) for n in names]
    for i, process in enumerate(processors):
        if process is not None:
            columns[i] = _each_distinct(process, columns[i])
        if dialect.name == "sqlite":
            columns[i] = _sqlite_adapted(columns[i])
    data = list(zip(*columns, strict=True))
    quote = dialect.identifier_preparer.quote
    target = dialect.identifier_preparer.format_table(table)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    if by_id:
        sets = ", ".join(f"{quote(n)} = {mark}" for n in names[:-1])
        sql = f"UPDATE {target} SET {sets} WHERE {quote('id')} = {mark}"
    elif dialect.name == "postgresql":
        sql = f"COPY {target} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    else:
        marks = ", ".join([mark] * len(names))
        sql = f"INSERT INTO {target} ({', '.join(quote(n) for n in names)}) VALUES ({marks})"
    # an IntegrityError or DataError comes out as SQLAlchemy raises it: the import reports it for the file
    with driver_cursor(conn, sql) as cursor:
        if sql.startswith("COPY"):
            with cursor.copy(sql) as copy:
                for row in data:
                    copy.write_row(row)
        else:
            cursor.executemany(sql, data)


def _each_distinct(process: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """``[process(v) for v in values]``, calling ``process`` once per distinct value where values repeat
    (choices, flags, dates and times do; the values of one column are of one type)."""
    try:
        distinct = dict.fromkeys(values)
    except TypeError:  # an unhashable value (JSON): one call each
        return [process(v) for v in values]
    if len(distinct) * 2 > len(values):
        return [process(v) for v in values]
    done = {v: process(v) for v in distinct}
    return list(map(done.__getitem__, values))


def _sqlite_adapted(values: list[Any]) -> list[Any]:
    """The values as sqlite3 would adapt them itself (its adapters for dates and times: text in ISO
    form), done once per distinct value here instead of once per cell inside ``executemany``."""
    adapters = sqlite3.adapters
    if not any((kind, sqlite3.PrepareProtocol) in adapters for kind in set(map(type, values))):
        return values

    def adapt(value: Any) -> Any:
        adapter = adapters.get((type(value), sqlite3.PrepareProtocol))
        return adapter(value) if adapter is not None else value

    return _each_distinct(adapt, values)


def _same_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows grouped by their set of columns (in the order first seen): one statement per group."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


class _Case(NamedTuple):
    """A plan a file refers to, with what the import of meetings needs of it."""

    id: int
    convener_contact_id: int
    coordinator_contact_id: int | None
    status: CaseStatus
    consent_withdrawn_on: date | None


def _changes(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``new`` whose value differs from the register's row."""
    if all(map(operator.eq, map(current.get, new), new.values())):
        return {}  # the usual row of a re-import: nothing changed, decided in C
    return {k: v for k, v in new.items() if current.get(k) != v}


class _Job:
    """One table being imported in one transaction: its session, errors and reference look-ups."""

    def __init__(self, session: Session, table: Table, now: datetime, mail_domain: str) -> None:
        self.session = session
        self.table = table
        self.now = now
        self.mail_domain = mail_domain
        self.issues: list[ImportIssue] = list(table.issues)
        # cases.csv and deviations.csv: never quote a cell in a message
        self.echo = table.kind not in PERSONAL_KINDS

    @property
    def records(self) -> list[Record]:
        return self.table.records

    def has(self, column: str) -> bool:
        return column in self.table.columns

    def issue(self, line: int, column: str | None, reason: str) -> None:
        self.issues.append(ImportIssue(self.table.source, line, column, reason))

    def raise_if_issues(self) -> None:
        if self.issues:
            raise ImportErrors(sorted(self.issues, key=lambda i: i.line or 0))

    def check_duplicates(self) -> None:
        key = KEYS[self.table.kind]
        keys = list(zip(*(self.table.values_of(k) for k in key), strict=True))
        present = [k for k in keys if None not in k]
        if len(set(present)) == len(present):
            return  # no key twice: the usual case, decided at once
        first: dict[tuple[Any, ...], int] = {}
        for rec in self.records:
            value = tuple(rec.values.get(k) for k in key)
            if any(v is None for v in value):
                continue
            if value in first:
                if self.echo:
                    same = ", ".join(f"{k} '{shown(str(v))}'" for k, v in zip(key, value, strict=True))
                else:
                    same = "the same " + " and ".join(key)
                self.issue(rec.line, key[-1], f"duplicate row: {same} is already on line {first[value]}")
            else:
                first[value] = rec.line

    # references: one chunked query per kind referred to, loaded once per file

    def organisations(self, column: str) -> dict[str, int]:
        codes = self.table.values_of(column)
        found = dict(_select_in(self.session, (Organisation.code, Organisation.id), Organisation.code, codes))
        self._unknown(column, found, "organisation")
        return found

    def contacts(self, *columns: str) -> dict[str, tuple[int, int]]:
        """code → (contact id, organisation id)."""
        codes = [code for c in columns for code in self.table.values_of(c)]
        rows = _select_in(
            self.session, (Contact.code, Contact.id, Contact.organisation_id), Contact.code, codes
        )
        found = {code: (cid, org) for code, cid, org in rows}
        for column in columns:
            self._unknown(column, found, "contact")
        return found

    def cases(self, column: str) -> dict[str, _Case]:
        codes = self.table.values_of(column)
        rows = _select_in(
            self.session,
            (
                SipCase.reference,
                SipCase.id,
                SipCase.convener_contact_id,
                SipCase.coordinator_contact_id,
                SipCase.status,
                SipCase.consent_withdrawn_on,
            ),
            SipCase.reference,
            codes,
        )
        found = {row[0]: _Case._make(row[1:]) for row in rows}
        self._unknown(column, found, "case")
        return found

    def meetings(self, column: str) -> dict[str, tuple[int, int, int]]:
        """code → (meeting id, case id, SEQUENCE)."""
        codes = self.table.values_of(column)
        rows = _select_in(
            self.session, (Meeting.code, Meeting.id, Meeting.case_id, Meeting.sequence), Meeting.code, codes
        )
        found = {code: (mid, case_id, seq) for code, mid, case_id, seq in rows}
        self._unknown(column, found, "meeting")
        return found

    def _unknown(self, column: str, found: Mapping[str, Any], what: str) -> None:
        if not self.has(column):
            return
        codes = set(self.table.values_of(column))
        codes.discard(None)
        if codes <= found.keys():
            return  # every code known: the usual case, decided at once
        for rec in self.records:
            code = rec.values.get(column)
            if code is not None and code not in found:
                named = f" '{shown(code)}'" if self.echo else ""
                self.issue(
                    rec.line,
                    column,
                    f"unknown {what}{named} (not in the register nor in an earlier file of this import)",
                )

    def existing(
        self, model: type[Base], key_attr: InstrumentedAttribute[Any], attrs: Sequence[str]
    ) -> dict[Any, dict[str, Any]]:
        """The register's rows of the file's keys (key → the row as a dict with ``id`` and ``attrs``)."""
        column = KEYS[self.table.kind][0]
        keys = self.table.values_of(column)
        columns = [key_attr, *(getattr(model, a) for a in ("id", *attrs))]
        return {row[key_attr.key]: row for row in _select_dicts(self.session, columns, key_attr, keys)}

    def result(self, inserted: int, updated: int) -> FileResult:
        n = len(self.records)
        return FileResult(self.table.source, self.table.kind, n, inserted, updated, n - inserted - updated)

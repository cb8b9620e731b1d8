"""CSV import into the register: whole files or nothing, every error at once, upsert by external code.

The format is documented in ``docs/import-format.md``. Rows refer to each other by codes and references
(organisation code, contact code, case reference, meeting code), never by database ids, so that an export
from another system can be loaded as it is and loaded again to update it.

A file is validated completely before anything of it is written; if any row is wrong, nothing of that file
is written and every problem is reported as ``file:line: column 'x': reason``. Files are imported in
dependency order, each in its own transaction, and the first failing file stops the ones after it (they
would only repeat its errors as unknown references).

Work is set-based: each file loads the codes it refers to with a few ``IN`` queries and writes with bulk
INSERT and bulk UPDATE statements, so that a file of 100 000 rows is a handful of statements, not 100 000.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Engine, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from sipflows.booking import UID_MAX, cancel_future_meetings, meeting_uid
from sipflows.db import ensure_statistics
from sipflows.hygiene import (
    IDENTITY_REASON,
    has_control_characters,
    identity_number_in,
    normalise_code,
    one_line,
    shown,
)
from sipflows.models import (
    Answer,
    Base,
    CaseStatus,
    ClosedDay,
    ClosureReason,
    Contact,
    ContactKind,
    Deviation,
    DeviationKind,
    Invitation,
    Language,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Organisation,
    OrgKind,
    Participant,
    PlanOrigin,
    Principal,
    Severity,
    SipCase,
)
from sipflows.timeutil import STOCKHOLM

# The order files are imported in: every file refers only to kinds before it.
KINDS = (
    "organisations",
    "closed_days",
    "contacts",
    "cases",
    "participants",
    "meetings",
    "invitations",
    "deviations",
)

# Keep every IN list well below SQLite's and psycopg's parameter limits.
_CHUNK = 900

# Meeting fields whose change the invitees must hear about: a change raises the iCalendar SEQUENCE.
CALENDAR_FIELDS = ("starts_at", "ends_at", "place", "digital_link", "purpose")

# Files whose cells may hold personal data, even where they should not (a shifted row, a missing header):
# their errors never quote a cell or a header name, they say which column and what is wrong with it.
PERSONAL_KINDS = frozenset({"cases", "deviations"})

# Dates and times outside these years are typing errors (and year 1 or 9999 breaks date arithmetic).
MIN_YEAR, MAX_YEAR = 1900, 2199

# Python's csv module refuses a larger cell; documented in docs/import-format.md.
CELL_LIMIT = csv.field_size_limit()


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ImportIssue:
    """One problem in one cell (or one file): where it is and what is wrong, never a personal value."""

    file: str
    line: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        # one line whatever a file name, header or value holds: a CR/LF never splits an error line
        where = one_line(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.column is None:
            return f"{where}: {one_line(self.reason)}"
        return f"{where}: column '{one_line(self.column)}': {one_line(self.reason)}"


@dataclass(frozen=True)
class FileResult:
    path: str
    kind: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    # cases.csv: future meetings cancelled because their plan was closed or consent withdrawn
    cancelled_meetings: int = 0


@dataclass
class ImportReport:
    """What was imported: the files written (in order) and the ones that were not."""

    files: list[FileResult] = field(default_factory=list)
    failed: str | None = None
    not_attempted: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def imported(self) -> list[str]:
        return [f.path for f in self.files]


class ImportErrors(Exception):
    """A file (or the list of files) was refused. ``errors`` holds every problem found in it; ``report``
    says which files before it were imported and which were not attempted."""

    def __init__(self, errors: Sequence[ImportIssue], report: ImportReport | None = None) -> None:
        self.errors = list(errors)
        self.report = report or ImportReport()
        super().__init__(f"{len(self.errors)} import error(s); first: {self.errors[0]}" if errors else "")


# --------------------------------------------------------------------------------------------- parsing


class _Invalid(ValueError):
    """A cell's value is wrong. ``reason`` says what is wrong without the value; ``value``, when given, is
    quoted in front of it where the file may be echoed (never for cases.csv and deviations.csv)."""

    def __init__(self, reason: str, value: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value

    def message(self, echo: bool) -> str:
        if self.value is None:
            return self.reason
        if echo:
            return f"'{shown(self.value)}' {self.reason}"
        return f"the value {self.reason}"


Parser = Callable[[str], Any]

# Parsers whose result depends on the cell alone and whose cells repeat across rows (choices, yes/no,
# dates, times on the quarter hour): each distinct cell is parsed once per file (at most _CACHE_LIMIT
# distinct cells per column are kept). Codes and free text are unique per row and are not cached.
_CACHEABLE: set[Parser] = set()
_CACHE_LIMIT = 100_000
_MISS = object()


def _text(max_len: int | None, *, one_line_only: bool = False, staff: bool = False) -> Parser:
    """Free text. ``one_line_only``: names, places and codes hold no line break or other control
    character. ``staff``: text that notices show, where a personal identity number must not be."""

    def parse(raw: str) -> str:
        if max_len is not None and len(raw) > max_len:
            # never echo the value: it may be personal data
            raise _Invalid(f"longer than {max_len} characters ({len(raw)})")
        if one_line_only and has_control_characters(raw):
            raise _Invalid("contains a line break or another control character; the field is one line")
        if staff and identity_number_in(raw):
            raise _Invalid(IDENTITY_REASON)
        return raw

    return parse


def _code_text(raw: str) -> str:
    """A code: Unicode NFC (so "Ö" typed two ways is one code), one line, at most 64 characters."""
    code = normalise_code(raw)
    if len(code) > 64:
        raise _Invalid(f"longer than 64 characters ({len(code)})")
    if has_control_characters(code):
        raise _Invalid("contains a line break or another control character; a code is one line")
    return code


def _enum(cls: type[Enum]) -> Parser:
    allowed = [str(m.value) for m in cls]
    by_value = {str(m.value): m for m in cls}

    def parse(raw: str) -> Enum:
        member = by_value.get(raw.strip().lower())
        if member is None:
            raise _Invalid(f"is not one of: {', '.join(allowed)}", raw)
        return member

    _CACHEABLE.add(parse)
    return parse


_TRUE = {"yes", "ja", "true", "1", "x", "y", "j"}
_FALSE = {"no", "nej", "false", "0", "n"}


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Invalid("is not yes or no", raw)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _in_years(value: date, raw: str) -> None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise _Invalid(f"is outside the years {MIN_YEAR}–{MAX_YEAR}", raw)


def _date(raw: str) -> date:
    if not _DATE.match(raw):
        raise _Invalid("is not a date (expected YYYY-MM-DD)", raw)
    try:
        parsed = date.fromisoformat(raw)
    except ValueError:
        raise _Invalid("is not a valid date", raw) from None
    _in_years(parsed, raw)
    return parsed


_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)(Z|[+-]\d{2}:?\d{2})?$")


def _datetime(raw: str) -> datetime:
    """Stockholm wall-clock time, or ISO 8601 with an offset; returned as aware UTC."""
    match = _DATETIME.match(raw)
    if not match:
        raise _Invalid(
            "is not a date and time (expected YYYY-MM-DD HH:MM in Stockholm time, "
            "or ISO 8601 with an offset such as 2026-11-24T09:00+01:00)",
            raw,
        )
    day, clock, offset = match.groups()
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}{offset or ''}".replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid("is not a valid date and time", raw) from None
    # before any conversion: year 1 or 9999 would overflow it
    _in_years(parsed.date(), raw)
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    first = parsed.replace(tzinfo=STOCKHOLM, fold=0)
    second = parsed.replace(tzinfo=STOCKHOLM, fold=1)
    if first.utcoffset() != second.utcoffset():
        if first.astimezone(UTC).astimezone(STOCKHOLM).replace(tzinfo=None) != parsed:
            raise _Invalid("does not exist in Stockholm (the clocks go forward then)", raw)
        raise _Invalid("happens twice in Stockholm (the clocks go back); add the offset, e.g. +02:00", raw)
    return first.astimezone(UTC)


_CACHEABLE.update((_bool, _date, _datetime))

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def _email(raw: str) -> str:
    if len(raw) > 254 or not _EMAIL.match(raw) or ".." in raw:
        raise _Invalid("is not an email address", raw)
    return raw


def _url(raw: str) -> str:
    if len(raw) > 500:
        raise _Invalid(f"longer than 500 characters ({len(raw)})")
    if has_control_characters(raw):
        raise _Invalid("contains a control character")
    if not re.match(r"^https?://[^\s/]+\S*$", raw, re.IGNORECASE):
        raise _Invalid("is not an http(s) address", raw)
    return raw


@dataclass(frozen=True)
class Column:
    """One documented column. Required columns must be in the header and non-empty in every row; an
    empty optional cell means ``default`` (None for most)."""

    name: str
    parse: Parser
    required: bool = False
    default: Any = None


def _cache_for(col: Column) -> dict[str, Any] | None:
    return {} if col.parse in _CACHEABLE else None


def _code(name: str, required: bool = True) -> Column:
    return Column(name, _code_text, required=required)


def _name(name: str, one_line_only: bool = False) -> Column:
    """An organisation's or contact's name: in every notice; a contact's also in the calendar's CN and the
    To: header, where a line break has no place."""
    return Column(name, _text(200, one_line_only=one_line_only, staff=True), required=True)


SPECS: dict[str, tuple[Column, ...]] = {
    "organisations": (
        _code("code"),
        _name("name"),
        Column("kind", _enum(OrgKind), required=True),
        Column("principal", _enum(Principal)),
    ),
    "closed_days": (
        _code("organisation"),
        Column("day", _date, required=True),
        Column("reason", _text(200)),
    ),
    "contacts": (
        _code("code"),
        _code("organisation"),
        _name("name", one_line_only=True),
        Column("email", _email, required=True),
        Column("kind", _enum(ContactKind), default=ContactKind.PERSON),
        Column("language", _enum(Language), default=Language.SV),
        _code("escalation_contact", required=False),
        Column("escalation_for_organisation", _bool, default=False),
        Column("report_recipient", _bool, default=False),
    ),
    "cases": (
        _code("reference"),
        _code("convener_contact"),
        _code("convener_organisation", required=False),
        _code("coordinator", required=False),
        Column("individual_name", _text(200)),
        Column("personal_identity_number", _text(20)),
        Column("case_notes", _text(None)),
        Column("status", _enum(CaseStatus), default=CaseStatus.IDENTIFIED),
        Column("identified_on", _date, required=True),
        Column("offered_on", _date),
        Column("activated_on", _date),
        Column("closed_on", _date),
        Column("closure_reason", _enum(ClosureReason)),
        Column("consent_given_on", _date),
        Column("consent_withdrawn_on", _date),
        Column("follow_up_due", _date),
        Column("origin", _enum(PlanOrigin), default=PlanOrigin.ORDINARY),
        Column("discharged_on", _date),
        Column("under_18", _bool, default=False),
    ),
    "participants": (
        _code("case"),
        _code("contact"),
        Column("role", _text(64), default="participant"),
    ),
    "meetings": (
        _code("code"),
        _code("case"),
        Column("kind", _enum(MeetingKind), required=True),
        Column("starts_at", _datetime, required=True),
        Column("ends_at", _datetime, required=True),
        Column("place", _text(300, staff=True)),
        Column("digital_link", _url),
        Column("purpose", _text(None, staff=True)),
        Column("status", _enum(MeetingStatus), default=MeetingStatus.SCHEDULED),
        Column("documented_at", _datetime),
        _code("chair", required=False),
    ),
    "invitations": (
        _code("meeting"),
        _code("contact"),
        Column("required", _bool, default=True),
        Column("sent_at", _datetime),
        Column("answer", _enum(Answer), default=Answer.NONE),
        Column("answered_at", _datetime),
        Column("attended", _bool),
    ),
    "deviations": (
        _code("code"),
        _code("case"),
        _code("reported_by"),
        _code("concerning_organisation"),
        Column("kind", _enum(DeviationKind), required=True),
        Column("severity", _enum(Severity), default=Severity.NORMAL),
        Column("description", _text(None)),
        Column("reported_at", _datetime, required=True),
        Column("acknowledged_at", _datetime),
        Column("replied_at", _datetime),
        Column("resolved_at", _datetime),
    ),
}

# The columns that identify a row within its file (and in the register).
KEYS: dict[str, tuple[str, ...]] = {
    "organisations": ("code",),
    "closed_days": ("organisation", "day"),
    "contacts": ("code",),
    "cases": ("reference",),
    "participants": ("case", "contact"),
    "meetings": ("code",),
    "invitations": ("meeting", "contact"),
    "deviations": ("code",),
}


_DEFAULTS = {kind: {c.name: c.default for c in columns} for kind, columns in SPECS.items()}


@dataclass
class Record:
    """One data row: its first physical line and the parsed values of the columns in the header."""

    line: int
    values: dict[str, Any]


@dataclass
class Table:
    """A parsed file (or rows handed over by the demo): the kind, the columns given, the rows."""

    source: str
    kind: str
    columns: frozenset[str]
    records: list[Record]
    # cell errors found while parsing; the import goes on to find reference errors too, then refuses
    issues: list[ImportIssue] = field(default_factory=list)


def detect_delimiter(header_line: str) -> str:
    """Excel in Sweden saves ``;``, most other tools ``,``; the header (plain column names) tells which."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if not name.endswith(".csv"):
        return None
    stem = name[: -len(".csv")]
    return stem if stem in SPECS else None


def read_table(path: Path, kind: str, source: str | None = None) -> Table:
    """Read and parse one CSV file; raises ImportErrors when it cannot be read, is not UTF-8 or its header
    is wrong (cell errors are collected in the table, see ``parse_table``)."""
    src = source or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportErrors([ImportIssue(src, None, None, f"cannot be read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportErrors(
            [ImportIssue(src, line, None, "is not UTF-8 text; save it as 'CSV UTF-8' (Excel) or UTF-8")]
        ) from None
    return parse_table(text, kind, src)


def parse_table(text: str, kind: str, source: str) -> Table:
    """Parse CSV text of one kind (header on line 1). A wrong header raises ImportErrors at once; wrong
    cells are collected in ``Table.issues`` (their value is None) so that the rows are still checked.

    Messages about cases.csv and deviations.csv never quote a cell or a header name (see PERSONAL_KINDS)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    issues: list[ImportIssue] = []
    echo = kind not in PERSONAL_KINDS

    def issue(line: int | None, column: str | None, reason: str) -> None:
        issues.append(ImportIssue(source, line, column, reason))

    first_line = text.splitlines()[0] if text.strip() else ""
    if not first_line.strip():
        raise ImportErrors([ImportIssue(source, 1, None, "the first line must be the header (column names)")])
    delimiter = detect_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    specs = {c.name: c for c in SPECS[kind]}
    names = ", ".join(specs)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as exc:
        raise ImportErrors([ImportIssue(source, 1, None, f"the header is not valid CSV: {exc}")]) from None

    if not any(name in specs for name in header):
        # a file without its header row: line 1 is data (in cases.csv: someone's name and number)
        raise ImportErrors(
            [
                ImportIssue(
                    source,
                    1,
                    None,
                    f"line 1 is not a header: none of its {len(header)} cells is a column name of "
                    f"{kind}.csv; the first line must name the columns: {names}",
                )
            ]
        )
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if name == "":
            issue(1, None, f"header column {position} has no name")
        elif "\x00" in name:
            issue(1, None, f"header column {position} contains a NUL character")
        elif name not in specs:
            if echo:
                issue(1, name, f"unknown column; the columns of {kind}.csv are: {names}")
            else:
                issue(1, None, f"header column {position} is not a column name of {kind}.csv: {names}")
        elif name in seen:
            issue(1, name, "the column appears twice in the header")
        seen.add(name)
    for col in specs.values():
        if col.required and col.name not in seen:
            issue(1, col.name, "required column missing from the header")
    if issues:
        raise ImportErrors(issues)

    # one entry per header column, looked up once: the loop below runs once per cell of the file
    plan = [
        (i, name, specs[name].parse, specs[name].required, specs[name].default, _cache_for(specs[name]))
        for i, name in enumerate(header)
    ]
    records: list[Record] = []
    previous_end = reader.line_num
    try:
        for cells in reader:
            line = previous_end + 1
            previous_end = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank lines and Excel's trailing ';;;;' rows
            extra = len(cells) > len(header) and any(c.strip() for c in cells[len(header) :])
            if extra or len(cells) < len(header):
                # a delimiter too many or too few shifts every cell after it: its cells are not read
                issue(
                    line,
                    None,
                    f"has {len(cells)} fields but the header has {len(header)} (a delimiter too many or "
                    "too few?)",
                )
                continue
            values: dict[str, Any] = {}
            for i, name, parse, required, default, cache in plan:
                cell = cells[i].strip()
                if cell == "":
                    if required:
                        issue(line, name, "a value is required")
                    values[name] = default
                    continue
                if cache is not None:
                    hit = cache.get(cell, _MISS)
                    if hit is not _MISS:
                        values[name] = hit
                        continue
                if "\x00" in cell:
                    # never stored: PostgreSQL refuses it, SQLite would put it into a mail header
                    issue(line, name, "contains a NUL character (\\x00)")
                    values[name] = None
                    continue
                try:
                    values[name] = parsed = parse(cell)
                except _Invalid as exc:
                    issue(line, name, exc.message(echo))
                    values[name] = None
                    continue
                if cache is not None and len(cache) < _CACHE_LIMIT:
                    cache[cell] = parsed
            records.append(Record(line, values))
    except csv.Error as exc:
        # the row that could not be read starts on the line after the last one read
        start = previous_end + 1
        if "field larger than field limit" in str(exc):
            issue(start, None, f"a cell is larger than {CELL_LIMIT} characters, the most a cell may hold")
        elif "unexpected end of data" in str(exc):
            opened = _unclosed_quote_line(text, delimiter, start)
            issue(opened, None, 'a quoted cell opens on this line and is never closed (a missing ")')
        else:
            issue(start, None, f"not valid CSV: {exc}")
    return Table(source, kind, frozenset(header), records, issues)


def _unclosed_quote_line(text: str, delimiter: str, start_line: int) -> int:
    """The physical line where the quote that runs to the end of the file opened, reading the text from
    ``start_line`` (a row's first line) with the csv module's rules."""
    line, i, n = 1, 0, len(text)
    while line < start_line and i < n:  # skip to the row's first line
        ch = text[i]
        i += 1
        if ch == "\n" or (ch == "\r" and not text.startswith("\n", i)):
            line += 1
    opened, in_quotes, field_start = start_line, False, True
    while i < n:
        ch = text[i]
        i += 1
        if in_quotes:
            if ch == '"':
                if text.startswith('"', i):
                    i += 1  # an escaped quote
                else:
                    in_quotes = False
        elif ch == '"' and field_start:
            in_quotes, opened = True, line
        field_start = ch == delimiter or ch in "\r\n"
        if ch == "\n" or (ch == "\r" and not text.startswith("\n", i)):
            line += 1
    return opened


def table_from_rows(kind: str, rows: Sequence[Mapping[str, str]], source: str) -> Table:
    """A table from rows of strings (as a CSV file would give them), for generators such as the demo.
    Cell errors are left in ``Table.issues``; ``import_table`` refuses the table if there are any."""
    columns: list[str] = []
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return parse_table(buf.getvalue(), kind, source)


# --------------------------------------------------------------------------------------------- register


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def _select_in(session: Session, columns: Sequence[Any], in_column: Any, values: Iterable[Any]) -> list[Any]:
    """``SELECT columns WHERE in_column IN values``, the values sent as one parameter whatever their
    number: a PostgreSQL array (``= ANY(…)``), on SQLite a JSON array read by ``json_each``. Both use the
    column's index; a file of 100 000 codes is one statement, not 112 with 900 placeholders each.

    Core rows through the session's connection: no ORM row processing for what is only looked up."""
    wanted = _unique(values)
    if not wanted:
        return []
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        keys = bindparam("keys", wanted, type_=postgresql.ARRAY(in_column.type))
        condition = in_column == any_(keys)
    elif conn.dialect.name == "sqlite":
        if not all(type(v) in (str, int) for v in wanted):
            raise TypeError("look-ups by code or id only (text or integer keys)")
        listed: Any = select(literal_column("value")).select_from(
            func.json_each(bindparam("keys", json.dumps(wanted)))
        )
        condition = in_column.in_(listed)
    else:  # any other database: IN lists of _CHUNK values
        rows: list[Any] = []
        for i in range(0, len(wanted), _CHUNK):
            rows.extend(conn.execute(select(*columns).where(in_column.in_(wanted[i : i + _CHUNK]))).all())
        return rows
    return list(conn.execute(select(*columns).where(condition)).all())


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
    processors = [table.c[n].type.bind_processor(dialect) for n in names]
    # column by column: one processor call per value, no per-row Python beyond building the tuples
    columns = [[row[n] for row in rows] for n in names]
    for i, process in enumerate(processors):
        if process is not None:
            columns[i] = [process(v) for v in columns[i]]
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
    cursor = conn.connection.cursor()
    try:
        if sql.startswith("COPY"):
            with cursor.copy(sql) as copy:
                for row in data:
                    copy.write_row(row)
        else:
            cursor.executemany(sql, data)
    except dialect.loaded_dbapi.Error as exc:
        # as SQLAlchemy would raise it: an IntegrityError or DataError the import reports for the file
        raise sa.exc.DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


def _same_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows grouped by their set of columns (in the order first seen): one statement per group."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def _current(row: Any, attrs: Sequence[str]) -> dict[str, Any]:
    return {a: getattr(row, a) for a in attrs}


def _changes(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
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
        codes = [r.values.get(column) for r in self.records]
        found = dict(_select_in(self.session, (Organisation.code, Organisation.id), Organisation.code, codes))
        self._unknown(column, found, "organisation")
        return found

    def contacts(self, *columns: str) -> dict[str, tuple[int, int]]:
        """code → (contact id, organisation id)."""
        codes = [r.values.get(c) for r in self.records for c in columns]
        rows = _select_in(
            self.session, (Contact.code, Contact.id, Contact.organisation_id), Contact.code, codes
        )
        found = {code: (cid, org) for code, cid, org in rows}
        for column in columns:
            self._unknown(column, found, "contact")
        return found

    def cases(self, column: str) -> dict[str, Any]:
        codes = [r.values.get(column) for r in self.records]
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
        found = {row.reference: row for row in rows}
        self._unknown(column, found, "case")
        return found

    def meetings(self, column: str) -> dict[str, tuple[int, int, int]]:
        """code → (meeting id, case id, SEQUENCE)."""
        codes = [r.values.get(column) for r in self.records]
        rows = _select_in(
            self.session, (Meeting.code, Meeting.id, Meeting.case_id, Meeting.sequence), Meeting.code, codes
        )
        found = {code: (mid, case_id, seq) for code, mid, case_id, seq in rows}
        self._unknown(column, found, "meeting")
        return found

    def _unknown(self, column: str, found: Mapping[str, Any], what: str) -> None:
        if not self.has(column):
            return
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
    ) -> dict[Any, Any]:
        column = KEYS[self.table.kind][0]
        keys = [r.values.get(column) for r in self.records]
        columns = [key_attr, *(getattr(model, a) for a in ("id", *attrs))]
        return {getattr(row, key_attr.key): row for row in _select_in(self.session, columns, key_attr, keys)}

    def result(self, inserted: int, updated: int) -> FileResult:
        n = len(self.records)
        return FileResult(self.table.source, self.table.kind, n, inserted, updated, n - inserted - updated)


def _effective(rec: Record, column: str, current: Any, job: _Job) -> Any:
    """The value a field will have after the import: the file's if the column is given, else the
    register's (absent columns are left untouched), else the documented default."""
    if job.has(column):
        return rec.values.get(column)
    if current is not None:
        return getattr(current, column)
    return _DEFAULTS[job.table.kind][column]


# --------------------------------------------------------------------------------------------- per kind


def _import_organisations(job: _Job) -> FileResult:
    job.check_duplicates()
    job.raise_if_issues()
    attrs = ("name", "kind", "principal")
    existing = job.existing(Organisation, Organisation.code, attrs)
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        new = {a: v[a] for a in attrs if job.has(a)}
        row = existing.get(v["code"])
        if row is None:
            inserts.append({"code": v["code"], "principal": None, **new})
        elif changes := _changes(_current(row, attrs), new):
            updates.append({"id": row.id, **changes})
    _write(job.session, Organisation, inserts, updates)
    return job.result(len(inserts), len(updates))


def _import_closed_days(job: _Job) -> FileResult:
    job.check_duplicates()
    orgs = job.organisations("organisation")
    job.raise_if_issues()
    rows = _select_in(
        job.session,
        (ClosedDay.id, ClosedDay.organisation_id, ClosedDay.day, ClosedDay.reason),
        ClosedDay.organisation_id,
        orgs.values(),
    )
    existing = {(r.organisation_id, r.day): r for r in rows}
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        org_id = orgs[v["organisation"]]
        row = existing.get((org_id, v["day"]))
        new = {"reason": v["reason"]} if job.has("reason") else {}
        if row is None:
            inserts.append({"organisation_id": org_id, "day": v["day"], "reason": None, **new})
        elif changes := _changes(_current(row, ("reason",)), new):
            updates.append({"id": row.id, **changes})
    _write(job.session, ClosedDay, inserts, updates)
    return job.result(len(inserts), len(updates))


def _import_contacts(job: _Job) -> FileResult:
    job.check_duplicates()
    orgs = job.organisations("organisation")
    in_file = {r.values["code"] for r in job.records if r.values.get("code")}
    referred = [r.values.get("escalation_contact") for r in job.records]
    in_register = dict(_select_in(job.session, (Contact.code, Contact.id), Contact.code, referred))
    escalation_for: dict[str, int] = {}
    for rec in job.records:
        v = rec.values
        ref = v.get("escalation_contact")
        if ref is not None:
            if ref == v.get("code"):
                job.issue(rec.line, "escalation_contact", "a contact cannot be its own escalation contact")
            elif ref not in in_register and ref not in in_file:
                job.issue(
                    rec.line,
                    "escalation_contact",
                    f"unknown contact '{ref}' (not in the register, in this file nor in an earlier file)",
                )
        if v.get("escalation_for_organisation") and v.get("organisation") is not None:
            org_code = v["organisation"]
            if org_code in escalation_for:
                job.issue(
                    rec.line,
                    "escalation_for_organisation",
                    f"organisation '{org_code}' already has its escalation contact on line "
                    f"{escalation_for[org_code]}",
                )
            else:
                escalation_for[org_code] = rec.line
    job.raise_if_issues()

    attrs = (
        "organisation_id",
        "name",
        "email",
        "kind",
        "language",
        "report_recipient",
        "escalation_contact_id",
    )
    existing = job.existing(Contact, Contact.code, attrs)
    new_rows = [r for r in job.records if r.values["code"] not in existing]
    ids = dict(in_register) | {code: row.id for code, row in existing.items()}
    # New contacts go in two waves so that most escalation ids are known at INSERT time (staff after their
    # chiefs); the few left (chains, cycles) get theirs by UPDATE below.
    escalation_at_insert: dict[str, int | None] = {}
    for wave in (1, 2):
        ready = [
            r.values
            for r in new_rows
            if r.values["code"] not in escalation_at_insert
            and (
                wave == 2
                or r.values.get("escalation_contact") is None
                or r.values["escalation_contact"] in ids
            )
        ]
        for v in ready:
            escalation_at_insert[v["code"]] = ids.get(v.get("escalation_contact") or "")
        inserts = [
            {
                "code": v["code"],
                "organisation_id": orgs[v["organisation"]],
                "name": v["name"],
                "email": v["email"],
                "kind": v.get("kind", ContactKind.PERSON),
                "language": v.get("language", Language.SV),
                "report_recipient": v.get("report_recipient", False),
                "escalation_contact_id": escalation_at_insert[v["code"]],
            }
            for v in ready
        ]
        _write(job.session, Contact, inserts, [])
        ids.update(
            _select_in(job.session, (Contact.code, Contact.id), Contact.code, [v["code"] for v in ready])
        )

    updates = []
    changed: set[int] = set()
    for rec in job.records:
        v = rec.values
        new: dict[str, Any] = {
            "organisation_id": orgs[v["organisation"]],
            "name": v["name"],
            "email": v["email"],
        }
        for attr in ("kind", "language", "report_recipient"):
            if job.has(attr):
                new[attr] = v[attr]
        if job.has("escalation_contact"):
            ref = v["escalation_contact"]
            new["escalation_contact_id"] = ids[ref] if ref is not None else None
        row = existing.get(v["code"])
        if row is None:
            target = new.get("escalation_contact_id")
            if target != escalation_at_insert[v["code"]]:
                updates.append({"id": ids[v["code"]], "escalation_contact_id": target})
        elif changes := _changes(_current(row, attrs), new):
            updates.append({"id": row.id, **changes})
            changed.add(row.id)
    _write(job.session, Contact, [], updates)

    if job.has("escalation_for_organisation"):
        changed |= _set_organisation_escalations(job, orgs, ids)
    existing_ids = {row.id for row in existing.values()}
    return job.result(len(new_rows), len(changed & existing_ids))


def _set_organisation_escalations(job: _Job, orgs: Mapping[str, int], ids: Mapping[str, int]) -> set[int]:
    """``escalation_for_organisation`` is authoritative for the contacts in the file: yes makes the contact
    its organisation's escalation contact, no takes the role away. Returns the contacts whose role changed."""
    wanted = {
        orgs[r.values["organisation"]]: ids[r.values["code"]]
        for r in job.records
        if r.values["escalation_for_organisation"]
    }
    in_file = {ids[r.values["code"]] for r in job.records}
    columns = (Organisation.id, Organisation.escalation_contact_id)
    current = {
        row.id: row.escalation_contact_id for row in _select_in(job.session, columns, Organisation.id, wanted)
    }
    for row in _select_in(job.session, columns, Organisation.escalation_contact_id, in_file):
        current[row.id] = row.escalation_contact_id
    updates = []
    touched: set[int] = set()
    for org_id, contact_id in current.items():
        # an organisation keeps an escalation contact the file does not mention
        target = wanted.get(org_id, None if contact_id in in_file else contact_id)
        if target != contact_id:
            updates.append({"id": org_id, "escalation_contact_id": target})
            touched.update(c for c in (target, contact_id) if c is not None)
    _write(job.session, Organisation, [], updates)
    return touched


def _import_cases(job: _Job) -> FileResult:
    job.check_duplicates()
    contacts = job.contacts("convener_contact", "coordinator")
    orgs = job.organisations("convener_organisation")
    attrs = (
        "convener_org_id",
        "convener_contact_id",
        "coordinator_contact_id",
        "individual_name",
        "personal_identity_number",
        "case_notes",
        "status",
        "identified_on",
        "offered_on",
        "activated_on",
        "closed_on",
        "closure_reason",
        "consent_given_on",
        "consent_withdrawn_on",
        "follow_up_due",
        "origin",
        "discharged_on",
        "under_18",
    )
    existing = job.existing(SipCase, SipCase.reference, attrs)
    bad_cells = {(i.line, i.column) for i in job.issues}  # cells already reported while parsing
    for rec in job.records:
        v = rec.values
        convener = contacts.get(v.get("convener_contact") or "")
        org_code = v.get("convener_organisation")
        if convener and org_code in orgs and orgs[org_code] != convener[1]:
            job.issue(
                rec.line,
                "convener_organisation",
                "the convener contact does not belong to this organisation",
            )
        current = existing.get(v.get("reference"))

        def eff(column: str, rec: Record = rec, current: Any = current) -> Any:
            return _effective(rec, column, current, job)

        closing = _closure_by_consent(rec, current, job)
        identified = eff("identified_on")
        for later in ("offered_on", "activated_on", "closed_on"):
            d = closing.get(later, eff(later))
            if d is not None and identified is not None and d < identified:
                # a closing date taken from consent_withdrawn_on is reported there
                column = later if job.has(later) or later not in closing else "consent_withdrawn_on"
                job.issue(rec.line, column, "is before identified_on")
        given, withdrawn = eff("consent_given_on"), eff("consent_withdrawn_on")
        if given is not None and withdrawn is not None and withdrawn < given:
            job.issue(rec.line, "consent_withdrawn_on", "is before consent_given_on")
        _check_origin(rec, eff, job, bad_cells)
        status = closing.get("status", eff("status"))
        if status == CaseStatus.CLOSED and closing.get("closed_on", eff("closed_on")) is None:
            job.issue(rec.line, "closed_on", "a closed case needs the date it was closed")
        if status is not None and status != CaseStatus.CLOSED:
            for column in ("closed_on", "closure_reason"):
                if job.has(column) and v.get(column) is not None:
                    job.issue(rec.line, column, f"given but the status is '{status}', not 'closed'")
    job.raise_if_issues()

    inserts, updates = [], []
    ended: list[int] = []
    for rec in job.records:
        v = rec.values
        convener_id, convener_org = contacts[v["convener_contact"]]
        new: dict[str, Any] = {"convener_contact_id": convener_id, "convener_org_id": convener_org}
        if job.has("coordinator"):
            new["coordinator_contact_id"] = contacts[v["coordinator"]][0] if v["coordinator"] else None
        for attr in attrs[3:]:
            if job.has(attr):
                new[attr] = v[attr]
        row = existing.get(v["reference"])
        new.update(_closure_by_consent(rec, row, job))
        if row is None:
            defaults: dict[str, Any] = {a: None for a in attrs}
            defaults.update(status=CaseStatus.IDENTIFIED, origin=PlanOrigin.ORDINARY, under_18=False)
            inserts.append({**defaults, "reference": v["reference"], **new})
            continue
        if changes := _changes(_current(row, attrs), new):
            updates.append({"id": row.id, **changes})
        after = {**_current(row, attrs), **new}
        if after["status"] == CaseStatus.CLOSED or after["consent_withdrawn_on"] is not None:
            ended.append(row.id)
    _write(job.session, SipCase, inserts, updates)
    # as `sipflows case close|withdraw-consent` do: an ended plan's future meetings are cancelled, so the
    # invitation sync sends their CANCELs and no check chases them (a new plan has no meetings yet)
    cancelled = cancel_future_meetings(job.session, ended, job.now)
    return replace(job.result(len(inserts), len(updates)), cancelled_meetings=cancelled)


def _check_origin(
    rec: Record, eff: Callable[[str], Any], job: _Job, bad_cells: set[tuple[int | None, str | None]]
) -> None:
    """A plan from discharge needs its discharge date (the first-meeting limit counts from it); an
    ordinary plan has none. Not judged when either cell was already reported as unreadable."""
    if (rec.line, "origin") in bad_cells or (rec.line, "discharged_on") in bad_cells:
        return
    origin, discharged = eff("origin"), eff("discharged_on")
    if origin == PlanOrigin.DISCHARGE and discharged is None:
        job.issue(rec.line, "discharged_on", "a plan with origin 'discharge' needs its discharge date")
    elif origin != PlanOrigin.DISCHARGE and discharged is not None:
        if job.has("discharged_on"):
            job.issue(
                rec.line, "discharged_on", "a discharge date is given but the origin is not 'discharge'"
            )
        else:
            job.issue(
                rec.line,
                "origin",
                "the plan has a discharge date in the register: add an empty discharged_on column to "
                "make it an ordinary plan",
            )


def _closure_by_consent(rec: Record, current: Any, job: _Job) -> dict[str, Any]:
    """Withdrawn consent ends the coordination at once: the plan is closed, on the day consent was
    withdrawn and for that reason unless the row (or the register) already says when and why, exactly as
    ``sipflows case withdraw-consent`` does. Returns the fields to set; empty when consent stands."""
    withdrawn = _effective(rec, "consent_withdrawn_on", current, job)
    if withdrawn is None:
        return {}
    closing: dict[str, Any] = {"status": CaseStatus.CLOSED}
    if _effective(rec, "closed_on", current, job) is None:
        closing["closed_on"] = withdrawn
    if _effective(rec, "closure_reason", current, job) is None:
        closing["closure_reason"] = ClosureReason.CONSENT_WITHDRAWN
    return closing


def _import_participants(job: _Job) -> FileResult:
    job.check_duplicates()
    cases = job.cases("case")
    contacts = job.contacts("contact")
    job.raise_if_issues()
    rows = _select_in(
        job.session,
        (Participant.id, Participant.case_id, Participant.contact_id, Participant.role),
        Participant.case_id,
        (c.id for c in cases.values()),
    )
    existing = {(r.case_id, r.contact_id): r for r in rows}
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        key = (cases[v["case"]].id, contacts[v["contact"]][0])
        row = existing.get(key)
        new = {"role": v["role"]} if job.has("role") else {}
        if row is None:
            inserts.append({"case_id": key[0], "contact_id": key[1], "role": "participant", **new})
        elif changes := _changes(_current(row, ("role",)), new):
            updates.append({"id": row.id, **changes})
    _write(job.session, Participant, inserts, updates)
    return job.result(len(inserts), len(updates))


def _import_meetings(job: _Job) -> FileResult:
    job.check_duplicates()
    cases = job.cases("case")
    chairs = job.contacts("chair") if job.has("chair") else {}
    members = _plan_contacts(job.session, [c.id for c in cases.values()]) if chairs else set()
    attrs = (
        "case_id",
        "kind",
        *CALENDAR_FIELDS,
        "status",
        "documented_at",
        "chair_contact_id",
        "sequence",
    )
    existing = job.existing(Meeting, Meeting.code, attrs)
    for rec in job.records:
        v = rec.values
        case, chair = cases.get(v.get("case") or ""), chairs.get(v.get("chair") or "")
        if case is not None and chair is not None and (case.id, chair[0]) not in members:
            job.issue(
                rec.line,
                "chair",
                f"contact '{shown(v['chair'])}' is not a participant, the convener or the coordinator of "
                "the meeting's case; add it to participants.csv",
            )
        code = v.get("code")
        if code is not None and code not in existing:
            uid = meeting_uid(code, job.mail_domain)
            if len(uid) > UID_MAX:
                job.issue(
                    rec.line,
                    "code",
                    f"too long for the meeting's calendar UID: with the mail domain it makes {len(uid)} "
                    f"characters (letters outside A–Z are percent-encoded), at most {UID_MAX} fit",
                )
        start, end = v.get("starts_at"), v.get("ends_at")
        if start is not None and end is not None and end <= start:
            job.issue(rec.line, "ends_at", "the meeting ends before (or when) it starts")
        current = existing.get(v.get("code"))
        status = _effective(rec, "status", current, job)
        documented = _effective(rec, "documented_at", current, job)
        if documented is not None and status is not None and status != MeetingStatus.HELD:
            job.issue(
                rec.line,
                "documented_at" if job.has("documented_at") else "status",
                f"documented_at is set but the status is '{status}', not 'held'",
            )
        if documented is not None and start is not None and documented < start:
            job.issue(rec.line, "documented_at", "documented before the meeting started")
    job.raise_if_issues()

    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        new: dict[str, Any] = {"case_id": cases[v["case"]].id}
        for attr in ("kind", *CALENDAR_FIELDS, "status", "documented_at"):
            if job.has(attr):
                new[attr] = v[attr]
        if job.has("chair"):
            new["chair_contact_id"] = chairs[v["chair"]][0] if v["chair"] else None
        row = existing.get(v["code"])
        case = cases[v["case"]]
        if case.status == CaseStatus.CLOSED or case.consent_withdrawn_on is not None:
            # an ended plan has no future meetings: as closing it cancelled them, so does the import
            status = new.get("status", row.status if row is not None else MeetingStatus.SCHEDULED)
            start = new.get("starts_at", row.starts_at if row is not None else None)
            if status == MeetingStatus.SCHEDULED and start is not None and start > job.now:
                new["status"] = MeetingStatus.CANCELLED
        if row is None:
            base = {a: None for a in CALENDAR_FIELDS} | {
                "status": MeetingStatus.SCHEDULED,
                "documented_at": None,
                "chair_contact_id": None,
            }
            inserts.append(
                {
                    **base,
                    **new,
                    "code": v["code"],
                    "ical_uid": meeting_uid(v["code"], job.mail_domain),
                    "sequence": 0,
                    "updated_at": job.now,
                }
            )
            continue
        changes = _changes(_current(row, attrs), new)
        if not changes:
            continue
        cancelled_before = row.status == MeetingStatus.CANCELLED
        cancelled_after = changes.get("status", row.status) == MeetingStatus.CANCELLED
        if any(f in changes for f in CALENDAR_FIELDS) or cancelled_before != cancelled_after:
            # what the invitees' calendars show changed: a new revision of the event
            changes["sequence"] = row.sequence + 1
        updates.append({"id": row.id, **changes, "updated_at": job.now})
    _write(job.session, Meeting, inserts, updates)
    return job.result(len(inserts), len(updates))


def _plan_contacts(session: Session, case_ids: Iterable[int]) -> set[tuple[int, int]]:
    """(case id, contact id) of every participant, convener and coordinator of the cases."""
    case_ids = _unique(case_ids)
    allowed: set[tuple[int, int]] = set()
    for p in _select_in(
        session, (Participant.case_id, Participant.contact_id), Participant.case_id, case_ids
    ):
        allowed.add((p.case_id, p.contact_id))
    for c in _select_in(
        session,
        (SipCase.id, SipCase.convener_contact_id, SipCase.coordinator_contact_id),
        SipCase.id,
        case_ids,
    ):
        allowed.add((c.id, c.convener_contact_id))
        if c.coordinator_contact_id is not None:
            allowed.add((c.id, c.coordinator_contact_id))
    return allowed


def _import_invitations(job: _Job) -> FileResult:
    job.check_duplicates()
    meetings = job.meetings("meeting")
    contacts = job.contacts("contact")
    allowed = _plan_contacts(job.session, (case_id for _, case_id, _ in meetings.values()))
    rows = _select_in(
        job.session,
        (
            Invitation.id,
            Invitation.meeting_id,
            Invitation.contact_id,
            Invitation.required,
            Invitation.sent_at,
            Invitation.answer,
            Invitation.answered_at,
            Invitation.attended,
            Invitation.sent_sequence,
        ),
        Invitation.meeting_id,
        (mid for mid, _, _ in meetings.values()),
    )
    existing = {(r.meeting_id, r.contact_id): r for r in rows}
    for rec in job.records:
        v = rec.values
        meeting, contact = meetings.get(v.get("meeting") or ""), contacts.get(v.get("contact") or "")
        if meeting is None or contact is None:
            continue
        if (meeting[1], contact[0]) not in allowed:
            job.issue(
                rec.line,
                "contact",
                f"contact '{shown(v['contact'])}' is not a participant of the meeting's case; add it to "
                "participants.csv (a notice about a plan goes only to that plan's participants)",
            )
        current = existing.get((meeting[0], contact[0]))
        answer = _effective(rec, "answer", current, job)
        answered = _effective(rec, "answered_at", current, job)
        sent = _effective(rec, "sent_at", current, job)
        if answered is not None and answer == Answer.NONE:
            job.issue(rec.line, "answered_at", "an answer time is given but the answer is 'none'")
        if answered is not None and sent is not None and answered < sent:
            job.issue(rec.line, "answered_at", "answered before the invitation was sent")
    job.raise_if_issues()

    attrs = ("required", "sent_at", "answer", "answered_at", "attended", "sent_sequence")
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        meeting_id, _, sequence = meetings[v["meeting"]]
        key = (meeting_id, contacts[v["contact"]][0])
        new = {a: v[a] for a in attrs if job.has(a)}
        row = existing.get(key)
        if job.has("sent_at"):
            new.update(_sent_before(v["sent_at"], row, sequence))
        if row is None:
            base = {
                "required": True,
                "sent_at": None,
                "answer": Answer.NONE,
                "answered_at": None,
                "attended": None,
                "sent_sequence": None,
            }
            inserts.append({**base, **new, "meeting_id": key[0], "contact_id": key[1]})
        elif changes := _changes(_current(row, attrs), new):
            updates.append({"id": row.id, **changes})
    _write(job.session, Invitation, inserts, updates)
    return job.result(len(inserts), len(updates))


def _sent_before(sent_at: datetime | None, row: Any, sequence: int) -> dict[str, Any]:
    """An invitation imported with ``sent_at`` was sent by the system the export came from: the invitee
    holds the meeting's current version, so the invitation sync sends no REQUEST asking again (only a later
    change of the meeting sends an update, and a cancellation a CANCEL). Emptying sent_at undoes it."""
    if sent_at is None:
        return {"sent_sequence": None}
    if row is None or row.sent_at is None:
        return {"sent_sequence": sequence}
    return {}


def _import_deviations(job: _Job) -> FileResult:
    job.check_duplicates()
    cases = job.cases("case")
    contacts = job.contacts("reported_by")
    orgs = job.organisations("concerning_organisation")
    later = ("acknowledged_at", "replied_at", "resolved_at")
    attrs = (
        "case_id",
        "reported_by_contact_id",
        "concerning_org_id",
        "kind",
        "severity",
        "description",
        "reported_at",
        *later,
    )
    existing = job.existing(Deviation, Deviation.code, attrs)
    for rec in job.records:
        v = rec.values
        current = existing.get(v.get("code"))
        reported = v.get("reported_at")
        for column in later:
            value = _effective(rec, column, current, job)
            if value is not None and reported is not None and value < reported:
                job.issue(rec.line, column, "before the deviation was reported (reported_at)")
    job.raise_if_issues()

    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        new: dict[str, Any] = {
            "case_id": cases[v["case"]].id,
            "reported_by_contact_id": contacts[v["reported_by"]][0],
            "concerning_org_id": orgs[v["concerning_organisation"]],
            "kind": v["kind"],
            "reported_at": v["reported_at"],
        }
        for attr in ("severity", "description", *later):
            if job.has(attr):
                new[attr] = v[attr]
        row = existing.get(v["code"])
        if row is None:
            base = {"severity": Severity.NORMAL, "description": None} | dict.fromkeys(later)
            inserts.append({**base, **new, "code": v["code"]})
        elif changes := _changes(_current(row, attrs), new):
            updates.append({"id": row.id, **changes})
    _write(job.session, Deviation, inserts, updates)
    return job.result(len(inserts), len(updates))


_HANDLERS: dict[str, Callable[[_Job], FileResult]] = {
    "organisations": _import_organisations,
    "closed_days": _import_closed_days,
    "contacts": _import_contacts,
    "cases": _import_cases,
    "participants": _import_participants,
    "meetings": _import_meetings,
    "invitations": _import_invitations,
    "deviations": _import_deviations,
}


def import_table(session: Session, table: Table, now: datetime, mail_domain: str) -> FileResult:
    """Validate and write one table in the caller's transaction; raises ImportErrors, writing nothing,
    when any row is wrong. Does not commit."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return _HANDLERS[table.kind](_Job(session, table, now, mail_domain))


# --------------------------------------------------------------------------------------------- files


def collect_files(paths: Iterable[Path | str]) -> list[tuple[Path, str]]:
    """The files to import with their kinds, in dependency order; a folder gives its ``*.csv`` files.

    Unknown file names are refused rather than skipped: a misspelt ``meeting.csv`` must not be silently
    left out."""
    issues: list[ImportIssue] = []
    found: list[tuple[Path, str]] = []
    names = ", ".join(f"{k}.csv" for k in KINDS)
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
            if not candidates:
                issues.append(ImportIssue(str(path), None, None, f"the folder has no CSV files ({names})"))
        elif path.exists():
            candidates = [path]
        else:
            issues.append(ImportIssue(str(path), None, None, "no such file or folder"))
            continue
        for candidate in candidates:
            kind = _kind_of(candidate)
            if kind is None:
                issues.append(
                    ImportIssue(str(candidate), None, None, f"not an import file; the names are: {names}")
                )
            else:
                found.append((candidate, kind))
    if issues:
        raise ImportErrors(issues, ImportReport(not_attempted=[str(p) for p, _ in found]))
    return sorted(found, key=lambda item: KINDS.index(item[1]))


def _file_error(source: str, kind: str, exc: DBAPIError) -> ImportIssue:
    # first line only: PostgreSQL's DETAIL line can quote row values; for the files that hold personal
    # data not even that line, which can quote a value too ('invalid input syntax …: "…"')
    first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if kind in PERSONAL_KINDS:
        first = type(exc.orig if exc.orig is not None else exc).__name__
    return ImportIssue(
        source, None, None, f"the database refused the file, nothing of it was written: {first}"
    )


def _stopped_at(report: ImportReport, files: Sequence[tuple[Path, str]], index: int) -> None:
    report.failed = str(files[index][0])
    report.not_attempted = [str(p) for p, _ in files[index + 1 :]]


def import_files(
    session_factory_or_engine: Engine | sessionmaker[Session],
    paths: Iterable[Path | str],
    now: datetime,
    *,
    mail_domain: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import the files (or folders) in dependency order, each file in its own transaction.

    On the first file with errors that file is written not at all, the files after it are not attempted,
    and ImportErrors is raised carrying every error of that file and a report of what was imported.
    ``now`` stamps ``Meeting.updated_at``. With ``dry_run`` everything is validated and rolled back.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if mail_domain is None:
        from sipflows.settings import get_settings

        mail_domain = get_settings().mail_domain
    factory = (
        sessionmaker(session_factory_or_engine, expire_on_commit=False)
        if isinstance(session_factory_or_engine, Engine)
        else session_factory_or_engine
    )
    files = collect_files(paths)
    report = ImportReport(dry_run=dry_run)
    dry_session = factory() if dry_run else None
    if dry_session is not None:
        dry_session.begin()
    try:
        for index, (path, kind) in enumerate(files):
            try:
                table = read_table(path, kind)
                if dry_session is not None:
                    # one transaction for all files, rolled back at the end (no savepoints: pysqlite's
                    # SAVEPOINT outside its own transaction handling would commit)
                    result = import_table(dry_session, table, now, mail_domain)
                else:
                    with factory() as session, session.begin():
                        result = import_table(session, table, now, mail_domain)
            except ImportErrors as exc:
                _stopped_at(report, files, index)
                raise ImportErrors(exc.errors, report) from None
            except (IntegrityError, DataError) as exc:
                # a race with another writer, or a limit the validation does not know: still all or nothing
                _stopped_at(report, files, index)
                raise ImportErrors([_file_error(str(path), kind, exc)], report) from None
            report.files.append(result)
    finally:
        if dry_session is not None:
            dry_session.rollback()
            dry_session.close()
    if not dry_run and report.files:  # the planner's statistics follow what was imported
        with factory() as session, session.begin():
            ensure_statistics(session.connection())
    return report

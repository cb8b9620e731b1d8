"""Reading one CSV file into a ``Table``: encoding, delimiter, header, every cell parsed by its column's
parser; cell errors are collected with their line and column, never raised one at a time."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipflows.importer.cells import parse_column
from sipflows.importer.results import ImportErrors, ImportIssue
from sipflows.importer.specs import PERSONAL_KINDS, SPECS

# the line boundaries of str.splitlines()
_LINE_END = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

# Python's csv module refuses a larger cell; documented in docs/import-format.md.
CELL_LIMIT = csv.field_size_limit()


@dataclass(slots=True)
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
    # the parsed values column by column, in the order of the records (as parsed; see values_of)
    parsed: dict[str, list[Any]] = field(default_factory=dict)

    def values_of(self, column: str) -> list[Any]:
        """One column's value in every record (None throughout for a column not in the file)."""
        found = self.parsed.get(column)
        if found is not None and len(found) == len(self.records):
            return found
        return [r.values.get(column) for r in self.records]


def detect_delimiter(header_line: str) -> str:
    """Excel in Sweden saves ``;``, most other tools ``,``; the header (plain column names) tells which."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


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

    # the first line as str.splitlines() would give it, without splitting the whole file
    if text and not text.isspace():
        end = _LINE_END.search(text)
        first_line = text[: end.start()] if end else text
    else:
        first_line = ""
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

    # the rows as read, then parsed column by column: each column's parser is looked up once per file
    width = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []
    # (line, position in the row, issue), sorted at the end into the order of the file
    found: list[tuple[int, int, ImportIssue]] = []
    previous_end = reader.line_num
    try:
        for cells in reader:
            line = previous_end + 1
            previous_end = reader.line_num
            first = cells[0] if cells else ""
            if (not first or first.isspace()) and not "".join(cells).strip():
                continue  # blank lines and Excel's trailing ';;;;' rows
            if len(cells) != width and (len(cells) < width or any(c.strip() for c in cells[width:])):
                # a delimiter too many or too few shifts every cell after it: its cells are not read
                reason = (
                    f"has {len(cells)} fields but the header has {width} (a delimiter too many or too few?)"
                )
                found.append((line, -1, ImportIssue(source, line, None, reason)))
                continue
            rows.append(cells)
            lines.append(line)
    except csv.Error as exc:
        # the row that could not be read starts on the line after the last one read
        start = previous_end + 1
        if "field larger than field limit" in str(exc):
            reason = f"a cell is larger than {CELL_LIMIT} characters, the most a cell may hold"
        elif "unexpected end of data" in str(exc):
            start = _unclosed_quote_line(text, delimiter, start)
            reason = 'a quoted cell opens on this line and is never closed (a missing ")'
        else:
            reason = f"not valid CSV: {exc}"
        # its line is after every row read: it sorts after their errors
        found.append((start, width, ImportIssue(source, start, None, reason)))

    columns: list[list[Any]] = []
    for position, (name, read) in enumerate(zip(header, zip(*rows, strict=False), strict=False)):
        col = specs[name]
        values, errors = parse_column(col.parse, list(map(str.strip, read)), col.required, col.default, echo)
        columns.append(values)
        found.extend(
            (lines[i], position, ImportIssue(source, lines[i], name, reason)) for i, reason in errors
        )
    found.sort(key=lambda item: (item[0], item[1]))
    issues.extend(item[2] for item in found)
    records = [
        Record(line, dict(zip(header, row, strict=True)))
        for line, row in zip(lines, zip(*columns, strict=True), strict=True)
    ]
    return Table(source, kind, frozenset(header), records, issues, dict(zip(header, columns, strict=False)))


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

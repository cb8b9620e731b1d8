"""Cell parsers: one CSV cell's text to its value, or ``_Invalid`` saying what is wrong with it (quoting
the value only where the file may be echoed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from sipflows.hygiene import (
    IDENTITY_REASON,
    has_control_characters,
    identity_number_in,
    normalise_code,
    shown,
)
from sipflows.timeutil import STOCKHOLM

# Dates and times outside these years are typing errors (and year 1 or 9999 breaks date arithmetic).
MIN_YEAR, MAX_YEAR = 1900, 2199


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
# dates, times on the quarter hour): each distinct cell of a column is parsed once per file. Codes and
# free text are unique per row and are not parsed that way.
_CACHEABLE: set[Parser] = set()

# Parsers that return a valid cell as it is (codes, text, addresses), each with a check of a whole column
# at once: True when every cell of it is valid and would come back unchanged, which a few C-level calls
# over the column decide for most files. False sends the column through the parser cell by cell.
ColumnCheck = Callable[[list[str]], bool]
_UNCHANGED: dict[Parser, ColumnCheck] = {}


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

    def unchanged(cells: list[str]) -> bool:
        if max_len is not None and max(map(len, cells), default=0) > max_len:
            return False
        joined = "".join(cells)
        if "\x00" in joined or (one_line_only and has_control_characters(joined)):
            return False
        # "|" is neither a digit nor a separator inside a personal identity number: no match spans cells
        return not (staff and identity_number_in("|".join(cells)))

    _UNCHANGED[parse] = unchanged
    return parse


def _code_text(raw: str) -> str:
    """A code: Unicode NFC (so "Ö" typed two ways is one code), one line, at most 64 characters."""
    code = normalise_code(raw)
    if len(code) > 64:
        raise _Invalid(f"longer than 64 characters ({len(code)})")
    if has_control_characters(code):
        raise _Invalid("contains a line break or another control character; a code is one line")
    return code


def _codes_unchanged(cells: list[str]) -> bool:
    """Printable ASCII is its own NFC form and holds no control character (nor NUL)."""
    joined = "".join(cells)
    return joined.isascii() and joined.isprintable() and max(map(len, cells), default=0) <= 64


_UNCHANGED[_code_text] = _codes_unchanged


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


def _emails_unchanged(cells: list[str]) -> bool:
    return (
        max(map(len, cells), default=0) <= 254
        and all(map(_EMAIL.match, cells))
        and ".." not in "\n".join(cells)
    )


_UNCHANGED[_email] = _emails_unchanged


_URL = re.compile(r"^https?://[^\s/]+\S*$", re.IGNORECASE)


def _url(raw: str) -> str:
    if len(raw) > 500:
        raise _Invalid(f"longer than 500 characters ({len(raw)})")
    if has_control_characters(raw):
        raise _Invalid("contains a control character")
    if not _URL.match(raw):
        raise _Invalid("is not an http(s) address", raw)
    return raw


def _urls_unchanged(cells: list[str]) -> bool:
    return (
        max(map(len, cells), default=0) <= 500
        and not has_control_characters("".join(cells))
        and all(map(_URL.match, cells))
    )


_UNCHANGED[_url] = _urls_unchanged

NUL_REASON = "contains a NUL character (\\x00)"
REQUIRED_REASON = "a value is required"


def parse_column(
    parse: Parser, cells: list[str], required: bool, default: Any, echo: bool
) -> tuple[list[Any], list[tuple[int, str]]]:
    """The values of one column's (trimmed) cells, and the errors as (row index, reason).

    Exactly what parsing each cell on its own gives: an empty cell is the column's default (an error if
    the column is required), a cell with NUL is an error (never stored: PostgreSQL refuses it, SQLite
    would put it into a mail header), any other cell is the parser's value or its error; a wrong cell's
    value is None. Done over the whole column: a repeating kind of cell is parsed once per distinct
    value, a code or text column is checked at once where it can be (``_UNCHANGED``)."""
    errors: list[tuple[int, str]] = []
    if parse in _CACHEABLE:
        parsed: dict[str, Any] = {}
        wrong: dict[str, str] = {}
        for cell in dict.fromkeys(cells):
            if cell == "":
                parsed[cell] = default
                if required:
                    wrong[cell] = REQUIRED_REASON
            elif "\x00" in cell:
                parsed[cell], wrong[cell] = None, NUL_REASON
            else:
                try:
                    parsed[cell] = parse(cell)
                except _Invalid as exc:
                    parsed[cell], wrong[cell] = None, exc.message(echo)
        if wrong:
            errors = [(i, wrong[cell]) for i, cell in enumerate(cells) if cell in wrong]
        return list(map(parsed.__getitem__, cells)), errors
    check = _UNCHANGED.get(parse)
    has_empty = "" in cells
    if check is not None and check([c for c in cells if c] if has_empty else cells):
        if not has_empty:
            return cells, errors
        if required:
            errors = [(i, REQUIRED_REASON) for i, cell in enumerate(cells) if not cell]
        return [cell if cell else default for cell in cells], errors
    values: list[Any] = []
    for i, cell in enumerate(cells):
        if cell == "":
            values.append(default)
            if required:
                errors.append((i, REQUIRED_REASON))
        elif "\x00" in cell:
            values.append(None)
            errors.append((i, NUL_REASON))
        else:
            try:
                values.append(parse(cell))
            except _Invalid as exc:
                values.append(None)
                errors.append((i, exc.message(echo)))
    return values, errors

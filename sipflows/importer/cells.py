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

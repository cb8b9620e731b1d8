"""Data hygiene shared by the importer, the CLI and every file sipflows writes.

Codes are compared as Unicode NFC, so an "Ö" typed as one character or as "O" plus a combining diaeresis
is one code. Staff fields that notices show (names, a meeting's place and purpose) must not carry a
personal identity number: ``identity_number_in`` finds one by its shape and check digit. ``shown`` makes
a value safe to echo in a one-line message, and ``csv_cell`` a cell safe to open in a spreadsheet.
"""

from __future__ import annotations

import calendar
import re
import unicodedata

# --- codes -----------------------------------------------------------------------------------------------


def normalise_code(code: str) -> str:
    """A code as the register keeps it: trimmed, Unicode NFC."""
    return unicodedata.normalize("NFC", code.strip())


# --- personal identity numbers ---------------------------------------------------------------------------

# personnummer / samordningsnummer: [CC]YYMMDD[-+ ]NNNC, not part of a longer run of digits
_IDENTITY = re.compile(r"(?<!\d)(18|19|20)?(\d{2})(\d{2})(\d{2})[-+ ]?(\d{3})(\d)(?!\d)")
# every match has its six digits YYMMDD in a row: text without six digits in a row has none (a quick
# scan that spares most names and places the full pattern)
_SIX_DIGITS = re.compile(r"\d{6}")


def _luhn_ok(digits: str) -> bool:
    """Skatteverket's check digit: Luhn over the ten digits YYMMDDNNNC."""
    total = 0
    for i, ch in enumerate(digits):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _real_day(century: str | None, yy: str, mm: str, dd: str) -> bool:
    month, day = int(mm), int(dd)
    if day > 60:  # samordningsnummer: the day of birth plus 60
        day -= 60
    if not 1 <= month <= 12 or day < 1:
        return False
    # without the century, allow 29 February if any century makes it a leap year
    years = [int(century + yy)] if century else [1900 + int(yy), 2000 + int(yy)]
    return any(day <= calendar.monthrange(y, month)[1] for y in years)


def identity_number_in(text: str | None) -> bool:
    """Whether ``text`` contains something shaped like a Swedish personnummer or samordningsnummer: a
    real date of birth (day + 60 for a samordningsnummer), four digits and a valid Luhn check digit.

    Used to refuse such a value in staff fields that notices carry; it never returns what it found, so a
    caller cannot echo it by mistake."""
    if not text or _SIX_DIGITS.search(text) is None:
        return False
    for m in _IDENTITY.finditer(text):
        century, yy, mm, dd, serial, check = m.groups()
        if _real_day(century, yy, mm, dd) and _luhn_ok(f"{yy}{mm}{dd}{serial}{check}"):
            return True
    return False


IDENTITY_REASON = (
    "contains what looks like a personal identity number or samordningsnummer; this field goes into "
    "notices and calendar invitations, where personal data must never be"
)


# --- echoing values --------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\x00"}


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def one_line(text: str) -> str:
    """Control characters (line breaks, NUL, ...) written as escapes: an echoed value never splits a line
    of output or a header."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or _escape(ord(m.group())), text)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: str, limit: int = 60) -> str:
    """A value quoted in a message: one line, at most ``limit`` characters."""
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- CSV output ------------------------------------------------------------------------------------------

# OWASP (CSV injection): a cell beginning with one of these is a formula to a spreadsheet. The full-width
# forms are included because spreadsheet applications in East Asian locales treat them alike.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def csv_cell(value: object) -> str:
    """A cell for a CSV file a person may open in Excel: text that a spreadsheet would take for a formula
    gets a leading apostrophe (shown as text, not evaluated); numbers stay numbers, even negative ones."""
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, bool) or not text:
        return text
    if isinstance(value, int | float) or _NUMBER.match(text):
        return text
    if text.lstrip(" ").startswith(_FORMULA_START):
        return "'" + text
    return text

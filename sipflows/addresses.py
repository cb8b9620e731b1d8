"""What counts as a usable email address: the one rule settings, imports and every transport apply.

Plain ASCII ``local@domain`` only: every mail server and Exchange accept it, and a display name or
comment smuggled into an address (``"x" <a@b>, c@d``) is refused instead of parsed.
"""

from __future__ import annotations

import re

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")


def check_address(address: str) -> str:
    """``address`` if it is a plain ASCII ``local@domain`` (what every server accepts); else ValueError."""
    candidate = address.strip()
    if len(candidate) > 254 or not _ADDR_SPEC.fullmatch(candidate):
        raise ValueError(f"not a usable email address: {address!r}")
    return candidate

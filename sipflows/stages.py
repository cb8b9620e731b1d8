"""A finding's stage as the checks write it, read the same way everywhere (notices, sweep totals, CLI).

A stage is a name, an optional level (``escalation-2``: the second escalation) and, for ladders that run
from a due day, that day (``reminder@2026-05-04``), which gives a corrected date a ladder of its own.
"""

from __future__ import annotations

import re

_STAGE = re.compile(r"^(?P<name>.*?)(?:-(?P<level>\d+))?$")


def split_stage(stage: str) -> tuple[str, int | None]:
    """``"acknowledgement-escalation-2"`` → ``("acknowledgement-escalation", 2)``; a due-date suffix
    (``"reminder@2026-05-04"``) is dropped."""
    m = _STAGE.match(stage.split("@", 1)[0])
    assert m is not None  # the pattern matches every string
    level = m.group("level")
    return m.group("name"), int(level) if level else None


def stage_family(stage: str) -> str:
    """What totals count by: ``escalation-2`` and ``reminder@2026-05-04`` fold into their name."""
    return split_stage(stage)[0]

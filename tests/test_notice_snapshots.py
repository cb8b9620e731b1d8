"""Every notice kind in both languages, as rendered, kept beside the tests: a template change shows in review.

Run with ``SIPFLOWS_UPDATE_SNAPSHOTS=1`` to write the files anew after a deliberate change, then read the
diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sipflows.notices.render import FINDING_KINDS, MEETING_KINDS, Renderer
from tests.test_render import full_context

SNAPSHOTS = Path(__file__).parent / "snapshots" / "notices"
KINDS = sorted(FINDING_KINDS | MEETING_KINDS)
UPDATE = os.environ.get("SIPFLOWS_UPDATE_SNAPSHOTS") == "1"


def rendered(kind: str, lang: str) -> str:
    r = Renderer().render(kind, lang, full_context(kind, lang))
    return f"Subject: {r.subject}\n\n--- text ---\n{r.text.rstrip()}\n\n--- html ---\n{r.html.rstrip()}\n"


@pytest.mark.parametrize("lang", ["sv", "en"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_notice_reads_as_reviewed(kind: str, lang: str) -> None:
    path = SNAPSHOTS / f"{kind}.{lang}.txt"
    now = rendered(kind, lang)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(now, encoding="utf-8")
    assert path.is_file(), f"no snapshot for {kind} ({lang}): run with SIPFLOWS_UPDATE_SNAPSHOTS=1"
    assert now == path.read_text(encoding="utf-8"), (
        f"{path.name} changed: review it, then update the snapshot"
    )


def test_every_snapshot_belongs_to_a_notice_kind() -> None:
    expected = {f"{kind}.{lang}.txt" for kind in KINDS for lang in ("sv", "en")}
    assert {p.name for p in SNAPSHOTS.glob("*.txt")} == expected

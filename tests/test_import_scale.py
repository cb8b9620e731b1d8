"""Imports of a whole county's file: 100,000 rows written in bulk, still all or nothing, errors still exact.

No timing here (benchmarks/imports.py measures): these tests hold the bulk path to the same behaviour as
a small file — a bad row near the end of a big file keeps every row of it out, a re-import changes
nothing, and cells cached per column are still checked on every line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from sipflows.importer import ImportErrors, import_files
from sipflows.models import Meeting, Organisation, OrgKind, Principal

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
ROWS = 100_000
KINDS = ("municipal_unit", "region_unit", "school", "other")


def organisations(path: Path, name: str, bad_line: int | None = None) -> Path:
    """ROWS organisations; ``principal`` alternates between filled and empty (the shape that made the
    ORM's bulk INSERT quadratic). ``bad_line`` (a physical line, header = 1) gets an unknown kind."""
    lines = ["code,name,kind,principal"]
    for i in range(ROWS):
        kind = KINDS[i % len(KINDS)]
        if bad_line is not None and i + 2 == bad_line:
            kind = "bogus"
        principal = "kommun" if i % 2 == 0 else ""
        lines.append(f"ORG-{i:06d},{name} {i},{kind},{principal}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_large_file_imports_in_bulk_reimports_unchanged_and_a_bad_row_near_its_end_writes_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    good = organisations(tmp_path / "a" / "organisations.csv", "Enhet")
    (result,) = import_files(engine, [good], NOW, mail_domain="sipflows.test").files
    assert (result.rows, result.inserted, result.updated) == (ROWS, ROWS, 0)
    with Session(engine) as s:
        rows = dict(
            s.execute(
                select(Organisation.code, Organisation.principal).where(
                    Organisation.code.in_(["ORG-000000", "ORG-000001", "ORG-099998", "ORG-099999"])
                )
            ).all()
        )
        assert rows == {
            "ORG-000000": Principal.KOMMUN,
            "ORG-000001": None,
            "ORG-099998": Principal.KOMMUN,
            "ORG-099999": None,
        }
        assert s.scalar(select(Organisation.kind).where(Organisation.code == "ORG-099999")) == OrgKind.OTHER
        assert s.scalar(select(func.count()).where(Organisation.principal.is_(None))) == ROWS // 2

    # the same file again: the idempotent path writes nothing
    (again,) = import_files(engine, [good], NOW, mail_domain="sipflows.test").files
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, ROWS)

    # every name changes, but line 99,999 is wrong: nothing of the file is written
    bad = organisations(tmp_path / "b" / "organisations.csv", "Omdöpt", bad_line=99_999)
    with pytest.raises(ImportErrors) as info:
        import_files(engine, [bad], NOW, mail_domain="sipflows.test")
    assert [str(e) for e in info.value.errors] == [
        f"{bad}:99999: column 'kind': 'bogus' is not one of: municipal_unit, region_unit, forsakringskassan, "
        "arbetsformedlingen, school, kriminalvarden, police, user_organisation, other"
    ]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Organisation)) == ROWS
        assert s.scalar(select(func.count()).where(Organisation.name.like("Omdöpt%"))) == 0


def test_a_cached_cell_is_still_checked_on_every_line(engine: Engine, tmp_path: Path) -> None:
    """Cells that repeat are parsed once per file; a wrong one is reported on each line it is on, and a
    right one gives every row the same value."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "organisations.csv").write_text("code,name,kind\nKOP,Köping,municipal_unit\n", encoding="utf-8")
    (folder / "contacts.csv").write_text(
        "code,organisation,name,email\nC1,KOP,Sara,sara@koping.example.se\n", encoding="utf-8"
    )
    (folder / "cases.csv").write_text(
        "reference,convener_contact,identified_on\nSIP-1,C1,2026-09-01\n", encoding="utf-8"
    )
    import_files(engine, [folder], NOW, mail_domain="sipflows.test")
    meetings = folder / "more" / "meetings.csv"
    meetings.parent.mkdir()
    # 02:30 on 29 March 2026 does not exist in Stockholm (the clocks go forward)
    meetings.write_text(
        "code,case,kind,starts_at,ends_at\n"
        "M1,SIP-1,sip_meeting,2026-12-01 09:00,2026-12-01 10:00\n"
        "M2,SIP-1,sip_meeting,2026-03-29 02:30,2026-12-01 10:00\n"
        "M3,SIP-1,follow_up,2026-12-01 09:00,2026-12-01 10:00\n"
        "M4,SIP-1,sip_meeting,2026-03-29 02:30,2026-12-01 10:00\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportErrors) as info:
        import_files(engine, [meetings], NOW, mail_domain="sipflows.test")
    assert [(e.line, e.column) for e in info.value.errors] == [(3, "starts_at"), (5, "starts_at")]

    meetings.write_text(
        "code,case,kind,starts_at,ends_at\n"
        "M1,SIP-1,sip_meeting,2026-12-01 09:00,2026-12-01 10:00\n"
        "M3,SIP-1,follow_up,2026-12-01 09:00,2026-12-01 10:00\n",
        encoding="utf-8",
    )
    import_files(engine, [meetings], NOW, mail_domain="sipflows.test")
    with Session(engine) as s:
        starts = s.scalars(select(Meeting.starts_at).order_by(Meeting.code)).all()
    assert starts == [datetime(2026, 12, 1, 8, 0, tzinfo=UTC)] * 2

"""Planner statistics kept where the register changes: after ``db upgrade``, after an import, and at the
start of a sweep; and the checks' per-plan meeting look-ups use their index even without statistics."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from sipflows.checks import run_checks
from sipflows.checks.base import Finding
from sipflows.db import ensure_statistics, make_engine, migrate, upgrade_register
from sipflows.importer import import_files
from sipflows.models import ClosedDay
from sipflows.sweep import run_sweep
from tests.factories import local
from tests.test_checks_statements import JUDGED, POLICY, add_plans
from tests.test_sweep import SETTINGS


def statistics(engine: Engine) -> dict[str, int]:
    """Tables with planner statistics → rows the statistics say they hold (0: none)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            if not conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
                return {}
            rows = conn.execute(text("SELECT tbl, stat FROM sqlite_stat1")).tuples()
            found: dict[str, int] = {}
            for tbl, stat in rows:
                found[tbl] = max(found.get(tbl, 0), int(stat.split()[0]))
            return found
        rows = conn.execute(
            text(
                "SELECT tablename, count(*) FROM pg_stats WHERE schemaname = current_schema() "
                "GROUP BY tablename"
            )
        ).tuples()
        return {t: int(n) for t, n in rows}


def drop_statistics(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sqlite_stat1"))
    engine.dispose()  # connections forget what they loaded


def some_plans(build) -> dict:  # type: ignore[no-untyped-def,type-arg]
    region = build.standard_region()
    add_plans(build, region, region["k"], 5)
    build.session.commit()
    return region  # type: ignore[no-any-return]


def test_an_empty_register_needs_no_statistics(engine):
    assert ensure_statistics(engine) == []


def test_statistics_are_taken_once_and_again_when_the_register_grew(build, engine):
    region = some_plans(build)
    drop_statistics(engine)
    analysed = ensure_statistics(engine)
    assert {"meetings", "invitations", "sip_cases", "participants"} <= set(analysed)
    stats = statistics(engine)
    assert stats.get("meetings", 0) > 0 and stats.get("invitations", 0) > 0
    assert ensure_statistics(engine) == []  # fresh: nothing to do

    add_plans(build, region, region["k"], 400)  # 1,200 meetings: > 1.5 × 15 + the margin of 1,000
    build.session.commit()
    assert "meetings" in ensure_statistics(engine)
    if engine.dialect.name == "sqlite":
        assert statistics(engine)["meetings"] > 1000


def test_a_sweep_starts_by_taking_statistics(build, engine):
    some_plans(build)
    drop_statistics(engine)
    run_sweep(engine, JUDGED, POLICY, local(JUDGED, "06:00"), SETTINGS)
    stats = statistics(engine)
    assert stats.get("meetings", 0) > 0 and stats.get("sip_cases", 0) > 0


def test_db_upgrade_takes_statistics_of_what_the_register_holds(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'register.sqlite'}"
    engine = make_engine(url)
    migrate(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO organisations (code, name, kind) VALUES ('K', 'Kommunen', 'municipal_unit')")
        )
    engine.dispose()
    upgraded = upgrade_register(url)
    try:
        assert statistics(upgraded).get("organisations") == 1
    finally:
        upgraded.dispose()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "import"


def test_an_import_leaves_statistics(engine):
    drop_statistics(engine)
    import_files(engine, [EXAMPLES], local(date(2026, 3, 2), "07:00"), mail_domain="sipflows.test")
    stats = statistics(engine)
    assert stats.get("contacts", 0) > 0 and stats.get("sip_cases", 0) > 0


def _explained(
    engine: Engine, only: list[str], wanted: str
) -> tuple[dict[str, list[Finding]], list[tuple[str, list[str]]]]:
    """Run the checks ``only``: their findings, and each statement they executed that contains ``wanted``
    with SQLite's query plan for it (``EXPLAIN QUERY PLAN``, one line per step)."""
    executed: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session:
            found = run_checks(session, JUDGED, POLICY, only=only)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    explained: list[tuple[str, list[str]]] = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, parameters in executed:
            if wanted in statement:
                plan = [row[-1] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
                explained.append((statement, plan))
    return found, explained


def test_per_plan_meeting_look_ups_use_their_index_without_statistics(build, engine):
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL's autovacuum gathers statistics; SQLite never does by itself
    some_plans(build)
    drop_statistics(engine)
    _, correlated = _explained(engine, ["pre_meeting", "follow_up"], "meetings AS meetings_1")
    assert correlated
    for _, plan in correlated:
        subplans = [line for line in plan if "meetings_1" in line]
        assert subplans and all("ix_meetings_case_kind_status_start" in line for line in subplans), plan


def test_the_meeting_ladders_scan_one_index_range_without_statistics(build, engine):
    """An organisation with its own bound must not turn the ladders' query into SQLite's MULTI-INDEX OR
    (one scan of nearly every held meeting per bound: a minute at 200,000 plans without statistics)."""
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL's autovacuum gathers statistics; SQLite never does by itself
    region = some_plans(build)
    for day in (9, 10, 11):  # the region's own bounds: its unit was closed the days before
        build.session.add(ClosedDay(organisation_id=region["region"].id, day=date(2026, 3, day)))
    build.session.commit()
    drop_statistics(engine)
    found, ladders = _explained(engine, ["documentation", "meeting_held"], "FROM meetings JOIN sip_cases")
    assert found["documentation"] and found["meeting_held"]
    assert len(ladders) == 2
    for _, plan in ladders:
        assert not any("MULTI-INDEX OR" in line for line in plan), plan
        assert sum("SEARCH meetings USING INDEX" in line for line in plan) == 1, plan
    assert any("CASE WHEN" in s for s, _ in ladders)  # the region's own bound, in a CASE

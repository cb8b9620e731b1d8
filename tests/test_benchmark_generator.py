"""The scale benchmark's synthetic register is consistent, and the benchmark script runs end to end.

Correctness only, at a few hundred plans: the timing itself is the script's business, never a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, aliased

from benchmarks.synthetic import COLUMNS, TABLES, BenchSpec, Format, Generator, load_register
from sipflows.checks import CHECK_NAMES, run_checks
from sipflows.db import make_engine, migrate
from sipflows.models import (
    Answer,
    CaseStatus,
    Contact,
    Deviation,
    Invitation,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Organisation,
    Participant,
    SipCase,
)
from sipflows.policy import default_policy
from sipflows.timeutil import local_datetime, start_of_local_day_utc

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("SIPFLOWS_TEST_POSTGRES_URL")
SPEC = BenchSpec(plans=200)
# the register is a snapshot taken at 06:00 local on the judged day
SNAPSHOT = start_of_local_day_utc(SPEC.judged) + timedelta(hours=6)


def _rows(spec: BenchSpec) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = {t: [] for t in TABLES}
    gen = Generator(spec, Format(".000000"))

    def write(table: str, rows: list[tuple[object, ...]]) -> None:
        out[table].extend(rows)

    gen.organisations(write)
    gen.plans(write, lambda done: None)
    return out


def test_same_seed_same_register_and_a_different_seed_differs():
    spec = BenchSpec(plans=300, chunk_plans=70)
    first, again = _rows(spec), _rows(spec)
    assert first == again
    assert _rows(BenchSpec(plans=300, seed=7))["meetings"] != first["meetings"]
    for table, rows in first.items():
        assert all(len(r) == len(COLUMNS[table]) for r in rows), table
        ids = [r[0] for r in rows]
        assert ids == list(range(1, len(rows) + 1)), f"{table}: ids must be 1..n in write order"


def test_proportions_match_the_benchmark_spec():
    spec = BenchSpec(plans=2000)
    rows = _rows(spec)
    statuses = [r[10] for r in rows["sip_cases"]]
    withdrawn = [r for r in rows["sip_cases"] if r[9] is not None]
    assert len(rows["sip_cases"]) == spec.total_plans == 2000 + 80 + 10
    assert statuses.count("closed") == spec.closed
    open_plans = [r for r in rows["sip_cases"] if r[10] != "closed" and r[9] is None]
    assert len(open_plans) == spec.plans
    assert len(withdrawn) >= spec.withdrawn  # plus the closed ones closed for withdrawn consent
    assert len(rows["deviations"]) == spec.deviations == 500
    meetings_per_plan = len(rows["meetings"]) / spec.total_plans
    invitations_per_meeting = len(rows["invitations"]) / len(rows["meetings"])
    assert 4.5 < meetings_per_plan < 5.5  # ~1M meetings at 200,000 plans
    assert 2.7 < invitations_per_meeting < 3.5  # ~3M invitations
    assert 90 <= len(rows["organisations"]) <= 130


def test_loaded_register_is_consistent(engine: Engine):
    stats = load_register(engine, SPEC)
    with Session(engine) as s:
        for table in TABLES:
            assert s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == stats.rows[table], table
        open_plans = s.scalar(
            select(func.count())
            .select_from(SipCase)
            .where(SipCase.status != CaseStatus.CLOSED, SipCase.consent_withdrawn_on.is_(None))
        )
        assert open_plans == SPEC.plans
        assert s.scalar(select(func.count()).select_from(Deviation)) == SPEC.deviations

        # every organisation has an escalation contact of its own
        orgs = s.scalars(select(Organisation)).all()
        contact_org = dict(s.execute(select(Contact.id, Contact.organisation_id)).tuples().all())
        assert all(contact_org[o.escalation_contact_id] == o.id for o in orgs if o.escalation_contact_id)
        assert all(o.escalation_contact_id for o in orgs)

        # the text written for timestamps is exactly what UTCDateTime binds: equality finds the row
        first = s.scalars(select(Meeting).order_by(Meeting.id).limit(1)).one()
        assert first.starts_at.tzinfo is not None
        assert s.scalar(select(Meeting.id).where(Meeting.starts_at == first.starts_at)) is not None

        for m in s.scalars(select(Meeting)):
            start = local_datetime(m.starts_at)
            assert start.weekday() < 5 and 8 <= start.hour < 16, m.code
            assert m.ends_at > m.starts_at
            if m.documented_at is not None:
                assert m.status == MeetingStatus.HELD and m.kind != MeetingKind.PRE_MEETING
                assert m.ends_at < m.documented_at <= SNAPSHOT
            if m.status == MeetingStatus.HELD:
                assert m.starts_at < SNAPSHOT

        meeting = aliased(Meeting)
        for inv, starts_at in s.execute(
            select(Invitation, meeting.starts_at).join(meeting, meeting.id == Invitation.meeting_id)
        ).tuples():
            assert (inv.answer == Answer.NONE) == (inv.answered_at is None)
            if inv.sent_at is None:
                assert inv.answer == Answer.NONE
            else:
                assert inv.sent_at < starts_at and inv.sent_at <= SNAPSHOT
            if inv.answered_at is not None:
                assert inv.sent_at is not None and inv.sent_at <= inv.answered_at < starts_at
        # invitations go to the plan's own participants only
        stray = s.scalar(
            select(func.count())
            .select_from(Invitation)
            .join(Meeting, Meeting.id == Invitation.meeting_id)
            .outerjoin(
                Participant,
                (Participant.case_id == Meeting.case_id) & (Participant.contact_id == Invitation.contact_id),
            )
            .where(Participant.id.is_(None))
        )
        assert stray == 0

        for d in s.scalars(select(Deviation)):
            assert d.reported_at < SNAPSHOT
            for later in (d.acknowledged_at, d.replied_at, d.resolved_at):
                assert later is None or d.reported_at <= later <= SNAPSHOT
            if d.resolved_at is not None:
                assert d.acknowledged_at is not None and d.replied_at is not None

        # the checks judge it without error and find work to do
        found = run_checks(s, SPEC.judged, default_policy())
        assert set(found) == set(CHECK_NAMES)
        assert sum(len(v) for v in found.values()) > 0
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    else:  # ids were explicit: the sequences must be past them
        with engine.begin() as conn:
            assert (
                conn.execute(text("SELECT nextval('meetings_id_seq')")).scalar_one() > stats.rows["meetings"]
            )


def _sweep(*args: str) -> tuple[str, list[dict[str, Any]]]:
    out = Path(args[args.index("--json") + 1])
    done = subprocess.run(
        [sys.executable, "benchmarks/sweep.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text())


def _assert_figures(figures: dict[str, Any], stdout: str) -> None:
    checks = figures["checks"]
    assert isinstance(checks, list)
    assert [c["name"] for c in checks] == list(CHECK_NAMES)
    assert figures["table_rows"]["sip_cases"] == SPEC.total_plans
    assert figures["all_findings"] == sum(c["findings"] for c in checks)
    assert figures["all_findings"] > 0
    for c in checks:
        assert c["warm_seconds"] > 0 and c["statements"] >= 1
        assert "sip_cases" in c["tables"]  # every check skips closed plans
        assert c["rows_read"] > 0
        assert c["name"] in stdout
    assert figures["peak_rss_mb"] > 0 and figures["tracemalloc_peak_mb"] > 0
    assert "all checks together" in stdout


@pytest.mark.slow
def test_sweep_script_runs_end_to_end_on_sqlite_and_reuses_the_register(tmp_path: Path):
    report = tmp_path / "figures.json"
    common = ["--plans", "200", "--database", "sqlite", "--folder", str(tmp_path), "--repeat", "1"]
    stdout, [figures] = _sweep(*common, "--json", str(report))
    assert figures["database"] == "sqlite" and figures["loaded"] is True
    assert figures["load_seconds"] > 0
    _assert_figures(figures, stdout)

    stdout, [again] = _sweep(*common, "--reuse", "--json", str(report))
    assert again["loaded"] is False
    assert again["all_findings"] == figures["all_findings"]
    assert "reused the existing register" in stdout

    # a sweep of some of the checks: its run_checks and first day judge those alone
    some = ["documentation", "follow_up"]
    stdout, [part] = _sweep(
        *common, "--reuse", "--no-checks", "--sweep-checks", ",".join(some), "--json", str(report)
    )
    by_name = {c["name"]: c["findings"] for c in figures["checks"]}
    assert part["sweep"]["only"] == some
    assert part["sweep"]["run_checks_findings"] == sum(by_name[n] for n in some) > 0
    assert part["sweep"]["first_day_enqueued"] > 0
    assert "only the checks documentation, follow_up" in stdout
    refused = subprocess.run(
        [
            sys.executable,
            "benchmarks/sweep.py",
            *common,
            "--reuse",
            "--sweep-checks",
            "documentation,dokumentation",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0 and "no check named dokumentation" in refused.stderr


@pytest.mark.slow
@pytest.mark.skipif(not PG_URL, reason="SIPFLOWS_TEST_POSTGRES_URL not set")
def test_sweep_script_runs_end_to_end_on_postgresql_and_agrees_with_sqlite(tmp_path: Path):
    assert PG_URL
    schema = f"bench_t_{uuid.uuid4().hex[:12]}"
    report = tmp_path / "figures.json"
    try:
        stdout, results = _sweep(
            "--plans",
            "200",
            "--database",
            "both",
            "--postgres-url",
            PG_URL,
            "--schema",
            schema,
            "--folder",
            str(tmp_path),
            "--repeat",
            "1",
            "--json",
            str(report),
        )
    finally:
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    sqlite, postgresql = results
    assert (sqlite["database"], postgresql["database"]) == ("sqlite", "postgresql")
    _assert_figures(postgresql, stdout)
    # the same seed builds the same register on both databases, and the checks judge it alike
    assert postgresql["table_rows"] == sqlite["table_rows"]
    assert [c["findings"] for c in postgresql["checks"]] == [c["findings"] for c in sqlite["checks"]]


def test_loading_twice_fails_on_unique_ids_instead_of_doubling_the_register(tmp_path: Path):
    """Loading twice into one register fails on the unique ids instead of doubling the data."""
    engine = make_engine(f"sqlite:///{tmp_path / 'twice.sqlite'}")
    migrate(engine)
    load_register(engine, BenchSpec(plans=20, judged=date(2026, 11, 24)))
    with pytest.raises(Exception, match="UNIQUE"):
        load_register(engine, BenchSpec(plans=20))
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(SipCase)) == BenchSpec(plans=20).total_plans
    engine.dispose()

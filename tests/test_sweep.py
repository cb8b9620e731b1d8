"""The daily sweep as the flow runs it: the same notices as rendering every finding, only the new ones
rendered, and a steady-state day that reads the ledger instead of rendering."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import Engine, delete, event, select
from sqlalchemy.orm import Session

from sipflows.checks import run_checks
from sipflows.models import Contact, Notice, Organisation, SipCase, SweepRun
from sipflows.notices.build import build_notices
from sipflows.settings import Settings
from sipflows.sweep import judges_nothing, run_sweep, unknown_checks
from tests.factories import local
from tests.test_checks_statements import JUDGED, POLICY, add_plans

SETTINGS = Settings(_env_file=None, mail_domain="sipflows.test", sender_name="SIP-påminnelser")  # type: ignore[call-arg]
NOW = local(JUDGED, "06:00")
LATER = local(JUDGED, "18:00")


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def register(build, n: int = 6) -> dict:  # type: ignore[no-untyped-def,type-arg]
    region = build.standard_region()
    lss = build.contact(build.org("KOP-LSS", closed_days=(date(2026, 3, 9),)), escalation=region["k_chief"])
    add_plans(build, region, lss, n)
    build.session.commit()
    return region  # type: ignore[no-any-return]


def every_draft(engine: Engine) -> dict[str, tuple[str, str, str, str]]:
    """What rendering every finding gives (the sweep's former way), rolled back: key → address and parts."""
    with Session(engine) as session:
        findings = [f for fs in run_checks(session, JUDGED, POLICY).values() for f in fs]
        drafts = build_notices(session, findings, SETTINGS)
        session.rollback()
    return {d.key: (d.address, d.subject, d.body_text, d.body_html) for d in drafts}


def operations_list(engine: Engine) -> list[tuple[str, str, str]]:
    """Every notice in the ledger as operations see it (plan reference, kind, recipient organisation),
    read by a join, in the sweep result's order."""
    with Session(engine) as session:
        rows = session.execute(
            select(SipCase.reference, Notice.kind, Organisation.name)
            .join(SipCase, SipCase.id == Notice.case_id)
            .join(Contact, Contact.id == Notice.contact_id)
            .join(Organisation, Organisation.id == Contact.organisation_id)
            .order_by(SipCase.reference, Notice.kind, Organisation.name)
        ).all()
    return [(r, k, o) for r, k, o in rows]


def ledger(engine: Engine) -> dict[str, tuple[str, str, str, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(Notice.key, Notice.address, Notice.subject, Notice.body_text, Notice.body_html)
        )
        return {key: (address, subject, text, html) for key, address, subject, text, html in rows}


def test_first_day_enqueues_what_rendering_every_finding_gives(build, engine):
    register(build)
    expected = every_draft(engine)
    assert len(expected) > 40

    result = run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)

    assert result.enqueued == len(expected)
    assert ledger(engine) == expected
    # what operations see of each: the plan's reference, the kind, the recipient's organisation
    assert operations_list(engine) == [
        (e.reference, e.kind, e.recipient_organisation) for e in result.enqueued_notices
    ]
    with Session(engine) as session:
        sweep = session.get(SweepRun, result.sweep_id)
        assert (
            sweep is not None and sweep.enqueued == len(expected) and sweep.findings == result.total_findings
        )


def test_first_day_in_several_batches_gives_the_same_notices(build, engine, monkeypatch):
    register(build)
    expected = every_draft(engine)
    monkeypatch.setattr("sipflows.sweep.BATCH", 7)  # a batch size of the module, not a library internal
    result = run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)
    assert result.enqueued == len(expected) and ledger(engine) == expected


def test_a_first_day_staged_through_copy_gives_the_same_notices(build, engine, monkeypatch):
    """On PostgreSQL a sweep's batch goes through COPY into a temporary table (from 1,000 drafts; here
    from 1), several batches in one transaction: the same ledger, and what operations see, as the join."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the staged insert is PostgreSQL's")
    register(build)
    expected = every_draft(engine)
    monkeypatch.setattr("sipflows.sweep.BATCH", 7)
    monkeypatch.setattr("sipflows.notices.ledger._STAGE_FROM", 1)  # module constants of ours
    with counting(engine) as statements:
        result = run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)
    # (the COPY itself goes through the driver's cursor, which the engine's events do not see)
    assert len([s for s in statements if s == "TRUNCATE pg_temp.sipflows_drafts"]) > 1
    assert result.enqueued == len(expected)
    assert ledger(engine) == expected
    assert operations_list(engine) == [
        (e.reference, e.kind, e.recipient_organisation) for e in result.enqueued_notices
    ]
    with Session(engine) as session:
        created = set(session.execute(select(Notice.created_at)).scalars())
    assert created == {NOW}


def test_steady_state_enqueues_nothing_and_renders_nothing(build, engine):
    register(build)
    first = run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)
    before = ledger(engine)

    with counting(engine) as statements:
        again = run_sweep(engine, JUDGED, POLICY, LATER, SETTINGS)

    assert again.total_findings == first.total_findings and again.enqueued == 0
    assert again.enqueued_notices == []
    assert ledger(engine) == before
    assert not [s for s in statements if s.startswith("INSERT INTO notices")]
    # nothing is loaded for rendering: no read of participants' or contacts' rows by id
    assert not [s for s in statements if "FROM participants" in s and "IN (" in s]
    assert not [s for s in statements if s.startswith("SELECT contacts.id, contacts.name")]


def test_steady_state_statements_do_not_grow_with_the_register(build, engine):
    region = register(build, 4)
    run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)
    with counting(engine) as small:
        run_sweep(engine, JUDGED, POLICY, LATER, SETTINGS)
    add_plans(build, region, region["k"], 12)
    build.session.commit()
    run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)
    with counting(engine) as large:
        run_sweep(engine, JUDGED, POLICY, LATER, SETTINGS)

    # (ANALYZE runs when a table grew: that is the statistics' business, not the sweep's)
    def sweep_statements(statements: list[str]) -> list[str]:
        return [s for s in statements if not s.startswith(("ANALYZE", "PRAGMA"))]

    assert len(sweep_statements(large)) == len(sweep_statements(small))


def test_only_the_new_recipients_of_a_known_finding_are_enqueued(build, engine):
    register(build)
    run_sweep(engine, JUDGED, POLICY, NOW, SETTINGS)
    complete = ledger(engine)
    gone = sorted(complete)[:: max(1, len(complete) // 5)]  # a few notices, of various findings
    with Session(engine) as session, session.begin():
        session.execute(delete(Notice).where(Notice.key.in_(gone)))

    result = run_sweep(engine, JUDGED, POLICY, LATER, SETTINGS)

    assert result.enqueued == len(gone) and len(result.enqueued_notices) == len(gone)
    assert ledger(engine) == complete
    with Session(engine) as session:
        created = dict(session.execute(select(Notice.key, Notice.created_at)).tuples().all())
    assert {k for k, at in created.items() if at == LATER} == set(gone)


def test_a_scheduled_sweep_skips_the_days_that_are_not_swedish_working_days() -> None:
    # midsommarafton, juldagen, a Sunday: cron fires, the sweep judges nothing
    for day in (date(2026, 6, 19), date(2026, 12, 25), date(2026, 12, 6)):
        assert judges_nothing(day, scheduled=True)
        assert not judges_nothing(day, scheduled=False)  # a replay of that date is judged
    assert not judges_nothing(date(2026, 12, 1), scheduled=True)  # an ordinary Tuesday


def test_checks_asked_for_by_name_are_known_ones() -> None:
    assert unknown_checks(None) == []
    assert unknown_checks(["documentation", "first_meeting"]) == []
    assert unknown_checks(["documentation", "dokumentation", "Invitations"]) == [
        "Invitations",
        "dokumentation",
    ]

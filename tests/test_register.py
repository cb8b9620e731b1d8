"""The register's schema: migrations, constraints and UTC storage on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from sipflows.db import alembic_config, make_engine, migrate, read_scope, session_scope
from sipflows.models import (
    Contact,
    Meeting,
    MeetingKind,
    Organisation,
    OrgKind,
    Principal,
    SipCase,
)


def _org_and_contact(session: Session) -> tuple[Organisation, Contact]:
    org = Organisation(
        code="KOP-IFO", name="Köping IFO", kind=OrgKind.MUNICIPAL_UNIT, principal=Principal.KOMMUN
    )
    session.add(org)
    session.flush()
    contact = Contact(code="c1", organisation_id=org.id, name="Anna", email="anna@koping.example")
    session.add(contact)
    session.flush()
    return org, contact


def _add_meeting(session: Session, starts_at: datetime, ends_at: datetime, identified_on: date) -> None:
    """One plan (organisation, convener, case) and its SIP meeting, added; the meeting not yet flushed."""
    org, contact = _org_and_contact(session)
    case = SipCase(
        reference="SIP-1",
        convener_org_id=org.id,
        convener_contact_id=contact.id,
        identified_on=identified_on,
    )
    session.add(case)
    session.flush()
    session.add(
        Meeting(
            code="m1",
            case_id=case.id,
            kind=MeetingKind.SIP_MEETING,
            starts_at=starts_at,
            ends_at=ends_at,
            ical_uid="m1@test",
        )
    )


def test_migrations_create_every_table_and_are_idempotent(engine):
    migrate(engine)  # a second run is a no-op
    tables = set(inspect(engine).get_table_names())
    assert {
        "organisations",
        "contacts",
        "sip_cases",
        "participants",
        "meetings",
        "invitations",
        "deviations",
        "notices",
        "closed_days",
        "sweep_runs",
        "alembic_version",
    } <= tables


def test_downgrade_to_base_and_back(engine):
    from alembic import command

    with engine.begin() as conn:
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert "meetings" in inspect(engine).get_table_names()


def test_migration_0006_gives_times_the_importer_wrote_on_sqlite_the_orm_text_form(engine):
    """A register imported before 0006 on SQLite holds whole-second times without their fraction; after
    the upgrade a query at the very instant finds them. The migration names every UTC column there is."""
    import importlib.util

    from sqlalchemy import func, text

    from sipflows.db import MIGRATIONS
    from sipflows.models import Base, UTCDateTime

    spec = importlib.util.spec_from_file_location(
        "m0006", MIGRATIONS / "versions" / "0006_sqlite_utc_text.py"
    )
    assert spec is not None and spec.loader is not None
    m0006 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0006)
    columns = {
        (t.name, c.name) for t in Base.metadata.sorted_tables for c in t.c if isinstance(c.type, UTCDateTime)
    }
    assert columns == {(t, c) for t, names in m0006.UTC_COLUMNS.items() for c in names}

    from alembic import command

    with engine.begin() as conn:  # the register as it was before 0006
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    starts = datetime(2026, 9, 21, 7, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        _add_meeting(s, starts, starts + timedelta(hours=1), date(2026, 9, 1))
    at_the_instant = select(func.count()).select_from(Meeting).where(Meeting.starts_at >= starts)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:  # as the importer's bulk path wrote it before
            conn.execute(text("UPDATE meetings SET starts_at = '2026-09-21 07:00:00'"))
            assert conn.scalar(at_the_instant) == 0  # the text sorts before the same instant: the fault
    migrate(engine)
    with Session(engine) as s:
        assert s.scalar(at_the_instant) == 1
        assert s.scalar(select(Meeting.starts_at)) == starts


def test_times_are_stored_and_returned_as_utc(session):
    cet = timezone(timedelta(hours=1))
    start = datetime(2026, 3, 2, 9, 0, tzinfo=cet)
    _add_meeting(session, start, start + timedelta(hours=1), date(2026, 3, 1))
    session.commit()
    session.expunge_all()
    got = session.scalars(select(Meeting)).one()
    assert got.starts_at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert got.starts_at.tzinfo is not None


def test_naive_datetimes_are_refused(session):
    _add_meeting(session, datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 10), date(2026, 3, 1))
    with pytest.raises(Exception, match="naive datetime"):
        session.flush()


def test_foreign_keys_are_enforced(session):
    session.add(Contact(code="c1", organisation_id=999, name="x", email="x@example.se"))
    with pytest.raises(IntegrityError):
        session.flush()


def test_meeting_must_end_after_it_starts(session):
    t = datetime(2026, 3, 2, 9, tzinfo=UTC)
    _add_meeting(session, t, t, date(2026, 3, 1))
    with pytest.raises(IntegrityError):
        session.flush()


def test_migrations_match_the_models(engine):
    """Autogenerate finds nothing to do: the models and the migration describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sipflows.models import Base

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def _schema_of(engine) -> dict[str, object]:
    """Tables, columns, keys, indexes and the revision, as the database reports them."""
    from sqlalchemy import text

    found = inspect(engine)
    shape: dict[str, object] = {}
    for table in sorted(found.get_table_names()):
        shape[table] = (
            [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in found.get_columns(table)
            ],
            found.get_pk_constraint(table)["constrained_columns"],
            sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in found.get_foreign_keys(table)
            ),
            sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table)
            ),
            sorted((u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
            sorted(str(c["sqltext"]) for c in found.get_check_constraints(table)),
        )
    with engine.connect() as conn:
        shape["revision"] = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return shape


def test_the_suites_template_register_is_what_alembic_makes(engine, tmp_path):
    """The suite copies a template (SQLite) or runs the migrations' script (PostgreSQL): same schema."""
    from tests.conftest import _drop_pg_schema, _pg_engine_in_fresh_schema

    if engine.dialect.name == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'by-alembic.sqlite'}")
        schema = None
    else:
        made, schema = _pg_engine_in_fresh_schema()
    try:
        migrate(made)
        assert _schema_of(engine) == _schema_of(made)
    finally:
        made.dispose()
        if schema:
            _drop_pg_schema(schema)


def test_read_scope_reads_and_refuses_to_write_then_the_connection_writes_again(engine):
    with session_scope(engine) as session:
        _org_and_contact(session)
    with read_scope(engine) as session:
        assert session.scalars(select(Organisation.code)).all() == ["KOP-IFO"]
        session.add(
            Organisation(
                code="ARB-IFO", name="Arboga IFO", kind=OrgKind.MUNICIPAL_UNIT, principal=Principal.KOMMUN
            )
        )
        with pytest.raises(DBAPIError, match="(?i)read.?only"):
            session.flush()
    # the pooled connection the read used is writable again
    for _ in range(3):
        with session_scope(engine) as session:
            session.execute(update(Organisation).values(name="Köpings IFO"))
    with read_scope(engine) as session:
        assert session.scalars(select(Organisation.name)).all() == ["Köpings IFO"]


def test_a_notice_keeps_its_bodies_inline_and_uncompressed_on_postgresql(engine):
    """Migration 0007: a notice of the usual size is not run through pglz on insert (nor on dispatch)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("toast_tuple_target is PostgreSQL's")
    from sqlalchemy import text

    from sipflows.notices.ledger import NoticeDraft, enqueue

    html = "<p>Planen SIP-1 ska dokumenteras efter SIP-mötet måndag 23 november 2026.</p>\n" * 20
    with session_scope(engine) as session:
        enqueue(
            session,
            [NoticeDraft("k1", "documentation.reminder", "a@x.se", "Ämne", "text " * 100, html)],
            datetime(2026, 11, 24, 5, tzinfo=UTC),
            "sipflows.test",
        )
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT pg_column_size(body_html), octet_length(body_html) FROM notices WHERE key = 'k1'")
        ).one()
    assert stored[1] > 1_500  # larger than pglz would leave alone in a row of more than 2 kB
    assert stored[0] >= stored[1]  # as written: not compressed

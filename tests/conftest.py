"""Fixtures shared by the whole suite.

Every test that touches the register gets a clean schema made by the Alembic migrations: a SQLite file
always, and a fresh PostgreSQL schema as well when ``SIPFLOWS_TEST_POSTGRES_URL`` is set (``.ci/run`` sets
it). Tests that need Prefect use the session-scoped harness in ``tests/flows/conftest.py`` only.

The migrations run once per test process, not once per test: SQLite tests get a copy of a migrated
template file, PostgreSQL tests a fresh schema made by the migrations' own DDL (Alembic's offline script,
run in one round trip). ``tests/test_register.py`` checks that both give what running Alembic gives.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from sipflows.db import alembic_config, make_engine, migrate

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

PG_URL = os.environ.get("SIPFLOWS_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _pg_engine_in_fresh_schema() -> tuple[Engine, str]:
    assert PG_URL
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    # the schema travels in the URL, so a CLI subprocess given db_url lands in the same schema
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = make_engine(url.render_as_string(hide_password=False))
    return engine, schema


def _drop_pg_schema(schema: str) -> None:
    assert PG_URL
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def migrations_script(url: str) -> str:
    """The migrations to head as one SQL script for ``url``'s database (Alembic's offline mode)."""
    cfg = alembic_config(url)
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "head", sql=True)
    lines = cfg.output_buffer.getvalue().splitlines()
    # one transaction of the caller's, not the script's own
    return "\n".join(line for line in lines if line.strip() not in ("BEGIN;", "COMMIT;"))


def run_script(engine: Engine, script: str) -> None:
    """Run a multi-statement script on the driver's own cursor (no parameter parsing), in one transaction."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(script)
        raw.commit()
    finally:
        raw.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A register migrated to head once per test process; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "register.sqlite"
    eng = make_engine(f"sqlite:///{path}")
    migrate(eng)
    eng.dispose()
    return path


@pytest.fixture(scope="session")
def pg_migrations_script() -> str:
    assert PG_URL
    return migrations_script(PG_URL)


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty register on each database the suite runs against."""
    if request.param == "sqlite":
        path = tmp_path / "register.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        eng = make_engine(f"sqlite:///{path}")
        yield eng
        eng.dispose()
    else:
        eng, schema = _pg_engine_in_fresh_schema()
        run_script(eng, request.getfixturevalue("pg_migrations_script"))
        yield eng
        eng.dispose()
        _drop_pg_schema(schema)


@pytest.fixture
def db_url(engine: Engine) -> str:
    """The URL of ``engine`` as the CLI and settings take it (PostgreSQL keeps its search_path)."""
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def build(session: Session):
    from tests.factories import RegisterBuilder

    return RegisterBuilder(session)

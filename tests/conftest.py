"""Fixtures shared by the whole suite.

Every test that touches the register gets a clean schema made by the Alembic migrations: a SQLite file
always, and a fresh PostgreSQL schema as well when ``SIPFLOWS_TEST_POSTGRES_URL`` is set (``.ci/run`` sets
it). Tests that need Prefect use the session-scoped harness in ``tests/flows/conftest.py`` only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from sipflows.db import make_engine, migrate

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


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty register on each database the suite runs against."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'register.sqlite'}")
        migrate(eng)
        yield eng
        eng.dispose()
    else:
        eng, schema = _pg_engine_in_fresh_schema()
        migrate(eng)
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

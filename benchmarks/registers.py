"""A throw-away register for a benchmark: a SQLite file in the given folder, or a fresh PostgreSQL schema
that is dropped afterwards (so a benchmark never touches the tables of the database it is pointed at)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from sipflows.db import make_engine


def fresh_database(url: str | None, folder: Path, label: str) -> tuple[Engine, Callable[[], None]]:
    """The engine and the function that disposes it (and drops the schema on PostgreSQL)."""
    if url is None or make_url(url).get_backend_name() != "postgresql":
        engine = make_engine(url or f"sqlite:///{folder / 'bench.sqlite'}")
        return engine, engine.dispose
    schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = make_engine(scoped.render_as_string(hide_password=False))

    def drop() -> None:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return engine, drop

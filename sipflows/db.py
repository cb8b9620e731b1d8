"""Engines, sessions and schema migrations.

The schema is always made by running the Alembic migrations (never ``create_all``), so that what the
tests exercise is what production gets.

A register that is not there is an error, not a new empty one: :func:`open_register`, which every
command and flow uses, creates nothing — a missing SQLite file, an unreachable server, an empty database
or a schema older than this code stops with a ``RegisterError`` naming ``SIPFLOWS_DATABASE_URL`` (with
the password blanked out). Only :func:`upgrade_register` (``sipflows db upgrade``, the quickstart and
the demo) creates or migrates the register, so a typo in the URL never quietly starts an empty one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the register's conventions: SQLite foreign keys on and WAL; folders created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        # psycopg 3 is the driver we ship
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (head by default); safe to run on every start."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error (nothing half-written)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


class RegisterError(RuntimeError):
    """The register cannot be used as configured; the message says what to set or run (no password)."""


SETTING = "SIPFLOWS_DATABASE_URL"


def describe_url(url: str | URL) -> str:
    """The URL for logs and messages: the password blanked out."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "(not a database URL)"
    return parsed.render_as_string(hide_password=True)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise RegisterError(
            f"{SETTING} is not a database URL: expected e.g. sqlite:///data/sipflows.sqlite or "
            "postgresql+psycopg://user@host/sip"
        ) from None


def _sqlite_file(parsed: URL) -> Path | None:
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):  # a URI filename: leave it to SQLite
        return None
    return Path(parsed.database)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}


def _scrub(text: str, parsed: URL) -> str:
    if parsed.password:
        text = text.replace(str(parsed.password), "***")
    return " ".join(text.split())[:400]


def current_revision(engine: Engine) -> str | None:
    """The register's schema revision (None: no sipflows schema), or ``RegisterError`` if unreachable."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        reason = _scrub(str(exc.orig) if exc.orig is not None else str(exc), engine.url)
        raise RegisterError(
            f"cannot reach the register {describe_url(engine.url)}: {reason}. "
            f"Check {SETTING} and that the database server is running."
        ) from None


def check_register(engine: Engine) -> None:
    """``RegisterError`` unless the register is reachable and at this code's schema."""
    where = describe_url(engine.url)
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise RegisterError(
            f"{where} holds no sipflows register (no schema). Create it with `sipflows db upgrade`, "
            f"or point {SETTING} at the register."
        )
    if current in _known_revisions():
        raise RegisterError(
            f"the register {where} is at schema revision {current}; this sipflows needs {head}. "
            "Run `sipflows db upgrade`."
        )
    raise RegisterError(
        f"the register {where} is at schema revision {current}, which this sipflows does not know "
        f"(a newer sipflows migrated it): upgrade sipflows here, or check {SETTING}."
    )


def open_register(url: str | None = None) -> Engine:
    """The configured register, which must exist at this code's schema; creates nothing.

    ``RegisterError`` (naming ``SIPFLOWS_DATABASE_URL``) when the SQLite file does not exist, the
    database cannot be reached, holds no register, or needs ``sipflows db upgrade``.
    """
    from sipflows.settings import get_settings

    url = url or get_settings().sqlalchemy_url()
    parsed = _parse(url)
    path = _sqlite_file(parsed)
    if path is not None and not path.is_file():
        raise RegisterError(
            f"there is no register at {path.resolve()} ({SETTING}={describe_url(parsed)}). "
            f"Create it with `sipflows db upgrade`, or set {SETTING} to the register's URL."
        )
    engine = make_engine(url)
    try:
        check_register(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade_register(url: str | None = None) -> Engine:
    """Create the register if it is not there (an SQLite file and its folder) and migrate it to head."""
    from sipflows.settings import get_settings

    url = url or get_settings().sqlalchemy_url()
    _parse(url)
    engine = make_engine(url)
    try:
        current_revision(engine)  # unreachable: say so in the same words as open_register
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def register(url: str | None = None, *, create: bool = False) -> Iterator[Engine]:
    """The register for one command or flow run: opened (created or migrated first with ``create``), and
    its connections closed when the run is done, whatever happened. Raises ``RegisterError`` as
    :func:`open_register` / :func:`upgrade_register` do."""
    engine = upgrade_register(url) if create else open_register(url)
    try:
        yield engine
    finally:
        engine.dispose()

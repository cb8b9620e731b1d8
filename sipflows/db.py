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

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).with_name("migrations")

log = logging.getLogger(__name__)


def _sqlite_pragma(dbapi_connection: Any, statement: str) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(statement)
    cur.close()


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


@contextmanager
def driver_cursor(conn: Connection, sql: str) -> Iterator[Any]:
    """The database driver's own cursor on ``conn``'s connection, for what SQLAlchemy does not pass on
    (``executemany`` run in C, ``COPY``), in ``conn``'s transaction; closed after. The driver's errors
    are raised as SQLAlchemy raises them (an ``IntegrityError``, a ``DataError`` naming ``sql``), so
    callers handle one kind of error whichever way a statement went."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        yield cursor
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi_error) from exc
    finally:
        cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work that writes: one transaction, committed on success, rolled back on any error
    (nothing half-written). Every operation that changes the register opens its transaction here."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def trial_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work that is always rolled back: the operation sees its own writes, the register keeps
    none of them (an import's dry run). No savepoints: pysqlite's SAVEPOINT outside its own transaction
    handling would commit."""
    with Session(engine, expire_on_commit=False) as session:
        session.begin()
        try:
            yield session
        finally:
            session.rollback()


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work that only reads: one transaction, rolled back at the end, in which the database
    refuses any write (PostgreSQL: a read-only transaction; SQLite: ``PRAGMA query_only``, set back
    before the connection returns to the pool). Reports, checks without enqueueing and status use it."""
    with Session(engine, expire_on_commit=False) as session:
        conn = session.connection()
        if engine.dialect.name != "sqlite":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield session
            return
        raw = conn.connection.dbapi_connection  # the pooled connection the session holds until it closes
        _sqlite_pragma(raw, "PRAGMA query_only = ON")
        try:
            yield session
        finally:
            if not conn.invalidated:
                _sqlite_pragma(raw, "PRAGMA query_only = OFF")  # before it goes back to the pool


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
    """Create the register if it is not there (an SQLite file and its folder), migrate it to head and
    give the planner statistics for what it holds (:func:`ensure_statistics`)."""
    from sipflows.settings import get_settings

    url = url or get_settings().sqlalchemy_url()
    _parse(url)
    engine = make_engine(url)
    try:
        current_revision(engine)  # unreachable: say so in the same words as open_register
        migrate(engine)
        ensure_statistics(engine)
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


# -- planner statistics ------------------------------------------------------------------------------
#
# The checks' plans depend on the planner knowing how big the tables are. SQLite has no statistics
# until someone runs ANALYZE (and never runs it by itself); PostgreSQL's autovacuum gets there, but
# only some time after a bulk import. So the register refreshes them itself where it changes: after
# ``sipflows db upgrade``, after an import, and at the start of every sweep. Cheap when nothing
# changed (one small catalogue query and one ``max(id)`` index probe per table); when a table is stale
# SQLite reads it whole (seconds at county scale) and PostgreSQL's ANALYZE samples 30,000 rows of it.

# A table's statistics are stale when it has grown by this factor (plus a margin for small tables) since
# they were taken, or (PostgreSQL, which counts them) when this share of its rows changed.
STALE_GROWTH = 1.5
STALE_MARGIN = 1000
STALE_CHANGED = 0.2
# No ``PRAGMA analysis_limit`` on SQLite: an approximate ANALYZE (limit 1000) took milliseconds but
# counted ~1,000 distinct values in ``meetings.status`` and so led the documentation check to the slow
# plan that having no statistics gives. A full ANALYZE runs only when a table is stale.


def _register_tables() -> list[str]:
    from sipflows.models import Base

    return [t.name for t in Base.metadata.sorted_tables]


def _approx_rows(conn: Connection, table: str) -> int:
    """Rows ever in ``table``: its highest id (one probe of the primary key; ids only grow)."""
    return int(conn.execute(text(f'SELECT coalesce(max(id), 0) FROM "{table}"')).scalar_one())


def _stale_sqlite(conn: Connection, tables: list[str]) -> list[str]:
    has_stat = conn.execute(
        text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
    ).scalar_one()
    analyzed: dict[str, int] = {}
    if has_stat:
        for tbl, stat in conn.execute(text("SELECT tbl, stat FROM sqlite_stat1")).tuples():
            rows = int(str(stat or "0").split()[0] or 0)
            analyzed[tbl] = max(analyzed.get(tbl, 0), rows)
    stale = []
    for table in tables:
        rows = _approx_rows(conn, table)
        if rows and (table not in analyzed or rows > STALE_GROWTH * analyzed[table] + STALE_MARGIN):
            stale.append(table)
    return stale


def _stale_postgresql(conn: Connection, tables: list[str]) -> list[str]:
    sql = text(
        "SELECT c.relname, c.reltuples, s.n_mod_since_analyze, "
        "       coalesce(s.last_analyze, s.last_autoanalyze) IS NOT NULL "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
    )
    known = {name: (float(tuples), mods, analyzed) for name, tuples, mods, analyzed in conn.execute(sql)}
    stale = []
    for table in tables:
        if table not in known:
            continue
        tuples, mods, analyzed = known[table]
        rows = _approx_rows(conn, table)
        if not rows:
            continue
        if (
            (tuples < 0 and not analyzed)  # never analyzed (nor vacuumed)
            or rows > STALE_GROWTH * max(tuples, 0) + STALE_MARGIN
            or (mods or 0) > STALE_CHANGED * max(tuples, 0) + STALE_MARGIN
        ):
            stale.append(table)
    return stale


def ensure_statistics(bind: Engine | Connection) -> list[str]:
    """Refresh the planner statistics of the register's tables that have none or stale ones.

    Returns the tables analysed (none when all were fresh). Given an engine it commits on its own
    connection; given a connection it works in that connection's transaction (the caller commits).
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return ensure_statistics(conn)
    dialect = bind.dialect.name
    tables = _register_tables()
    if dialect == "sqlite":
        stale = _stale_sqlite(bind, tables)
        for table in stale:  # a full ANALYZE (no analysis_limit, see above)
            bind.execute(text(f'ANALYZE "{table}"'))
    elif dialect == "postgresql":
        stale = _stale_postgresql(bind, tables)
        if stale:
            bind.execute(text("ANALYZE " + ", ".join(f'"{t}"' for t in stale)))
    else:
        return []
    if stale:
        log.info("planner statistics refreshed for %s", ", ".join(stale))
    return stale

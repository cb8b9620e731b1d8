"""Configuration mistakes stop with a message naming what a person sets, and change nothing.

A register that is not there is an error (only ``sipflows db upgrade``, the demo and the quickstart
create one), an unreachable database is named without its password, a wrong setting is named as its
environment variable, and a dispatch whose mail server is down exits non-zero with nothing lost.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from sipflows.cli import app
from sipflows.db import RegisterError, make_engine, migrate, open_register, upgrade_register
from sipflows.models import NoticeStatus
from sipflows.settings import SettingsError, get_settings, load_settings
from tests.conftest import PG_URL
from tests.test_dispatch import NOW, add, draft, ledger

runner = CliRunner()

# every command that reads or writes the register (the quickstart and the demo create one instead)
REGISTER_COMMANDS = [
    ["status"],
    ["notices", "list"],
    ["notices", "dispatch"],
    ["notices", "requeue", "--all-dead"],
    ["sweep", "--date", "2026-11-19"],
    ["import", "examples/import/"],
    ["report", "--from", "2026-01-01", "--to", "2026-06-30"],
    ["replies", "answer", "MEETING-1", "CONTACT-1", "accepted"],
    ["meeting", "cancel", "MEETING-1"],
    ["case", "close", "SIP-1", "--on", "2026-11-19"],
    ["case", "origin", "SIP-1", "discharge", "--discharged-on", "2026-11-19"],
    ["case", "under-18", "SIP-1", "yes"],
    ["policy", "show"],
    ["policy", "check", "examples/policy.toml"],
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("SIPFLOWS_DATABASE_URL", "SIPFLOWS_POLICY_FILE", "SIPFLOWS_TRANSPORT", "SIPFLOWS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _set(env: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        env.setenv(name, value)
    get_settings.cache_clear()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- a register that is not there


@pytest.mark.parametrize("command", REGISTER_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_refuses_a_register_that_is_not_there(command, env, tmp_path: Path):
    missing = tmp_path / "typo" / "sipflows.sqlite"
    _set(env, SIPFLOWS_DATABASE_URL=f"sqlite:///{missing}")
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "SIPFLOWS_DATABASE_URL" in result.output and "sipflows db upgrade" in result.output
    assert str(missing) in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not missing.exists() and not missing.parent.exists()  # nothing created


def test_the_default_register_is_not_made_up_either(env, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "data/sipflows.sqlite" in result.output and "SIPFLOWS_DATABASE_URL" in result.output
    assert not (tmp_path / "data").exists()


def test_db_upgrade_creates_the_register_and_commands_work_on_it(env, tmp_path: Path):
    register = tmp_path / "new" / "sipflows.sqlite"
    _set(env, SIPFLOWS_DATABASE_URL=f"sqlite:///{register}")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert register.is_file() and "schema revision" in result.output
    again = runner.invoke(app, ["db", "upgrade"])  # idempotent
    assert again.exit_code == 0, again.output
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "pending" in status.output


def test_the_demo_creates_its_register(env, tmp_path: Path):
    register = tmp_path / "demo.sqlite"
    _set(env, SIPFLOWS_DATABASE_URL=f"sqlite:///{register}")
    result = runner.invoke(app, ["demo", "--date", "2026-11-24"])
    assert result.exit_code == 0, result.output
    assert register.is_file()
    assert runner.invoke(app, ["status"]).exit_code == 0


def test_open_register_creates_nothing_and_upgrade_register_does(tmp_path: Path):
    path = tmp_path / "r.sqlite"
    with pytest.raises(RegisterError, match="SIPFLOWS_DATABASE_URL"):
        open_register(f"sqlite:///{path}")
    assert not path.exists()
    upgrade_register(f"sqlite:///{path}").dispose()
    open_register(f"sqlite:///{path}").dispose()


def test_a_register_of_an_unknown_schema_revision_is_named(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.sqlite'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    with pytest.raises(RegisterError, match="revision ffff, which this sipflows does not know"):
        open_register(f"sqlite:///{tmp_path / 'r.sqlite'}")


def test_a_register_file_without_a_schema_needs_db_upgrade(tmp_path: Path):
    path = tmp_path / "empty.sqlite"
    make_engine(f"sqlite:///{path}").connect().close()  # an empty SQLite file
    with pytest.raises(RegisterError, match="holds no sipflows register") as raised:
        open_register(f"sqlite:///{path}")
    assert "sipflows db upgrade" in str(raised.value)


def test_an_unreachable_postgresql_is_named_without_its_password(env):
    url = f"postgresql+psycopg://sip:Hemligt-pg-9912@127.0.0.1:{closed_port()}/sip"
    _set(env, SIPFLOWS_DATABASE_URL=url)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "cannot reach the register postgresql+psycopg://sip:***@127.0.0.1" in result.output
    assert "SIPFLOWS_DATABASE_URL" in result.output
    assert "Hemligt-pg-9912" not in result.output
    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 2 and "Hemligt-pg-9912" not in up.output and "cannot reach" in up.output


@pytest.mark.skipif(not PG_URL, reason="SIPFLOWS_TEST_POSTGRES_URL not set")
def test_an_empty_postgresql_database_needs_db_upgrade(env):
    assert PG_URL
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        _set(env, SIPFLOWS_DATABASE_URL=url.render_as_string(hide_password=False))
        refused = runner.invoke(app, ["status"])
        assert refused.exit_code == 2 and "holds no sipflows register" in refused.output
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        assert runner.invoke(app, ["status"]).exit_code == 0
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


# -------------------------------------------------------------------------------- settings, by their name


def test_a_wrong_setting_is_named_as_its_environment_variable(env):
    _set(env, SIPFLOWS_SMTP_PORT="twenty-five", SIPFLOWS_MAX_ATTEMPTS="0", SIPFLOWS_SMTP_PASSWORD="pw-4411")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    text_ = str(raised.value)
    assert "SIPFLOWS_SMTP_PORT: Input should be a valid integer" in text_ and "'twenty-five'" in text_
    assert "SIPFLOWS_MAX_ATTEMPTS: Input should be greater than or equal to 1" in text_
    assert "smtp_port" not in text_ and "pw-4411" not in text_

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "SIPFLOWS_SMTP_PORT" in result.output and "smtp_port" not in result.output


def test_a_wrong_choice_is_named_with_the_value_given(env):
    _set(env, SIPFLOWS_TRANSPORT="carrier-pigeon")
    result = runner.invoke(app, ["notices", "list"])
    assert result.exit_code == 2
    wanted = "Input should be 'outbox', 'smtp', 'exchange' or 'graph' (got 'carrier-pigeon')"
    assert f"SIPFLOWS_TRANSPORT: {wanted}" in result.output


# -------------------------------------------------------------------------- dispatch with the server down


def test_cli_dispatch_exits_non_zero_when_the_mail_server_is_down(engine, db_url, env):
    add(engine, [draft(1), draft(2)])
    port = closed_port()
    _set(
        env,
        SIPFLOWS_DATABASE_URL=db_url,
        SIPFLOWS_TRANSPORT="smtp",
        SIPFLOWS_SMTP_HOST="127.0.0.1",
        SIPFLOWS_SMTP_PORT=str(port),
        SIPFLOWS_SMTP_PASSWORD="smtp-pw-7731",
        SIPFLOWS_SMTP_USERNAME="sip",
    )
    result = runner.invoke(app, ["notices", "dispatch", "--now", NOW.isoformat()])
    assert result.exit_code == 3
    assert f"SMTP 127.0.0.1:{port}" in result.output
    assert "check SIPFLOWS_SMTP_HOST, SIPFLOWS_SMTP_PORT" in result.output
    assert "2 claimed notices were given back untouched" in result.output
    assert "smtp-pw-7731" not in result.output
    assert {(n.status, n.attempts) for n in ledger(engine).values()} == {(NoticeStatus.PENDING, 0)}

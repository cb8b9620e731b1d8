"""Helpers shared by the CLI modules: the register, the policy and error output.

Configuration errors (a register that is not there, a wrong setting, an invalid policy) end the command
with exit code 2 and one message on stderr that names what to set or run; never a traceback.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import NoReturn

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sipflows.db import RegisterError, open_register, upgrade_register
from sipflows.policy import EffectivePolicy, PolicyError, check_organisations_in, load_policy
from sipflows.settings import get_settings
from sipflows.timeutil import local_date

CONFIGURATION_ERROR = 2  # exit code: a setting, the register or the policy needs fixing


def fail(message: str, code: int = CONFIGURATION_ERROR) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def register_engine(database_url: str | None = None) -> Engine:
    """The configured register, which must exist at this code's schema (``sipflows db upgrade``)."""
    try:
        return open_register(database_url)
    except RegisterError as exc:
        fail(str(exc))


def created_register_engine(database_url: str | None = None) -> Engine:
    """The register, created or migrated first (for the commands allowed to: db upgrade, demo)."""
    try:
        return upgrade_register(database_url)
    except RegisterError as exc:
        fail(str(exc))


def effective_policy() -> EffectivePolicy:
    """Defaults < the settings' policy file (the Prefect Variable layer is added by the flows)."""
    return load_policy(get_settings().policy_file)


def require_known_organisations(engine: Engine, policy: EffectivePolicy) -> None:
    """Stop (exit 2) when the policy overrides an organisation code the register does not hold."""
    try:
        with Session(engine) as session:
            check_organisations_in(session, policy)
    except PolicyError as exc:
        engine.dispose()
        fail(f"invalid policy:\n{exc}")


def parse_date(value: str, option: str = "--date") -> date:
    """A ``YYYY-MM-DD`` option value (or ``today``: the local date in Stockholm), or a usage error."""
    if value.strip().lower() == "today":
        return local_date(datetime.now(UTC))  # the CLI edge: the one place the clock is read for it
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date 'YYYY-MM-DD'", param_hint=option) from None

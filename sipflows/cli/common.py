"""Helpers shared by the CLI modules: the register, the policy and error output.

Configuration errors (a register that is not there, a wrong setting, an invalid policy) end the command
with exit code 2 and one message on stderr that names what to set or run; never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from typing import Any, NoReturn

import typer
from sqlalchemy import Engine

from sipflows.db import RegisterError, read_scope, register
from sipflows.policy import EffectivePolicy, PolicyError, check_organisations_in, load_policy
from sipflows.settings import get_settings
from sipflows.timeutil import local_date

CONFIGURATION_ERROR = 2  # exit code: a setting, the register or the policy needs fixing


def fail(message: str, code: int = CONFIGURATION_ERROR) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def prefect_secret(block_name: str) -> object:
    """The value of a Prefect Secret block, for Exchange or Graph credentials kept in Prefect."""
    from prefect.blocks.system import Secret  # only where a credentials block is configured

    block: Any = Secret.load(block_name)  # sync here; typed as maybe-awaitable by Prefect
    return block.get()


@contextmanager
def command_register(database_url: str | None = None, *, create: bool = False) -> Iterator[Engine]:
    """The configured register for one command, closed after it; it must exist at this code's schema
    (``sipflows db upgrade``) unless ``create`` (for the commands allowed to: db upgrade, demo)."""
    with ExitStack() as stack:
        try:
            engine = stack.enter_context(register(database_url, create=create))
        except RegisterError as exc:
            fail(str(exc))
        yield engine


def effective_policy() -> EffectivePolicy:
    """Defaults < the settings' policy file (the Prefect Variable layer is added by the flows)."""
    return load_policy(get_settings().policy_file)


def require_known_organisations(engine: Engine, policy: EffectivePolicy) -> None:
    """Stop (exit 2) when the policy overrides an organisation code the register does not hold."""
    try:
        with read_scope(engine) as session:
            check_organisations_in(session, policy)
    except PolicyError as exc:
        fail(f"invalid policy:\n{exc}")


def parse_date(value: str, option: str = "--date") -> date:
    """A ``YYYY-MM-DD`` option value (or ``today``: the local date in Stockholm), or a usage error."""
    if value.strip().lower() == "today":
        return local_date(datetime.now(UTC))  # the CLI edge: the one place the clock is read for it
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date 'YYYY-MM-DD'", param_hint=option) from None

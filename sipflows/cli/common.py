"""Helpers shared by the CLI modules: the register, the policy and error output."""

from __future__ import annotations

from datetime import date

import typer
from sqlalchemy import Engine

from sipflows.db import open_register
from sipflows.policy import EffectivePolicy, load_policy
from sipflows.settings import get_settings


def register_engine(database_url: str | None = None) -> Engine:
    """The configured register, migrated to head."""
    return open_register(database_url)


def effective_policy() -> EffectivePolicy:
    """Defaults < the settings' policy file (the Prefect Variable layer is added by the flows)."""
    return load_policy(get_settings().policy_file)


def parse_date(value: str, option: str = "--date") -> date:
    """A ``YYYY-MM-DD`` option value, or a usage error naming the option."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date 'YYYY-MM-DD'", param_hint=option) from None

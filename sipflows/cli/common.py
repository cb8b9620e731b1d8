"""Helpers shared by the CLI modules: the register, the policy and error output."""

from __future__ import annotations

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

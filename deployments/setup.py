"""Prepare a Prefect server for sipflows: transport limits, the alert block and the automations.

    python -m deployments.setup        # after `prefect deploy --all`, from a checkout (several machines)

``deployments.serve`` does the same on a single machine. Safe to run again: what exists is kept (the
transport limits, which an operator may have raised) or brought up to date by name (the automations).
"""

from __future__ import annotations

import sys

import typer

from deployments.alerts import AlertSetupError, apply_alerts
from flows.dispatch import ensure_transport_limits
from sipflows.settings import Settings, SettingsError, load_settings


def prepare_server(settings: Settings) -> list[str]:
    """Everything the flows expect on the Prefect server; returns what it did, one line each."""
    created = ensure_transport_limits()
    lines = [
        f"transport concurrency limits created: {', '.join(created)}"
        if created
        else "transport limits in place"
    ]
    lines += apply_alerts(settings).lines()
    return lines


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


def main() -> None:
    settings = settings_or_exit()
    try:
        lines = prepare_server(settings)
    except AlertSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for line in lines:
        typer.echo(line)


if __name__ == "__main__":
    main()

"""``sipflows policy show`` and ``sipflows policy check FILE``: what administrators use to set deadlines."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import typer

from sipflows.cli.common import command_register, require_known_organisations
from sipflows.db import read_scope
from sipflows.policy import (
    Layer,
    PolicyError,
    build_policy,
    check_organisations_in,
    descriptions,
    load_policy,
    read_policy_file,
)
from sipflows.settings import get_settings

policy_app = typer.Typer(help="The deadline policy: show the effective values, check a file.")


@policy_app.command("show")
def show(
    file: Path | None = typer.Option(
        None, "--file", help="Policy TOML file (default: SIPFLOWS_POLICY_FILE)."
    ),
    organisation: str | None = typer.Option(None, "--organisation", help="Show one organisation's values."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    explain: bool = typer.Option(
        False, "--explain", help="Print under each value what it means and where it comes from."
    ),
) -> None:
    """Print the effective policy and where each value came from."""
    try:
        effective = load_policy(file or get_settings().policy_file)
    except PolicyError as exc:
        typer.echo(f"invalid policy:\n{exc}", err=True)
        raise typer.Exit(2) from None
    with command_register() as engine:  # an override for an organisation the register lacks is refused
        require_known_organisations(engine, effective)
    if as_json:
        typer.echo(json.dumps(effective.as_dict(), indent=2, ensure_ascii=False))
        return
    rows = effective.describe_for(organisation) if organisation else effective.describe()
    width = max(len(r[1]) for r in rows)
    typer.echo(f"{'scope':<12} {'key':<{width}}  {'value':>8}  source")
    meanings = descriptions() if explain else {}
    for scope, key, value, source in rows:
        typer.echo(f"{scope:<12} {key:<{width}}  {value!s:>8}  {source}")
        if key in meanings:
            typer.echo(
                textwrap.fill(meanings[key], width=100, initial_indent="    ", subsequent_indent="    ")
            )
    typer.echo("\nPrefect runs add the Prefect Variable layer on top (see the flow's logs for what it used).")


@policy_app.command("check")
def check(file: Path = typer.Argument(..., help="The policy TOML file to validate.")) -> None:
    """Validate a policy file without applying it; exit 1 and name every bad key if it is invalid.

    Organisation overrides are checked against the register (SIPFLOWS_DATABASE_URL): a code it does not
    hold is refused, since that override would never apply.
    """
    try:
        effective = build_policy([Layer(str(file), read_policy_file(file))])
    except PolicyError as exc:
        typer.echo(f"invalid policy:\n{exc}", err=True)
        raise typer.Exit(1) from None
    with command_register() as engine:
        try:
            with read_scope(engine) as session:
                check_organisations_in(session, effective)
        except PolicyError as exc:
            typer.echo(f"invalid policy:\n{exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{file}: valid")


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")

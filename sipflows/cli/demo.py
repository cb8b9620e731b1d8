"""CLI commands: ``sipflows demo`` — load the Västra Mälardalen demo region into the register."""

from __future__ import annotations

from typing import Annotated

import typer

from sipflows.cli.common import command_register, effective_policy, parse_date
from sipflows.db import session_scope
from sipflows.demo import DEMO_DATE, build_demo


def demo_command(
    on: Annotated[
        str,
        typer.Option(
            "--date", help="The day the demo is laid out for (the sweep's judged date); 'today' for today."
        ),
    ] = DEMO_DATE.isoformat(),
    database_url: Annotated[
        str | None, typer.Option(help="Register URL; default from SIPFLOWS_ settings.")
    ] = None,
) -> None:
    """Load the demo region (idempotent; another --date moves its timeline) and print what is due.

    Creates the register (SIPFLOWS_DATABASE_URL) if it is not there, like ``sipflows db upgrade``.
    """
    today = parse_date(on)
    policy = effective_policy()
    with command_register(database_url, create=True) as engine, session_scope(engine) as session:
        summary = build_demo(session, today, policy=policy)
    for line in summary.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)

"""``sipflows db upgrade``: create the register or bring its schema up to this version of sipflows.

The only command (besides the quickstart and the demo) that creates a register: every other command and
flow refuses a register that is not there, so a mistyped ``SIPFLOWS_DATABASE_URL`` never quietly starts
an empty one.
"""

from __future__ import annotations

import typer

from sipflows.cli.common import command_register
from sipflows.db import current_revision, describe_url

db_app = typer.Typer(help="The register's schema: create it, or migrate it after an upgrade of sipflows.")


@db_app.command("upgrade")
def upgrade(
    database_url: str | None = typer.Option(None, "--database-url", help="Default: SIPFLOWS_DATABASE_URL."),
) -> None:
    """Create the register (SIPFLOWS_DATABASE_URL) if it is not there and migrate it to the newest schema."""
    with command_register(database_url, create=True) as engine:
        revision = current_revision(engine)
        typer.echo(f"register {describe_url(engine.url)} is at schema revision {revision} (the newest)")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

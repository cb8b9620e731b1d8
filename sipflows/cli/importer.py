"""CLI commands: ``sipflows import PATH...`` — CSV files (or folders of them) into the register."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sipflows.cli.common import command_register
from sipflows.importer import ImportErrors, ImportReport, import_files


def _print_files(report: ImportReport) -> None:
    for f in report.files:
        line = f"{f.path}: {f.rows} rows: {f.inserted} new, {f.updated} updated, {f.unchanged} unchanged"
        if f.cancelled_meetings:
            line += f"; {f.cancelled_meetings} future meetings of ended plans cancelled"
        typer.echo(line)


def import_command(
    paths: Annotated[list[Path], typer.Argument(help="CSV files or folders (see docs/import-format.md).")],
    database_url: Annotated[
        str | None, typer.Option(help="Register URL; default from SIPFLOWS_ settings.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything, write nothing.")] = False,
) -> None:
    """Import organisations, closed days, contacts, cases, participants, meetings, invitations, deviations.

    Each file is imported whole or not at all; the first file with errors stops the rest."""
    with command_register(database_url) as engine:
        # the command line is the edge of the system: the one place the import reads the clock
        now = datetime.now(UTC)
        try:
            report = import_files(engine, paths, now, dry_run=dry_run)
        except ImportErrors as exc:
            for error in exc.errors:
                typer.echo(str(error), err=True)
            _print_files(exc.report)
            typer.echo(f"{len(exc.errors)} error(s); nothing of the failing file was written.", err=True)
            if exc.report.files:
                verb = "validated" if dry_run else "imported"
                typer.echo(f"Files {verb}: {', '.join(exc.report.imported)}", err=True)
            if exc.report.failed:
                typer.echo(f"Not imported: {exc.report.failed} (errors)", err=True)
            if exc.report.not_attempted:
                typer.echo(f"Not attempted: {', '.join(exc.report.not_attempted)}", err=True)
            raise typer.Exit(1) from None
    _print_files(report)
    if dry_run:
        typer.echo("Dry run: everything is valid; nothing was written.")


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)

"""CLI commands: report — the statistics report for a period, as a folder of HTML, charts and CSV."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from sipflows.cli.common import command_register, effective_policy, require_known_organisations
from sipflows.db import read_scope
from sipflows.models import Language
from sipflows.policy import PolicyError
from sipflows.report import key_figures, write_report
from sipflows.stats import Period, UnknownOrganisation, compute_stats
from sipflows.timeutil import STOCKHOLM

DATE_FORMATS = ["%Y-%m-%d"]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def report(
    from_: Annotated[
        datetime, typer.Option("--from", formats=DATE_FORMATS, help="First day of the period (YYYY-MM-DD).")
    ],
    to: Annotated[
        datetime,
        typer.Option("--to", formats=DATE_FORMATS, help="Last day of the period, included (YYYY-MM-DD)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write index.html, charts/ and figures.csv into.")
    ] = Path("report"),
    organisation: Annotated[
        list[str] | None,
        typer.Option("--organisation", help="Limit to this organisation code (repeat for several)."),
    ] = None,
    language: Annotated[Language, typer.Option("--language", help="Language of the report.")] = Language.SV,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=DATE_FORMATS,
            help="Judge pending documentation on this day (default: today in Stockholm).",
        ),
    ] = None,
) -> None:
    """Write the SIP statistics report for a period: figures per organisation and in total, with charts."""
    try:
        period = Period(from_.date(), to.date())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    judged: date = as_of.date() if as_of else datetime.now(STOCKHOLM).date()
    try:
        policy = effective_policy()
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    with command_register() as engine:
        require_known_organisations(engine, policy)
        try:
            with read_scope(engine) as session:
                stats = compute_stats(session, period, policy, organisations=organisation or (), as_of=judged)
            folder = write_report(stats, out, language.value, generated_at=datetime.now(STOCKHOLM))
        except UnknownOrganisation as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:
            raise _fail(f"cannot write the report to {out}: {exc}") from None
    typer.echo(f"report written to {folder.index_html}")
    for label, value in key_figures(stats, language.value):
        typer.echo(f"  {label}: {value}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)

"""``sipflows sweep``: what the checks find for a date, without sending or enqueueing anything.

Prints one table per check (plan reference, stage, object, due date, number of recipients) and totals per
check and stage. Only references and ids are shown: no names, no personal identity numbers, no free text.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Annotated

import typer

from sipflows.checks import CHECK_NAMES, Finding, run_checks
from sipflows.cli.common import (
    command_register,
    effective_policy,
    parse_date,
    require_known_organisations,
)
from sipflows.db import read_scope
from sipflows.policy import PolicyError
from sipflows.stages import stage_family
from sipflows.sweep import unknown_checks
from sipflows.timeutil import STOCKHOLM

HEADERS = ("reference", "stage", "object", "due", "recipients")
_CHECK_HELP = f"Run only this check (repeatable): {', '.join(CHECK_NAMES)}."


def _parse_date(value: str | None) -> date:
    if value is None:
        # the only place the wall clock is read: the CLI edge, in Stockholm
        return datetime.now(STOCKHOLM).date()
    return parse_date(value)


def _rows(findings: list[Finding]) -> list[tuple[str, ...]]:
    return [
        (
            f.case_reference,
            f.stage,
            f"{f.object_type} {f.object_id}",
            f.due.isoformat() if f.due else "-",
            str(len(f.recipients)),
        )
        for f in findings
    ]


def format_table(rows: list[tuple[str, ...]], headers: tuple[str, ...] = HEADERS) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*headers).rstrip(), line.format(*("-" * w for w in widths))] + [
        line.format(*r).rstrip() for r in rows
    ]


def render(judged: date, findings: dict[str, list[Finding]]) -> str:
    """The sweep report as plain text (also what the tests read)."""
    out = [f"sweep for {judged.isoformat()} (Europe/Stockholm)", ""]
    for name, found in findings.items():
        out.append(f"{name}: {len(found)} finding{'s' if len(found) != 1 else ''}")
        if found:
            out.extend(f"  {line}" for line in format_table(_rows(found)))
            per_stage = Counter(stage_family(f.stage) for f in found)
            out.append("  total per stage: " + ", ".join(f"{s} {n}" for s, n in sorted(per_stage.items())))
        out.append("")
    total = sum(len(f) for f in findings.values())
    out.append(f"total: {total} finding{'s' if total != 1 else ''}")
    return "\n".join(out)


def sweep(
    on: Annotated[
        str | None,
        typer.Option("--date", help="Local date to judge, YYYY-MM-DD (default: today in Europe/Stockholm)."),
    ] = None,
    checks: Annotated[list[str] | None, typer.Option("--check", help=_CHECK_HELP)] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="SQLAlchemy URL of the register (default: SIPFLOWS_DATABASE_URL)."
        ),
    ] = None,
) -> None:
    """Show what every check finds for a date: nothing is enqueued or sent."""
    judged = _parse_date(on)
    unknown = unknown_checks(checks)
    if unknown:
        typer.echo(f"unknown check {', '.join(unknown)}; known: {', '.join(CHECK_NAMES)}", err=True)
        raise typer.Exit(2)
    try:
        policy = effective_policy()
    except PolicyError as exc:
        typer.echo(f"invalid policy:\n{exc}", err=True)
        raise typer.Exit(2) from None
    with command_register(database_url) as engine:
        require_known_organisations(engine, policy)
        with read_scope(engine) as session:
            findings = run_checks(session, judged, policy, only=checks or None)
    typer.echo(render(judged, findings))


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)

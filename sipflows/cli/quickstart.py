"""CLI command: ``sipflows quickstart`` — the demo region through the real flows, into ``./outbox``."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from sipflows.cli.common import parse_date
from sipflows.db import register as open_register
from sipflows.db import session_scope
from sipflows.demo import build_demo
from sipflows.policy import PolicyError, load_policy
from sipflows.quickstart import QuickstartReport, outbox_files, pick_demo_date, quickstart_environment
from sipflows.settings import get_settings
from sipflows.timeutil import local_date


def quickstart(
    on: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="Lay the demo out for this day (default: the day chosen on the first run, "
            "or the first working day from today).",
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Folder for the SQLite register.")] = Path("data"),
    outbox_dir: Annotated[Path, typer.Option(help="Folder the notices are written to.")] = Path("outbox"),
) -> None:
    """Load the demo region, run the invitations, daily sweep and dispatch flows, write ./outbox.

    Always on a local SQLite file and the outbox transport: nothing leaves the machine, and a configured
    production database is never touched. Running it again sends nothing new.
    """
    started = time.monotonic()
    requested = None if on is None else parse_date(on)
    # the one place the quickstart reads the clock: to choose the demo's day on its first run
    try:
        demo_date, chosen = pick_demo_date(data_dir, local_date(datetime.now().astimezone()), requested)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    env = quickstart_environment(data_dir, outbox_dir)
    os.environ.update(env)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its temporary server 20 s; a first start migrates its database, which on a busy
    # laptop (or CI) takes longer and failed the quickstart with "Timed out … ephemeral Prefect API"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    get_settings.cache_clear()
    settings = get_settings()
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    typer.echo(
        f"Demo day {demo_date.isoformat()} ({'chosen now' if chosen else 'kept from the first run'}); "
        f"register {env['SIPFLOWS_DATABASE_URL']}"
    )
    # creates and migrates the SQLite file
    with open_register(env["SIPFLOWS_DATABASE_URL"], create=True) as engine, session_scope(engine) as session:
        build_demo(session, demo_date, policy=policy, mail_domain=settings.mail_domain)
    before = len(outbox_files(outbox_dir))

    typer.echo("Running the flows through Prefect (a temporary local API starts first) …")
    # the flows are the top layer: import them only here, so the library never depends on them
    from flows.daily_sweep import SweepParameters, daily_sweep
    from flows.dispatch import dispatch_notices, ensure_transport_limits
    from flows.invitations import sync_meeting_invitations

    ensure_transport_limits()  # as a served installation has them: dispatch takes the outbox's slot
    invitations = sync_meeting_invitations()
    sweep = daily_sweep(SweepParameters(date=demo_date))
    sent = dispatch_notices()

    report = QuickstartReport(
        demo_date=demo_date,
        database=env["SIPFLOWS_DATABASE_URL"],
        outbox_dir=Path(env["SIPFLOWS_OUTBOX_DIR"]),
        invitations=invitations,
        sweep=sweep,
        dispatch=sent,
        files_before=before,
        files=outbox_files(outbox_dir),
    )
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"\nDone in {time.monotonic() - started:.0f} s.")


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)

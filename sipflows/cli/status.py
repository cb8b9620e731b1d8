"""``sipflows status``: the ledger at a glance and the last sweep."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from sipflows.cli.common import command_register
from sipflows.db import read_scope
from sipflows.status import ledger_status
from sipflows.timeutil import local_datetime


def _local(dt: datetime | None) -> str:
    return local_datetime(dt).strftime("%Y-%m-%d %H:%M") if dt else "-"


def status(
    database_url: str | None = typer.Option(None, "--database-url", help="Default: SIPFLOWS_DATABASE_URL."),
) -> None:
    """Show pending, sent, failed and dead notices, the oldest pending one and the last sweep."""
    with command_register(database_url) as engine, read_scope(engine) as session:
        st = ledger_status(session)
    now = datetime.now(UTC)  # the CLI edge: only for "how old" in the display
    typer.echo("Notices")
    for name in ("pending", "sent", "failed", "dead"):
        typer.echo(f"  {name:<8} {st.counts[name]:>8}")
    age = st.oldest_pending_age_seconds(now)
    typer.echo(
        f"  oldest pending: {_local(st.oldest_pending_at)}"
        + (f" ({age / 60:.0f} min ago)" if age is not None else "")
    )
    typer.echo(f"  next retry:     {_local(st.next_retry_at)}")
    if st.last_sweep:
        s = st.last_sweep
        typer.echo(
            f"Last sweep: judged {s.judged_on}, started {_local(s.started_at)}, "
            f"finished {_local(s.finished_at) if s.finished_at else 'not finished'}, "
            f"{s.findings} findings, {s.enqueued} notices enqueued"
        )
    else:
        typer.echo("Last sweep: none yet")
    if st.recent_failures:
        typer.echo("Recent failures (newest first)")
        for key, kind, attempts, err in st.recent_failures:
            typer.echo(f"  {kind:<28} attempts={attempts:<2} {key}  {err[:120]}")


def register(app: typer.Typer) -> None:
    app.command("status")(status)

"""``sipflows notices dispatch`` and ``sipflows notices list``: send what is due, see what the ledger holds.

Neither prints a notice's body: operators see keys, kinds, addresses, states and errors only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy import func, select

from sipflows.cli.common import command_register, prefect_secret
from sipflows.db import session_scope
from sipflows.models import Notice, NoticeStatus
from sipflows.notices.dispatch import dispatch
from sipflows.notices.ledger import requeue_dead
from sipflows.settings import get_settings
from sipflows.transports.base import TransportUnavailable
from sipflows.transports.factory import make_transport

TRANSPORT_UNAVAILABLE = 3  # exit code of a dispatch stopped because the mail service cannot be used

notices_app = typer.Typer(
    help="The notice ledger: dispatch due notices, list what it holds, requeue dead ones."
)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)  # the CLI is the edge where the clock is read
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint="--now") from None
    if when.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2026-03-02T08:00+01:00", param_hint="--now")
    return when


@notices_app.command("dispatch")
def dispatch_command(
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Notices per batch (default: SIPFLOWS_BATCH_SIZE)."
    ),
    max_batches: int | None = typer.Option(
        None, "--max-batches", min=1, help="Stop after this many batches."
    ),
    now: str | None = typer.Option(None, "--now", help="Judge what is due at this ISO time (default: now)."),
) -> None:
    """Send every due notice through the configured transport (SIPFLOWS_TRANSPORT).

    Exits 3 when the transport cannot be used at all (server down, TLS or login refused): nothing is
    counted against the notices, which wait for the next dispatch.
    """
    settings = get_settings()
    when = _parse_now(now)
    try:
        transport = make_transport(settings, prefect_secret)
    except (ImportError, ValueError) as exc:
        typer.echo(f"cannot set up the {settings.transport} transport: {exc}", err=True)
        raise typer.Exit(2) from None
    with command_register() as engine:
        try:
            summary = dispatch(
                engine, transport, when, settings, batch_size=batch_size, max_batches=max_batches
            )
        except TransportUnavailable as exc:
            done = exc.summary
            sent = done.sent if done is not None else 0
            waiting = done.held_back if done is not None else 0
            typer.echo(
                f"error: dispatch stopped: {exc}\n"
                f"{sent} sent before it stopped; {waiting} claimed notices were given back untouched "
                "(no attempt counted) and wait for the next dispatch",
                err=True,
            )
            raise typer.Exit(TRANSPORT_UNAVAILABLE) from None
    typer.echo(
        f"via {transport.name}: {summary.sent} sent, "
        f"{summary.failed} failed (will retry), {summary.dead} dead"
    )
    dead = set(summary.dead_ids)
    for f in summary.failures:
        state = "dead " if f.notice_id in dead else "retry"
        typer.echo(f"  {state} {f.key} ({f.kind}): {f.reason}")


@notices_app.command("list")
def list_command(
    status: Annotated[
        NoticeStatus | None, typer.Option("--status", help="Only notices in this state.")
    ] = None,
    limit: int = typer.Option(100, "--limit", min=1, help="Show at most this many (oldest first)."),
) -> None:
    """Key, kind, state, attempts, last error and address of the ledger's notices (no bodies)."""
    with command_register() as engine, session_scope(engine) as session:
        where = [Notice.status == status] if status else []
        total = session.scalar(select(func.count()).select_from(Notice).where(*where)) or 0
        rows = session.execute(
            select(Notice.key, Notice.kind, Notice.status, Notice.attempts, Notice.last_error, Notice.address)
            .where(*where)
            .order_by(Notice.id)
            .limit(limit)
        ).all()
    if not rows:
        typer.echo("no notices" + (f" with status {status.value}" if status else ""))
        return
    kw = max(len("key"), *(len(r.key) for r in rows))
    dw = max(len("kind"), *(len(r.kind) for r in rows))
    typer.echo(f"{'key':<{kw}}  {'kind':<{dw}}  {'status':<7} {'tries':>5}  {'address':<30}  last error")
    for r in rows:
        error = " ".join((r.last_error or "").split())
        error = error if len(error) <= 80 else error[:79] + "…"
        typer.echo(
            f"{r.key:<{kw}}  {r.kind:<{dw}}  {r.status.value:<7} {r.attempts:>5}  {r.address:<30}  {error}"
        )
    if total > len(rows):
        typer.echo(f"… {total - len(rows)} more (use --limit)")


@notices_app.command("requeue")
def requeue_command(
    keys: Annotated[
        list[str] | None, typer.Argument(help="Keys of dead notices (see `notices list --status dead`).")
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Requeue every dead notice.")] = False,
) -> None:
    """Give dead notices new attempts once the cause is fixed (the address is read again from the contact)."""
    if not keys and not all_dead:
        raise typer.BadParameter("name the keys to requeue, or pass --all-dead", param_hint="KEYS")
    with command_register() as engine, session_scope(engine) as session:
        count = requeue_dead(session, _parse_now(None), None if all_dead else keys)
    typer.echo(f"{count} dead notice(s) requeued; the next dispatch sends them")
    missing = 0 if all_dead else len(set(keys or [])) - count
    if missing > 0:
        typer.echo(f"{missing} key(s) were not dead notices and were left alone", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(notices_app, name="notices")

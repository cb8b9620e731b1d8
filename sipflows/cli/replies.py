"""CLI commands: ``replies answer`` (an answer given by phone) and ``replies ingest`` (iTIP replies and the
attendee responses Exchange or Microsoft Graph track)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sipflows.cli.common import command_register, prefect_secret
from sipflows.db import session_scope
from sipflows.models import Answer
from sipflows.replies import (
    Outcome,
    PartialIngestError,
    RegisterLookupError,
    ReplyIngestError,
    ReplySummary,
    ingest_configured,
    ingest_folder,
    ingest_imap,
    record_phone_answer,
)
from sipflows.settings import get_settings
from sipflows.timeutil import from_local, local_datetime

AT_FORMAT = "%Y-%m-%d %H:%M"


class PhoneAnswer(enum.StrEnum):
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _parse_at(value: str, now: datetime) -> datetime:
    """Local Stockholm wall-clock time, as people say it on the phone; not in the future."""
    try:
        naive = datetime.strptime(value.strip(), AT_FORMAT)
    except ValueError:
        raise _fail(f"--at {value!r}: expected local time as YYYY-MM-DD HH:MM") from None
    at = from_local(naive.date(), naive.time())
    if at > now:
        raise _fail(f"--at {value}: lies in the future")
    return at


def answer(
    meeting_code: Annotated[str, typer.Argument(metavar="MEETING_CODE", help="The meeting's code.")],
    contact_code: Annotated[str, typer.Argument(metavar="CONTACT_CODE", help="The invited contact's code.")],
    given: Annotated[PhoneAnswer, typer.Argument(metavar="ANSWER", help="accepted, tentative or declined.")],
    at: Annotated[
        str | None, typer.Option("--at", help="When it was given, local time YYYY-MM-DD HH:MM (default now).")
    ] = None,
) -> None:
    """Record an answer to an invitation given by phone (or in person)."""
    now = datetime.now(UTC)
    answered_at = _parse_at(at, now) if at is not None else now
    with command_register() as engine:
        try:
            with session_scope(engine) as session:
                outcome = record_phone_answer(
                    session, meeting_code, contact_code, Answer(given.value), answered_at
                )
        except RegisterLookupError as exc:
            raise _fail(str(exc)) from None
    when = local_datetime(answered_at).strftime(AT_FORMAT)
    if outcome is Outcome.APPLIED:
        typer.echo(f"{meeting_code}: {contact_code} {given.value} (given {when})")
    elif outcome is Outcome.STALE:
        typer.echo(f"{meeting_code}: {contact_code} has a later answer on record; kept it (yours: {when})")
    elif outcome is Outcome.CANCELLED:
        typer.echo(f"{meeting_code}: not recorded, the meeting is cancelled")
    else:
        typer.echo(f"{meeting_code}: not recorded, the plan is closed")


def ingest(
    imap: Annotated[bool, typer.Option("--imap", help="Read unseen replies from the IMAP folder.")] = False,
    folder: Annotated[
        Path | None,
        typer.Option("--folder", file_okay=False, help="Read .eml files from this folder."),
    ] = None,
) -> None:
    """Read invitation answers into the register. Without options: every configured source (Exchange,
    Microsoft Graph with the graph transport, IMAP, the replies folder)."""
    settings = get_settings()
    now = datetime.now(UTC)
    with command_register() as engine:
        summaries: dict[str, ReplySummary] = {}
        try:
            if not imap and folder is None:
                summaries = ingest_configured(engine, settings, now, secret_loader=prefect_secret)
                if not summaries:
                    raise _fail(
                        "no source: give --imap or --folder, or configure IMAP, a replies folder, Exchange "
                        "or SIPFLOWS_TRANSPORT=graph"
                    )
            if imap:
                summaries["imap"] = ingest_imap(engine, settings, now)
            if folder is not None:
                summaries["folder"] = ingest_folder(engine, folder, now)
        except PartialIngestError as exc:
            _echo(exc.summaries)
            raise _fail(str(exc)) from None
        except ReplyIngestError as exc:
            _echo(summaries)
            raise _fail(str(exc)) from None
    _echo(summaries)


def _echo(summaries: dict[str, ReplySummary]) -> None:
    for source, summary in summaries.items():
        typer.echo(f"{source}: {summary.describe()}")
        for item in summary.set_aside:
            typer.echo(f"  set aside: {item.where}: {item.reason}")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Answers to invitations: calendar replies and answers by phone.", no_args_is_help=True
    )
    group.command("answer")(answer)
    group.command("ingest")(ingest)
    app.add_typer(group, name="replies")

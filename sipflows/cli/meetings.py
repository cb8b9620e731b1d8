"""``sipflows meeting book|move|cancel|held`` and ``sipflows case close|withdraw-consent|origin|under-18``.

Times are typed as people read them, ``YYYY-MM-DD HH:MM`` in Stockholm. Each command changes the register
and queues the REQUEST/CANCEL notices in the same transaction (``sync_invitations``); the dispatch sends
them later. A failing command writes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from sipflows.booking import (
    BookingError,
    book_meeting,
    cancel_meeting,
    check_staff_text,
    close_case,
    move_meeting,
    record_held,
    set_plan_origin,
    set_under_18,
    withdraw_consent,
)
from sipflows.cli.common import command_register, parse_date
from sipflows.db import session_scope
from sipflows.models import ClosureReason, MeetingKind, PlanOrigin
from sipflows.notices.invitations import SyncSummary, sync_invitations
from sipflows.notices.render import RenderError
from sipflows.settings import get_settings
from sipflows.timeutil import STOCKHOLM, local_datetime

meeting_app = typer.Typer(
    help="Book, move and cancel meetings (invitations are queued for sending); record one as held."
)
case_app = typer.Typer(
    help="End a plan (closure or withdrawn consent: its future meetings are cancelled), or say where it "
    "arose and whether it is for a child (the first meeting's time limit)."
)

DB_OPTION = typer.Option(None, "--database-url", help="Default: SIPFLOWS_DATABASE_URL.")
NOW_OPTION = typer.Option(
    None, "--now", help="Judge as of this local time 'YYYY-MM-DD HH:MM' (default: the current time)."
)


def parse_local(value: str, option: str, on: date | None = None) -> datetime:
    """'YYYY-MM-DD HH:MM' (or 'HH:MM' on ``on``) in Stockholm as aware UTC; times skipped or doubled by
    the DST change are refused rather than guessed."""
    text = value.strip()
    try:
        if on is not None and len(text) <= 5:
            naive = datetime.combine(on, time.fromisoformat(text))
        else:
            naive = datetime.strptime(text, "%Y-%m-%d %H:%M")
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a local time 'YYYY-MM-DD HH:MM'", param_hint=option
        ) from None
    first = naive.replace(tzinfo=STOCKHOLM, fold=0)
    second = naive.replace(tzinfo=STOCKHOLM, fold=1)
    if first.utcoffset() != second.utcoffset():
        real = first.astimezone(UTC).astimezone(STOCKHOLM).replace(tzinfo=None) == naive
        reason = "occurs twice" if real else "does not exist"
        raise typer.BadParameter(
            f"{value} {reason} in Stockholm (daylight saving change); pick another time", param_hint=option
        )
    return first.astimezone(UTC)


def _staff_text(value: str | None, option: str) -> None:
    """A place or purpose goes into every notice and calendar invitation: no personal identity number.
    The message names the option, never the value."""
    try:
        check_staff_text(option, value)
    except BookingError as exc:
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=option) from None


def _now(value: str | None) -> datetime:
    if value:
        return parse_local(value, "--now")
    return datetime.now(UTC)  # the CLI edge: the only place that reads the clock


def _run(database_url: str | None, now: datetime, action: Any) -> SyncSummary:
    """Change the register and queue notices in one transaction; a clear message and exit 1 on a refusal."""
    settings = get_settings()
    with command_register(database_url) as engine:
        try:
            with session_scope(engine) as session:
                action(session)
                return sync_invitations(session, now, settings)
        except (BookingError, RenderError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


def _change(database_url: str | None, action: Any) -> None:
    """Change the plan's own fields in one transaction (nothing to queue); exit 1 on a refusal."""
    with command_register(database_url) as engine:
        try:
            with session_scope(engine) as session:
                action(session)
        except BookingError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


def _report(summary: SyncSummary) -> None:
    typer.echo(
        f"queued: {summary.invitations} invitations, {summary.updates} updates, "
        f"{summary.cancels} cancellations"
        + (f" ({summary.skipped} invitees outside the plan skipped)" if summary.skipped else "")
    )


def _when(dt: datetime) -> str:
    return local_datetime(dt).strftime("%Y-%m-%d %H:%M")


@meeting_app.command("book")
def book(
    reference: str = typer.Argument(..., help="The plan's reference."),
    start: str = typer.Option(..., "--start", help="Local start 'YYYY-MM-DD HH:MM'."),
    end: str = typer.Option(..., "--end", help="Local end 'YYYY-MM-DD HH:MM' or 'HH:MM' the same day."),
    kind: Annotated[MeetingKind, typer.Option("--kind", help="Kind of meeting.")] = MeetingKind.SIP_MEETING,
    invite: Annotated[
        list[str] | None, typer.Option("--invite", help="Contact code of a required participant.")
    ] = None,
    optional: Annotated[
        list[str] | None, typer.Option("--optional", help="Contact code of an optional participant.")
    ] = None,
    place: str | None = typer.Option(None, "--place", help="Where the meeting is held."),
    link: str | None = typer.Option(None, "--link", help="Digital meeting link."),
    purpose: str | None = typer.Option(None, "--purpose", help="Purpose and questions from the pre-meeting."),
    code: str | None = typer.Option(None, "--code", help="Meeting code (default: <reference>-M<n>)."),
    chair: str | None = typer.Option(
        None, "--chair", help="Contact code of the meeting's chair (mötesledare), a contact of the plan."
    ),
    now: str | None = NOW_OPTION,
    database_url: str | None = DB_OPTION,
) -> None:
    """Book a meeting and queue its invitations."""
    _staff_text(place, "--place")
    _staff_text(purpose, "--purpose")
    starts_at = parse_local(start, "--start")
    ends_at = parse_local(end, "--end", on=local_datetime(starts_at).date())
    now_at = _now(now)
    booked: dict[str, str] = {}

    def action(session: Session) -> None:
        m = book_meeting(
            session,
            reference,
            kind,
            starts_at,
            ends_at,
            invitees=[(c, True) for c in invite or []] + [(c, False) for c in optional or []],
            now=now_at,
            place=place,
            digital_link=link,
            purpose=purpose,
            code=code,
            chair=chair,
        )
        booked.update(code=m.code, uid=m.ical_uid)

    summary = _run(database_url, now_at, action)
    typer.echo(f"booked {booked['code']} ({_when(starts_at)}–{_when(ends_at)[-5:]}), UID {booked['uid']}")
    _report(summary)


@meeting_app.command("move")
def move(
    code: str = typer.Argument(..., help="The meeting's code."),
    start: str = typer.Option(..., "--start", help="New local start 'YYYY-MM-DD HH:MM'."),
    end: str = typer.Option(..., "--end", help="New local end 'YYYY-MM-DD HH:MM' or 'HH:MM' the same day."),
    place: str | None = typer.Option(None, "--place", help="New place ('' clears it)."),
    link: str | None = typer.Option(None, "--link", help="New digital link ('' clears it)."),
    purpose: str | None = typer.Option(None, "--purpose", help="New purpose text."),
    now: str | None = NOW_OPTION,
    database_url: str | None = DB_OPTION,
) -> None:
    """Move a meeting (new SEQUENCE, same UID) and queue the updated invitations."""
    _staff_text(place, "--place")
    _staff_text(purpose, "--purpose")
    starts_at = parse_local(start, "--start")
    ends_at = parse_local(end, "--end", on=local_datetime(starts_at).date())
    now_at = _now(now)
    moved: dict[str, int] = {}

    def action(session: Session) -> None:
        m = move_meeting(
            session, code, starts_at, ends_at, now=now_at, place=place, digital_link=link, purpose=purpose
        )
        moved["sequence"] = m.sequence

    summary = _run(database_url, now_at, action)
    typer.echo(f"moved {code} to {_when(starts_at)}–{_when(ends_at)[-5:]} (sequence {moved['sequence']})")
    _report(summary)


@meeting_app.command("cancel")
def cancel(
    code: str = typer.Argument(..., help="The meeting's code."),
    now: str | None = NOW_OPTION,
    database_url: str | None = DB_OPTION,
) -> None:
    """Cancel a meeting and queue cancellations to everyone invited."""
    now_at = _now(now)
    summary = _run(database_url, now_at, lambda s: cancel_meeting(s, code, now=now_at))
    typer.echo(f"cancelled {code}")
    _report(summary)


@meeting_app.command("held")
def held(
    code: str = typer.Argument(..., help="The meeting's code."),
    documented: str | None = typer.Option(
        None,
        "--documented",
        help="When the plan was documented: a local date 'YYYY-MM-DD' or time 'YYYY-MM-DD HH:MM'.",
    ),
    now: str | None = NOW_OPTION,
    database_url: str | None = DB_OPTION,
) -> None:
    """Record that a meeting was held (the convener's answer); its documentation deadline then runs."""
    now_at = _now(now)
    when: date | datetime | None = None
    if documented is not None:
        text = documented.strip()
        when = parse_local(text, "--documented") if len(text) > 10 else parse_date(text, "--documented")
    result: dict[str, Any] = {}

    def action(session: Session) -> None:
        m = record_held(session, code, now=now_at, documented=when)
        result.update(code=m.code, documented=m.documented_at)

    summary = _run(database_url, now_at, action)
    line = f"recorded {result['code']} as held"
    if result["documented"] is not None:
        line += f", documented {_when(result['documented'])}"
    typer.echo(line)
    if summary.enqueued:
        _report(summary)


@case_app.command("close")
def close(
    reference: str = typer.Argument(..., help="The plan's reference."),
    on: str = typer.Option(..., "--on", help="Local closing date 'YYYY-MM-DD'."),
    reason: Annotated[
        ClosureReason, typer.Option("--reason", help="Why the plan ends.")
    ] = ClosureReason.NEED_MET,
    now: str | None = NOW_OPTION,
    database_url: str | None = DB_OPTION,
) -> None:
    """Close a plan; its future meetings are cancelled and cancellations queued."""
    day = parse_date(on, "--on")
    now_at = _now(now)
    summary = _run(database_url, now_at, lambda s: close_case(s, reference, day, reason, now=now_at))
    typer.echo(f"closed {reference} on {day} ({reason.value})")
    _report(summary)


@case_app.command("withdraw-consent")
def withdraw(
    reference: str = typer.Argument(..., help="The plan's reference."),
    on: str = typer.Option(..., "--on", help="Local date consent was withdrawn 'YYYY-MM-DD'."),
    now: str | None = NOW_OPTION,
    database_url: str | None = DB_OPTION,
) -> None:
    """Record withdrawn consent: the plan closes at once and its future meetings are cancelled."""
    day = parse_date(on, "--on")
    now_at = _now(now)
    summary = _run(database_url, now_at, lambda s: withdraw_consent(s, reference, day, now=now_at))
    typer.echo(f"consent withdrawn for {reference} on {day}; plan closed")
    _report(summary)


@case_app.command("origin")
def origin(
    reference: str = typer.Argument(..., help="The plan's reference."),
    kind: Annotated[PlanOrigin, typer.Argument(help="ordinary, or discharge from inpatient care.")] = (
        PlanOrigin.ORDINARY
    ),
    discharged_on: str | None = typer.Option(
        None, "--discharged-on", help="Local discharge date 'YYYY-MM-DD' (required for discharge)."
    ),
    database_url: str | None = DB_OPTION,
) -> None:
    """Where the plan arose: a plan from discharge (Lag 2017:612) has the law's shorter limit for its
    first SIP meeting, counted from the discharge date."""
    day = parse_date(discharged_on, "--discharged-on") if discharged_on is not None else None
    _change(database_url, lambda s: set_plan_origin(s, reference, kind, day))
    typer.echo(f"{reference}: origin {kind.value}" + (f", discharged {day}" if day else ""))


_YES = {"yes": True, "ja": True, "no": False, "nej": False}


@case_app.command("under-18")
def under_18(
    reference: str = typer.Argument(..., help="The plan's reference."),
    answer: str = typer.Argument(..., help="yes or no (ja/nej)."),
    database_url: str | None = DB_OPTION,
) -> None:
    """Whether the plan is for a child or young person (their first SIP meeting has its own limit).
    A yes or no only: sipflows keeps no date of birth."""
    value = _YES.get(answer.strip().lower())
    if value is None:
        raise typer.BadParameter(f"{answer!r} is not yes or no", param_hint="ANSWER")
    _change(database_url, lambda s: set_under_18(s, reference, value))
    typer.echo(f"{reference}: under 18 {'yes' if value else 'no'}")


def register(app: typer.Typer) -> None:
    app.add_typer(meeting_app, name="meeting")
    app.add_typer(case_app, name="case")

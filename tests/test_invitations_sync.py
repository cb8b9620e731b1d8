"""Booking and invitation sync: REQUEST/CANCEL notices in the ledger, SEQUENCE and UID, idempotence,
the booking rules, and the ``sipflows meeting``/``sipflows case`` commands."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import typer
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.booking import (
    BookingError,
    book_meeting,
    cancel_meeting,
    close_case,
    move_meeting,
    withdraw_consent,
)
from sipflows.cli import meetings as meetings_cli
from sipflows.models import (
    Answer,
    CaseStatus,
    ClosureReason,
    Contact,
    Invitation,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Notice,
    Participant,
    SipCase,
)
from sipflows.notices.invitations import SyncSummary, cancel_key, request_key, sync_invitations
from sipflows.settings import Settings, get_settings
from tests.factories import local

SETTINGS = Settings(_env_file=None, mail_domain="sipflows.test")  # type: ignore[call-arg]
TODAY = date(2026, 3, 2)  # Monday
NOW = local(TODAY, "08:00")
D = date(2026, 3, 27)  # Friday before the change to summer time


@pytest.fixture
def world(build: Any, session: Session) -> dict[str, Any]:
    r = build.standard_region()
    case = build.case(r["k"], reference="SIP-2026-7", participants=(r["r"], r["f"], r["s"]))
    session.commit()
    return {**r, "case": case}


def book(session: Session, w: dict[str, Any], on: date = D, **kw: Any) -> Meeting:
    args: dict[str, Any] = {
        "invitees": [(w["r"].code, True), (w["f"].code, False), (w["s"].code, True)],
        "place": "Vårdcentralen Köping, rum 3",
        "purpose": "Samordna insatser inför skolstart",
        "now": NOW,
        "settings": SETTINGS,
    }
    args.update(kw)
    return book_meeting(
        session,
        args.pop("reference", "SIP-2026-7"),
        args.pop("kind", "sip_meeting"),
        local(on, "09:00"),
        local(on, "10:30"),
        **args,
    )


def notices(session: Session, kind: str | None = None) -> list[Notice]:
    stmt = select(Notice).order_by(Notice.id)
    if kind:
        stmt = stmt.where(Notice.kind == kind)
    return list(session.scalars(stmt))


def vevent(n: Notice) -> Any:
    assert n.ics is not None
    cal = Calendar.from_ical(n.ics)
    return cal, cal.walk("VEVENT")[0]


def test_booking_queues_one_request_per_invitee(session: Session, world: dict[str, Any]) -> None:
    m = book(session, world)
    assert m.ical_uid == f"{m.code}@sipflows.test" and m.code == "SIP-2026-7-M1" and m.sequence == 0
    # the three invitees, and the convener (chair) so that the meeting is in their calendar too
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(invitations=4)
    session.commit()
    sent = notices(session)
    invitees = {world[x].id: world[x] for x in ("k", "r", "f", "s")}
    assert {n.contact_id for n in sent} == set(invitees)
    # the convener is sent the meeting but has no invitation to answer (the unanswered check never chases it)
    invited = set(session.scalars(select(Invitation.contact_id).where(Invitation.meeting_id == m.id)))
    assert invited == {world[x].id for x in ("r", "f", "s")}
    for n in sent:
        assert n.kind == "meeting.invitation" and n.ics_method == "REQUEST" and n.ics_sequence == 0
        assert n.key == request_key(m.id, 0, n.contact_id) == f"meeting:{m.id}:seq0:request:c{n.contact_id}"
        assert n.meeting_id == m.id and n.case_id == world["case"].id
        assert n.address == invitees[n.contact_id].email
        cal, ev = vevent(n)
        assert str(cal["METHOD"]) == "REQUEST" and str(ev["UID"]) == m.ical_uid and int(ev["SEQUENCE"]) == 0
        assert "DTSTART;TZID=Europe/Stockholm:20260327T090000" in n.ics
        # answers go to the mailbox sipflows reads, named after the convener
        assert str(ev["ORGANIZER"]) == f"mailto:{SETTINGS.sender_address}"
        via = "via SIP invitations" if n.contact_id == world["r"].id else "via SIP-kallelser"
        assert ev["ORGANIZER"].params["CN"] == f"{world['k'].name} {via}"
        roles = {str(a): a.params["ROLE"] for a in ev["ATTENDEE"]}
        assert all(
            a.params["PARTSTAT"] == "NEEDS-ACTION" and a.params["RSVP"] == "TRUE" for a in ev["ATTENDEE"]
        )
        assert roles == {
            f"mailto:{world['k'].email}": "CHAIR",
            f"mailto:{world['r'].email}": "REQ-PARTICIPANT",
            f"mailto:{world['f'].email}": "OPT-PARTICIPANT",
            f"mailto:{world['s'].email}": "REQ-PARTICIPANT",
        }
        assert "Samordna insatser inför skolstart" in str(ev["DESCRIPTION"])
    by_contact = {n.contact_id: n for n in sent}
    english, swedish = by_contact[world["r"].id], by_contact[world["s"].id]
    assert english.subject.startswith("Invitation: SIP meeting Friday 27 March 2026 at 09:00")
    assert str(vevent(english)[1]["SUMMARY"]) == "SIP meeting, plan SIP-2026-7"
    assert swedish.subject.startswith("Kallelse: SIP-möte fredag 27 mars 2026 kl. 09:00")
    assert str(vevent(swedish)[1]["SUMMARY"]) == "SIP-möte, plan SIP-2026-7"
    # the invitees became participants of the plan
    members = set(
        session.scalars(select(Participant.contact_id).where(Participant.case_id == world["case"].id))
    )
    assert set(invitees) <= members


def test_a_convener_who_is_also_invited_is_listed_once_as_chair(
    session: Session, world: dict[str, Any]
) -> None:
    m = book(session, world, invitees=[(world["k"].code, True), (world["r"].code, True)])
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(invitations=2)
    for n in notices(session):
        _, ev = vevent(n)
        listed = [(str(a), a.params["ROLE"]) for a in ev["ATTENDEE"]]
        assert listed == [
            (f"mailto:{world['k'].email}", "CHAIR"),
            (f"mailto:{world['r'].email}", "REQ-PARTICIPANT"),
        ]
    # invited in the register, the convener's answer is asked for like anyone's
    invited = set(session.scalars(select(Invitation.contact_id).where(Invitation.meeting_id == m.id)))
    assert invited == {world["k"].id, world["r"].id}


def test_the_organizer_may_be_a_mailbox_of_its_own(session: Session, world: dict[str, Any]) -> None:
    settings = SETTINGS.model_copy(update={"organizer_address": "sip-svar@kommun.example.se"})
    book(session, world, invitees=[(world["r"].code, True)])
    sync_invitations(session, NOW, settings)
    for n in notices(session):
        _, ev = vevent(n)
        assert str(ev["ORGANIZER"]) == "mailto:sip-svar@kommun.example.se"
    with pytest.raises(ValueError, match="SIPFLOWS_ORGANIZER_ADDRESS"):
        Settings(_env_file=None, organizer_address="Linnéa <linnea@kommun>")  # type: ignore[call-arg]


def test_sync_twice_enqueues_nothing_new(session: Session, world: dict[str, Any]) -> None:
    m = book(session, world)
    sync_invitations(session, NOW, SETTINGS)
    session.commit()
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary()
    move_meeting(
        session, m.code, local(date(2026, 3, 30), "09:00"), local(date(2026, 3, 30), "10:00"), now=NOW
    )
    assert sync_invitations(session, NOW, SETTINGS).updates == 4
    session.commit()
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary()
    cancel_meeting(session, m.code, now=NOW)
    assert sync_invitations(session, NOW, SETTINGS).cancels == 4
    session.commit()
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary()
    assert len(notices(session)) == 12


def test_move_raises_sequence_keeps_uid_and_local_time_across_dst(
    session: Session, world: dict[str, Any]
) -> None:
    m = book(session, world)
    sync_invitations(session, NOW, SETTINGS)
    moved = move_meeting(
        session, m.code, local(date(2026, 3, 30), "09:00"), local(date(2026, 3, 30), "10:00"), now=NOW
    )
    assert moved.sequence == 1
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(updates=4)
    first, update = notices(session, "meeting.invitation")[0], notices(session, "meeting.update")[0]
    _, ev0 = vevent(first)
    _, ev1 = vevent(update)
    assert str(ev0["UID"]) == str(ev1["UID"]) == m.ical_uid
    assert int(ev1["SEQUENCE"]) == 1 > int(ev0["SEQUENCE"])
    assert update.ics_sequence == 1 and update.key == request_key(m.id, 1, update.contact_id)
    # 09:00 local both sides of the DST change, one hour apart in UTC offset
    assert "DTSTART;TZID=Europe/Stockholm:20260327T090000" in (first.ics or "")
    assert "DTSTART;TZID=Europe/Stockholm:20260330T090000" in (update.ics or "")
    assert ev0.decoded("DTSTART") == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)
    assert ev1.decoded("DTSTART") == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert "Ändrad kallelse" in update.subject or "Updated invitation" in update.subject
    # moving to the same time and place changes nothing
    again = move_meeting(session, m.code, moved.starts_at, moved.ends_at, now=NOW)
    assert again.sequence == 1


def test_cancel_goes_to_everyone_invited_with_a_higher_sequence(
    session: Session, world: dict[str, Any]
) -> None:
    m = book(session, world)
    sync_invitations(session, NOW, SETTINGS)
    cancel_meeting(session, m.code, now=NOW)
    assert cancel_meeting(session, m.code, now=NOW).sequence == 1  # cancelling twice changes nothing
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(cancels=4)
    cancels = notices(session, "meeting.cancel")
    assert {n.contact_id for n in cancels} == {world[x].id for x in ("k", "r", "f", "s")}
    for n in cancels:
        cal, ev = vevent(n)
        assert str(cal["METHOD"]) == "CANCEL" and str(ev["STATUS"]) == "CANCELLED"
        assert str(ev["UID"]) == m.ical_uid
        assert int(ev["SEQUENCE"]) == n.ics_sequence == m.sequence + 1 == 2
        assert n.ics_method == "CANCEL" and n.key == cancel_key(m.id, n.contact_id)
        assert n.subject.startswith(("Inställt:", "Cancelled:"))


@pytest.mark.parametrize("how", ["close", "withdraw"])
def test_closing_or_withdrawn_consent_cancels_future_meetings(
    session: Session, world: dict[str, Any], build: Any, how: str
) -> None:
    m1 = book(session, world)
    m2 = book(session, world, on=date(2026, 4, 14), invitees=[(world["r"].code, True)])
    past = build.meeting(world["case"], date(2026, 2, 20))  # scheduled, but already over
    build.invite(past, world["s"])
    unsent = book(session, world, on=date(2026, 4, 20), invitees=[(world["f"].code, True)])
    sync_invitations(session, NOW, SETTINGS)
    session.commit()
    requests = notices(session)
    assert len(requests) == (3 + 1) + (1 + 1) + (1 + 1)  # each meeting's invitees and its convener
    if how == "close":
        close_case(session, "SIP-2026-7", TODAY, ClosureReason.NEED_MET, now=NOW)
    else:
        withdraw_consent(session, "SIP-2026-7", TODAY, now=NOW)
    case = session.get_one(SipCase, world["case"].id)
    assert case.status == CaseStatus.CLOSED and case.closed_on == TODAY
    assert case.closure_reason == (
        ClosureReason.NEED_MET if how == "close" else ClosureReason.CONSENT_WITHDRAWN
    )
    assert session.get_one(Meeting, past.id).status == MeetingStatus.SCHEDULED  # the past is left alone
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(cancels=8)
    cancels = notices(session, "meeting.cancel")
    assert sorted((n.meeting_id, n.contact_id) for n in cancels) == sorted(
        (r.meeting_id, r.contact_id) for r in requests
    )
    for n in cancels:
        meeting = session.get_one(Meeting, n.meeting_id)
        assert meeting.status == MeetingStatus.CANCELLED and meeting.sequence == 1
        assert n.ics_sequence == 2
    assert {n.meeting_id for n in cancels} == {m1.id, m2.id, unsent.id}
    session.commit()
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary()


def test_closure_written_elsewhere_still_cancels(session: Session, world: dict[str, Any]) -> None:
    """An importer may close a plan without touching its meetings: sync must still cancel them."""
    m = book(session, world)
    sync_invitations(session, NOW, SETTINGS)
    case = session.get_one(SipCase, world["case"].id)
    case.consent_withdrawn_on = TODAY
    session.flush()
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(cancels=4)
    assert session.get_one(Meeting, m.id).sequence == 0
    assert {n.ics_sequence for n in notices(session, "meeting.cancel")} == {1}  # still above what was sent
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary()


def test_meeting_cancelled_before_any_invitation_sends_nothing(
    session: Session, world: dict[str, Any]
) -> None:
    m = book(session, world)
    cancel_meeting(session, m.code, now=NOW)
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary()
    assert notices(session) == []


def test_late_invitee_gets_the_current_version_only(session: Session, world: dict[str, Any]) -> None:
    m = book(session, world, invitees=[(world["r"].code, True)])
    sync_invitations(session, NOW, SETTINGS)
    move_meeting(session, m.code, local(D, "13:00"), local(D, "14:00"), now=NOW)
    session.add(Invitation(meeting_id=m.id, contact_id=world["s"].id, required=True))
    session.flush()
    assert sync_invitations(session, NOW, SETTINGS) == SyncSummary(invitations=1, updates=2)
    late = notices(session, "meeting.invitation")[-1]
    assert late.contact_id == world["s"].id and late.ics_sequence == 1


def test_past_meetings_and_invitees_outside_the_plan_get_nothing(
    session: Session, world: dict[str, Any], build: Any
) -> None:
    past = build.meeting(world["case"], date(2026, 2, 27))
    build.invite(past, world["r"])
    stranger: Contact = build.contact(world["school"], "Ej med i planen")
    upcoming = build.meeting(world["case"], date(2026, 3, 20))
    build.invite(upcoming, stranger)
    build.invite(upcoming, world["s"])
    summary = sync_invitations(session, NOW, SETTINGS)
    assert summary == SyncSummary(invitations=2, skipped=1)
    assert {(n.meeting_id, n.contact_id) for n in notices(session)} == {
        (upcoming.id, world["s"].id),
        (upcoming.id, world["k"].id),  # the convener
    }


def test_sync_needs_an_aware_now(session: Session) -> None:
    with pytest.raises(ValueError, match="aware"):
        sync_invitations(session, datetime(2026, 3, 2, 8, 0), SETTINGS)


def test_booking_rules(session: Session, world: dict[str, Any], build: Any) -> None:
    with pytest.raises(BookingError, match="no plan with reference 'SIP-NOPE'"):
        book(session, world, reference="SIP-NOPE")
    with pytest.raises(BookingError, match="no contact with code 'C-NOPE'"):
        book(session, world, invitees=[("C-NOPE", True)])
    with pytest.raises(BookingError, match="invited twice"):
        book(session, world, invitees=[(world["r"].code, True), (world["r"].code, False)])
    with pytest.raises(BookingError, match="place or a digital link"):
        book(session, world, place=None)
    with pytest.raises(BookingError, match="in the future"):
        book(session, world, on=date(2026, 2, 27))
    with pytest.raises(BookingError, match="unknown meeting kind"):
        book(session, world, kind="coffee")
    with pytest.raises(BookingError, match="end after it starts"):
        book_meeting(
            session,
            "SIP-2026-7",
            MeetingKind.SIP_MEETING,
            local(D, "10:00"),
            local(D, "09:00"),
            invitees=[(world["r"].code, True)],
            place="x",
            now=NOW,
            settings=SETTINGS,
        )
    with pytest.raises(BookingError, match="aware"):
        book_meeting(
            session,
            "SIP-2026-7",
            MeetingKind.SIP_MEETING,
            datetime(2026, 3, 27, 9),
            datetime(2026, 3, 27, 10),
            invitees=[(world["r"].code, True)],
            place="x",
            now=NOW,
            settings=SETTINGS,
        )
    m = book(session, world)
    assert book(session, world).code == "SIP-2026-7-M2"
    with pytest.raises(BookingError, match="already exists"):
        book(session, world, code=m.code)
    with pytest.raises(BookingError, match="no meeting with code 'M-NOPE'"):
        move_meeting(session, "M-NOPE", local(D, "09:00"), local(D, "10:00"), now=NOW)
    held = build.meeting(world["case"], date(2026, 2, 20), status=MeetingStatus.HELD)
    with pytest.raises(BookingError, match="held"):
        cancel_meeting(session, held.code, now=NOW)
    with pytest.raises(BookingError, match="cannot be moved"):
        move_meeting(session, held.code, local(D, "09:00"), local(D, "10:00"), now=NOW)
    with pytest.raises(BookingError, match="unknown closure reason"):
        close_case(session, "SIP-2026-7", TODAY, "bored", now=NOW)
    withdraw_consent(session, "SIP-2026-7", TODAY, now=NOW)
    with pytest.raises(BookingError, match="consent was withdrawn"):
        book(session, world)
    with pytest.raises(BookingError, match="already closed"):
        close_case(session, "SIP-2026-7", TODAY, ClosureReason.OTHER, now=NOW)
    with pytest.raises(BookingError, match="already withdrawn"):
        withdraw_consent(session, "SIP-2026-7", TODAY, now=NOW)


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    meetings_cli.register(app)
    return app


def run(cli: typer.Typer, db_url: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--database-url", db_url, "--now", "2026-03-02 09:00"])
    return result


def test_cli_book_move_cancel(session: Session, world: dict[str, Any], cli: typer.Typer, db_url: str) -> None:
    w = world
    res = run(
        cli,
        db_url,
        "meeting",
        "book",
        "SIP-2026-7",
        "--start",
        "2026-03-27 09:00",
        "--end",
        "10:30",
        "--invite",
        w["r"].code,
        "--optional",
        w["f"].code,
        "--place",
        "Rum 3",
        "--purpose",
        "Skolstart",
    )
    assert res.exit_code == 0, res.output
    assert "booked SIP-2026-7-M1 (2026-03-27 09:00–10:30)" in res.output
    assert f"UID SIP-2026-7-M1@{get_settings().mail_domain}" in res.output
    assert "queued: 3 invitations, 0 updates, 0 cancellations" in res.output  # and the convener
    session.expire_all()
    m = session.scalars(select(Meeting).where(Meeting.code == "SIP-2026-7-M1")).one()
    assert m.starts_at == datetime(2026, 3, 27, 8, 0, tzinfo=UTC) and m.purpose == "Skolstart"
    assert {(i.contact_id, i.required) for i in session.scalars(select(Invitation))} == {
        (w["r"].id, True),
        (w["f"].id, False),
    }
    session.commit()

    res = run(
        cli, db_url, "meeting", "move", m.code, "--start", "2026-03-30 13:00", "--end", "2026-03-30 14:00"
    )
    assert res.exit_code == 0, res.output
    assert "sequence 1" in res.output and "queued: 0 invitations, 3 updates, 0 cancellations" in res.output
    res = run(cli, db_url, "meeting", "cancel", m.code)
    assert res.exit_code == 0, res.output
    assert "queued: 0 invitations, 0 updates, 3 cancellations" in res.output
    session.expire_all()
    assert [n.kind for n in notices(session)] == ["meeting.invitation"] * 3 + ["meeting.update"] * 3 + [
        "meeting.cancel"
    ] * 3
    update = notices(session, "meeting.update")[0]
    assert "DTSTART;TZID=Europe/Stockholm:20260330T130000" in (update.ics or "")
    session.commit()


def test_cli_case_close_and_withdraw(
    session: Session, world: dict[str, Any], cli: typer.Typer, db_url: str
) -> None:
    book(session, world)
    sync_invitations(session, NOW, SETTINGS)
    session.commit()
    res = run(cli, db_url, "case", "withdraw-consent", "SIP-2026-7", "--on", "2026-03-02")
    assert res.exit_code == 0, res.output
    assert "consent withdrawn for SIP-2026-7 on 2026-03-02; plan closed" in res.output
    assert "queued: 0 invitations, 0 updates, 4 cancellations" in res.output
    session.expire_all()
    case = session.get_one(SipCase, world["case"].id)
    assert case.status == CaseStatus.CLOSED and case.consent_withdrawn_on == TODAY
    assert case.closure_reason == ClosureReason.CONSENT_WITHDRAWN
    assert len(notices(session, "meeting.cancel")) == 4
    session.commit()
    res = run(cli, db_url, "case", "close", "SIP-2026-7", "--on", "2026-03-02", "--reason", "need_met")
    assert res.exit_code == 1 and "already closed" in res.output


def test_cli_case_close(session: Session, world: dict[str, Any], cli: typer.Typer, db_url: str) -> None:
    res = run(cli, db_url, "case", "close", "SIP-2026-7", "--on", "2026-03-02", "--reason", "other")
    assert res.exit_code == 0, res.output
    assert "closed SIP-2026-7 on 2026-03-02 (other)" in res.output
    session.expire_all()
    case = session.get_one(SipCase, world["case"].id)
    assert (case.status, case.closure_reason, case.consent_withdrawn_on) == (
        CaseStatus.CLOSED,
        ClosureReason.OTHER,
        None,
    )
    session.commit()
    res = run(cli, db_url, "case", "close", "SIP-2026-7", "--on", "2026-3-2")
    assert res.exit_code == 2 and "is not a date" in res.output


def test_cli_errors_are_clear_and_write_nothing(
    session: Session, world: dict[str, Any], cli: typer.Typer, db_url: str
) -> None:
    res = run(
        cli,
        db_url,
        "meeting",
        "book",
        "SIP-NOPE",
        "--start",
        "2026-03-27 09:00",
        "--end",
        "10:00",
        "--invite",
        world["r"].code,
        "--place",
        "x",
    )
    assert res.exit_code == 1 and "no plan with reference 'SIP-NOPE'" in res.output
    res = run(
        cli,
        db_url,
        "meeting",
        "book",
        "SIP-2026-7",
        "--start",
        "2026-03-27 09:00",
        "--end",
        "10:00",
        "--invite",
        world["r"].code,
        "--invite",
        "C-NOPE",
        "--place",
        "x",
    )
    assert res.exit_code == 1 and "no contact with code 'C-NOPE'" in res.output
    res = run(
        cli,
        db_url,
        "meeting",
        "book",
        "SIP-2026-7",
        "--start",
        "2026-03-29 02:30",
        "--end",
        "04:00",
        "--invite",
        world["r"].code,
        "--place",
        "x",
    )
    assert res.exit_code == 2 and "does not exist in Stockholm" in res.output
    res = run(
        cli,
        db_url,
        "meeting",
        "book",
        "SIP-2026-7",
        "--start",
        "2026-10-25 02:30",
        "--end",
        "04:00",
        "--invite",
        world["r"].code,
        "--place",
        "x",
    )
    assert res.exit_code == 2 and "occurs twice" in res.output
    res = run(
        cli,
        db_url,
        "meeting",
        "book",
        "SIP-2026-7",
        "--start",
        "27/3 9:00",
        "--end",
        "10:00",
        "--invite",
        world["r"].code,
        "--place",
        "x",
    )
    assert res.exit_code == 2 and "is not a local time" in res.output
    res = run(cli, db_url, "meeting", "cancel", "M-NOPE")
    assert res.exit_code == 1 and "no meeting with code 'M-NOPE'" in res.output
    res = run(cli, db_url, "case", "close", "SIP-NOPE", "--on", "2026-03-02")
    assert res.exit_code == 1 and "no plan with reference 'SIP-NOPE'" in res.output
    session.expire_all()
    assert session.scalars(select(Meeting)).all() == [] and notices(session) == []


def test_cli_books_a_chair_who_counts_for_their_principal(
    session: Session, world: dict[str, Any], cli: typer.Typer, db_url: str, build: Any
) -> None:
    from sipflows.checks import invitations
    from sipflows.checks.base import CheckContext
    from sipflows.policy import default_policy

    w = world
    outsider = build.contact(w["region"], "Utanför planen")
    session.commit()
    base = ["meeting", "book", "SIP-2026-7", "--start", "2026-03-04 09:00", "--end", "10:00"]
    base += ["--place", "Rum 3", "--invite", w["f"].code]
    refused = run(cli, db_url, *base, "--chair", outsider.code)
    assert refused.exit_code == 1 and "is not a participant of plan SIP-2026-7" in refused.output
    # the kommun convenes, Försäkringskassan is invited, the region's nurse (a participant) chairs
    res = run(cli, db_url, *base, "--chair", w["r"].code)
    assert res.exit_code == 0, res.output
    session.expire_all()
    m = session.scalars(select(Meeting)).one()
    assert m.chair_contact_id == w["r"].id
    inv = session.scalars(select(Invitation).where(Invitation.meeting_id == m.id)).one()
    inv.answer = Answer.ACCEPTED
    session.flush()
    ctx = CheckContext.load(session, date(2026, 3, 3), default_policy())
    assert [f for f in invitations.run(session, ctx) if f.stage == "convener-alert"] == []

"""Import as a migration path: invitations already sent elsewhere are not sent again, and ending a plan by
import has exactly the effect of ``sipflows case close|withdraw-consent``."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipflows.booking import close_case, move_meeting, withdraw_consent
from sipflows.db import session_scope
from sipflows.importer import ImportErrors, import_files
from sipflows.models import (
    CaseStatus,
    ClosureReason,
    Contact,
    Invitation,
    Meeting,
    MeetingStatus,
    Notice,
    SipCase,
)
from sipflows.notices.invitations import sync_invitations
from sipflows.notices.render import MEETING_CANCEL, MEETING_INVITATION, MEETING_UPDATE
from sipflows.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "import"
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
DOMAIN = "sipflows.test"
SETTINGS = Settings(_env_file=None, mail_domain=DOMAIN)  # type: ignore[call-arg]
FOLLOW_UP = "SIP-2026-001-U1"  # 22 February 2027, in the future


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "import"
    shutil.copytree(EXAMPLES, target)
    # one more invitee of the follow-up whom the old system never sent anything
    with (target / "invitations.csv").open("a", encoding="utf-8") as f:
        f.write(f"{FOLLOW_UP},FK-SIP,no,,none,,\n")
    return target


def load(engine: Engine, *paths: Path, now: datetime = NOW) -> None:
    import_files(engine, paths, now, mail_domain=DOMAIN)


def sync(engine: Engine, now: datetime = NOW) -> None:
    with session_scope(engine) as s:
        sync_invitations(s, now, SETTINGS)


def ledger(engine: Engine, code: str = FOLLOW_UP) -> list[tuple[str, str, int | None]]:
    """(kind, contact code, SEQUENCE) of every notice about the meeting, in order."""
    with Session(engine) as s:
        rows = s.execute(
            select(Notice.kind, Contact.code, Notice.ics_sequence)
            .join(Contact, Contact.id == Notice.contact_id)
            .join(Meeting, Meeting.id == Notice.meeting_id)
            .where(Meeting.code == code)
            .order_by(Notice.id)
        )
        return [(k, c, q) for k, c, q in rows.tuples()]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- invitations sent before the import -------------------------------------------------------------------


def test_imported_sent_invitations_get_no_new_request(engine: Engine, folder: Path) -> None:
    load(engine, folder)
    sync(engine)
    # the two invitees the old system invited keep their invitation; only the new one gets a REQUEST
    assert ledger(engine) == [(MEETING_INVITATION, "FK-SIP", 0)]
    with Session(engine) as s:
        sent = dict(
            s.execute(
                select(Contact.code, Invitation.sent_sequence)
                .join(Contact, Contact.id == Invitation.contact_id)
                .join(Meeting, Meeting.id == Invitation.meeting_id)
                .where(Meeting.code == FOLLOW_UP)
            )
            .tuples()
            .all()
        )
    assert sent == {"RV-VC-KOP-ROLF": 0, "KOP-SKOLA-KURATOR": 0, "FK-SIP": None}
    # importing the same export again, and syncing again, sends nothing
    load(engine, folder, now=LATER)
    sync(engine, LATER)
    assert len(ledger(engine)) == 1


def test_a_later_change_sends_an_update_to_everyone_and_a_cancel_ends_it(
    engine: Engine, folder: Path
) -> None:
    load(engine, folder)
    sync(engine)
    edit(folder / "meetings.csv", "2027-02-22 13:00,2027-02-22 14:00", "2027-02-23 13:00,2027-02-23 14:00")
    load(engine, folder / "meetings.csv", now=LATER)
    sync(engine, LATER)
    updates = [n for n in ledger(engine)[1:]]
    # the convener (KOP-IFO-SARA) had the imported version as its organizer: an update, not a new invitation
    assert sorted(updates) == [
        (MEETING_UPDATE, "FK-SIP", 1),
        (MEETING_UPDATE, "KOP-IFO-SARA", 1),
        (MEETING_UPDATE, "KOP-SKOLA-KURATOR", 1),
        (MEETING_UPDATE, "RV-VC-KOP-ROLF", 1),
    ]
    with Session(engine) as s:
        ics = s.scalars(select(Notice.ics).where(Notice.kind == MEETING_UPDATE)).first()
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    assert int(event["SEQUENCE"]) == 1 and event["UID"] == f"{FOLLOW_UP}@{DOMAIN}"

    edit(folder / "meetings.csv", "Uppföljning av planen,scheduled", "Uppföljning av planen,cancelled")
    load(engine, folder / "meetings.csv", now=LATER)
    sync(engine, LATER)
    cancels = sorted(n for n in ledger(engine) if n[0] == MEETING_CANCEL)
    assert [c for _, c, _ in cancels] == ["FK-SIP", "KOP-IFO-SARA", "KOP-SKOLA-KURATOR", "RV-VC-KOP-ROLF"]


def test_a_meeting_moved_with_the_cli_after_the_import_sends_updates(engine: Engine, folder: Path) -> None:
    load(engine, folder)
    with session_scope(engine) as s:
        move_meeting(
            s,
            FOLLOW_UP,
            datetime(2027, 2, 24, 12, 0, tzinfo=UTC),
            datetime(2027, 2, 24, 13, 0, tzinfo=UTC),
            now=NOW,
        )
        sync_invitations(s, NOW, SETTINGS)
    assert sorted(ledger(engine)) == [
        (MEETING_INVITATION, "FK-SIP", 1),
        (MEETING_UPDATE, "KOP-IFO-SARA", 1),
        (MEETING_UPDATE, "KOP-SKOLA-KURATOR", 1),
        (MEETING_UPDATE, "RV-VC-KOP-ROLF", 1),
    ]


def test_clearing_sent_at_by_import_makes_sipflows_send_it(engine: Engine, folder: Path) -> None:
    load(engine, folder)
    edit(
        folder / "invitations.csv",
        f"{FOLLOW_UP},RV-VC-KOP-ROLF,yes,2027-01-25 08:30",
        f"{FOLLOW_UP},RV-VC-KOP-ROLF,yes,",
    )
    load(engine, folder / "invitations.csv", now=LATER)
    sync(engine, LATER)
    assert sorted(ledger(engine)) == [
        (MEETING_INVITATION, "FK-SIP", 0),
        (MEETING_INVITATION, "RV-VC-KOP-ROLF", 0),
    ]


# --- ending a plan by import ------------------------------------------------------------------------------


def _state(engine: Engine, reference: str) -> dict[str, Any]:
    """What ending the plan changed: the plan's closure fields, its meetings, and the CANCELs queued."""
    with Session(engine) as s:
        case = s.scalars(select(SipCase).where(SipCase.reference == reference)).one()
        meetings = s.execute(
            select(Meeting.kind, Meeting.status, Meeting.sequence, Meeting.updated_at)
            .where(Meeting.case_id == case.id)
            .order_by(Meeting.starts_at)
        ).all()
        cancels = s.scalars(
            select(Contact.code)
            .join(Notice, Notice.contact_id == Contact.id)
            .where(Notice.case_id == case.id, Notice.kind == MEETING_CANCEL)
            .order_by(Contact.code)
        ).all()
        return {
            "status": case.status,
            "closed_on": case.closed_on,
            "closure_reason": case.closure_reason,
            "consent_withdrawn_on": case.consent_withdrawn_on,
            "meetings": [tuple(m) for m in meetings],
            "cancels": list(cancels),
        }


def _twin(engine: Engine, folder: Path) -> None:
    """SIP-2026-003: a copy of SIP-2026-001 with its own meetings and invitations, to end the CLI way."""
    rows = {
        "cases.csv": ("SIP-2026-001,", "SIP-2026-003,"),
        "participants.csv": ("SIP-2026-001,", "SIP-2026-003,"),
        "meetings.csv": ("SIP-2026-001", "SIP-2026-003"),
        "invitations.csv": ("SIP-2026-001-", "SIP-2026-003-"),
    }
    for name, (old, new) in rows.items():
        path = folder / name
        lines = path.read_text(encoding="utf-8").splitlines()
        twins = [line.replace(old, new) for line in lines[1:] if line.startswith(old)]
        path.write_text("\n".join([*lines, *twins]) + "\n", encoding="utf-8")


@pytest.mark.parametrize("how", ["withdraw-consent", "close"])
def test_ending_a_plan_by_import_equals_the_cli(engine: Engine, folder: Path, how: str) -> None:
    _twin(engine, folder)
    load(engine, folder)
    sync(engine)  # the REQUEST for the uninvited FK-SIP of each plan
    cases = folder / "cases.csv"
    if how == "withdraw-consent":
        edit(
            cases,
            "SIP-2026-001,KOP-IFO-SARA,KOP-IFO,,Testperson 1,19121212-1212,Påhittade anteckningar "
            "(exempel),active,2026-09-01,2026-09-03,2026-09-10,,,2026-09-10,,",
            "SIP-2026-001,KOP-IFO-SARA,KOP-IFO,,Testperson 1,19121212-1212,Påhittade anteckningar "
            "(exempel),active,2026-09-01,2026-09-03,2026-09-10,,,2026-09-10,2026-11-24,",
        )
    else:
        edit(
            cases,
            "SIP-2026-001,KOP-IFO-SARA,KOP-IFO,,Testperson 1,19121212-1212,Påhittade anteckningar "
            "(exempel),active,2026-09-01,2026-09-03,2026-09-10,,",
            "SIP-2026-001,KOP-IFO-SARA,KOP-IFO,,Testperson 1,19121212-1212,Påhittade anteckningar "
            "(exempel),closed,2026-09-01,2026-09-03,2026-09-10,2026-11-24,need_met",
        )
    load(engine, cases, now=LATER)
    sync(engine, LATER)
    with session_scope(engine) as s:
        if how == "withdraw-consent":
            withdraw_consent(s, "SIP-2026-003", date(2026, 11, 24), now=LATER)
        else:
            close_case(s, "SIP-2026-003", date(2026, 11, 24), ClosureReason.NEED_MET, now=LATER)
        sync_invitations(s, LATER, SETTINGS)

    by_import, by_cli = _state(engine, "SIP-2026-001"), _state(engine, "SIP-2026-003")
    assert by_import == by_cli
    assert by_import["status"] == CaseStatus.CLOSED and by_import["closed_on"] == date(2026, 11, 24)
    assert by_import["closure_reason"] == (
        ClosureReason.CONSENT_WITHDRAWN if how == "withdraw-consent" else ClosureReason.NEED_MET
    )
    # the held meetings stay held; the future follow-up is cancelled with a new SEQUENCE, and everyone who
    # has it in their calendar (imported as sent, or sent by sipflows) gets a CANCEL
    assert [m[1] for m in by_import["meetings"]] == [
        MeetingStatus.HELD,
        MeetingStatus.HELD,
        MeetingStatus.CANCELLED,
    ]
    assert by_import["meetings"][-1][2] == 1 and by_import["meetings"][-1][3] == LATER
    assert by_import["cancels"] == ["FK-SIP", "KOP-SKOLA-KURATOR", "RV-VC-KOP-ROLF"]

    # the same files again change nothing: the follow-up stays cancelled though meetings.csv says scheduled
    load(engine, folder, now=datetime(2026, 11, 26, 7, 0, tzinfo=UTC))
    assert _state(engine, "SIP-2026-001") == by_import


def test_withdrawn_consent_in_a_new_plan_is_closed_and_its_meetings_never_scheduled(
    engine: Engine, folder: Path
) -> None:
    edit(folder / "cases.csv", "2026-09-10,,2027-03-01", "2026-09-10,2026-11-20,2027-03-01")
    load(engine, folder)
    sync(engine)
    with Session(engine) as s:
        case = s.scalars(select(SipCase).where(SipCase.reference == "SIP-2026-001")).one()
        assert (case.status, case.closed_on, case.closure_reason) == (
            CaseStatus.CLOSED,
            date(2026, 11, 20),
            ClosureReason.CONSENT_WITHDRAWN,
        )
        follow_up = s.scalars(select(Meeting).where(Meeting.code == FOLLOW_UP)).one()
        assert follow_up.status == MeetingStatus.CANCELLED
    # nothing asks for an answer; the two who hold it from the old system are told it is off
    assert sorted(ledger(engine)) == [
        (MEETING_CANCEL, "KOP-SKOLA-KURATOR", 1),
        (MEETING_CANCEL, "RV-VC-KOP-ROLF", 1),
    ]


def test_the_cli_says_how_many_meetings_an_import_cancelled(
    engine: Engine, folder: Path, db_url: str
) -> None:
    from typer.testing import CliRunner

    from sipflows.cli import app

    load(engine, folder)
    edit(folder / "cases.csv", "2026-09-10,,2027-03-01", "2026-09-10,2026-11-20,2027-03-01")
    result = CliRunner().invoke(app, ["import", str(folder / "cases.csv"), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert (
        "2 rows: 0 new, 1 updated, 1 unchanged; 1 future meetings of ended plans cancelled" in result.output
    )


def test_the_meetings_chair_is_imported_and_must_belong_to_the_plan(engine: Engine, folder: Path) -> None:
    load(engine, folder)
    meetings = folder / "meetings.csv"
    text = meetings.read_text(encoding="utf-8").splitlines()
    text[0] += ",chair"
    text[1:] = [f"{line},RV-VC-KOP-ROLF" for line in text[1:]]
    meetings.write_text("\n".join(text) + "\n", encoding="utf-8")
    load(engine, meetings, now=LATER)
    with Session(engine) as s:
        rolf = s.scalar(select(Contact.id).where(Contact.code == "RV-VC-KOP-ROLF"))
        assert set(s.scalars(select(Meeting.chair_contact_id))) == {rolf}
        assert (
            s.scalar(select(Meeting.sequence).where(Meeting.code == FOLLOW_UP)) == 0
        )  # not a calendar change
    meetings.write_text(meetings.read_text(encoding="utf-8").replace(",RV-VC-KOP-ROLF\n", ",KOP-IFO-CHEF\n"))
    with pytest.raises(ImportErrors) as info:
        load(engine, meetings, now=LATER)
    assert str(info.value.errors[0]).endswith(
        "meetings.csv:2: column 'chair': contact 'KOP-IFO-CHEF' is not a participant, the convener or the "
        "coordinator of the meeting's case; add it to participants.csv"
    )


def test_a_closed_row_with_withdrawn_consent_needs_no_closing_date(engine: Engine, folder: Path) -> None:
    edit(folder / "cases.csv", "(exempel),active,2026-09-01", "(exempel),closed,2026-09-01")
    edit(folder / "cases.csv", "2026-09-10,,2027-03-01", "2026-09-10,2026-11-20,2027-03-01")
    load(engine, folder)
    with Session(engine) as s:
        case = s.scalars(select(SipCase).where(SipCase.reference == "SIP-2026-001")).one()
        assert (case.closed_on, case.closure_reason) == (date(2026, 11, 20), ClosureReason.CONSENT_WITHDRAWN)

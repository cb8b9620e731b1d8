"""CSV import: whole files or nothing, every error named by file, line and column, upsert by code."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.importer import ImportErrors, ImportReport, import_files
from sipflows.models import (
    Answer,
    CaseStatus,
    ClosedDay,
    Contact,
    Deviation,
    Invitation,
    Language,
    Meeting,
    MeetingStatus,
    Organisation,
    Participant,
    SipCase,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "import"
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
DOMAIN = "sipflows.test"
UNKNOWN = "(not in the register nor in an earlier file of this import)"
MODELS = (Organisation, ClosedDay, Contact, SipCase, Participant, Meeting, Invitation, Deviation)


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0 for m in MODELS}


def run(engine: Engine, *paths: Path, now: datetime = NOW) -> ImportReport:
    return import_files(engine, paths, now, mail_domain=DOMAIN)


def errors_of(engine: Engine, *paths: Path) -> list[str]:
    with pytest.raises(ImportErrors) as info:
        run(engine, *paths)
    return [str(e) for e in info.value.errors]


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of the documented example set, to edit per test."""
    folder = tmp_path / "import"
    shutil.copytree(EXAMPLES, folder)
    return folder


@pytest.fixture
def loaded(engine: Engine, examples: Path) -> Path:
    run(engine, examples)
    return examples


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# ------------------------------------------------------------------------------------------ good imports


def test_example_set_imports_everything_with_references_resolved(engine, examples):
    report = run(engine, examples)

    assert [f.kind for f in report.files] == [
        "organisations",
        "closed_days",
        "contacts",
        "cases",
        "participants",
        "meetings",
        "invitations",
        "deviations",
    ]
    assert counts(engine) == {
        "organisations": 4,
        "closed_days": 1,
        "contacts": 6,
        "sip_cases": 2,
        "participants": 6,
        "meetings": 3,
        "invitations": 5,
        "deviations": 1,
    }
    with Session(engine) as s:
        ifo = s.scalars(select(Organisation).where(Organisation.code == "KOP-IFO")).one()
        chief = s.scalars(select(Contact).where(Contact.code == "KOP-IFO-CHEF")).one()
        sara = s.scalars(select(Contact).where(Contact.code == "KOP-IFO-SARA")).one()
        rolf = s.scalars(select(Contact).where(Contact.code == "RV-VC-KOP-ROLF")).one()
        assert ifo.escalation_contact_id == chief.id
        assert sara.escalation_contact_id == chief.id and sara.organisation_id == ifo.id
        assert rolf.language == Language.EN and chief.report_recipient
        case = s.scalars(select(SipCase).where(SipCase.reference == "SIP-2026-001")).one()
        assert case.convener_contact_id == sara.id and case.convener_org_id == ifo.id
        assert case.status == CaseStatus.ACTIVE and case.follow_up_due == date(2027, 3, 1)
        m1 = s.scalars(select(Meeting).where(Meeting.code == "SIP-2026-001-M1")).one()
        # Stockholm wall clock in summer time (UTC+2) stored as UTC
        assert m1.starts_at == datetime(2026, 9, 21, 7, 0, tzinfo=UTC)
        assert m1.documented_at == datetime(2026, 9, 22, 13, 10, tzinfo=UTC)
        assert m1.ical_uid == "SIP-2026-001-M1@sipflows.test" and m1.sequence == 0
        u1 = s.scalars(select(Meeting).where(Meeting.code == "SIP-2026-001-U1")).one()
        assert u1.starts_at == datetime(2027, 2, 22, 12, 0, tzinfo=UTC)  # winter time, UTC+1
        assert u1.digital_link == "https://meet.example.se/sip-2026-001"
        inv = s.scalars(
            select(Invitation).where(Invitation.meeting_id == m1.id, Invitation.contact_id == rolf.id)
        ).one()
        assert inv.answer == Answer.ACCEPTED and inv.attended is True and inv.required is True
        closed = s.scalars(select(ClosedDay)).one()
        assert closed.organisation_id == ifo.id and closed.day == date(2026, 5, 15)


def test_imported_times_compare_equal_to_the_same_instant_in_a_query(engine, loaded):
    """Times the importer writes are stored exactly as the ORM writes them, so a check's cut-off at the
    very instant of a meeting, answer or report finds the row (SQLite compares the stored text)."""
    from sipflows.models import Base, UTCDateTime

    compared = 0
    with Session(engine) as s:
        for table in Base.metadata.sorted_tables:
            for column in table.c:
                if not isinstance(column.type, UTCDateTime):
                    continue
                for value, stored in s.execute(
                    select(column, func.count()).where(column.is_not(None)).group_by(column)
                ).all():
                    assert s.scalar(select(func.count()).where(column == value)) == stored, column
                    assert s.scalar(select(func.count()).where(column >= value, column <= value)) == stored
                    compared += 1
    assert compared >= 10  # meetings' start, end and documentation, invitations' sending and answers, …


def test_reimporting_the_same_files_changes_nothing(engine, loaded):
    before = counts(engine)
    with Session(engine) as s:
        stamps = dict(s.execute(select(Meeting.code, Meeting.updated_at)).tuples().all())

    report = run(engine, loaded, now=LATER)

    assert counts(engine) == before
    assert all(f.inserted == 0 and f.updated == 0 and f.unchanged == f.rows for f in report.files)
    with Session(engine) as s:
        assert dict(s.execute(select(Meeting.code, Meeting.updated_at)).tuples().all()) == stamps
        assert set(s.scalars(select(Meeting.sequence))) == {0}


def test_reimport_updates_in_place_and_bumps_sequence_only_for_calendar_changes(engine, loaded):
    meetings = loaded / "meetings.csv"
    # M1: documented time corrected only -> no new calendar revision
    edit(meetings, "held,2026-09-22 15:10", "held,2026-09-22 16:00")
    # U1: moved one hour -> a new revision
    edit(meetings, "2027-02-22 13:00,2027-02-22 14:00", "2027-02-22 14:00,2027-02-22 15:00")
    edit(loaded / "contacts.csv", "sara.lind@koping.example.se", "sara.lind2@koping.example.se")
    before = counts(engine)

    report = run(engine, loaded, now=LATER)

    assert counts(engine) == before
    by_kind = {f.kind: f for f in report.files}
    assert (by_kind["meetings"].updated, by_kind["meetings"].unchanged) == (2, 1)
    assert by_kind["contacts"].updated == 1
    with Session(engine) as s:
        m = {x.code: x for x in s.scalars(select(Meeting))}
        assert m["SIP-2026-001-M1"].sequence == 0
        assert m["SIP-2026-001-M1"].updated_at == LATER
        assert m["SIP-2026-001-U1"].sequence == 1
        assert m["SIP-2026-001-U1"].starts_at == datetime(2027, 2, 22, 13, 0, tzinfo=UTC)
        assert m["SIP-2026-001-U1"].updated_at == LATER
        assert m["SIP-2026-001-U1"].ical_uid == "SIP-2026-001-U1@sipflows.test"
        assert m["SIP-2026-001-F1"].sequence == 0 and m["SIP-2026-001-F1"].updated_at == NOW
        assert s.scalar(select(Contact.email).where(Contact.code == "KOP-IFO-SARA")) == (
            "sara.lind2@koping.example.se"
        )

    # place and purpose changes raise it again; cancelling is a revision too
    edit(meetings, "Vårdcentralen Köping rum 3", "Vårdcentralen Köping rum 5")
    edit(meetings, "Uppföljning av planen,scheduled", "Uppföljning av planen,cancelled")
    run(engine, meetings, now=LATER)
    with Session(engine) as s:
        m = {x.code: x for x in s.scalars(select(Meeting))}
        assert (m["SIP-2026-001-M1"].sequence, m["SIP-2026-001-M1"].place) == (
            1,
            "Vårdcentralen Köping rum 5",
        )
        assert (m["SIP-2026-001-U1"].sequence, m["SIP-2026-001-U1"].status) == (2, MeetingStatus.CANCELLED)


def test_absent_columns_are_left_untouched_and_empty_cells_clear(engine, loaded, tmp_path):
    # a partial meetings file without place/purpose: those stay; digital_link present but empty: cleared
    partial = write(
        tmp_path / "partial",
        "meetings.csv",
        "code,case,kind,starts_at,ends_at,digital_link\n"
        "SIP-2026-001-U1,SIP-2026-001,follow_up,2027-02-22 13:00,2027-02-22 14:00,\n",
    )
    run(engine, partial, now=LATER)
    with Session(engine) as s:
        u1 = s.scalars(select(Meeting).where(Meeting.code == "SIP-2026-001-U1")).one()
        assert u1.digital_link is None and u1.purpose == "Uppföljning av planen"
        assert u1.status == MeetingStatus.SCHEDULED and u1.sequence == 1


def test_organisation_escalation_role_moves_with_the_file(engine, loaded):
    contacts = loaded / "contacts.csv"
    edit(
        contacts,
        "ifo.enhetschef@koping.example.se,person,sv,,yes",
        "ifo.enhetschef@koping.example.se,person,sv,,no",
    )
    edit(
        contacts,
        "sara.lind@koping.example.se,person,sv,KOP-IFO-CHEF,no",
        "sara.lind@koping.example.se,person,sv,,yes",
    )
    report = run(engine, contacts)
    assert report.files[0].updated == 2
    with Session(engine) as s:
        sara_id = s.scalar(select(Contact.id).where(Contact.code == "KOP-IFO-SARA"))
        assert (
            s.scalar(select(Organisation.escalation_contact_id).where(Organisation.code == "KOP-IFO"))
            == sara_id
        )
        assert s.scalar(select(Contact.escalation_contact_id).where(Contact.code == "KOP-IFO-SARA")) is None


def test_semicolon_delimiter_and_byte_order_mark(engine, tmp_path):
    folder = tmp_path / "excel"
    write(
        folder,
        "organisations.csv",
        "\ufeffcode;name;kind;principal\r\n"
        'ARB-IFO;"Arboga kommun; socialtjänsten";municipal_unit;kommun\r\n'
        ";;;\r\n"
        "FK;Försäkringskassan;forsakringskassan;\r\n",
    )
    write(
        folder,
        "contacts.csv",
        "\ufeffcode;organisation;name;email;language\r\n"
        "ARB-1;ARB-IFO;Åsa Öberg;asa.oberg@arboga.example.se;EN\r\n",
    )
    report = run(engine, folder)
    assert [(f.kind, f.inserted) for f in report.files] == [("organisations", 2), ("contacts", 1)]
    with Session(engine) as s:
        assert s.scalar(select(Organisation.name).where(Organisation.code == "ARB-IFO")) == (
            "Arboga kommun; socialtjänsten"
        )
        contact = s.scalars(select(Contact)).one()
        assert (contact.name, contact.language) == ("Åsa Öberg", Language.EN)


def test_rows_may_refer_to_rows_of_the_same_batch_and_of_the_register(engine, examples, tmp_path):
    run(engine, examples / "organisations.csv", examples / "contacts.csv")  # already in the register
    batch = tmp_path / "batch"
    write(
        batch,
        "cases.csv",
        "reference,convener_contact,identified_on,status,offered_on\nSIP-9,KOP-IFO-SARA,2026-10-01,offered,2026-10-02\n",
    )
    write(batch, "participants.csv", "case,contact\nSIP-9,KOP-IFO-SARA\nSIP-9,FK-SIP\n")
    write(
        batch,
        "meetings.csv",
        "code,case,kind,starts_at,ends_at\nSIP-9-F1,SIP-9,pre_meeting,2026-10-05T09:00+02:00,2026-10-05T07:45Z\n",
    )
    write(batch, "invitations.csv", "meeting,contact,sent_at\nSIP-9-F1,FK-SIP,2026-10-01 10:00\n")
    # given in reverse order: the import orders them
    report = run(engine, *sorted(batch.iterdir(), reverse=True))
    assert [f.kind for f in report.files] == ["cases", "participants", "meetings", "invitations"]
    with Session(engine) as s:
        case = s.scalars(select(SipCase).where(SipCase.reference == "SIP-9")).one()
        assert case.convener_org_id == s.scalar(select(Organisation.id).where(Organisation.code == "KOP-IFO"))
        meeting = s.scalars(select(Meeting)).one()
        assert (meeting.starts_at, meeting.ends_at) == (
            datetime(2026, 10, 5, 7, 0, tzinfo=UTC),
            datetime(2026, 10, 5, 7, 45, tzinfo=UTC),
        )
        assert s.scalars(select(Invitation)).one().answer == Answer.NONE


def test_dry_run_validates_everything_and_writes_nothing(engine, examples):
    report = import_files(engine, [examples], NOW, mail_domain=DOMAIN, dry_run=True)
    assert report.dry_run and len(report.files) == 8
    assert set(counts(engine).values()) == {0}


# ------------------------------------------------------------------------------------------ errors

# (file, header and rows, expected error lines) — each names the file, the physical line and the column
ERROR_CASES = {
    "bad date": (
        "closed_days.csv",
        "organisation,day,reason\nKOP-IFO,2026-02-30,x\nKOP-IFO,24/11/2026,y\n",
        [
            "closed_days.csv:2: column 'day': '2026-02-30' is not a valid date",
            "closed_days.csv:3: column 'day': '24/11/2026' is not a date (expected YYYY-MM-DD)",
        ],
    ),
    "bad datetime": (
        "deviations.csv",
        "code,case,reported_by,concerning_organisation,kind,reported_at\n"
        "AVV-1,SIP-2026-001,KOP-IFO-SARA,FK,other,2026-11-24 9.00\n",
        [
            "deviations.csv:2: column 'reported_at': the value is not a date and time (expected "
            "YYYY-MM-DD HH:MM in Stockholm time, or ISO 8601 with an offset such as 2026-11-24T09:00+01:00)"
        ],
    ),
    "local time that does not exist": (
        "deviations.csv",
        "code,case,reported_by,concerning_organisation,kind,reported_at\n"
        "AVV-1,SIP-2026-001,KOP-IFO-SARA,FK,other,2026-03-29 02:30\n",
        [
            "deviations.csv:2: column 'reported_at': the value does not exist in Stockholm "
            "(the clocks go forward then)"
        ],
    ),
    "unknown references": (
        "contacts.csv",
        "code,organisation,name,email,escalation_contact\n"
        "NEW-1,NO-SUCH-ORG,Ny Person,ny@koping.example.se,\n"
        "NEW-2,KOP-IFO,Ny Person,ny2@koping.example.se,NOBODY\n",
        [
            f"contacts.csv:2: column 'organisation': unknown organisation 'NO-SUCH-ORG' {UNKNOWN}",
            "contacts.csv:3: column 'escalation_contact': unknown contact 'NOBODY' "
            "(not in the register, in this file nor in an earlier file)",
        ],
    ),
    "unknown case and meeting": (
        "invitations.csv",
        "meeting,contact\nNO-MEETING,FK-SIP\nSIP-2026-001-M1,NO-CONTACT\n",
        [
            f"invitations.csv:2: column 'meeting': unknown meeting 'NO-MEETING' {UNKNOWN}",
            f"invitations.csv:3: column 'contact': unknown contact 'NO-CONTACT' {UNKNOWN}",
        ],
    ),
    "invalid email": (
        "contacts.csv",
        "code,organisation,name,email\nNEW-1,KOP-IFO,Ny,ny.koping.example.se\nNEW-2,KOP-IFO,Ny,ny@@x.se\n",
        [
            "contacts.csv:2: column 'email': 'ny.koping.example.se' is not an email address",
            "contacts.csv:3: column 'email': 'ny@@x.se' is not an email address",
        ],
    ),
    "duplicate key within the file": (
        "participants.csv",
        "case,contact,role\nSIP-2026-002,FK-SIP,a\nSIP-2026-002,KOP-SKOLA-KURATOR,b\nSIP-2026-002,FK-SIP,c\n",
        [
            "participants.csv:4: column 'contact': duplicate row: case 'SIP-2026-002', contact 'FK-SIP' is "
            "already on line 2"
        ],
    ),
    "missing required column": (
        "meetings.csv",
        "code,case,kind,starts_at\nM-9,SIP-2026-001,sip_meeting,2026-12-01 09:00\n",
        ["meetings.csv:1: column 'ends_at': required column missing from the header"],
    ),
    "unknown column": (
        "organisations.csv",
        "code,name,kind,huvudman\nX,Y,other,kommun\n",
        [
            "organisations.csv:1: column 'huvudman': unknown column; the columns of organisations.csv are: "
            "code, name, kind, principal"
        ],
    ),
    "missing required value": (
        "organisations.csv",
        "code,name,kind\nX,,other\n",
        ["organisations.csv:2: column 'name': a value is required"],
    ),
    "bad enum value": (
        "meetings.csv",
        "code,case,kind,starts_at,ends_at,status\n"
        "M-9,SIP-2026-001,sip-möte,2026-12-01 09:00,2026-12-01 10:00,planned\n",
        [
            "meetings.csv:2: column 'kind': 'sip-möte' is not one of: pre_meeting, sip_meeting, follow_up",
            "meetings.csv:2: column 'status': 'planned' is not one of: scheduled, held, cancelled",
        ],
    ),
    "end before start": (
        "meetings.csv",
        "code,case,kind,starts_at,ends_at\n"
        "M-9,SIP-2026-001,sip_meeting,2026-12-01 09:00,2026-12-01 08:00\n"
        "M-10,SIP-2026-001,sip_meeting,2026-12-01 09:00,2026-12-01 09:00\n",
        [
            "meetings.csv:2: column 'ends_at': the meeting ends before (or when) it starts",
            "meetings.csv:3: column 'ends_at': the meeting ends before (or when) it starts",
        ],
    ),
    "dates out of order in a case": (
        "cases.csv",
        "reference,convener_contact,identified_on,status,closed_on,consent_given_on,consent_withdrawn_on\n"
        "SIP-9,KOP-IFO-SARA,2026-10-01,closed,2026-09-01,2026-10-02,2026-10-01\n"
        "SIP-10,KOP-IFO-SARA,2026-10-01,closed,,,\n",
        [
            "cases.csv:2: column 'closed_on': is before identified_on",
            "cases.csv:2: column 'consent_withdrawn_on': is before consent_given_on",
            "cases.csv:3: column 'closed_on': a closed case needs the date it was closed",
        ],
    ),
    "convener in another organisation": (
        "cases.csv",
        "reference,convener_contact,convener_organisation,identified_on\nSIP-9,KOP-IFO-SARA,FK,2026-10-01\n",
        [
            "cases.csv:2: column 'convener_organisation': "
            "the convener contact does not belong to this organisation"
        ],
    ),
    "invitation to someone outside the plan": (
        "invitations.csv",
        "meeting,contact\nSIP-2026-001-M1,FK-SIP\nSIP-2026-001-M1,KOP-IFO-CHEF\n",
        [
            "invitations.csv:3: column 'contact': contact 'KOP-IFO-CHEF' is not a participant of the "
            "meeting's case; add it to participants.csv (a notice about a plan goes only to that plan's "
            "participants)"
        ],
    ),
    "too many fields": (
        "organisations.csv",
        "code,name,kind\nX,Y,other,kommun\n",
        ["organisations.csv:2: has 4 fields but the header has 3 (a delimiter too many or too few?)"],
    ),
    "line numbers count physical lines of quoted multi-line cells": (
        "organisations.csv",
        'code,name,kind\nX,"Två\nrader",other\nY,Z,nonsense\n',
        [
            "organisations.csv:4: column 'kind': 'nonsense' is not one of: municipal_unit, region_unit, "
            "forsakringskassan, arbetsformedlingen, school, kriminalvarden, police, user_organisation, other"
        ],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_every_error_names_file_line_column_and_reason_and_nothing_is_written(engine, loaded, tmp_path, case):
    name, text, expected = ERROR_CASES[case]
    # a good row first, so that "nothing written" is about a file that is partly valid
    path = write(tmp_path / "bad", name, text)
    before = counts(engine)
    with Session(engine) as s:
        snapshot = {m.__tablename__: sorted(map(str, s.scalars(select(m.id)))) for m in MODELS}

    with pytest.raises(ImportErrors) as info:
        run(engine, path)

    assert [str(e).removeprefix(str(path.parent) + "/") for e in info.value.errors] == expected
    assert all(e.file == str(path) for e in info.value.errors)
    assert counts(engine) == before
    with Session(engine) as s:
        assert {m.__tablename__: sorted(map(str, s.scalars(select(m.id)))) for m in MODELS} == snapshot


def test_a_bad_row_keeps_the_good_rows_of_the_same_file_out_too(engine, loaded, tmp_path):
    contacts = write(
        tmp_path / "bad",
        "contacts.csv",
        "code,organisation,name,email\n"
        "KOP-IFO-SARA,KOP-IFO,Sara Lind,sara.changed@koping.example.se\n"
        "NEW-1,KOP-IFO,Ny,ny@koping.example.se\n"
        "NEW-2,KOP-IFO,Ny,not-an-address\n",
    )
    before = counts(engine)
    assert errors_of(engine, contacts) == [
        f"{contacts}:4: column 'email': 'not-an-address' is not an email address"
    ]
    assert counts(engine) == before
    with Session(engine) as s:
        assert (
            s.scalar(select(Contact.email).where(Contact.code == "KOP-IFO-SARA"))
            == "sara.lind@koping.example.se"
        )


def test_every_error_of_a_file_is_reported_in_line_order(engine, loaded, tmp_path):
    path = write(
        tmp_path / "bad",
        "meetings.csv",
        "code,case,kind,starts_at,ends_at\n"
        "M-1,SIP-NOPE,sip_meeting,2026-12-01 09:00,2026-12-01 10:00\n"
        "M-2,SIP-2026-001,meeting,2026-12-01 09:00,2026-12-01 10:00\n"
        "M-3,SIP-2026-001,sip_meeting,2026-12-01 09:00,2026-12-01 08:00\n"
        "M-3,SIP-2026-001,sip_meeting,2026-12-01 09:00,2026-12-01 10:00\n",
    )
    lines = [(e.line, e.column) for e in _raised(engine, path).errors]
    assert lines == [(2, "case"), (3, "kind"), (4, "ends_at"), (5, "code")]


def _raised(engine: Engine, *paths: Path) -> ImportErrors:
    with pytest.raises(ImportErrors) as info:
        run(engine, *paths)
    return info.value


def test_errors_never_repeat_personal_data(engine, loaded, tmp_path):
    secret_number = "19121212-1212-EXTRA-DIGITS-TOO-LONG"
    secret_name = "Testperson " + "X" * 300
    path = write(
        tmp_path / "bad",
        "cases.csv",
        "reference,convener_contact,identified_on,individual_name,personal_identity_number\n"
        f"SIP-9,KOP-IFO-SARA,2026-10-01,{secret_name},{secret_number}\n",
    )
    errors = errors_of(engine, path)
    assert errors == [
        f"{path}:2: column 'individual_name': longer than 200 characters (311)",
        f"{path}:2: column 'personal_identity_number': longer than 20 characters (35)",
    ]
    assert not any(secret_number in e or "XXXX" in e for e in errors)


def test_not_utf8_is_refused_with_the_line(engine, tmp_path):
    path = write(tmp_path, "organisations.csv", "code,name,kind\nA,Köping,other\n", encoding="cp1252")
    assert errors_of(engine, path) == [
        f"{path}:2: is not UTF-8 text; save it as 'CSV UTF-8' (Excel) or UTF-8"
    ]
    assert counts(engine)["organisations"] == 0


def test_unknown_file_names_and_missing_paths_are_refused_before_anything_is_written(
    engine, examples, tmp_path
):
    stray = write(examples, "meeting.csv", "code\n")
    missing = tmp_path / "nope.csv"
    error = _raised(engine, examples, missing)
    assert [str(e) for e in error.errors] == [
        f"{stray}: not an import file; the names are: organisations.csv, closed_days.csv, contacts.csv, "
        "cases.csv, participants.csv, meetings.csv, invitations.csv, deviations.csv",
        f"{missing}: no such file or folder",
    ]
    assert set(counts(engine).values()) == {0}


def test_a_failing_file_stops_the_later_ones_and_earlier_ones_stay(engine, examples):
    edit(examples / "cases.csv", "2026-09-01,2026-09-03", "2026-09-01,2026-13-03")
    error = _raised(engine, examples)

    assert [str(e) for e in error.errors] == [
        f"{examples / 'cases.csv'}:2: column 'offered_on': the value is not a valid date"
    ]
    assert [Path(p).name for p in error.report.imported] == [
        "organisations.csv",
        "closed_days.csv",
        "contacts.csv",
    ]
    assert error.report.failed == str(examples / "cases.csv")
    assert [Path(p).name for p in error.report.not_attempted] == [
        "participants.csv",
        "meetings.csv",
        "invitations.csv",
        "deviations.csv",
    ]
    c = counts(engine)
    assert (c["organisations"], c["closed_days"], c["contacts"]) == (4, 1, 6)
    assert c["sip_cases"] == c["participants"] == c["meetings"] == c["invitations"] == c["deviations"] == 0


# ------------------------------------------------------------------------------------------ CLI


def _cli() -> typer.Typer:
    """Only the import command (the other command groups are not this test's concern)."""
    from sipflows.cli import importer

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """sipflows"""

    importer.register(app)
    return app


def test_cli_imports_and_reports_counts(engine, db_url, examples):
    result = CliRunner().invoke(_cli(), ["import", str(examples), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert f"{examples / 'meetings.csv'}: 3 rows: 3 new, 0 updated, 0 unchanged" in result.stdout
    assert counts(engine)["meetings"] == 3


def test_cli_prints_every_error_and_exits_1(engine, db_url, examples):
    edit(examples / "contacts.csv", "sara.lind@koping.example.se", "sara.lind(at)koping.example.se")
    edit(examples / "contacts.csv", "KOP-IFO-SARA,KOP-IFO,", "KOP-IFO-SARA,KOP-IFX,")
    result = CliRunner().invoke(_cli(), ["import", str(examples), "--database-url", db_url])

    assert result.exit_code == 1
    contacts = examples / "contacts.csv"
    assert f"{contacts}:3: column 'organisation': unknown organisation 'KOP-IFX'" in result.stderr
    assert (
        f"{contacts}:3: column 'email': 'sara.lind(at)koping.example.se' is not an email address"
        in result.stderr
    )
    assert f"Not imported: {contacts} (errors)" in result.stderr
    assert "Not attempted: " in result.stderr and "cases.csv" in result.stderr
    assert f"{examples / 'organisations.csv'}: 4 rows: 4 new" in result.stdout
    c = counts(engine)
    assert (c["organisations"], c["contacts"], c["sip_cases"]) == (4, 0, 0)


def test_a_file_the_database_refuses_is_rolled_back_and_reported(engine, loaded, tmp_path):
    # a meeting made elsewhere already holds the UID the import would give a new meeting
    with Session(engine) as s, s.begin():
        m1 = s.scalars(select(Meeting).where(Meeting.code == "SIP-2026-001-M1")).one()
        m1.ical_uid = "M-NEW@sipflows.test"
    path = write(
        tmp_path / "new",
        "meetings.csv",
        "code,case,kind,starts_at,ends_at\n"
        "M-OK,SIP-2026-001,follow_up,2027-03-01 09:00,2027-03-01 10:00\n"
        "M-NEW,SIP-2026-001,follow_up,2027-03-02 09:00,2027-03-02 10:00\n",
    )
    before = counts(engine)
    error = _raised(engine, path)
    assert len(error.errors) == 1
    assert error.errors[0].file == str(path) and error.errors[0].line is None
    assert error.errors[0].reason.startswith("the database refused the file, nothing of it was written: ")
    assert error.report.failed == str(path)
    assert counts(engine) == before


def test_escalation_contacts_may_point_anywhere_in_the_same_file(engine, examples, tmp_path):
    run(engine, examples / "organisations.csv", examples / "contacts.csv")
    path = write(
        tmp_path / "chain",
        "contacts.csv",
        "code,organisation,name,email,escalation_contact\n"
        "X1,KOP-IFO,X1,x1@koping.example.se,X2\n"
        "X2,KOP-IFO,X2,x2@koping.example.se,X3\n"
        "X3,KOP-IFO,X3,x3@koping.example.se,X4\n"
        "X4,KOP-IFO,X4,x4@koping.example.se,KOP-IFO-CHEF\n"
        "Y1,FK,Y1,y1@fk.example.se,Y2\n"
        "Y2,FK,Y2,y2@fk.example.se,Y1\n"
        "Z1,FK,Z1,z1@fk.example.se,\n",
    )
    report = run(engine, path)
    assert (report.files[0].inserted, report.files[0].updated) == (7, 0)
    with Session(engine) as s:
        ids = dict(s.execute(select(Contact.code, Contact.id)).tuples().all())
        escalation = dict(s.execute(select(Contact.code, Contact.escalation_contact_id)).tuples().all())
    assert {c: escalation[c] for c in ("X1", "X2", "X3", "X4", "Y1", "Y2", "Z1")} == {
        "X1": ids["X2"],
        "X2": ids["X3"],
        "X3": ids["X4"],
        "X4": ids["KOP-IFO-CHEF"],
        "Y1": ids["Y2"],
        "Y2": ids["Y1"],
        "Z1": None,
    }
    assert run(engine, path).files[0].unchanged == 7

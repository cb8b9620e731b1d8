"""Hostile and careless CSV: errors that quote no personal data, identity numbers refused in staff fields,
NUL bytes, over-long codes, unclosed quotes, absurd years, line breaks in echoed values, Unicode forms."""

from __future__ import annotations

import shutil
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.hygiene import identity_number_in, one_line
from sipflows.importer import CELL_LIMIT, ImportErrors, import_files
from sipflows.models import Contact, Meeting, Organisation, SipCase

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "import"
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
DOMAIN = "sipflows.test"

CASES_HEADER = (
    "reference,convener_contact,convener_organisation,coordinator,individual_name,personal_identity_number,"
    "case_notes,status,identified_on,offered_on,activated_on,closed_on,closure_reason,consent_given_on,"
    "consent_withdrawn_on,follow_up_due,origin,discharged_on,under_18"
)
PERSONAL = ("Tolvan Tolvansson", "19121212-1212", "Diagnos F20.0 enligt journal")


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> Path:
    folder = tmp_path / "import"
    shutil.copytree(EXAMPLES, folder)
    import_files(engine, [folder], NOW, mail_domain=DOMAIN)
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def errors(engine: Engine, path: Path) -> list[str]:
    with pytest.raises(ImportErrors) as info:
        import_files(engine, [path], NOW, mail_domain=DOMAIN)
    return [str(e).removeprefix(str(path.parent) + "/") for e in info.value.errors]


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def assert_nothing_personal(messages: list[str], *values: str) -> None:
    for message in messages:
        for value in (*PERSONAL, *values):
            assert value not in message, message


# --- 7. errors never quote a cell or header of cases.csv and deviations.csv -----------------------------

PERSON_ROW = (
    "SIP-2026-009,KOP-IFO-SARA,KOP-IFO,,Tolvan Tolvansson,19121212-1212,Diagnos F20.0 enligt journal,"
    "active,2026-09-01,2026-09-03,2026-09-10,,,2026-09-10,,2027-03-01,ordinary,,no"
)


def test_cases_without_their_header_row(engine, loaded, tmp_path):
    path = write(tmp_path / "bad", "cases.csv", PERSON_ROW + "\n" + PERSON_ROW.replace("009", "010") + "\n")
    messages = errors(engine, path)
    assert messages == [
        "cases.csv:1: line 1 is not a header: none of its 19 cells is a column name of cases.csv; the first "
        "line must name the columns: " + CASES_HEADER.replace(",", ", ")
    ]
    assert_nothing_personal(messages, "SIP-2026-009")


@pytest.mark.parametrize(
    "row",
    [
        PERSON_ROW.replace(
            "Tolvan Tolvansson,19121212-1212", "Tolvan Tolvansson 19121212-1212"
        ),  # one missing
        PERSON_ROW.replace("Tolvan Tolvansson,", "Tolvan,Tolvansson,"),  # one too many
    ],
    ids=["missing-delimiter", "extra-delimiter"],
)
def test_a_shifted_cases_row_is_named_by_line_not_by_its_cells(engine, loaded, tmp_path, row):
    path = write(tmp_path / "bad", "cases.csv", f"{CASES_HEADER}\n{row}\n")
    messages = errors(engine, path)
    fields = row.count(",") + 1
    assert messages == [
        f"cases.csv:2: has {fields} fields but the header has 19 (a delimiter too many or too few?)"
    ]
    assert_nothing_personal(messages, "Tolvansson")


def test_cell_errors_in_cases_say_what_is_wrong_not_what_was_written(engine, loaded, tmp_path):
    header = "reference,convener_contact,identified_on,status,individual_name,consent_given_on"
    path = write(
        tmp_path / "bad",
        "cases.csv",
        f"{header}\n"
        "SIP-9,19121212-1212,Tolvan Tolvansson,Diagnos F20.0 enligt journal,x,2026-01-01\n"
        "SIP-9,KOP-IFO-SARA,2026-10-01,active,y,Tolvan Tolvansson\n",
    )
    messages = errors(engine, path)
    assert messages == [
        "cases.csv:2: column 'identified_on': the value is not a date (expected YYYY-MM-DD)",
        "cases.csv:2: column 'status': the value is not one of: identified, offered, active, closed",
        "cases.csv:2: column 'convener_contact': unknown contact (not in the register nor in an earlier file "
        "of this import)",
        "cases.csv:3: column 'consent_given_on': the value is not a date (expected YYYY-MM-DD)",
        "cases.csv:3: column 'reference': duplicate row: the same reference is already on line 2",
    ]
    assert_nothing_personal(messages, "SIP-9")


def test_unknown_header_names_of_cases_are_not_quoted(engine, loaded, tmp_path):
    path = write(
        tmp_path / "bad",
        "cases.csv",
        "reference,convener_contact,identified_on,Tolvan Tolvansson,19121212-1212\n"
        "SIP-9,KOP-IFO-SARA,2026-10-01,,\n",
    )
    messages = errors(engine, path)
    names = CASES_HEADER.replace(",", ", ")
    assert messages == [
        f"cases.csv:1: header column 4 is not a column name of cases.csv: {names}",
        f"cases.csv:1: header column 5 is not a column name of cases.csv: {names}",
    ]


def test_a_shifted_deviation_does_not_echo_its_free_text(engine, loaded, tmp_path):
    secret = "Socialsekreteraren uteblev och Tolvan blev ledsen"
    path = write(
        tmp_path / "bad",
        "deviations.csv",
        "code,case,reported_by,concerning_organisation,kind,description,reported_at\n"
        f"AVV-9,SIP-2026-001,KOP-IFO-SARA,FK,{secret},party_absent,2026-11-20 10:00\n",
    )
    messages = errors(engine, path)
    assert messages == [
        "deviations.csv:2: column 'kind': the value is not one of: party_absent, plan_not_followed, "
        "documentation_late, invitation_not_answered, other",
    ]
    assert_nothing_personal(messages, secret)


# --- 8. identity numbers refused where notices would carry them -----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "19121212-1212",
        "191212121212",
        "121212-1212",
        "1212121212",
        "Tolvan 121212+1212",
        "701063-2391",  # samordningsnummer: day of birth + 60
        "möte om 19701063-2391 kl 9",
    ],
)
def test_identity_numbers_are_recognised(text):
    assert identity_number_in(text)


@pytest.mark.parametrize(
    "text",
    [
        "19121212-1213",  # wrong check digit
        "19121312-1212",  # no 13th month
        "701093-2391",  # day 33 (93 - 60)
        "Rum 3, plan 2",
        "0701234560",  # a phone number that is not a date of birth with a valid check digit
        "ärende 2026-11-24",
        "1191212121212",  # part of a longer number
    ],
)
def test_other_numbers_are_not(text):
    assert not identity_number_in(text)


STAFF_FIELDS = {
    "organisations.csv": ("code,name,kind\nKOP-NY,Enheten för 19121212-1212,municipal_unit\n", "name"),
    "contacts.csv": (
        "code,organisation,name,email\nC-NY,KOP-IFO,Sara 121212-1212,sara@koping.example.se\n",
        "name",
    ),
    "meetings.csv": (
        "code,case,kind,starts_at,ends_at,place,purpose\n"
        "M-NY,SIP-2026-001,follow_up,2027-03-01 09:00,2027-03-01 10:00,Hemma hos 701063-2391,Uppföljning\n"
        "M-NY2,SIP-2026-001,follow_up,2027-03-02 09:00,2027-03-02 10:00,Rum 3,Planera för 191212121212\n",
        "place",
    ),
}


@pytest.mark.parametrize("name", list(STAFF_FIELDS))
def test_identity_numbers_in_staff_fields_are_refused_at_import(engine, loaded, tmp_path, name):
    text, column = STAFF_FIELDS[name]
    path = write(tmp_path / "bad", name, text)
    messages = errors(engine, path)
    reason = (
        "contains what looks like a personal identity number or samordningsnummer; this field goes into "
        "notices and calendar invitations, where personal data must never be"
    )
    expected = [f"{name}:2: column '{column}': {reason}"]
    if name == "meetings.csv":
        expected.append(f"{name}:3: column 'purpose': {reason}")
    assert messages == expected
    for number in ("19121212-1212", "121212-1212", "701063-2391", "191212121212"):
        assert not [m for m in messages if number in m]


def _meeting_cli() -> typer.Typer:
    from sipflows.cli import meetings

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """sipflows"""

    meetings.register(app)
    return app


def _flat(output: str) -> str:
    """Typer's error box, as one line of words."""
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_identity_numbers_are_refused_by_the_cli(engine, loaded, db_url):
    runner = CliRunner()
    base = ["--now", "2026-11-24 08:00", "--database-url", db_url]
    book = ["meeting", "book", "SIP-2026-001", "--start", "2027-03-01 09:00", "--end", "10:00"]
    for option, value in (("--purpose", "Tolvan 19121212-1212"), ("--place", "Hos 701063-2391")):
        place = [] if option == "--place" else ["--place", "Rum 3"]
        result = runner.invoke(_meeting_cli(), [*book, "--invite", "FK-SIP", *place, option, value, *base])
        assert result.exit_code == 2, result.output
        text = _flat(result.output)
        assert option in text and "looks like a personal identity number" in text
        assert "19121212-1212" not in text and "701063-2391" not in text
    moved = runner.invoke(
        _meeting_cli(),
        ["meeting", "move", "SIP-2026-001-U1", "--start", "2027-03-02 09:00", "--end", "10:00"]
        + ["--place", "121212-1212", *base],
    )
    assert (
        moved.exit_code == 2 and "--place" in _flat(moved.output) and "121212-1212" not in _flat(moved.output)
    )
    assert count(engine, Meeting) == 3


# --- 9. hostile cells ---------------------------------------------------------------------------------


def test_a_nul_byte_is_refused_with_file_line_and_column(engine, loaded, tmp_path):
    path = write(
        tmp_path / "bad",
        "contacts.csv",
        "code,organisation,name,email\nC-1,KOP-IFO,Sara\x00Lind,sara.nul@koping.example.se\n",
    )
    assert errors(engine, path) == ["contacts.csv:2: column 'name': contains a NUL character (\\x00)"]
    assert count(engine, Contact) == 6
    row = PERSON_ROW.replace("Tolvan", "Tol\x00van")
    cases = write(tmp_path / "bad", "cases.csv", f"{CASES_HEADER}\n{row}\n")
    assert errors(engine, cases) == [
        "cases.csv:2: column 'individual_name': contains a NUL character (\\x00)"
    ]


def test_a_code_whose_uid_does_not_fit_is_refused_with_its_line(engine, loaded, tmp_path):
    long_code = "Ö" * 40  # 40 characters, but 240 as a percent-encoded UID
    path = write(
        tmp_path / "bad",
        "meetings.csv",
        "code,case,kind,starts_at,ends_at,place\n"
        "M-OK,SIP-2026-001,follow_up,2027-03-01 09:00,2027-03-01 10:00,Rum 3\n"
        f"{long_code},SIP-2026-001,follow_up,2027-03-02 09:00,2027-03-02 10:00,Rum 3\n"
        f"{'X' * 65},SIP-2026-001,follow_up,2027-03-03 09:00,2027-03-03 10:00,Rum 3\n",
    )
    assert errors(engine, path) == [
        "meetings.csv:3: column 'code': too long for the meeting's calendar UID: with the mail domain it "
        "makes 254 characters (letters outside A–Z are percent-encoded), at most 200 fit",
        "meetings.csv:4: column 'code': longer than 64 characters (65)",
    ]
    assert count(engine, Meeting) == 3


def test_an_unclosed_quote_is_reported_where_it_opens(engine, loaded, tmp_path):
    path = write(
        tmp_path / "bad",
        "organisations.csv",
        'code,name,kind\nA-1,"Två\nrader",other\nA-2,"Öppnas här,other\nA-3,Tre,other\nA-4,Fyra,other\n',
    )
    assert errors(engine, path) == [
        'organisations.csv:4: a quoted cell opens on this line and is never closed (a missing ")'
    ]


@pytest.mark.parametrize(
    ("value", "kind"),
    [("0001-01-01 00:30", "time"), ("9999-12-31 23:30", "time"), ("0001-01-01T00:00+01:00", "time")],
)
def test_absurd_years_are_a_file_line_error(engine, loaded, tmp_path, value, kind):
    path = write(
        tmp_path / "bad",
        "meetings.csv",
        "code,case,kind,starts_at,ends_at,place\n"
        f"M-Y,SIP-2026-001,follow_up,{value},2027-01-01 10:00,Rum 3\n",
    )
    assert errors(engine, path) == [
        f"meetings.csv:2: column 'starts_at': '{value}' is outside the years 1900–2199"
    ]


def test_absurd_dates_in_cases_are_refused(engine, loaded, tmp_path):
    row = PERSON_ROW.replace("2027-03-01", "9999-12-31")
    path = write(tmp_path / "bad", "cases.csv", f"{CASES_HEADER}\n{row}\n")
    assert errors(engine, path) == [
        "cases.csv:2: column 'follow_up_due': the value is outside the years 1900–2199"
    ]


def test_line_breaks_in_an_echoed_value_never_split_an_error_line(engine, loaded, tmp_path):
    path = write(
        tmp_path / "bad",
        "contacts.csv",
        'code,organisation,name,email\nC-1,KOP-IFO,Ny,"a\r\nb@x.se"\n"C-\n2",KOP-IFO,"Två\nrader",c@x.se\n',
    )
    messages = errors(engine, path)
    assert messages == [
        "contacts.csv:2: column 'email': 'a\\r\\nb@x.se' is not an email address",
        "contacts.csv:4: column 'code': contains a line break or another control character; a code is one "
        "line",
        "contacts.csv:4: column 'name': contains a line break or another control character; the field is one "
        "line",
    ]
    assert all("\n" not in m and "\r" not in m for m in messages)
    assert one_line("a\u2028b\x1bc\x00") == "a\\u2028b\\x1bc\\x00"


def test_codes_are_one_code_whichever_way_o_umlaut_is_typed(engine, loaded, tmp_path):
    nfc, nfd = "KÖP-ÖRE", unicodedata.normalize("NFD", "KÖP-ÖRE")
    assert nfc != nfd
    orgs = write(tmp_path / "a", "organisations.csv", f"code,name,kind\n{nfd},Öregrund,other\n")
    import_files(engine, [orgs], NOW, mail_domain=DOMAIN)
    contacts = write(
        tmp_path / "b", "contacts.csv", f"code,organisation,name,email\nÖ-1,{nfc},Örjan,orjan@x.se\n"
    )
    import_files(engine, [contacts], NOW, mail_domain=DOMAIN)
    again = write(tmp_path / "c", "organisations.csv", f"code,name,kind\n{nfc},Öregrund,other\n")
    report = import_files(engine, [again], NOW, mail_domain=DOMAIN)
    assert (report.files[0].inserted, report.files[0].unchanged) == (0, 1)
    with Session(engine) as s:
        assert s.scalars(select(Organisation.code).where(Organisation.name == "Öregrund")).all() == [nfc]


def test_a_cell_larger_than_the_limit_is_an_error_at_its_row(engine, loaded, tmp_path):
    huge = "x" * (CELL_LIMIT + 1)
    path = write(
        tmp_path / "bad",
        "deviations.csv",
        "code,case,reported_by,concerning_organisation,kind,description,reported_at\n"
        "AVV-8,SIP-2026-001,KOP-IFO-SARA,FK,other,kort,2026-11-20 10:00\n"
        f'AVV-9,SIP-2026-001,KOP-IFO-SARA,FK,other,"{huge}",2026-11-20 10:00\n',
    )
    assert errors(engine, path) == [
        f"deviations.csv:3: a cell is larger than {CELL_LIMIT} characters, the most a cell may hold"
    ]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(SipCase)) == 2


def test_one_wrong_cell_among_many_right_ones_is_found_in_every_kind_of_column(engine, loaded, tmp_path):
    """Columns are checked whole where they can be; a single cell that fails is still reported at its own
    line and column, with the same reason as in a file of one row."""
    header = "code,organisation,name,email,kind,escalation_contact\n"
    good = [f"BULK-{i:04d},KOP-IFO,Handläggare {i},h{i}@x.se,person," for i in range(400)]
    wrong = {
        50: "BULK-0050,KOP-IFO,Namn\u2028Radbrytning,h50@x.se,person,",  # a line separator in a name
        120: "BULK-0120,KOP-IFO,Anna 19121212-1212,h120@x.se,person,",  # an identity number in a name
        200: f"BULK-{'X' * 70},KOP-IFO,Lång kod,h200@x.se,person,",  # a code of 75 characters
        250: "BULK-0250,KOP-IFO,Ett namn,h250..x@x.se,person,",  # not an email address
        300: "BULK-0300,KOP-IFO,Ett namn,h300@x.se,persons,",  # not a choice
        350: "BULK-0350,KOP-IFO,Ett namn,h350@x.se,person,KÖP-SAKNAS",  # unknown, not ASCII
    }
    rows = [wrong.get(i, row) for i, row in enumerate(good)]
    path = write(tmp_path / "bulk", "contacts.csv", header + "\n".join(rows) + "\n")
    reason = (
        "contains what looks like a personal identity number or samordningsnummer; this field goes into "
        "notices and calendar invitations, where personal data must never be"
    )
    assert errors(engine, path) == [
        "contacts.csv:52: column 'name': contains a line break or another control character; the field is "
        "one line",
        f"contacts.csv:122: column 'name': {reason}",
        "contacts.csv:202: column 'code': longer than 64 characters (75)",
        "contacts.csv:252: column 'email': 'h250..x@x.se' is not an email address",
        "contacts.csv:302: column 'kind': 'persons' is not one of: person, functional",
        "contacts.csv:352: column 'escalation_contact': unknown contact 'KÖP-SAKNAS' (not in the register, "
        "in this file nor in an earlier file)",
    ]
    with Session(engine) as s:
        assert not s.scalars(select(Contact.code).where(Contact.code.like("BULK-%"))).all()  # nothing written


def test_codes_with_the_characters_of_array_and_json_syntax_are_found_again(engine, loaded, tmp_path):
    """Codes are looked up by the thousand in one statement (an array or JSON list of them): quotes,
    backslashes, commas, braces, brackets, spaces and letters outside ASCII are codes like any other."""
    codes = ['Q"1', "B\\2", "C,3", "{D4}", "[E5]", "F 6", "NULL", "Ö\u2009G", "'H"]
    rows = "".join(f'"{c.replace(chr(34), chr(34) * 2)}",Enhet {i},other\n' for i, c in enumerate(codes))
    import_files(
        engine,
        [write(tmp_path / "a", "organisations.csv", "code,name,kind\n" + rows)],
        NOW,
        mail_domain=DOMAIN,
    )
    contacts = "".join(
        f'K-{i},"{c.replace(chr(34), chr(34) * 2)}",Namn {i},k{i}@x.se\n' for i, c in enumerate(codes)
    )
    path = write(tmp_path / "b", "contacts.csv", "code,organisation,name,email\n" + contacts)
    report = import_files(engine, [path], NOW, mail_domain=DOMAIN)
    assert report.files[0].inserted == len(codes)
    again = import_files(engine, [path], NOW, mail_domain=DOMAIN)
    assert again.files[0].unchanged == len(codes)

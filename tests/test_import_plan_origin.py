"""cases.csv: a plan's origin (ordinary or discharge with its date) and whether it is for a child."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipflows.importer import ImportErrors, import_files
from sipflows.models import PlanOrigin, SipCase

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "import"
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
HEADER = "reference,convener_contact,identified_on,consent_given_on,status"


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> Path:
    folder = tmp_path / "import"
    shutil.copytree(EXAMPLES, folder)
    import_files(engine, [folder], NOW, mail_domain="sipflows.test")
    return folder


def cases_file(tmp_path: Path, text: str, name: str = "one") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    path = folder / "cases.csv"
    path.write_text(text, encoding="utf-8")
    return path


def run(engine: Engine, path: Path) -> None:
    import_files(engine, [path], NOW, mail_domain="sipflows.test")


def errors(engine: Engine, path: Path) -> list[str]:
    with pytest.raises(ImportErrors) as info:
        run(engine, path)
    return [str(e).removeprefix(str(path.parent) + "/") for e in info.value.errors]


def plans(engine: Engine) -> dict[str, tuple[PlanOrigin, date | None, bool]]:
    with Session(engine) as s:
        rows = s.execute(select(SipCase.reference, SipCase.origin, SipCase.discharged_on, SipCase.under_18))
        return {ref: (origin, discharged, under) for ref, origin, discharged, under in rows.tuples()}


def test_the_example_set_carries_an_ordinary_and_a_discharge_plan(engine, loaded):
    got = plans(engine)
    assert got["SIP-2026-001"] == (PlanOrigin.ORDINARY, None, False)
    assert got["SIP-2026-002"] == (PlanOrigin.DISCHARGE, date(2026, 10, 6), False)


def test_origin_discharge_date_and_under_18_are_imported_with_their_defaults(engine, loaded, tmp_path):
    path = cases_file(
        tmp_path,
        f"{HEADER},origin,discharged_on,under_18\n"
        "SIP-A,KOP-IFO-SARA,2026-10-01,2026-10-01,active,discharge,2026-10-05,ja\n"
        "SIP-B,KOP-IFO-SARA,2026-10-01,2026-10-01,active,,,\n"
        "SIP-C,KOP-IFO-SARA,2026-10-01,2026-10-01,active,ORDINARY,,yes\n",
    )
    run(engine, path)
    # a file without the columns: a new plan is an ordinary plan for an adult
    run(engine, cases_file(tmp_path, f"{HEADER}\nSIP-D,KOP-IFO-SARA,2026-10-01,2026-10-01,active\n", "two"))
    got = plans(engine)
    assert got["SIP-A"] == (PlanOrigin.DISCHARGE, date(2026, 10, 5), True)
    assert got["SIP-B"] == (PlanOrigin.ORDINARY, None, False)
    assert got["SIP-C"] == (PlanOrigin.ORDINARY, None, True)
    assert got["SIP-D"] == (PlanOrigin.ORDINARY, None, False)


def test_absent_columns_leave_the_plan_as_it_is(engine, loaded, tmp_path):
    run(
        engine,
        cases_file(
            tmp_path,
            f"{HEADER},origin,discharged_on,under_18\n"
            "SIP-A,KOP-IFO-SARA,2026-10-01,2026-10-01,active,discharge,2026-10-05,yes\n",
        ),
    )
    run(engine, cases_file(tmp_path, f"{HEADER}\nSIP-A,KOP-IFO-SARA,2026-10-01,2026-10-02,active\n", "two"))
    assert plans(engine)["SIP-A"] == (PlanOrigin.DISCHARGE, date(2026, 10, 5), True)


def test_a_discharge_plan_becomes_ordinary_only_with_its_date_cleared(engine, loaded, tmp_path):
    run(
        engine,
        cases_file(
            tmp_path,
            f"{HEADER},origin,discharged_on\nSIP-A,KOP-IFO-SARA,2026-10-01,2026-10-01,active,discharge,2026-10-05\n",
        ),
    )
    without = cases_file(
        tmp_path, f"{HEADER},origin\nSIP-A,KOP-IFO-SARA,2026-10-01,2026-10-01,active,ordinary\n", "two"
    )
    assert errors(engine, without) == [
        "cases.csv:2: column 'origin': the plan has a discharge date in the register: add an empty "
        "discharged_on column to make it an ordinary plan"
    ]
    assert plans(engine)["SIP-A"] == (PlanOrigin.DISCHARGE, date(2026, 10, 5), False)
    cleared = cases_file(
        tmp_path,
        f"{HEADER},origin,discharged_on\nSIP-A,KOP-IFO-SARA,2026-10-01,2026-10-01,active,ordinary,\n",
        "three",
    )
    run(engine, cleared)
    assert plans(engine)["SIP-A"] == (PlanOrigin.ORDINARY, None, False)


def test_errors_name_line_and_column_never_the_value_and_nothing_is_written(engine, loaded, tmp_path):
    before = plans(engine)
    path = cases_file(
        tmp_path,
        f"{HEADER},origin,discharged_on,under_18\n"
        "SIP-OK,KOP-IFO-SARA,2026-10-01,2026-10-01,active,ordinary,,no\n"
        "SIP-A,KOP-IFO-SARA,2026-10-01,2026-10-01,active,discharge,,no\n"
        "SIP-B,KOP-IFO-SARA,2026-10-01,2026-10-01,active,ordinary,2026-10-03,no\n"
        "SIP-C,KOP-IFO-SARA,2026-10-01,2026-10-01,active,Tolvan Tolvansson,,no\n"
        "SIP-D,KOP-IFO-SARA,2026-10-01,2026-10-01,active,ordinary,,19121212-1212\n"
        "SIP-E,KOP-IFO-SARA,2026-10-01,2026-10-01,active,discharge,5/10/2026,no\n",
    )
    messages = errors(engine, path)
    assert messages == [
        "cases.csv:3: column 'discharged_on': a plan with origin 'discharge' needs its discharge date",
        "cases.csv:4: column 'discharged_on': a discharge date is given but the origin is not 'discharge'",
        "cases.csv:5: column 'origin': the value is not one of: ordinary, discharge",
        "cases.csv:6: column 'under_18': the value is not yes or no",
        "cases.csv:7: column 'discharged_on': the value is not a date (expected YYYY-MM-DD)",
    ]
    assert not any("Tolvan" in m or "19121212" in m or "5/10" in m for m in messages)
    assert plans(engine) == before

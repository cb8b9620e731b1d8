"""The report folder, its charts, the weekly mail and ``sipflows report``: numbers, titles and privacy."""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from typer.testing import CliRunner

from sipflows.artifacts import MarkdownArtifact, TableArtifact, weekly_report_artifacts
from sipflows.models import Language, Notice, NoticeStatus, Organisation
from sipflows.notices.ledger import enqueue
from sipflows.report import (
    CSV_COLUMNS,
    figures_csv,
    last_week_ending,
    markdown_summary,
    render_charts,
    table_rows,
    weekly_report,
    weekly_report_drafts,
    write_report,
)
from sipflows.settings import Settings, get_settings
from sipflows.stats import Period, compute_stats
from sipflows.transports.base import attachments_from_json
from tests.factories import SECRETS
from tests.test_stats import APRIL, AS_OF, REGION, FixtureRegister, build_fixture_register, fixture_policy

SV_TITLES = {
    "plans_by_stage": "SIP-planer per steg",
    "documentation_in_time": "Dokumentation i tid per organisation",
    "invitations_by_org_kind": "Svar på kallelser och närvaro per organisationstyp",
    "deviations_by_kind": "Avvikelser per typ och allvarlighetsgrad",
    "deviations_open_closed": "Avvikelser öppna och stängda vid periodens slut",
}
EN_TITLES = {
    "plans_by_stage": "SIP plans by stage",
    "documentation_in_time": "Documentation in time by organisation",
    "invitations_by_org_kind": "Invitation answers and attendance by organisation kind",
    "deviations_by_kind": "Deviations by kind and severity",
    "deviations_open_closed": "Deviations open and closed at the end of the period",
}
SV_AXES = {  # (x label, y label)
    "plans_by_stage": ("Steg", "Antal planer (st)"),
    "documentation_in_time": ("Andel dokumenterade i tid (%)", "Sammankallande organisation"),
    "invitations_by_org_kind": ("Den inbjudnas organisationstyp", "Andel (%)"),
    "deviations_by_kind": ("Typ av avvikelse", "Antal avvikelser (st)"),
    "deviations_open_closed": ("Antal avvikelser (st)", "Berörd organisation"),
}


@pytest.fixture
def register(build) -> FixtureRegister:
    return build_fixture_register(build)


@pytest.fixture
def stats(session, register):
    return compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _assert_png(path: Path, title: str) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5000
    with Image.open(path) as img:
        assert img.size[0] >= 600 and img.size[1] >= 300
        assert img.text["Title"] == title
        assert len(img.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 10  # not a blank canvas


def test_charts_have_titles_axes_with_units_and_render_to_png(stats, tmp_path):
    charts = render_charts(stats, "sv")
    assert {c.name: c.figure.get_suptitle() for c in charts} == SV_TITLES
    for c in charts:
        ax = c.figure.axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == SV_AXES[c.name]
        assert "2026-04-01 – 2026-04-30" in ax.get_title()
    assert {c.name: c.figure.get_suptitle() for c in render_charts(stats, "en")} == EN_TITLES

    folder = write_report(stats, tmp_path / "out")
    assert folder.chart_titles == SV_TITLES
    for name, path in folder.charts.items():
        assert path == tmp_path / "out" / "charts" / f"{name}.png"
        _assert_png(path, SV_TITLES[name])


def test_charts_of_an_empty_period_still_render_and_say_so(session, register, tmp_path):
    empty = compute_stats(session, Period(date(2025, 1, 1), date(2025, 1, 31)), fixture_policy())
    for chart in render_charts(empty, "sv"):
        texts = [t.get_text() for t in chart.figure.axes[0].texts]
        assert "Inga data för perioden." in texts, chart.name
    folder = write_report(empty, tmp_path / "empty")
    for name, path in folder.charts.items():
        _assert_png(path, SV_TITLES[name])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_folder_holds_html_with_charts_and_a_csv_of_every_figure(stats, tmp_path):
    folder = write_report(stats, tmp_path / "out", generated_at=datetime(2026, 5, 4, 6, 0, tzinfo=UTC))
    html = folder.index_html.read_text(encoding="utf-8")
    assert '<html lang="sv">' in html
    assert "<title>SIP-statistik 2026-04-01 – 2026-04-30</title>" in html
    for name in SV_TITLES:
        assert f'<img src="charts/{name}.png" alt="{SV_TITLES[name]}">' in html
    assert "Bedömt per: 2026-05-04" in html
    assert "Skapad: 2026-05-04 08:00" in html  # local time
    # key figures, tables and plain-language definitions
    assert '<div class="v">4</div><div class="l">Identifierade planer</div>' in html
    assert '<div class="v">66,7\u00a0%</div><div class="l">Andel dokumenterade i tid</div>' in html
    assert "<td>Vårdcentralen Köping (RV-VC-KOP)</td>" in html
    assert "Försäkringskassan" in html
    assert "Så räknas siffrorna" in html
    assert "Medianen av antalet kalenderdagar från rapport till kvittens" in html
    assert "Vårdcentralen Köping (RV-VC-KOP): 1 arbetsdag" in html  # the policy override is explained

    rows = _read_csv(folder.figures_csv)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(stats.figures)
    by_key = {(r["metric"], r["organisation"], r["dimension"]): r for r in rows}
    assert set(by_key) == {(f.metric, f.organisation, f.dimension) for f in stats.figures}
    assert by_key[("plans_identified", "*", "")]["value"] == "4"
    assert by_key[("plans_identified", "*", "")]["label"] == "Identifierade planer"
    assert by_key[("documented_in_time_share", "*", "")]["value"] == "66.67"
    assert by_key[("documented_in_time_share", "*", "")]["unit"] == "percent"
    assert by_key[("invitation_answer_rate", "*", "invitee_kind=forsakringskassan")]["value"] == "75.0"
    assert by_key[("deviation_reply_median_days", "FK", "")]["value"] == ""
    assert by_key[("deviations_open", REGION, "")]["organisation_name"] == "Vårdcentralen Köping (RV-VC-KOP)"
    for f in stats.figures:
        value = by_key[(f.metric, f.organisation, f.dimension)]["value"]
        if f.value is None:
            assert value == ""
        else:
            assert float(value) == pytest.approx(f.value, abs=0.005)

    # rerun into the same folder: rewritten, nothing stale, nothing half-written
    again = write_report(stats, tmp_path / "out", language="en")
    assert '<html lang="en">' in again.index_html.read_text(encoding="utf-8")
    assert "Plans identified" in again.index_html.read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == sorted(
        ["charts", "figures.csv", "index.html", *(f"{n}.png" for n in SV_TITLES)]
    )


def test_markdown_summary_and_table_rows_for_the_artifacts(stats):
    md = markdown_summary(stats)
    assert md.startswith("# SIP-statistik 2026-04-01 – 2026-04-30")
    assert "| Identifierade planer | 4 |" in md
    assert "| Andel dokumenterade i tid | 66,7\u00a0% |" in md
    kommun_row = "| Köping individ- och familjeomsorg (KOP-IFO) | 3 | 2 | 2 | 2 | 1 | 75 % | 50 % | 42,9 % |"
    assert kommun_row.replace(" %", "\u00a0%") in md
    assert "| Totalt | 4 | 3 | 3 | 2 | 2 | 66,7\u00a0% | 66,7\u00a0% | 50\u00a0% |" in md
    en = markdown_summary(stats, "en")
    assert "| Plans identified | 4 |" in en
    assert "| Share documented in time | 66.7% |" in en

    rows = table_rows(stats)
    assert len(rows) == len(stats.figures)
    identified = {"metric": "plans_identified", "label": "Identifierade planer", "organisation": "*"}
    assert {**identified, "dimension": "", "value": 4, "unit": "count"} in rows
    share = next(
        r
        for r in rows
        if r["metric"] == "attendance_rate" and r["organisation"] == "KOP-IFO" and not r["dimension"]
    )
    assert share["value"] == 42.86


def test_the_weekly_report_flow_publishes_the_summary_and_every_figure(stats):
    summary, figures = weekly_report_artifacts(stats, "en", date(2026, 4, 30))
    assert summary == MarkdownArtifact(
        key="weekly-report-summary",
        markdown=markdown_summary(stats, "en", weekly=True),
        description="SIP figures for the week ending 2026-04-30",
    )
    assert figures == TableArtifact(
        key="weekly-report-figures",
        table=table_rows(stats, "en"),
        description="Every figure of the weekly report",
    )


def _recipients(build, register):
    w = {o.code: o for o in build.session.scalars(select(Organisation)).all()}
    sv = build.contact(w["KOP-IFO"], "Verksamhetsutvecklare Vera", report_recipient=True)
    en = build.contact(w[REGION], "Analyst Alex", language=Language.EN, report_recipient=True)
    return sv, en


def test_weekly_report_writes_the_folder_and_mails_each_recipient_once(
    engine, session, build, register, tmp_path
):
    sv, en = _recipients(build, register)
    session.commit()
    settings = Settings(mail_domain="sipflows.test")
    now = datetime(2026, 4, 20, 5, 0, tzinfo=UTC)
    result = weekly_report(engine, date(2026, 4, 19), tmp_path / "reports", settings, fixture_policy(), now)

    assert result.period == Period(date(2026, 4, 13), date(2026, 4, 19))
    assert result.folder.path == tmp_path / "reports" / "week-2026-04-19"
    assert result.folder.index_html.is_file() and result.folder.figures_csv.is_file()
    # the week 13–19 April: M2 held (13th), A5 ended with consent withdrawn (15th), D3 reported (15th)
    assert result.stats.value("sip_meetings_held") == 1
    assert result.stats.value("plans_ended_consent_withdrawn") == 1
    assert result.stats.value("deviations_reported") == 1
    assert result.stats.as_of == date(2026, 4, 20)
    assert (result.recipients, result.enqueued) == (2, 2)

    notices = session.scalars(select(Notice).order_by(Notice.contact_id)).all()
    assert [n.key for n in notices] == [
        f"report:weekly:2026-04-19:c{sv.id}",
        f"report:weekly:2026-04-19:c{en.id}",
    ]
    assert all(n.kind == "report.weekly" and n.status == NoticeStatus.PENDING for n in notices)
    assert [n.address for n in notices] == [sv.email, en.email]
    assert all(n.case_id is None and n.meeting_id is None for n in notices)
    sv_notice, en_notice = notices
    assert sv_notice.subject == "SIP-rapport 2026-04-13 – 2026-04-19"
    assert en_notice.subject == "SIP report 2026-04-13 – 2026-04-19"
    assert "måndag 13 april 2026" in sv_notice.body_text
    assert "varav samtycke återkallat: 1" in sv_notice.body_text
    assert "Deviations reported: 1" in en_notice.body_text
    assert '<td style="text-align: right;">1</td>' in sv_notice.body_html

    files = {a.filename: a for a in attachments_from_json(sv_notice.attachments)}
    assert set(files) == {"sip-rapport-2026-04-19.html", "sip-siffror-2026-04-19.csv"}
    assert files["sip-siffror-2026-04-19.csv"].content_type == "text/csv"
    csv_rows = list(
        csv.DictReader(io.StringIO(files["sip-siffror-2026-04-19.csv"].content.decode("utf-8-sig")))
    )
    assert {"metric": "sip_meetings_held", "organisation": "*", "value": "1"}.items() <= next(
        r for r in csv_rows if r["metric"] == "sip_meetings_held" and r["organisation"] == "*"
    ).items()
    report_html = files["sip-rapport-2026-04-19.html"].content.decode("utf-8")
    assert report_html.count('src="data:image/png;base64,') == 5
    en_files = {a.filename for a in attachments_from_json(en_notice.attachments)}
    assert en_files == {"sip-report-2026-04-19.html", "sip-figures-2026-04-19.csv"}

    # a rerun (a retried flow run) rewrites the folder and queues nothing new
    again = weekly_report(engine, date(2026, 4, 19), tmp_path / "reports", settings, fixture_policy(), now)
    assert (again.recipients, again.enqueued) == (2, 0)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Notice)) == 2
    # and the ledger itself refuses a second copy, whoever renders it
    drafts = weekly_report_drafts(result.stats, [(sv.id, sv.email, "sv")], date(2026, 4, 19), settings)
    assert enqueue(session, drafts, now, settings.mail_domain) == 0
    assert session.scalar(select(func.count()).select_from(Notice)) == 2


def _all_output_text(paths: list[Path], extra: list[str]) -> str:
    chunks = list(extra)
    for p in paths:
        data = p.read_bytes()
        if p.suffix == ".png":
            with Image.open(p) as img:
                chunks.extend(str(v) for v in img.text.values())
            chunks.append(data.decode("latin-1"))
        else:
            chunks.append(data.decode("utf-8-sig"))
    return "\n".join(chunks)


def test_no_plan_reference_person_or_free_text_leaves_the_register(
    engine, session, build, register, tmp_path
):
    _recipients(build, register)
    session.commit()
    stats = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    folder = write_report(stats, tmp_path / "out")
    en_folder = write_report(stats, tmp_path / "out-en", language="en")
    weekly = weekly_report(
        engine,
        date(2026, 4, 19),
        tmp_path / "w",
        Settings(),
        fixture_policy(),
        datetime(2026, 4, 20, tzinfo=UTC),
    )
    notices = session.scalars(select(Notice)).all()
    mail_parts: list[str] = []
    for n in notices:
        mail_parts += [n.subject, n.body_text, n.body_html]
        mail_parts += [a.content.decode("utf-8-sig") for a in attachments_from_json(n.attachments)]
        mail_parts += [
            base64.b64decode(f["content_base64"]).decode("latin-1") for f in n.attachments["files"]
        ]
    files = [
        p for d in (folder.path, en_folder.path, weekly.folder.path) for p in d.rglob("*") if p.is_file()
    ]
    assert len(files) == 21
    text = _all_output_text(
        files,
        [*mail_parts, markdown_summary(stats), markdown_summary(stats, "en"), repr(table_rows(stats))],
    )
    for secret in SECRETS:
        assert secret not in text
    for reference in register.references:
        assert reference not in text
    assert "SIP-2026-" not in text
    for name in register.contact_names + ["Verksamhetsutvecklare Vera", "Analyst Alex"]:
        assert name not in text
    for email in register.contact_emails:
        assert email not in text
    assert "AVV-" not in text  # deviation codes
    assert "Samordna insatser" not in text  # meeting purpose (free text)
    assert "rum 3" not in text  # meeting place


def _cli_env(db_url: str, policy_file: Path) -> dict[str, str]:
    return {"SIPFLOWS_DATABASE_URL": db_url, "SIPFLOWS_POLICY_FILE": str(policy_file)}


def test_cli_writes_the_report_folder(session, register, db_url, tmp_path, fresh_settings):
    from sipflows.cli import app

    session.commit()
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[organisations."{REGION}".documentation]\ndue_working_days = 1\n', encoding="utf-8")
    runner = CliRunner()
    out = tmp_path / "rapport"
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
    result = runner.invoke(app, args, env=_cli_env(db_url, policy))
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output
    assert "Andel dokumenterade i tid: 66,7\u00a0%" in result.output
    by_key = {
        (r["metric"], r["organisation"], r["dimension"]): r["value"] for r in _read_csv(out / "figures.csv")
    }
    assert by_key[("plans_identified", "*", "")] == "4"
    assert by_key[("documented_in_time_share", "*", "")] == "66.67"  # the override came from the policy file
    assert (out / "charts" / "plans_by_stage.png").is_file()

    scoped = tmp_path / "region"
    scoped_args = [
        *args[:6],
        str(scoped),
        "--organisation",
        REGION,
        "--language",
        "en",
        "--as-of",
        "2026-05-04",
    ]
    result = runner.invoke(app, scoped_args, env=_cli_env(db_url, policy))
    assert result.exit_code == 0, result.output
    assert "Plans identified: 1" in result.output
    by_key = {
        (r["metric"], r["organisation"], r["dimension"]): r["value"]
        for r in _read_csv(scoped / "figures.csv")
    }
    assert by_key[("plans_identified", "*", "")] == "1"
    assert ("plans_identified", "KOP-IFO", "") not in by_key
    assert '<html lang="en">' in (scoped / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-04-31", "--to", "2026-05-01"], "--from"),
        (["--from", "2026-04-30", "--to", "2026-04-01"], "ends (2026-04-01) before it starts (2026-04-30)"),
        (
            ["--from", "2026-04-01", "--to", "2026-04-30", "--organisation", "NOPE"],
            "no organisation with code NOPE",
        ),
        (["--from", "2026-04-01", "--to", "2026-04-30", "--language", "de"], "--language"),
    ],
)
def test_cli_refuses_bad_input_and_writes_nothing(
    session, register, db_url, tmp_path, fresh_settings, args, message
):
    from sipflows.cli import app

    session.commit()
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")
    out = tmp_path / "never"
    result = CliRunner().invoke(app, ["report", *args, "--out", str(out)], env=_cli_env(db_url, policy))
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_last_week_ending_is_the_sunday_before():
    assert last_week_ending(date(2026, 4, 20)) == date(2026, 4, 19)  # Monday morning run
    assert last_week_ending(date(2026, 4, 19)) == date(2026, 4, 12)  # on a Sunday the week is not over
    assert Period.week_ending(date(2026, 4, 19)) == Period(date(2026, 4, 13), date(2026, 4, 19))


def test_csv_text_and_language_choice(stats):
    text = figures_csv(stats, "en")
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert "plans_ended_consent_withdrawn,*,,1,count,of which consent withdrawn,Total" in text
    with pytest.raises(ValueError, match="language"):
        figures_csv(stats, "de")

"""``sipflows sweep`` against a register built here: the table shows what is due and nothing personal."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from sipflows.cli import app
from sipflows.models import Answer, MeetingStatus
from sipflows.settings import get_settings
from tests.factories import SECRETS

runner = CliRunner()


@pytest.fixture
def register(build, session, db_url, monkeypatch):
    region = build.standard_region()
    case = build.case(region["k"], reference="SIP-2026-0042", participants=(region["r"], region["f"]))
    held = build.meeting(case, date(2026, 3, 2), status=MeetingStatus.HELD)
    upcoming = build.meeting(case, date(2026, 3, 20))
    invitation = build.invite(upcoming, region["r"], sent_on=date(2026, 3, 2))
    build.invite(upcoming, region["f"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    deviation = build.deviation(case, region["k"], region["region"], date(2026, 3, 2))
    session.commit()
    monkeypatch.setenv("SIPFLOWS_DATABASE_URL", db_url)
    monkeypatch.delenv("SIPFLOWS_POLICY_FILE", raising=False)
    get_settings.cache_clear()
    yield {"region": region, "case": case, "held": held, "invitation": invitation, "deviation": deviation}
    get_settings.cache_clear()


def sweep(*args: str):
    return runner.invoke(app, ["sweep", *args])


def test_sweep_prints_findings_per_check_without_personal_data(register):
    result = sweep("--date", "2026-03-05")
    assert result.exit_code == 0, result.output
    out = result.output
    lines = out.splitlines()
    assert "sweep for 2026-03-05 (Europe/Stockholm)" in out
    doc = next(line for line in lines if f"meeting {register['held'].id}" in line)
    assert doc.split() == ["SIP-2026-0042", "overdue", "meeting", str(register["held"].id), "2026-03-04", "1"]
    inv = next(line for line in lines if f"invitation {register['invitation'].id}" in line)
    assert inv.split() == [
        "SIP-2026-0042",
        "reminder",
        "invitation",
        str(register["invitation"].id),
        "2026-03-05",
        "1",
    ]
    dev = next(line for line in lines if f"deviation {register['deviation'].id}" in line)
    assert dev.split()[1] == "acknowledgement-reminder"
    for name, n in [
        ("documentation", 1),
        ("invitations", 1),
        ("pre_meeting", 0),
        ("follow_up", 0),
        ("deviations", 1),
    ]:
        assert f"{name}: {n} finding" in out
    assert "total per stage: overdue 1" in out
    assert "total per stage: acknowledgement-reminder 1" in out
    assert out.rstrip().endswith("total: 3 findings")
    for secret in SECRETS:
        assert secret not in out
    for key in ("k", "r", "f"):
        contact = register["region"][key]
        assert contact.name not in out and contact.email not in out


def test_sweep_runs_only_the_named_checks(register, db_url):
    result = sweep("--date", "2026-03-09", "--check", "documentation", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert "documentation: 1 finding" in result.output
    assert "escalation-1" in result.output
    # totals count by stage, as the flow's artifact does: the level folds into its name
    assert "total per stage: escalation 1" in result.output
    assert "invitations:" not in result.output and "deviations:" not in result.output


@pytest.mark.parametrize("bad", ["2026-13-01", "05/03/2026", "tomorrow"])
def test_bad_date_exits_2(register, bad):
    result = sweep("--date", bad)
    assert result.exit_code == 2
    assert f"{bad!r} is not a date" in result.output


def test_unknown_check_exits_2(register):
    result = sweep("--date", "2026-03-05", "--check", "nonsense")
    assert result.exit_code == 2
    assert "unknown check nonsense" in result.output


def test_invalid_policy_exits_2(register, tmp_path, monkeypatch):
    policy = tmp_path / "policy.toml"
    policy.write_text("[documentation]\ndue_working_days = -1\nbogus = 3\n")
    monkeypatch.setenv("SIPFLOWS_POLICY_FILE", str(policy))
    get_settings.cache_clear()
    result = sweep("--date", "2026-03-05")
    assert result.exit_code == 2
    assert "invalid policy" in result.output
    assert "documentation.due_working_days" in result.output and "documentation.bogus" in result.output


def test_policy_file_changes_what_is_due(register, tmp_path, monkeypatch):
    policy = tmp_path / "policy.toml"
    policy.write_text("[documentation]\ndue_working_days = 5\n")
    monkeypatch.setenv("SIPFLOWS_POLICY_FILE", str(policy))
    get_settings.cache_clear()
    result = sweep("--date", "2026-03-05", "--check", "documentation")
    assert result.exit_code == 0, result.output
    assert "documentation: 0 findings" in result.output

"""The deadline policy: defaults, layers, per-organisation overrides and refusals that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sipflows.cli import app
from sipflows.models import Severity
from sipflows.policy import (
    Layer,
    PolicyError,
    build_policy,
    check_organisations,
    check_organisations_in,
    default_policy,
    load_policy,
)

runner = CliRunner()


@pytest.fixture
def register_env(db_url, build, session, monkeypatch):
    """The CLI pointed at a register holding the standard region (KOP-IFO, RV-VC-KOP, FK, KOP-SKOLA)."""
    from sipflows.settings import get_settings

    build.standard_region()
    build.org("BUP")
    session.commit()
    monkeypatch.setenv("SIPFLOWS_DATABASE_URL", db_url)
    monkeypatch.delenv("SIPFLOWS_POLICY_FILE", raising=False)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_defaults_match_the_agreements():
    p = default_policy().policy
    assert p.documentation.due_working_days == 2
    assert p.documentation.escalation_after_working_days == 3
    assert p.invitations.reminder_after_working_days == 3
    assert p.invitations.convener_alert_within_working_days == 2
    assert p.pre_meeting.alert_within_working_days == 5
    assert p.follow_up.reminder_before_working_days == 10
    assert p.follow_up.overdue_after_working_days == 1
    assert p.follow_up.escalation_after_working_days == 5
    assert p.deviations.acknowledgement_working_days == 2
    assert p.deviations.reply_days == 60


def test_high_severity_halves_the_times():
    d = default_policy().policy.deviations
    assert d.acknowledgement_for(Severity.HIGH) == 1
    assert d.reply_for(Severity.HIGH) == 30
    assert d.acknowledgement_for(Severity.NORMAL) == 2


def test_every_field_documents_its_source():
    from sipflows.policy import Policy

    for section in Policy.model_fields.values():
        model = section.annotation
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            assert field.description and "Source" in field.description, name


def test_layers_later_wins_and_origins_are_recorded(tmp_path: Path):
    f = tmp_path / "policy.toml"
    f.write_text("[documentation]\ndue_working_days = 3\n[invitations]\nreminder_after_working_days = 4\n")
    eff = load_policy(f, variable={"invitations": {"reminder_after_working_days": 5}}, variable_name="sip")
    assert eff.policy.documentation.due_working_days == 3
    assert eff.policy.invitations.reminder_after_working_days == 5
    assert eff.origins["documentation.due_working_days"] == str(f)
    assert eff.origins["invitations.reminder_after_working_days"] == "prefect variable sip"
    assert "pre_meeting.alert_within_working_days" not in eff.origins


def test_organisation_override_applies_only_to_that_organisation():
    eff = build_policy(
        [Layer("file", {"organisations": {"BUP": {"follow_up": {"reminder_before_working_days": 15}}}})]
    )
    assert eff.for_organisation("BUP").follow_up.reminder_before_working_days == 15
    assert eff.for_organisation("VC").follow_up.reminder_before_working_days == 10
    assert eff.for_organisation(None).follow_up.reminder_before_working_days == 10


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"documentation": {"due_working_days": -1}}, "documentation.due_working_days"),
        ({"documentation": {"due_working_day": 2}}, "documentation.due_working_day: unknown key"),
        ({"documentaton": {}}, "documentaton: unknown key"),
        (
            {"invitations": {"reminder_after_working_days": "three"}},
            "invitations.reminder_after_working_days",
        ),
        ({"invitations": {"reminder_after_working_days": 2.5}}, "invitations.reminder_after_working_days"),
        ({"deviations": {"high_severity_factor": 3}}, "deviations.high_severity_factor"),
        ({"deviations": {"reply_days": 0}}, "deviations.reply_days"),
        (
            {"organisations": {"BUP": {"follow_up": {"overdue_after_working_days": 0}}}},
            "organisations.BUP.follow_up.overdue_after_working_days",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key(data, expected):
    with pytest.raises(PolicyError) as exc:
        build_policy([Layer("admin.toml", data)])
    assert expected in str(exc.value)
    assert "admin.toml" in str(exc.value)


def test_an_override_for_an_organisation_not_in_the_register_is_refused():
    effective = build_policy(
        [Layer("admin.toml", {"organisations": {"KOP-IF0": {"documentation": {"due_working_days": 3}}}})]
    )
    with pytest.raises(PolicyError) as exc:
        check_organisations(effective, {"KOP-IFO", "RV-VC-KOP"})
    assert str(exc.value) == (
        "admin.toml: organisations.KOP-IF0: no organisation with this code in the register "
        "(did you mean KOP-IFO?)"
    )
    check_organisations(effective, {"KOP-IF0"})  # known: accepted
    check_organisations(default_policy(), set())  # no overrides: nothing to check


def test_overrides_are_checked_against_the_register_on_both_databases(build, session):
    build.standard_region()
    session.commit()
    good = build_policy([Layer("p.toml", {"organisations": {"FK": {"deviations": {"reply_days": 30}}}})])
    check_organisations_in(session, good)
    bad = build_policy([Layer("p.toml", {"organisations": {"FK-X": {"deviations": {"reply_days": 30}}}})])
    with pytest.raises(PolicyError, match="organisations.FK-X: no organisation with this code"):
        check_organisations_in(session, bad)


def test_cli_check_refuses_an_unknown_organisation_code(tmp_path: Path, register_env):
    typo = tmp_path / "typo.toml"
    typo.write_text('[organisations."KOP-IF0".documentation]\ndue_working_days = 3\n')
    result = runner.invoke(app, ["policy", "check", str(typo)])
    assert result.exit_code == 1
    assert "organisations.KOP-IF0: no organisation with this code in the register" in result.output
    assert "did you mean KOP-IFO?" in result.output
    right = tmp_path / "right.toml"
    right.write_text('[organisations."KOP-IFO".documentation]\ndue_working_days = 3\n')
    assert runner.invoke(app, ["policy", "check", str(right)]).exit_code == 0


def test_cli_check_valid_and_invalid(tmp_path: Path, register_env):
    good = tmp_path / "good.toml"
    good.write_text("[documentation]\ndue_working_days = 3\n")
    result = runner.invoke(app, ["policy", "check", str(good)])
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[documentation]\ndue_working_days = -2\nextra = 1\n")
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "documentation.due_working_days" in result.output
    assert "documentation.extra: unknown key" in result.output
    broken = tmp_path / "broken.toml"
    broken.write_text("[documentation\n")
    result = runner.invoke(app, ["policy", "check", str(broken)])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output


def test_cli_show_names_sources(tmp_path: Path, monkeypatch, register_env):
    f = tmp_path / "p.toml"
    f.write_text('[documentation]\ndue_working_days = 4\n[organisations."BUP".deviations]\nreply_days = 30\n')
    result = runner.invoke(app, ["policy", "show", "--file", str(f)])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "documentation.due_working_days" in ln)
    assert "4" in line and str(f) in line
    assert any(
        "BUP" in ln and "deviations.reply_days" in ln and "30" in ln for ln in result.output.splitlines()
    )
    result = runner.invoke(app, ["policy", "show", "--file", str(f), "--json"])
    data = json.loads(result.output)
    assert data["organisations"]["BUP"]["deviations"]["reply_days"] == 30


def test_first_meeting_limits_have_their_sources_and_are_validated(tmp_path: Path, register_env):
    fm = default_policy().policy.first_meeting
    assert (fm.ordinary_working_days, fm.child_days, fm.discharge_days) == (10, 21, 3)
    # the law's limit is the shortest, a child's the agreement's three weeks
    assert fm.discharge_days < fm.ordinary_working_days and fm.child_days == 21
    f = tmp_path / "p.toml"
    f.write_text(
        '[first_meeting]\ndischarge_days = 2\n[organisations."KOP-IFO".first_meeting]\nchild_days = 14\n'
    )
    result = runner.invoke(app, ["policy", "show", "--file", str(f), "--explain"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert any("first_meeting.discharge_days" in ln and "2" in ln and str(f) in ln for ln in out.splitlines())
    assert any("KOP-IFO" in ln and "first_meeting.child_days" in ln and "14" in ln for ln in out.splitlines())
    flat = " ".join(out.split())
    assert "2017:612" in flat and "Västbus" in flat and "no exact figure exists" in flat
    bad = tmp_path / "bad.toml"
    bad.write_text("[first_meeting]\ndischarge_days = 0\nchild_weeks = 3\n")
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "first_meeting.discharge_days" in result.output
    assert "first_meeting.child_weeks: unknown key" in result.output

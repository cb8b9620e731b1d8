"""``sipflows case origin|under-18``: what the first-meeting check needs, typed by a person."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.checks import run_checks
from sipflows.cli import app
from sipflows.models import CaseStatus, PlanOrigin, SipCase
from sipflows.policy import default_policy

runner = CliRunner()


def case(engine, reference: str) -> SipCase:
    with Session(engine) as s:
        return s.scalars(select(SipCase).where(SipCase.reference == reference)).one()


def test_origin_and_under_18_set_the_first_meetings_limit(build, session, engine, db_url):
    region = build.standard_region()
    build.case(
        region["k"], reference="SIP-7", identified_on=date(2026, 2, 2), consent_given_on=date(2026, 2, 2)
    )
    session.commit()
    judged = date(2026, 3, 6)  # long after the ordinary limit; the day after a discharge on 2 March's limit

    def stages() -> list[str]:
        with Session(engine) as s:
            return [
                f.stage
                for f in run_checks(s, judged, default_policy(), only=["first_meeting"])["first_meeting"]
            ]

    assert stages() == ["escalation-1@2026-02-16"]
    result = runner.invoke(
        app,
        ["case", "origin", "SIP-7", "discharge", "--discharged-on", "2026-03-02", "--database-url", db_url],
    )
    assert result.exit_code == 0, result.output
    assert "SIP-7: origin discharge, discharged 2026-03-02" in result.output
    got = case(engine, "SIP-7")
    assert (got.origin, got.discharged_on) == (PlanOrigin.DISCHARGE, date(2026, 3, 2))
    assert stages() == ["reminder@2026-03-05"]

    result = runner.invoke(app, ["case", "under-18", "SIP-7", "ja", "--database-url", db_url])
    assert result.exit_code == 0 and "SIP-7: under 18 yes" in result.output
    assert case(engine, "SIP-7").under_18 is True
    assert stages() == ["reminder@2026-03-05"]  # a discharge follows the law, whatever the age

    result = runner.invoke(app, ["case", "origin", "SIP-7", "ordinary", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    got = case(engine, "SIP-7")
    assert (got.origin, got.discharged_on, got.under_18) == (PlanOrigin.ORDINARY, None, True)
    assert stages() == ["escalation-1@2026-02-23"]  # the child's 21 days from 2 February


def test_refusals_change_nothing(build, session, engine, db_url):
    region = build.standard_region()
    build.case(region["k"], reference="SIP-7")
    build.case(region["k"], reference="SIP-8", status=CaseStatus.CLOSED, closed_on=date(2026, 2, 1))
    session.commit()
    refusals = {
        ("case", "origin", "SIP-7", "discharge"): "a plan from discharge needs its discharge date",
        (
            "case",
            "origin",
            "SIP-7",
            "ordinary",
            "--discharged-on",
            "2026-03-02",
        ): "only for a plan from discharge",
        ("case", "origin", "SIP-8", "discharge", "--discharged-on", "2026-03-02"): "plan SIP-8 is closed",
        ("case", "origin", "SIP-9", "ordinary"): "no plan with reference 'SIP-9'",
        ("case", "under-18", "SIP-8", "yes"): "plan SIP-8 is closed",
    }
    for command, message in refusals.items():
        result = runner.invoke(app, [*command, "--database-url", db_url])
        assert result.exit_code == 1 and message in result.output, (command, result.output)
    for command in (
        ["case", "under-18", "SIP-7", "17"],
        ["case", "origin", "SIP-7", "hospital"],
        ["case", "origin", "SIP-7", "discharge", "--discharged-on", "2/3/2026"],
    ):
        result = runner.invoke(app, [*command, "--database-url", db_url])
        assert result.exit_code == 2, (command, result.output)
    for ref in ("SIP-7", "SIP-8"):
        got = case(engine, ref)
        assert (got.origin, got.discharged_on, got.under_18) == (PlanOrigin.ORDINARY, None, False)

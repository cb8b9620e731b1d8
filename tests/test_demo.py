"""The demo region: loads on both databases, is idempotent, and makes every check fire on its date."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
import typer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.db import session_scope
from sipflows.demo import DEMO_DATE, TEST_PERSONAL_NUMBER, DemoSummary, build_demo
from sipflows.models import (
    CaseStatus,
    ClosedDay,
    ClosureReason,
    Contact,
    Deviation,
    Invitation,
    Language,
    Meeting,
    MeetingStatus,
    Organisation,
    OrgKind,
    Participant,
    Principal,
    SipCase,
)
from sipflows.policy import default_policy
from sipflows.timeutil import local_date

DOMAIN = "sipflows.test"
MODELS = (Organisation, ClosedDay, Contact, SipCase, Participant, Meeting, Invitation, Deviation)


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0 for m in MODELS}


def demo(engine: Engine, today: date = DEMO_DATE) -> DemoSummary:
    with session_scope(engine) as s:
        return build_demo(s, today, mail_domain=DOMAIN)


def meeting_state(engine: Engine) -> dict[str, tuple[object, ...]]:
    with Session(engine) as s:
        rows = s.execute(
            select(Meeting.code, Meeting.starts_at, Meeting.sequence, Meeting.updated_at, Meeting.ical_uid)
        )
        return {code: rest for code, *rest in rows.tuples()}


def test_demo_loads_and_a_second_run_changes_nothing(engine):
    first = demo(engine)
    after_first = counts(engine)
    meetings = meeting_state(engine)

    second = demo(engine)

    assert counts(engine) == after_first
    assert meeting_state(engine) == meetings
    assert all(f.inserted == 0 and f.updated == 0 for f in second.files)
    assert second.expected == first.expected and not first.skipped
    assert after_first["sip_cases"] == 24 and after_first["organisations"] == 15


def test_another_date_moves_the_timeline_without_duplicates(engine):
    demo(engine)
    before = counts(engine)
    moved = demo(engine, date(2026, 12, 15))

    after = counts(engine)
    # everything is upserted by code; only Kungsör's planning day of the new date is a new row
    assert after == {**before, "closed_days": before["closed_days"] + 1}
    assert {f.kind: f.inserted for f in moved.files}["closed_days"] == 1
    with Session(engine) as s:
        seq = dict(s.execute(select(Meeting.code, Meeting.sequence)).tuples().all())
    # moved meetings are new revisions for the invitees' calendars
    assert seq["SIP-DEMO-005-M1"] == 1 and seq["SIP-DEMO-001-M1"] == 1


def test_demo_region_has_the_organisations_contacts_and_plans_it_promises(engine):
    demo(engine)
    with Session(engine) as s:
        orgs = s.scalars(select(Organisation)).all()
        kinds = Counter(o.kind for o in orgs)
        assert kinds[OrgKind.MUNICIPAL_UNIT] >= 6 and kinds[OrgKind.REGION_UNIT] == 4
        assert {
            OrgKind.FORSAKRINGSKASSAN,
            OrgKind.ARBETSFORMEDLINGEN,
            OrgKind.SCHOOL,
            OrgKind.USER_ORGANISATION,
        } <= set(kinds)
        assert {o.principal for o in orgs} == {Principal.KOMMUN, Principal.REGION, None}
        assert all(o.escalation_contact_id is not None for o in orgs if o.kind != OrgKind.USER_ORGANISATION)

        contacts = s.scalars(select(Contact)).all()
        assert all(c.email.endswith(".example.se") for c in contacts)
        assert [c.code for c in contacts if c.language == Language.EN] == ["RV-BUP-ALEX"]
        assert sum(c.report_recipient for c in contacts) >= 2
        assert any(c.escalation_contact_id is not None for c in contacts)

        cases = s.scalars(select(SipCase)).all()
        assert {c.status for c in cases} == set(CaseStatus)
        assert all(c.individual_name and c.individual_name.startswith("Testperson ") for c in cases)
        assert {c.personal_identity_number for c in cases} == {TEST_PERSONAL_NUMBER}
        # withdrawn consent closes the plan, by import as by `sipflows case withdraw-consent`
        withdrawn = {c.reference: c for c in cases if c.consent_withdrawn_on is not None}
        assert set(withdrawn) == {"SIP-DEMO-018", "SIP-DEMO-019"}
        assert {c.status for c in withdrawn.values()} == {CaseStatus.CLOSED}
        assert withdrawn["SIP-DEMO-018"].closure_reason == ClosureReason.CONSENT_WITHDRAWN
        assert withdrawn["SIP-DEMO-018"].closed_on == withdrawn["SIP-DEMO-018"].consent_withdrawn_on
        future = s.scalars(select(Meeting).where(Meeting.code == "SIP-DEMO-018-U1")).one()
        assert future.status == MeetingStatus.CANCELLED


def _private_values(session: Session) -> list[str]:
    """What the demo made up about individuals: names, notes, deviation texts, the personal number."""
    values = [TEST_PERSONAL_NUMBER, TEST_PERSONAL_NUMBER.replace("-", "")[2:]]
    for name, notes in session.execute(select(SipCase.individual_name, SipCase.case_notes)).tuples():
        values += [v for v in (name, notes) if v]
    values += [d for d in session.scalars(select(Deviation.description)) if d]
    return values


# A working day before Easter, before midsommar, before Christmas, and the demo's own date.
DATES = [DEMO_DATE, date(2026, 4, 2), date(2026, 6, 18), date(2026, 12, 23)]


@pytest.mark.parametrize("today", DATES, ids=[d.isoformat() for d in DATES])
def test_every_check_fires_at_its_stages_on_the_demo_date_and_nothing_else(engine, today):
    from sipflows.checks import CHECK_NAMES, run_checks

    summary = demo(engine, today)
    with Session(engine) as s:
        findings = run_checks(s, today, default_policy())
        refs = dict(s.execute(select(SipCase.reference, SipCase.id)).tuples().all())
        alex = s.scalar(select(Contact.id).where(Contact.code == "RV-BUP-ALEX"))
        private = _private_values(s)

    all_findings = [f for fs in findings.values() for f in fs]
    got = Counter((f.case_reference, f.check, f.stage) for f in all_findings)
    expected = Counter((e.case_reference, e.check, e.stage) for e in summary.expected)
    assert got == expected
    assert not summary.skipped

    assert all(findings[name] for name in CHECK_NAMES)
    stages = {(f.check, f.stage.split("@")[0]) for f in all_findings}
    assert {
        ("documentation", "reminder"),
        ("documentation", "overdue"),
        ("documentation", "escalation-1"),
        ("meeting_held", "reminder"),
        ("meeting_held", "escalation-1"),
        ("invitations", "reminder"),
        ("invitations", "convener-alert"),
        ("pre_meeting", "alert"),
        ("follow_up", "reminder"),
        ("follow_up", "overdue"),
        ("follow_up", "escalation-1"),
        ("deviations", "acknowledgement-reminder"),
        ("deviations", "acknowledgement-escalation-1"),
        ("deviations", "acknowledgement-escalation-2"),
        ("deviations", "reply-reminder"),
        ("deviations", "reply-escalation-1"),
        ("first_meeting", "reminder"),
        ("first_meeting", "escalation-1"),
    } <= stages
    # one ordinary plan and one from discharge wait for their first SIP meeting
    limits = {f.case_reference: f.details["limit"] for f in all_findings if f.check == "first_meeting"}
    assert limits == {"SIP-DEMO-023": "ordinary", "SIP-DEMO-024": "discharge"}
    assert any(f.check == "deviations" and f.details.get("severity") == "high" for f in all_findings)
    # the English-speaking convener is told about her meeting
    assert any(alex in f.recipients for f in all_findings)
    # plans where nothing is due (closed, consent withdrawn, all in order) produce nothing
    quiet_ids = {refs[r] for r in summary.quiet_cases}
    assert len(quiet_ids) == 7 and not [f for f in all_findings if f.case_id in quiet_ids]
    # the fake personal data stays in the register
    text = repr([(f.details, f.case_reference, f.stage) for f in all_findings])
    assert len(private) > 2 and not [v for v in private if v in text]


def test_the_plan_in_order_raises_nothing_as_its_follow_up_approaches(engine):
    """SIP-DEMO-014: the kommun convenes, the region, Försäkringskassan and a user organisation accepted.
    The convener has no invitation of her own; her organisation is the kommun's presence."""
    from sipflows.checks import run_checks

    demo(engine)
    with Session(engine) as s:
        starts = s.scalar(select(Meeting.starts_at).where(Meeting.code == "SIP-DEMO-014-U1"))
        assert starts is not None
        day, checked = DEMO_DATE, 0
        while day <= local_date(starts):
            found = run_checks(s, day, default_policy())
            assert [f.key for fs in found.values() for f in fs if f.case_reference == "SIP-DEMO-014"] == []
            day, checked = day + timedelta(days=1), checked + 1
        assert checked >= 10


def _cli() -> typer.Typer:
    """Only the demo command (the other command groups are not this test's concern)."""
    from sipflows.cli import demo as demo_cli

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """sipflows"""

    demo_cli.register(app)
    return app


def test_cli_loads_the_demo_and_prints_what_is_due(engine, db_url):
    runner = CliRunner()
    result = runner.invoke(_cli(), ["demo", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "judged on 2026-11-24" in result.stdout
    assert "SIP-DEMO-001  documentation/reminder" in result.stdout
    assert "cases 24 rows: 24 new, 0 updated, 0 unchanged" in " ".join(result.stdout.split())
    assert "SIP-DEMO-024  first_meeting/reminder@" in result.stdout
    assert counts(engine)["sip_cases"] == 24

    again = runner.invoke(_cli(), ["demo", "--database-url", db_url, "--date", "2026-11-24"])
    assert again.exit_code == 0
    assert "cases 24 rows: 0 new, 0 updated, 24 unchanged" in " ".join(again.stdout.split())

    bad = runner.invoke(_cli(), ["demo", "--database-url", db_url, "--date", "24/11/2026"])
    assert bad.exit_code == 2 and "'24/11/2026' is not a date" in bad.output

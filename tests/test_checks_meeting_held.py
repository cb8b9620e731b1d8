"""Meeting-held check: SIP meetings and follow-ups whose day has passed while they are still scheduled."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sipflows.booking import BookingError, record_held
from sipflows.checks import documentation, meeting_held
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import CaseStatus, Meeting, MeetingKind, MeetingStatus
from sipflows.notices.build import build_notices
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy
from sipflows.settings import Settings
from tests.factories import SECRETS, local

SETTINGS = Settings(_env_file=None, mail_domain="sipflows.test")  # type: ignore[call-arg]


def run(session, judged: date, policy: EffectivePolicy | None = None) -> list[Finding]:
    return meeting_held.run(session, CheckContext.load(session, judged, policy or default_policy()))


def by_meeting(session, judged: date, policy: EffectivePolicy | None = None) -> dict[int, Finding]:
    found = run(session, judged, policy)
    assert len({f.object_id for f in found}) == len(found), "one finding per meeting"
    return {f.object_id: f for f in found}


@pytest.fixture
def region(build):
    std = build.standard_region()
    std["coord"] = build.contact(std["kommun"], "SIP-samordnare")
    return std


def plan(build, region, **kw):
    return build.case(region["k"], participants=(region["r"], region["f"]), coordinator=region["coord"], **kw)


def test_ask_the_working_day_after_then_escalate(build, region, session):
    case = plan(build, region)
    m = build.meeting(case, date(2026, 3, 6))  # Friday; asked Monday 9 March
    k, chief = region["k"].id, region["k_chief"].id
    expected = {
        date(2026, 3, 5): None,
        date(2026, 3, 6): None,  # the meeting day: it may still be going on
        date(2026, 3, 7): None,  # Saturday
        date(2026, 3, 9): ("reminder", (k,)),
        date(2026, 3, 11): ("reminder", (k,)),
        date(2026, 3, 12): ("escalation-1", (chief,)),  # three working days after the question
        date(2026, 9, 1): ("escalation-1", (chief,)),
    }
    for judged, want in expected.items():
        found = by_meeting(session, judged)
        if want is None:
            assert m.id not in found, judged
            continue
        f = found[m.id]
        assert (f.stage, f.recipients) == want, judged
        assert f.due == date(2026, 3, 9)
        assert f.key == f"meeting_held:meeting:{m.id}:{want[0]}"
        assert f.details["meeting_on"] == "2026-03-06"


def test_the_question_skips_holidays(build, region, session):
    # Thursday before Easter: Good Friday and Easter Monday are off, so the question comes on Tuesday
    m = build.meeting(plan(build, region), date(2026, 4, 2))
    assert m.id not in by_meeting(session, date(2026, 4, 3))
    assert m.id not in by_meeting(session, date(2026, 4, 6))
    assert by_meeting(session, date(2026, 4, 7))[m.id].due == date(2026, 4, 7)


NOTHING_DUE = {
    "held": {"status": MeetingStatus.HELD},
    "cancelled": {"status": MeetingStatus.CANCELLED},
    "pre-meeting": {"kind": MeetingKind.PRE_MEETING},
    "consent-withdrawn": {"case": {"consent_withdrawn_on": date(2026, 3, 3)}},
    "closed": {"case": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 3, 3)}},
}


def test_nothing_is_due(build, region, session):
    for name, change in NOTHING_DUE.items():
        build.meeting(
            plan(build, region, reference=f"SIP-{name}", **change.get("case", {})),
            date(2026, 3, 2),
            kind=change.get("kind", MeetingKind.SIP_MEETING),
            status=change.get("status", MeetingStatus.SCHEDULED),
        )
    assert run(session, date(2026, 3, 20)) == []


def test_follow_up_meetings_are_asked_about_too(build, region, session):
    m = build.meeting(plan(build, region), date(2026, 3, 2), kind=MeetingKind.FOLLOW_UP)
    assert by_meeting(session, date(2026, 3, 3))[m.id].details["meeting_kind"] == "follow_up"


def test_per_organisation_calendar_and_policy(build, region, session):
    lss = build.contact(build.org("KOP-LSS", closed_days=(date(2026, 3, 3),)), escalation=region["k_chief"])
    ordinary = build.meeting(plan(build, region), date(2026, 3, 2))
    closed = build.meeting(build.case(lss), date(2026, 3, 2))
    # KOP-LSS is closed on Tuesday 3 March: its question comes on Wednesday
    assert set(by_meeting(session, date(2026, 3, 3))) == {ordinary.id}
    assert set(by_meeting(session, date(2026, 3, 4))) == {ordinary.id, closed.id}
    patient = build_policy(
        [Layer("t", {"organisations": {"KOP-IFO": {"meeting_held": {"ask_after_working_days": 3}}}})]
    )
    assert set(by_meeting(session, date(2026, 3, 4), patient)) == {closed.id}
    assert set(by_meeting(session, date(2026, 3, 5), patient)) == {ordinary.id, closed.id}


def test_escalation_falls_back_to_the_organisation_then_to_the_convener(build, region, session):
    lonely_org = build.org("ORG-X")
    lonely = build.contact(lonely_org)
    m = build.meeting(build.case(lonely, coordinator=region["coord"]), date(2026, 3, 2))
    assert by_meeting(session, date(2026, 3, 6))[m.id].recipients == (lonely.id, region["coord"].id)
    sara = build.contact(region["kommun"])  # no escalation contact of her own: the organisation's
    m2 = build.meeting(build.case(sara), date(2026, 3, 2))
    assert by_meeting(session, date(2026, 3, 6))[m2.id].recipients == (region["k_chief"].id,)


def test_confirming_held_starts_the_documentation_deadline_from_the_meeting_day(build, region, session):
    case = plan(build, region)
    m = build.meeting(case, date(2026, 3, 2))  # Monday; documentation due Wednesday 4 March
    session.commit()
    ctx = CheckContext.load(session, date(2026, 3, 4), default_policy())
    assert documentation.run(session, ctx) == []
    assert [f.stage for f in meeting_held.run(session, ctx)] == ["reminder"]

    record_held(session, m.code, now=local(date(2026, 3, 4), "10:00"))
    assert [f.stage for f in meeting_held.run(session, ctx)] == []
    assert [(f.stage, f.due) for f in documentation.run(session, ctx)] == [("reminder", date(2026, 3, 4))]
    record_held(session, m.code, now=local(date(2026, 3, 4), "10:00"), documented=date(2026, 3, 4))
    assert documentation.run(session, ctx) == []
    assert m.documented_at == local(date(2026, 3, 4), "00:00")


def test_record_held_rules(build, region, session):
    case = plan(build, region)
    later = build.meeting(case, date(2026, 3, 20))
    cancelled = build.meeting(case, date(2026, 3, 2), status=MeetingStatus.CANCELLED)
    today = build.meeting(case, date(2026, 3, 5), "09:00", minutes=90)
    now = local(date(2026, 3, 5), "12:00")
    with pytest.raises(BookingError, match="cannot have been held yet"):
        record_held(session, later.code, now=now)
    with pytest.raises(BookingError, match="was cancelled"):
        record_held(session, cancelled.code, now=now)
    with pytest.raises(BookingError, match="no meeting"):
        record_held(session, "NOPE", now=now)
    with pytest.raises(BookingError, match="before it"):
        record_held(session, today.code, now=now, documented=date(2026, 3, 4))
    with pytest.raises(BookingError, match="in the future"):
        record_held(session, today.code, now=now, documented=local(date(2026, 3, 5), "13:00"))
    # documented the same day: the meeting's end, not midnight before it started
    record_held(session, today.code, now=now, documented=date(2026, 3, 5))
    assert today.status == MeetingStatus.HELD and today.documented_at == local(date(2026, 3, 5), "10:30")
    seq = today.sequence
    record_held(session, today.code, now=now)
    assert today.sequence == seq == 0  # held changes nobody's calendar


def test_notices_carry_reference_time_place_and_nothing_personal(build, region, session):
    case = plan(build, region)
    m = build.meeting(case, date(2026, 3, 2))
    findings = run(session, date(2026, 3, 3)) + run(session, date(2026, 3, 9))
    assert [f.stage for f in findings] == ["reminder", "escalation-1"]
    drafts = build_notices(session, findings, SETTINGS)
    assert [d.kind for d in drafts] == ["meeting_held.reminder", "meeting_held.escalation"]
    sv = drafts[0]
    assert sv.subject == f"Hölls mötet måndag 2 mars 2026? Plan {case.reference}"
    assert m.code in sv.body_text and "Köpings vårdcentral, rum 3" in sv.body_text
    assert "09:00–10:30" in sv.body_text and "hölls" in sv.body_html
    assert drafts[1].subject.startswith("Eskalering: ")
    for d in drafts:
        for text in (d.subject, d.body_text, d.body_html):
            assert not [s for s in SECRETS if s in text]
            assert "Samordna insatser" not in text  # the purpose is not what is due here


def test_english_notice(build, region, session):
    case = build.case(region["r"], participants=(region["k"],))  # Rolf prefers English
    build.meeting(case, date(2026, 3, 2))
    drafts = build_notices(session, run(session, date(2026, 3, 3)), SETTINGS)
    assert drafts[0].subject == f"Was the meeting on Monday 2 March 2026 held? Plan {case.reference}"
    assert "still marked as scheduled" in drafts[0].body_text


def test_cli_records_held_and_documented(build, region, session, engine, db_url):
    from sipflows.cli import app

    case = plan(build, region)
    m = build.meeting(case, date(2026, 3, 2), "09:00")
    session.commit()
    runner = CliRunner()
    args = ["--now", "2026-03-04 08:00", "--database-url", db_url]
    result = runner.invoke(app, ["meeting", "held", m.code, "--documented", "2026-03-03 15:10", *args])
    assert result.exit_code == 0, result.output
    assert f"recorded {m.code} as held, documented 2026-03-03 15:10" in result.output
    session.expire_all()
    row = session.scalars(select(Meeting).where(Meeting.id == m.id)).one()
    assert row.status == MeetingStatus.HELD and row.documented_at == local(date(2026, 3, 3), "15:10")

    bad = runner.invoke(app, ["meeting", "held", m.code, "--documented", "3 mars", *args])
    assert bad.exit_code == 2 and "--documented" in bad.output
    unknown = runner.invoke(app, ["meeting", "held", "NO-SUCH", *args])
    assert unknown.exit_code == 1 and "no meeting with code 'NO-SUCH'" in unknown.output


def test_cli_date_only_is_the_meeting_end_on_its_own_day(build, region, session, engine, db_url):
    from sipflows.cli import app

    m = build.meeting(plan(build, region), date(2026, 3, 2), "13:00", minutes=60)
    session.commit()
    args = ["--now", "2026-03-02 16:00", "--database-url", db_url]
    result = CliRunner().invoke(app, ["meeting", "held", m.code, "--documented", "2026-03-02", *args])
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert session.get(Meeting, m.id).documented_at == local(date(2026, 3, 2), "14:00")  # type: ignore[union-attr]

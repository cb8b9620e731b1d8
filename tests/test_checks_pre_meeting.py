"""Pre-meeting check: a SIP meeting close ahead with no pre-meeting (förmöte) held for the plan."""

from __future__ import annotations

from datetime import date

import pytest

from sipflows.checks import pre_meeting
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import CaseStatus, MeetingKind, MeetingStatus
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy

PRE = MeetingKind.PRE_MEETING
HELD = MeetingStatus.HELD


def alerts(session, judged: date, policy: EffectivePolicy | None = None) -> dict[int, Finding]:
    found = pre_meeting.run(session, CheckContext.load(session, judged, policy or default_policy()))
    return {f.object_id: f for f in found}


@pytest.fixture
def region(build):
    std = build.standard_region()
    std["coord"] = build.contact(std["kommun"], "SIP-samordnare")
    return std


def plan(build, region, **kw):
    return build.case(region["k"], participants=(region["r"], region["f"]), coordinator=region["coord"], **kw)


def test_alert_from_five_working_days_ahead_to_the_meeting_day(build, region, session):
    case = plan(build, region)
    meeting = build.meeting(case, date(2026, 3, 16))  # Monday
    expected = {
        date(2026, 3, 6): False,  # Friday: five working days ahead is Friday 13
        date(2026, 3, 7): False,  # Saturday: still Friday 13
        date(2026, 3, 9): True,  # Monday: reaches Monday 16
        date(2026, 3, 16): True,
        date(2026, 3, 17): False,
    }
    for judged, want in expected.items():
        assert (meeting.id in alerts(session, judged)) is want, judged
    f = alerts(session, date(2026, 3, 9))[meeting.id]
    assert (f.stage, f.due, f.case_reference) == ("alert", date(2026, 3, 16), case.reference)
    assert f.recipients == (region["k"].id, region["coord"].id)
    assert f.key == f"pre_meeting:meeting:{meeting.id}:alert"
    assert f.key == alerts(session, date(2026, 3, 12))[meeting.id].key


def test_window_counts_over_easter(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 4, 7))  # Tuesday after Easter Monday
    assert meeting.id not in alerts(session, date(2026, 3, 26))  # Thu: 27, 30, 31, 1, 2
    assert meeting.id in alerts(session, date(2026, 3, 27))  # Fri: 30, 31, 1, 2, 7


def test_held_pre_meeting_before_silences_the_alert(build, region, session):
    case = plan(build, region)
    meeting = build.meeting(case, date(2026, 3, 16))
    pre = build.meeting(case, date(2026, 3, 10), kind=PRE)
    assert set(alerts(session, date(2026, 3, 12))) == {meeting.id}
    pre.status = HELD
    session.flush()
    assert alerts(session, date(2026, 3, 12)) == {}


def test_pre_meetings_that_do_not_count(build, region, session):
    variants = {
        "scheduled": (date(2026, 3, 10), MeetingStatus.SCHEDULED, True),  # booked but not held
        "cancelled": (date(2026, 3, 10), MeetingStatus.CANCELLED, True),
        "after": (date(2026, 3, 17), HELD, True),  # after the SIP meeting
        "other-plan": (date(2026, 3, 10), HELD, False),  # another plan's
    }
    expected = set()
    for name, (pre_on, pre_status, same_case) in variants.items():
        case = plan(build, region, reference=f"SIP-{name}")
        expected.add(build.meeting(case, date(2026, 3, 16)).id)
        build.meeting(case if same_case else plan(build, region), pre_on, kind=PRE, status=pre_status)
    assert set(alerts(session, date(2026, 3, 12))) == expected


NO_ALERT = {
    "follow-up": {"kind": MeetingKind.FOLLOW_UP},
    "pre-meeting": {"kind": PRE},
    "cancelled": {"status": MeetingStatus.CANCELLED},
    "consent-withdrawn": {"case": {"consent_withdrawn_on": date(2026, 3, 3)}},
    "closed": {"case": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 3, 3)}},
}


def test_no_alert(build, region, session):
    for name, change in NO_ALERT.items():
        build.meeting(
            plan(build, region, reference=f"SIP-{name}", **change.get("case", {})),
            date(2026, 3, 16),
            kind=change.get("kind", MeetingKind.SIP_MEETING),
            status=change.get("status", MeetingStatus.SCHEDULED),
        )
    assert [f.case_reference for f in alerts(session, date(2026, 3, 12)).values()] == []


def test_local_dates_around_dst(build, region, session):
    early = build.meeting(plan(build, region), date(2026, 4, 7), "00:30")  # Tue 7 April, still 6th in UTC
    assert early.starts_at.date() == date(2026, 4, 6)
    assert early.id not in alerts(session, date(2026, 3, 26))
    assert early.id in alerts(session, date(2026, 3, 27))
    friday = build.meeting(plan(build, region), date(2026, 3, 27), "23:30")
    assert friday.id in alerts(session, date(2026, 3, 27))
    assert friday.id not in alerts(session, date(2026, 3, 28))


def test_organisation_calendar_and_policy(build, region, session):
    closed = build.org("KOP-LSS", closed_days=(date(2026, 3, 10),))
    policy = build_policy(
        [Layer("t", {"organisations": {"RV-VC-KOP": {"pre_meeting": {"alert_within_working_days": 1}}}})]
    )
    ordinary = build.meeting(plan(build, region), date(2026, 3, 16))
    lss = build.meeting(build.case(build.contact(closed)), date(2026, 3, 16))
    by_region = build.meeting(build.case(region["r"]), date(2026, 3, 16))
    # Friday 6 March: LSS's five working days reach Monday 16 because it is closed on Tuesday 10
    assert set(alerts(session, date(2026, 3, 6), policy)) == {lss.id}
    assert set(alerts(session, date(2026, 3, 9), policy)) == {lss.id, ordinary.id}
    assert set(alerts(session, date(2026, 3, 13), policy)) == {lss.id, ordinary.id, by_region.id}
    # without the override the region's meeting is alerted from Monday 9
    assert by_region.id in alerts(session, date(2026, 3, 9))


def test_recipients_never_leave_the_plan(build, region, session):
    stranger = build.contact(region["kommun"], escalation=region["k_chief"])
    mine = plan(build, region)
    other = build.case(region["r"], participants=(stranger,))
    for c in (mine, other):
        build.meeting(c, date(2026, 3, 16))
    found = alerts(session, date(2026, 3, 12))
    assert len(found) == 2
    for f in found.values():
        allowed = {region["k"].id, region["coord"].id} if f.case_id == mine.id else {region["r"].id}
        assert set(f.recipients) == allowed

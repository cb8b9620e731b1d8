"""Follow-up check: a plan's follow-up date comes closer, passes, and nobody holds the follow-up."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from sipflows.checks import follow_up
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import CaseStatus, MeetingKind, MeetingStatus
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy

FU = MeetingKind.FOLLOW_UP
DUE = date(2026, 6, 1)  # Monday; reminder Monday 18 May, overdue Tuesday 2 June, escalation Tuesday 9 June


def run(session, judged: date, policy: EffectivePolicy | None = None) -> list[Finding]:
    return follow_up.run(session, CheckContext.load(session, judged, policy or default_policy()))


def by_case(session, judged: date, policy: EffectivePolicy | None = None) -> dict[int, Finding]:
    found = run(session, judged, policy)
    assert len({f.object_id for f in found}) == len(found), "one finding per case"
    return {f.object_id: f for f in found}


@pytest.fixture
def region(build):
    std = build.standard_region()
    std["coord"] = build.contact(std["kommun"], "SIP-samordnare")
    return std


def plan(build, region, due: date | None = DUE, **kw):
    people = (region["r"], region["f"])
    return build.case(region["k"], participants=people, coordinator=region["coord"], follow_up_due=due, **kw)


def test_ladder(build, region, session):
    case = plan(build, region)
    k, coord, chief = region["k"].id, region["coord"].id, region["k_chief"].id
    expected = {
        date(2026, 5, 15): None,
        date(2026, 5, 17): None,  # Sunday before the reminder day
        date(2026, 5, 18): ("reminder", (k, coord)),
        date(2026, 6, 1): ("reminder", (k, coord)),  # the due day itself
        date(2026, 6, 2): ("overdue", (k, coord)),
        date(2026, 6, 8): ("overdue", (k, coord)),
        date(2026, 6, 9): ("escalation-1", (chief,)),
        date(2026, 9, 1): ("escalation-1", (chief,)),
    }
    for judged, want in expected.items():
        found = by_case(session, judged)
        if want is None:
            assert case.id not in found, judged
            continue
        f = found[case.id]
        assert (f.stage, f.recipients) == (f"{want[0]}@2026-06-01", want[1]), judged
        assert f.key == f"follow_up:case:{case.id}:{want[0]}@2026-06-01"
        assert (f.due, f.object_type, f.case_reference) == (DUE, "case", case.reference)
        assert f.details == {"follow_up_due": "2026-06-01", "reminder_on": "2026-05-18"}


def test_keys_carry_the_due_date(build, region, session):
    case = plan(build, region)
    first = by_case(session, date(2026, 5, 18))[case.id].key
    assert first == by_case(session, date(2026, 5, 18))[case.id].key
    case.follow_up_due = date(2026, 11, 30)
    session.flush()
    assert case.id not in by_case(session, date(2026, 5, 18))
    again = by_case(session, date(2026, 11, 16))[case.id]
    assert again.stage == "reminder@2026-11-30" and again.key != first
    stages = {
        by_case(session, d)[case.id].key for d in (date(2026, 11, 16), date(2026, 12, 1), date(2026, 12, 8))
    }
    assert len(stages) == 3


def test_holidays_around_christmas(build, region, session):
    case = plan(build, region, due=date(2026, 12, 28))
    assert case.id not in by_case(session, date(2026, 12, 9))
    assert by_case(session, date(2026, 12, 10))[case.id].stage == "reminder@2026-12-28"
    assert by_case(session, date(2026, 12, 28))[case.id].stage == "reminder@2026-12-28"
    assert by_case(session, date(2026, 12, 29))[case.id].stage == "overdue@2026-12-28"
    assert by_case(session, date(2027, 1, 7))[case.id].stage == "overdue@2026-12-28"
    assert by_case(session, date(2027, 1, 8))[case.id].stage == "escalation-1@2026-12-28"


def test_a_booked_follow_up_silences_the_reminder_but_not_the_overdue(build, region, session):
    case = plan(build, region)
    booked = build.meeting(case, date(2026, 5, 28), kind=FU)
    assert case.id not in by_case(session, date(2026, 5, 20))
    assert by_case(session, date(2026, 6, 2))[case.id].stage == "overdue@2026-06-01"
    booked.status = MeetingStatus.HELD
    session.flush()
    assert by_case(session, date(2026, 6, 2)) == {}
    assert by_case(session, date(2026, 6, 9)) == {}


def test_a_follow_up_held_after_the_due_date_stops_the_escalation(build, region, session):
    case = plan(build, region)
    assert by_case(session, date(2026, 6, 9))[case.id].stage == "escalation-1@2026-06-01"
    build.meeting(case, date(2026, 6, 5), kind=FU, status=MeetingStatus.HELD)
    assert by_case(session, date(2026, 6, 9)) == {}


def test_meetings_that_do_not_count(build, region, session):
    variants = {
        "held-before-reminder-day": (date(2026, 5, 15), FU, MeetingStatus.HELD),  # the previous follow-up
        "cancelled": (date(2026, 5, 28), FU, MeetingStatus.CANCELLED),
        "sip-meeting": (date(2026, 5, 28), MeetingKind.SIP_MEETING, MeetingStatus.SCHEDULED),
        "pre-meeting": (date(2026, 5, 28), MeetingKind.PRE_MEETING, MeetingStatus.HELD),
    }
    cases = {}
    for name, (on, kind, status) in variants.items():
        cases[name] = plan(build, region, reference=f"SIP-{name}")
        build.meeting(cases[name], on, kind=kind, status=status)
    reminded, escalated = by_case(session, date(2026, 5, 20)), by_case(session, date(2026, 6, 9))
    for name, case in cases.items():
        assert reminded[case.id].stage == "reminder@2026-06-01", name
        assert escalated[case.id].stage == "escalation-1@2026-06-01", name


def test_the_reminder_day_counts_in_local_time(build, region, session):
    case = plan(build, region)
    # 00:30 on the reminder day is still Sunday 17 May in UTC: it is on the reminder day and counts
    build.meeting(case, date(2026, 5, 18), "00:30", kind=FU)
    assert by_case(session, date(2026, 5, 20)) == {}
    other = plan(build, region)
    build.meeting(other, date(2026, 5, 17), "23:30", kind=FU)  # the evening before: does not count
    assert set(by_case(session, date(2026, 5, 20))) == {other.id}


def test_nothing_is_due(build, region, session):
    variants = {
        "no-due-date": {"due": None},
        "consent-withdrawn": {"consent_withdrawn_on": date(2026, 5, 3)},
        "closed": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 5, 3)},
    }
    for name, change in variants.items():
        plan(build, region, reference=f"SIP-{name}", **change)
    for judged in (date(2026, 5, 18), date(2026, 6, 2), date(2026, 6, 9)):
        assert [f.case_reference for f in run(session, judged)] == []


def test_organisation_closed_day_and_policy_override(build, region, session):
    closed = build.org("KOP-LSS", closed_days=(date(2026, 5, 29),))
    policy = build_policy(
        [Layer("t", {"organisations": {"RV-VC-KOP": {"follow_up": {"reminder_before_working_days": 3}}}})]
    )
    ordinary = plan(build, region)
    lss = build.case(build.contact(closed), follow_up_due=DUE)
    by_region = build.case(region["r"], follow_up_due=DUE)
    # LSS is closed Friday 29 May, so its ten working days before 1 June start on Friday 15 May
    assert set(by_case(session, date(2026, 5, 15), policy)) == {lss.id}
    assert set(by_case(session, date(2026, 5, 18), policy)) == {lss.id, ordinary.id}
    # the region counts three working days back: Wednesday 27 May
    assert by_region.id not in by_case(session, date(2026, 5, 26), policy)
    assert by_case(session, date(2026, 5, 27), policy)[by_region.id].details["reminder_on"] == "2026-05-27"
    assert by_region.id in by_case(session, date(2026, 5, 18))  # under the default policy


def test_escalation_without_an_escalation_contact_stays_with_the_convener(build, region, session):
    orphan = build.contact(build.org("OLD-UNIT"))
    case = build.case(orphan, follow_up_due=DUE, coordinator=region["coord"])
    assert by_case(session, date(2026, 6, 9))[case.id].recipients == (orphan.id, region["coord"].id)


def test_recipients_never_leave_the_plan(build, region, session):
    stranger = build.contact(region["region"], escalation=region["r_chief"])
    mine = plan(build, region)
    other = build.case(region["r"], participants=(stranger,), follow_up_due=DUE)
    for judged in (date(2026, 5, 18), date(2026, 6, 2), date(2026, 6, 9)):
        found = by_case(session, judged)
        assert set(found) == {mine.id, other.id}
        assert set(found[mine.id].recipients) <= {region[x].id for x in ("k", "coord", "k_chief")}
        assert set(found[other.id].recipients) <= {region["r"].id, region["r_chief"].id}


def test_many_due_dates_in_one_sweep(build, region, session):
    cases = {plan(build, region, due=DUE + timedelta(days=i)): i for i in range(-3, 30)}
    found = by_case(session, date(2026, 6, 9))
    # every due date up to the tenth working day after 9 June (midsommarafton 19 June is off): 24 June
    assert {c.follow_up_due for c in cases if c.id in found} == {
        DUE + timedelta(days=i) for i in range(-3, 30) if DUE + timedelta(days=i) <= date(2026, 6, 24)
    }
    stages = {c.follow_up_due: found[c.id].stage.split("@")[0] for c in cases if c.id in found}
    assert stages[date(2026, 6, 1)] == "escalation-1"
    assert stages[date(2026, 6, 2)] == "overdue"
    assert stages[date(2026, 6, 8)] == "overdue"
    assert stages[date(2026, 6, 9)] == "reminder"
    assert stages[date(2026, 6, 24)] == "reminder"
    assert stages[date(2026, 5, 29)] == "escalation-1"

"""Documentation check: held SIP and follow-up meetings not documented within two working days."""

from __future__ import annotations

from datetime import UTC, date, timedelta

import pytest

from sipflows.checks import documentation
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import CaseStatus, MeetingKind, MeetingStatus
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy
from sipflows.timeutil import local_date
from tests.factories import local

HELD = MeetingStatus.HELD


def run(session, judged: date, policy: EffectivePolicy | None = None) -> list[Finding]:
    return documentation.run(session, CheckContext.load(session, judged, policy or default_policy()))


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


def test_ladder_from_due_day_to_escalation(build, region, session):
    case = plan(build, region)
    m = build.meeting(case, date(2026, 3, 2), status=HELD)  # Monday; due Wednesday 4 March
    k, coord, chief = region["k"].id, region["coord"].id, region["k_chief"].id
    expected = {
        date(2026, 3, 2): None,
        date(2026, 3, 3): None,
        date(2026, 3, 4): ("reminder", (k,)),  # the due day itself
        date(2026, 3, 5): ("overdue", (k, coord)),  # the working day after
        date(2026, 3, 6): ("overdue", (k, coord)),
        date(2026, 3, 8): ("overdue", (k, coord)),  # Sunday
        date(2026, 3, 9): ("escalation-1", (chief,)),  # due + 3 working days
        date(2026, 6, 1): ("escalation-1", (chief,)),
    }
    for judged, want in expected.items():
        found = by_meeting(session, judged)
        if want is None:
            assert m.id not in found, judged
            continue
        f = found[m.id]
        assert (f.stage, f.recipients) == want, judged
        assert f.due == date(2026, 3, 4)
        assert f.case_reference == case.reference and f.case_id == case.id
        assert f.key == f"documentation:meeting:{m.id}:{want[0]}"


def test_keys_are_deterministic_and_distinct_per_stage(build, region, session):
    case = plan(build, region)
    build.meeting(case, date(2026, 3, 2), status=HELD)
    days = [date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 9)]
    keys = [[f.key for f in run(session, d)] for d in days]
    assert keys == [[f.key for f in run(session, d)] for d in days]
    flat = [k for ks in keys for k in ks]
    assert len(flat) == 3 and len(set(flat)) == 3


NOTHING_DUE = {
    "documented": {"documented": True},
    "scheduled": {"status": MeetingStatus.SCHEDULED},
    "cancelled": {"status": MeetingStatus.CANCELLED},
    "pre-meeting": {"kind": MeetingKind.PRE_MEETING},
    "consent-withdrawn": {"case": {"consent_withdrawn_on": date(2026, 3, 3)}},
    "closed": {"case": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 3, 3)}},
}


def test_nothing_is_due(build, region, session):
    """Each variant is its own plan, named by its reference, so a leak names the variant."""
    for name, change in NOTHING_DUE.items():
        build.meeting(
            plan(build, region, reference=f"SIP-{name}", **change.get("case", {})),
            date(2026, 3, 2),
            status=change.get("status", HELD),
            kind=change.get("kind", MeetingKind.SIP_MEETING),
            documented_at=local(date(2026, 3, 3)) if change.get("documented") else None,
        )
    for judged in (date(2026, 3, 4), date(2026, 3, 5), date(2026, 4, 1)):
        assert [f.case_reference for f in run(session, judged)] == []


def test_follow_up_meetings_need_documentation_too(build, region, session):
    m = build.meeting(plan(build, region), date(2026, 3, 2), status=HELD, kind=MeetingKind.FOLLOW_UP)
    assert [f.object_id for f in run(session, date(2026, 3, 4))] == [m.id]


def test_documented_after_the_deadline_stops_the_ladder(build, region, session):
    m = build.meeting(plan(build, region), date(2026, 3, 2), status=HELD)
    assert run(session, date(2026, 3, 5))
    m.documented_at = local(date(2026, 3, 5), "15:00")
    session.flush()
    assert run(session, date(2026, 3, 9)) == []


DUE_DAYS = [
    (date(2026, 3, 27), "10:00", date(2026, 3, 31)),  # Friday before the DST switch (29 March)
    (date(2026, 3, 27), "23:30", date(2026, 3, 31)),  # late evening, CET
    (date(2026, 3, 30), "09:00", date(2026, 4, 1)),  # Monday after the switch
    (date(2026, 3, 30), "00:30", date(2026, 4, 1)),  # UTC still says Sunday 29 March
    (date(2026, 3, 29), "23:30", date(2026, 3, 31)),  # Sunday night after the switch, CEST
    (date(2026, 3, 30), "00:00", date(2026, 4, 1)),  # exactly at local midnight
    (date(2026, 3, 6), "14:00", date(2026, 3, 10)),  # Friday: the weekend does not count
    (date(2026, 4, 2), "09:00", date(2026, 4, 8)),  # skärtorsdag: Långfredag and Easter Monday off
    (date(2026, 12, 23), "09:00", date(2026, 12, 29)),  # julafton, juldagen, weekend
    (date(2026, 10, 24), "23:30", date(2026, 10, 27)),  # Saturday before the autumn switch
]


def test_due_day_on_local_dates(build, region, session):
    meetings = [
        (build.meeting(plan(build, region), held_on, at, status=HELD), due) for held_on, at, due in DUE_DAYS
    ]
    early = meetings[3][0]
    assert early.starts_at.astimezone(UTC).date() == date(2026, 3, 29)
    for m, due in meetings:
        label = (local_date(m.starts_at), m.starts_at, due)
        assert m.id not in by_meeting(session, due - timedelta(days=1)), label
        found = by_meeting(session, due).get(m.id)
        assert found is not None and (found.stage, found.due) == ("reminder", due), label
        assert by_meeting(session, due + timedelta(days=1))[m.id].stage == "overdue", label


def test_organisation_closed_day_shifts_only_its_deadline(build, region, session):
    closed = build.org("KOP-LSS", closed_days=(date(2026, 3, 3),))
    lss_convener = build.contact(closed, escalation=region["k_chief"])
    ordinary = build.meeting(plan(build, region), date(2026, 3, 2), status=HELD)
    shifted = build.meeting(build.case(lss_convener), date(2026, 3, 2), status=HELD)
    assert set(by_meeting(session, date(2026, 3, 4))) == {ordinary.id}
    found = by_meeting(session, date(2026, 3, 5))
    assert found[shifted.id].stage == "reminder" and found[shifted.id].due == date(2026, 3, 5)
    assert found[ordinary.id].stage == "overdue"


def test_per_organisation_policy_changes_only_that_organisation(build, region, session):
    policy = build_policy(
        [Layer("test", {"organisations": {"RV-VC-KOP": {"documentation": {"due_working_days": 5}}}})]
    )
    region_convener = build.contact(region["region"], escalation=region["r_chief"])
    kommun_meeting = build.meeting(plan(build, region), date(2026, 3, 2), status=HELD)
    region_meeting = build.meeting(build.case(region_convener), date(2026, 3, 2), status=HELD)
    assert set(by_meeting(session, date(2026, 3, 4), policy)) == {kommun_meeting.id}
    assert region_meeting.id not in by_meeting(session, date(2026, 3, 6), policy)
    assert by_meeting(session, date(2026, 3, 9), policy)[region_meeting.id].due == date(2026, 3, 9)
    # the same register under the default policy: both due on the 4th
    assert set(by_meeting(session, date(2026, 3, 4))) == {kommun_meeting.id, region_meeting.id}


def test_escalation_falls_back_to_the_organisation_then_to_the_convener(build, region, session):
    plain = build.contact(region["kommun"])  # no own escalation contact: the org's (k_chief)
    orphan_org = build.org("OLD-UNIT")  # no escalation contact anywhere
    orphan = build.contact(orphan_org)
    m1 = build.meeting(build.case(plain), date(2026, 3, 2), status=HELD)
    m2 = build.meeting(build.case(orphan, coordinator=region["coord"]), date(2026, 3, 2), status=HELD)
    found = by_meeting(session, date(2026, 3, 9))
    assert found[m1.id].recipients == (region["k_chief"].id,)
    assert found[m2.id].recipients == (orphan.id, region["coord"].id)


def test_recipients_never_leave_the_plan(build, region, session):
    outsider = build.contact(region["kommun"], escalation=region["k_chief"])
    plans = [plan(build, region) for _ in range(3)]
    other = build.case(region["r"], participants=(outsider,))
    for c in [*plans, other]:
        build.meeting(c, date(2026, 3, 2), status=HELD)
    for judged in (date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 9)):
        for f in run(session, judged):
            allowed = {region["k"].id, region["coord"].id, region["k_chief"].id}
            if f.case_id == other.id:
                allowed = {region["r"].id, region["r_chief"].id}
            assert f.recipients and set(f.recipients) <= allowed, (judged, f)


def test_findings_are_sorted_by_reference(build, region, session):
    for ref in ("SIP-C", "SIP-A", "SIP-B"):
        build.meeting(plan(build, region, reference=ref), date(2026, 3, 2), status=HELD)
    assert [f.case_reference for f in run(session, date(2026, 3, 4))] == ["SIP-A", "SIP-B", "SIP-C"]

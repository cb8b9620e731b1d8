"""Invitations check: reminders to invitees who have not answered, and alerts to the convener."""

from __future__ import annotations

from datetime import date

import pytest

from sipflows.checks import invitations
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import Answer, CaseStatus, MeetingKind, MeetingStatus, OrgKind, Principal
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy


def run(session, judged: date, policy: EffectivePolicy | None = None) -> list[Finding]:
    return invitations.run(session, CheckContext.load(session, judged, policy or default_policy()))


def reminders(session, judged: date, policy: EffectivePolicy | None = None) -> dict[int, Finding]:
    return {f.object_id: f for f in run(session, judged, policy) if f.stage == "reminder"}


def alerts(session, judged: date, policy: EffectivePolicy | None = None) -> dict[int, Finding]:
    return {f.object_id: f for f in run(session, judged, policy) if f.stage == "convener-alert"}


@pytest.fixture
def region(build):
    std = build.standard_region()
    std["coord"] = build.contact(std["kommun"], "SIP-samordnare")
    return std


def plan(build, region, **kw):
    people = (region["r"], region["f"], region["s"])
    return build.case(region["k"], participants=people, coordinator=region["coord"], **kw)


# --- a. reminders to the invitee -------------------------------------------------------------------


def test_reminder_on_the_third_working_day_after_sending(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 3, 20))
    inv = build.invite(meeting, region["r"], sent_on=date(2026, 3, 2))  # Monday; reminder Thursday 5 March
    assert inv.id not in reminders(session, date(2026, 3, 4))
    for judged in (date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 19)):
        f = reminders(session, judged)[inv.id]
        assert f.recipients == (region["r"].id,)
        assert f.due == date(2026, 3, 5)
        assert f.key == f"invitations:invitation:{inv.id}:reminder"
        assert f.details["meeting_id"] == meeting.id
    # on the meeting day it is too late to remind
    assert inv.id not in reminders(session, date(2026, 3, 20))


def test_reminder_counts_working_days_over_easter(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 4, 20))
    inv = build.invite(meeting, region["r"], sent_on=date(2026, 4, 1))  # Wed; Thu 2, [Easter], Tue 7, Wed 8
    assert inv.id not in reminders(session, date(2026, 4, 7))
    assert reminders(session, date(2026, 4, 8))[inv.id].due == date(2026, 4, 8)


NO_REMINDER = {
    "accepted": {"answer": Answer.ACCEPTED},
    "declined": {"answer": Answer.DECLINED},
    "tentative": {"answer": Answer.TENTATIVE},
    "unsent": {"unsent": True},
    "cancelled": {"status": MeetingStatus.CANCELLED},
    "held": {"status": MeetingStatus.HELD},
    "consent-withdrawn": {"case": {"consent_withdrawn_on": date(2026, 3, 3)}},
    "closed": {"case": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 3, 3)}},
}


def test_no_reminder(build, region, session):
    for name, change in NO_REMINDER.items():
        meeting = build.meeting(
            plan(build, region, reference=f"SIP-{name}", **change.get("case", {})),
            date(2026, 3, 20),
            status=change.get("status", MeetingStatus.SCHEDULED),
        )
        build.invite(
            meeting,
            region["r"],
            sent_on=None if change.get("unsent") else date(2026, 3, 2),
            answer=change.get("answer", Answer.NONE),
        )
    assert [f.case_reference for f in reminders(session, date(2026, 3, 10)).values()] == []


def test_no_reminder_to_someone_outside_the_plan(build, region, session):
    stranger = build.contact(region["region"], "Inte med i planen")
    meeting = build.meeting(plan(build, region), date(2026, 3, 20))
    build.invite(meeting, stranger, sent_on=date(2026, 3, 2))
    inside = build.invite(meeting, region["f"], sent_on=date(2026, 3, 2))
    coordinator = build.invite(meeting, region["coord"], sent_on=date(2026, 3, 2))
    assert set(reminders(session, date(2026, 3, 10))) == {inside.id, coordinator.id}


def test_reminder_deadline_follows_the_convener_organisation(build, region, session):
    closed = build.org("KOP-LSS", closed_days=(date(2026, 3, 4),))
    lss = build.contact(closed)
    policy = build_policy(
        [Layer("test", {"organisations": {"RV-VC-KOP": {"invitations": {"reminder_after_working_days": 1}}}})]
    )
    by_kommun = build.invite(
        build.meeting(plan(build, region), date(2026, 3, 20)), region["r"], sent_on=date(2026, 3, 2)
    )
    by_lss = build.invite(
        build.meeting(build.case(lss, participants=(region["r"],)), date(2026, 3, 20)),
        region["r"],
        sent_on=date(2026, 3, 2),
    )
    by_region = build.invite(
        build.meeting(build.case(region["r"], participants=(region["k"],)), date(2026, 3, 20)),
        region["k"],
        sent_on=date(2026, 3, 2),
    )
    assert set(reminders(session, date(2026, 3, 3), policy)) == {by_region.id}
    assert set(reminders(session, date(2026, 3, 5), policy)) == {by_region.id, by_kommun.id}
    assert set(reminders(session, date(2026, 3, 6), policy)) == {by_region.id, by_kommun.id, by_lss.id}


# --- b. convener alerts --------------------------------------------------------------------------------


def fully_answered(build, region, meeting):
    for who in (region["r"], region["f"], region["s"]):
        build.invite(meeting, who, sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)


def test_alert_window_two_working_days_ahead(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 3, 16))  # Monday
    fully_answered(build, region, meeting)
    build.invite(meeting, region["k"], sent_on=date(2026, 3, 2))  # the convener's own: required, unanswered
    expected = {
        date(2026, 3, 11): False,  # Wednesday: two working days ahead is Friday
        date(2026, 3, 12): True,  # Thursday: Friday, Monday
        date(2026, 3, 14): True,
        date(2026, 3, 16): True,  # the meeting day
        date(2026, 3, 17): False,
    }
    for judged, want in expected.items():
        found = alerts(session, judged)
        assert (meeting.id in found) is want, judged
    f = alerts(session, date(2026, 3, 12))[meeting.id]
    assert f.recipients == (region["k"].id, region["coord"].id)
    assert f.details["unanswered"] == 1 and f.details["declined"] == 0
    assert f.details["missing_principals"] == []
    assert f.key == f"invitations:meeting:{meeting.id}:convener-alert"
    assert f.due == date(2026, 3, 16)


def test_no_alert_when_every_required_party_accepted(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 3, 16))
    fully_answered(build, region, meeting)
    build.invite(meeting, region["k"], answer=Answer.ACCEPTED)
    assert alerts(session, date(2026, 3, 13)) == {}


def test_alert_for_a_declined_required_invitation(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 3, 16))
    build.invite(meeting, region["r"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    build.invite(meeting, region["s"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    build.invite(meeting, region["f"], sent_on=date(2026, 3, 2), answer=Answer.DECLINED)
    f = alerts(session, date(2026, 3, 13))[meeting.id]
    assert (f.details["unanswered"], f.details["declined"], f.details["missing_principals"]) == (0, 1, [])


def test_optional_declines_do_not_alert(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 3, 16))
    build.invite(meeting, region["r"], answer=Answer.ACCEPTED)
    build.invite(meeting, region["s"], answer=Answer.ACCEPTED)
    build.invite(meeting, region["f"], answer=Answer.DECLINED, required=False)
    assert alerts(session, date(2026, 3, 13)) == {}


def agency_plan(build, region):
    """A plan Försäkringskassan convenes: no principal is present by convening, so only answers count."""
    return build.case(region["f"], participants=(region["r"], region["s"], region["k"]))


@pytest.mark.parametrize(
    ("region_answer", "kommun_answer", "missing"),
    [
        (Answer.NONE, Answer.ACCEPTED, ["region"]),
        (Answer.TENTATIVE, Answer.ACCEPTED, ["region"]),
        (Answer.ACCEPTED, Answer.DECLINED, ["kommun"]),
        (Answer.DECLINED, Answer.NONE, ["kommun", "region"]),
    ],
)
def test_alert_for_a_missing_principal(build, region, session, region_answer, kommun_answer, missing):
    meeting = build.meeting(agency_plan(build, region), date(2026, 3, 16))
    # optional invitations: only the principal rule can raise the alert
    build.invite(meeting, region["r"], answer=region_answer, required=False)
    build.invite(meeting, region["s"], answer=kommun_answer, required=False)  # the school is kommun
    f = alerts(session, date(2026, 3, 13))[meeting.id]
    assert f.details["missing_principals"] == missing
    assert (f.details["unanswered"], f.details["declined"]) == (0, 0)


def test_a_meeting_with_no_invitations_misses_both_principals(build, region, session):
    meeting = build.meeting(agency_plan(build, region), date(2026, 3, 16), kind=MeetingKind.FOLLOW_UP)
    assert alerts(session, date(2026, 3, 16))[meeting.id].details["missing_principals"] == [
        "kommun",
        "region",
    ]


def test_the_convening_organisation_is_present_for_its_principal(build, region, session):
    # the kommun convenes; the region and Försäkringskassan are invited and accepted: nobody is missing,
    # although the convener has no invitation of her own
    meeting = build.meeting(plan(build, region), date(2026, 3, 16))
    build.invite(meeting, region["r"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    build.invite(meeting, region["f"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    for judged in (date(2026, 3, 12), date(2026, 3, 13), date(2026, 3, 16)):
        assert alerts(session, judged) == {}, judged


def test_a_region_convener_still_needs_the_kommun(build, region, session):
    meeting = build.meeting(
        build.case(region["r"], participants=(region["k"], region["f"])), date(2026, 3, 16)
    )
    build.invite(meeting, region["f"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    build.invite(meeting, region["k"], sent_on=date(2026, 3, 2), answer=Answer.TENTATIVE, required=False)
    assert alerts(session, date(2026, 3, 13))[meeting.id].details["missing_principals"] == ["kommun"]


def test_the_chair_is_present_for_their_principal(build, region, session):
    # Försäkringskassan convenes; the region's nurse chairs: the region is there, the kommun is not
    case = agency_plan(build, region)
    meeting = build.meeting(case, date(2026, 3, 16))
    meeting.chair_contact_id = region["r"].id
    build.invite(meeting, region["s"], sent_on=date(2026, 3, 2), answer=Answer.DECLINED, required=False)
    session.flush()
    assert alerts(session, date(2026, 3, 13))[meeting.id].details["missing_principals"] == ["kommun"]
    build.invite(meeting, region["k"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
    assert alerts(session, date(2026, 3, 13)) == {}


def test_principal_is_taken_from_the_organisation_not_the_kind(build, region, session):
    # a region-owned habilitation unit of kind OTHER still counts as the region
    habilitation = build.org("RV-HAB", OrgKind.OTHER, Principal.REGION)
    hab = build.contact(habilitation)
    meeting = build.meeting(build.case(region["k"], participants=(hab,)), date(2026, 3, 16))
    build.invite(meeting, hab, answer=Answer.ACCEPTED)
    build.invite(meeting, region["k"], answer=Answer.ACCEPTED)
    assert alerts(session, date(2026, 3, 13)) == {}


NO_ALERT = {
    "pre-meeting": {"kind": MeetingKind.PRE_MEETING},
    "cancelled": {"status": MeetingStatus.CANCELLED},
    "consent-withdrawn": {"case": {"consent_withdrawn_on": date(2026, 3, 3)}},
    "closed": {"case": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 3, 3)}},
}


def test_no_alert(build, region, session):
    for name, change in NO_ALERT.items():
        meeting = build.meeting(
            plan(build, region, reference=f"SIP-{name}", **change.get("case", {})),
            date(2026, 3, 16),
            kind=change.get("kind", MeetingKind.SIP_MEETING),
            status=change.get("status", MeetingStatus.SCHEDULED),
        )
        build.invite(meeting, region["f"], sent_on=date(2026, 3, 2), answer=Answer.DECLINED)
    assert [f.case_reference for f in alerts(session, date(2026, 3, 13)).values()] == []


def test_alert_window_on_local_dates_around_dst(build, region, session):
    # Monday 30 March 00:30 in Stockholm is still Sunday in UTC; the window is counted in local days
    meeting = build.meeting(plan(build, region), date(2026, 3, 30), "00:30")
    late = build.meeting(plan(build, region), date(2026, 3, 31), "23:30")
    assert set(alerts(session, date(2026, 3, 25))) == set()
    assert set(alerts(session, date(2026, 3, 26))) == {meeting.id}  # Thu: Fri 27, Mon 30
    assert set(alerts(session, date(2026, 3, 27))) == {meeting.id, late.id}
    assert set(alerts(session, date(2026, 3, 31))) == {late.id}


def test_alert_window_follows_the_convener_organisation_calendar(build, region, session):
    closed = build.org("KOP-LSS", closed_days=(date(2026, 3, 13),))
    lss = build.contact(closed)
    ordinary = build.meeting(plan(build, region), date(2026, 3, 17))
    shifted = build.meeting(build.case(lss), date(2026, 3, 17))
    # Thu 12 March: ordinary window Fri 13, Mon 16; LSS (closed Fri 13) reaches Tue 17
    assert set(alerts(session, date(2026, 3, 12))) == {shifted.id}
    assert set(alerts(session, date(2026, 3, 13))) == {shifted.id, ordinary.id}


def test_keys_are_deterministic_and_distinct(build, region, session):
    meeting = build.meeting(plan(build, region), date(2026, 3, 16))
    build.invite(meeting, region["r"], sent_on=date(2026, 3, 2))
    build.invite(meeting, region["f"], sent_on=date(2026, 3, 2))
    first = [f.key for f in run(session, date(2026, 3, 13))]
    assert first == [f.key for f in run(session, date(2026, 3, 13))]
    assert len(first) == 3 and len(set(first)) == 3


def test_recipients_never_leave_the_plan(build, region, session):
    other_plan = build.case(region["r"], participants=(region["s"],))
    for c in (plan(build, region), other_plan):
        m = build.meeting(c, date(2026, 3, 16))
        for who in (region["r"], region["f"], region["s"], region["k"]):
            build.invite(m, who, sent_on=date(2026, 3, 2))
    for judged in (date(2026, 3, 5), date(2026, 3, 13)):
        for f in run(session, judged):
            if f.case_id == other_plan.id:
                allowed = {region["r"].id, region["s"].id}
            else:
                allowed = {region[x].id for x in ("k", "r", "f", "s", "coord")}
            assert f.recipients and set(f.recipients) <= allowed, f

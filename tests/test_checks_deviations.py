"""Deviations check: acknowledgement and reply ladders for the concerning organisation."""

from __future__ import annotations

from datetime import date

import pytest

from sipflows.checks import deviations
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import CaseStatus, Severity
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy
from tests.factories import DEVIATION_TEXT, local

REPORTED = date(2026, 3, 2)  # Monday 13:00


def run(session, judged: date, policy: EffectivePolicy | None = None) -> list[Finding]:
    return deviations.run(session, CheckContext.load(session, judged, policy or default_policy()))


def stages(session, judged: date, policy: EffectivePolicy | None = None) -> dict[tuple[int, str], Finding]:
    """(deviation id, ladder) → finding; at most one finding per deviation and ladder."""
    out: dict[tuple[int, str], Finding] = {}
    for f in run(session, judged, policy):
        ladder = f.stage.split("-", 1)[0]
        assert (f.object_id, ladder) not in out
        out[f.object_id, ladder] = f
    return out


def stage_of(session, judged: date, dev, ladder: str, policy: EffectivePolicy | None = None) -> str | None:
    f = stages(session, judged, policy).get((dev.id, ladder))
    return f.stage if f else None


@pytest.fixture
def region(build):
    return build.standard_region()


def plan(build, region, **kw):
    return build.case(region["k"], participants=(region["r"], region["f"], region["s"]), **kw)


def report(build, region, case=None, concerning="region", **kw):
    case = case or plan(build, region)
    return build.deviation(case, region["k"], region[concerning], REPORTED, **kw)


def test_acknowledgement_ladder(build, region, session):
    dev = report(build, region)
    r, chief = region["r"].id, region["r_chief"].id
    expected = {
        date(2026, 3, 4): None,  # the due day: still in time
        date(2026, 3, 5): ("acknowledgement-reminder", (r,)),
        date(2026, 3, 9): ("acknowledgement-reminder", (r,)),
        date(2026, 3, 10): ("acknowledgement-escalation-1", (chief,)),
        date(2026, 3, 16): ("acknowledgement-escalation-1", (chief,)),
        date(2026, 3, 17): ("acknowledgement-escalation-2", (chief,)),
        date(2026, 3, 24): ("acknowledgement-escalation-3", (chief,)),
        date(2026, 4, 30): ("acknowledgement-escalation-3", (chief,)),  # max_escalations = 3
    }
    for judged, want in expected.items():
        f = stages(session, judged).get((dev.id, "acknowledgement"))
        if want is None:
            assert f is None, judged
            continue
        assert f is not None, judged
        assert (f.stage, f.recipients, f.due) == (*want, date(2026, 3, 4)), judged
        assert f.key == f"deviations:deviation:{dev.id}:{want[0]}"
        assert f.details == {
            "deviation_code": dev.code,
            "kind": "party_absent",
            "severity": "normal",
            "reported_on": "2026-03-02",
        }
        assert DEVIATION_TEXT not in repr(f)


def test_reply_ladder_in_calendar_days_moved_off_first_of_may(build, region, session):
    dev = report(build, region, acknowledged_on=date(2026, 3, 3))
    # 60 days after 2 March is Friday 1 May (a holiday): due Monday 4 May
    expected = {
        date(2026, 5, 4): None,
        date(2026, 5, 5): "reply-reminder",
        date(2026, 5, 7): "reply-reminder",
        date(2026, 5, 8): "reply-escalation-1",
        date(2026, 5, 18): "reply-escalation-2",  # Kristi himmelsfärd (14 May) does not count
        date(2026, 5, 25): "reply-escalation-3",
    }
    for judged, want in expected.items():
        assert stage_of(session, judged, dev, "reply") == want, judged
        assert stage_of(session, judged, dev, "acknowledgement") is None
    assert stages(session, date(2026, 5, 5))[dev.id, "reply"].due == date(2026, 5, 4)


def test_high_severity_halves_the_times(build, region, session):
    normal = report(build, region)
    high = report(build, region, severity=Severity.HIGH)
    assert stage_of(session, date(2026, 3, 3), high, "acknowledgement") is None
    assert stage_of(session, date(2026, 3, 4), high, "acknowledgement") == "acknowledgement-reminder"
    assert stage_of(session, date(2026, 3, 4), normal, "acknowledgement") is None
    assert stage_of(session, date(2026, 3, 9), high, "acknowledgement") == "acknowledgement-escalation-1"
    assert stage_of(session, date(2026, 3, 9), normal, "acknowledgement") == "acknowledgement-reminder"
    # reply within 30 days instead of 60: due Wednesday 1 April
    assert stage_of(session, date(2026, 4, 1), high, "reply") is None
    assert stage_of(session, date(2026, 4, 2), high, "reply") == "reply-reminder"
    assert stage_of(session, date(2026, 4, 9), high, "reply") == "reply-escalation-1"  # over Easter
    assert stage_of(session, date(2026, 4, 9), normal, "reply") is None
    assert stages(session, date(2026, 4, 2))[high.id, "reply"].details["severity"] == "high"


def test_escalation_ladder_respects_a_lower_maximum(build, region, session):
    policy = build_policy(
        [Layer("t", {"deviations": {"max_escalations": 2, "escalation_after_working_days": 1}})]
    )
    dev = report(build, region)
    assert stage_of(session, date(2026, 3, 5), dev, "acknowledgement", policy) == "acknowledgement-reminder"
    assert (
        stage_of(session, date(2026, 3, 6), dev, "acknowledgement", policy) == "acknowledgement-escalation-1"
    )
    assert (
        stage_of(session, date(2026, 3, 12), dev, "acknowledgement", policy) == "acknowledgement-escalation-1"
    )
    assert (
        stage_of(session, date(2026, 3, 13), dev, "acknowledgement", policy) == "acknowledgement-escalation-2"
    )
    assert (
        stage_of(session, date(2026, 6, 1), dev, "acknowledgement", policy) == "acknowledgement-escalation-2"
    )


def test_keys_are_deterministic_and_distinct_per_stage(build, region, session):
    report(build, region)
    days = [date(2026, 3, 5), date(2026, 3, 10), date(2026, 3, 17), date(2026, 3, 24), date(2026, 5, 5)]
    keys = [k for d in days for k in (f.key for f in run(session, d))]
    assert keys == [k for d in days for k in (f.key for f in run(session, d))]
    # four acknowledgement stages, then escalation-3 again (same key) next to the reply reminder
    assert len(keys) == 6 and len(set(keys)) == 5


def test_nothing_is_due(build, region, session):
    variants = {
        "resolved": {"dev": {"resolved_on": date(2026, 3, 3)}},
        "acknowledged-and-replied": {
            "dev": {"acknowledged_on": date(2026, 3, 3), "replied_on": date(2026, 3, 20)}
        },
        "consent-withdrawn": {"case": {"consent_withdrawn_on": date(2026, 3, 3)}},
        "closed": {"case": {"status": CaseStatus.CLOSED, "closed_on": date(2026, 3, 3)}},
    }
    for name, change in variants.items():
        case = plan(build, region, reference=f"SIP-{name}", **change.get("case", {}))
        report(build, region, case=case, **change.get("dev", {}))
    for judged in (date(2026, 3, 5), date(2026, 3, 24), date(2026, 5, 5), date(2026, 8, 1)):
        assert [f.case_reference for f in run(session, judged)] == []


def test_a_reply_without_acknowledgement_still_needs_the_acknowledgement(build, region, session):
    dev = report(build, region, replied_on=date(2026, 3, 20))
    assert stage_of(session, date(2026, 3, 24), dev, "acknowledgement") == "acknowledgement-escalation-3"
    assert stage_of(session, date(2026, 5, 5), dev, "reply") is None


def test_recipients_for_each_concerning_organisation(build, region, session):
    # Försäkringskassan: a participant of the plan, no escalation contact anywhere
    fk = report(build, region, concerning="fk")
    # the school: a participant (Kurator Sven) with no escalation; the school has none either
    school = report(build, region, concerning="school")
    # an agency with an escalation contact but nobody in this plan
    af = build.org("AF")
    af_chief = build.contact(af, "Arbetsförmedlingen chef")
    af.escalation_contact_id = af_chief.id
    build.contact(af, "Handläggare, not in the plan")
    agency = build.deviation(plan(build, region), region["k"], af, REPORTED)
    # a participant whose own escalation contact stands in for an organisation without one
    bup = build.org("RV-BUP")
    bup_chief = build.contact(bup)
    bup_doc = build.contact(bup, escalation=bup_chief)
    with_own_chief = build.deviation(
        build.case(region["k"], participants=(bup_doc,)), region["k"], bup, REPORTED
    )
    session.flush()
    reminders = stages(session, date(2026, 3, 5))
    escalations = stages(session, date(2026, 3, 10))
    assert reminders[fk.id, "acknowledgement"].recipients == (region["f"].id,)
    assert escalations[fk.id, "acknowledgement"].recipients == (region["f"].id,)
    assert reminders[school.id, "acknowledgement"].recipients == (region["s"].id,)
    assert reminders[agency.id, "acknowledgement"].recipients == (af_chief.id,)
    assert escalations[agency.id, "acknowledgement"].recipients == (af_chief.id,)
    assert reminders[with_own_chief.id, "acknowledgement"].recipients == (bup_doc.id,)
    assert escalations[with_own_chief.id, "acknowledgement"].recipients == (bup_chief.id,)


def test_recipients_never_leave_the_plan(build, region, session):
    other_region_person = build.contact(region["region"], escalation=region["r_chief"])
    other_plan = build.case(region["k"], participants=(other_region_person,))
    mine = report(build, region)
    theirs = report(build, region, case=other_plan)
    for judged in (date(2026, 3, 5), date(2026, 3, 10), date(2026, 5, 5)):
        found = stages(session, judged)
        assert found[mine.id, "acknowledgement"].recipients in ((region["r"].id,), (region["r_chief"].id,))
        assert found[theirs.id, "acknowledgement"].recipients in (
            (other_region_person.id,),
            (region["r_chief"].id,),
        )
        for f in found.values():
            assert other_region_person.id not in f.recipients or f.object_id == theirs.id
            assert region["r"].id not in f.recipients or f.object_id == mine.id


def test_deadline_follows_the_concerning_organisation(build, region, session):
    closed_region = build.org("RV-PSYK", closed_days=(date(2026, 3, 4),))
    psyk = build.contact(closed_region)
    closed_kommun = build.org("KOP-LSS", closed_days=(date(2026, 3, 3), date(2026, 3, 4)))
    lss = build.contact(closed_kommun)
    case = build.case(lss, participants=(psyk, region["r"]))
    # reported by the closed kommun unit: its closed days do not matter
    ordinary = build.deviation(case, lss, region["region"], REPORTED)
    shifted = build.deviation(case, lss, closed_region, REPORTED)
    assert stage_of(session, date(2026, 3, 5), ordinary, "acknowledgement") == "acknowledgement-reminder"
    assert stage_of(session, date(2026, 3, 5), shifted, "acknowledgement") is None
    assert stage_of(session, date(2026, 3, 6), shifted, "acknowledgement") == "acknowledgement-reminder"
    assert stages(session, date(2026, 3, 6))[shifted.id, "acknowledgement"].due == date(2026, 3, 5)


def test_policy_override_for_the_concerning_organisation_only(build, region, session):
    policy = build_policy(
        [
            Layer(
                "t",
                {
                    "organisations": {
                        "FK": {"deviations": {"acknowledgement_working_days": 5, "reply_days": 10}}
                    }
                },
            )
        ]
    )
    at_region = report(build, region)
    at_fk = report(build, region, concerning="fk")
    assert (
        stage_of(session, date(2026, 3, 5), at_region, "acknowledgement", policy)
        == "acknowledgement-reminder"
    )
    assert stage_of(session, date(2026, 3, 9), at_fk, "acknowledgement", policy) is None
    assert (
        stage_of(session, date(2026, 3, 10), at_fk, "acknowledgement", policy) == "acknowledgement-reminder"
    )
    # reply: 12 March, reminder Friday 13 March
    assert stage_of(session, date(2026, 3, 12), at_fk, "reply", policy) is None
    assert stage_of(session, date(2026, 3, 13), at_fk, "reply", policy) == "reply-reminder"
    assert stage_of(session, date(2026, 3, 13), at_region, "reply", policy) is None


def test_reported_date_is_the_local_date(build, region, session):
    # 00:30 on Monday 30 March (after the DST switch) is Sunday evening in UTC
    dev = report(build, region)
    dev.reported_at = local(date(2026, 3, 30), "00:30")
    late = report(build, region)
    late.reported_at = local(date(2026, 3, 27), "23:30")
    session.flush()
    assert dev.reported_at.date() == date(2026, 3, 29)
    # Monday + 2 working days = Wednesday 1 April; reminder Thursday 2 April
    assert stage_of(session, date(2026, 4, 1), dev, "acknowledgement") is None
    assert stage_of(session, date(2026, 4, 2), dev, "acknowledgement") == "acknowledgement-reminder"
    # Friday evening: due Tuesday 31 March, reminder Wednesday 1 April
    assert stage_of(session, date(2026, 3, 31), late, "acknowledgement") is None
    assert stage_of(session, date(2026, 4, 1), late, "acknowledgement") == "acknowledgement-reminder"

"""First-meeting check: consent is there, the first SIP meeting is never called.

Dates (2026): Easter is Good Friday 3 April to Easter Monday 6 April. Default limits: ordinary 10 working
days from the identified need, a child's 21 calendar days from it (Västbus), a discharge 3 calendar days
from the discharge date (Lag 2017:612); calendar-day limits end on the next working day.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sipflows.checks import first_meeting, run_checks
from sipflows.checks.base import CheckContext, Finding
from sipflows.models import CaseStatus, MeetingKind, MeetingStatus, Notice, PlanOrigin
from sipflows.notices.build import build_notices
from sipflows.policy import EffectivePolicy, Layer, build_policy, default_policy
from sipflows.settings import Settings
from sipflows.sweep import run_sweep
from tests.factories import SECRETS, local

SETTINGS = Settings(_env_file=None, mail_domain="sipflows.test", sender_name="SIP-påminnelser")  # type: ignore[call-arg]


def run(session, judged: date, policy: EffectivePolicy | None = None) -> list[Finding]:
    return first_meeting.run(session, CheckContext.load(session, judged, policy or default_policy()))


def by_case(session, judged: date, policy: EffectivePolicy | None = None) -> dict[int, Finding]:
    found = run(session, judged, policy)
    assert len({f.object_id for f in found}) == len(found), "one finding per plan"
    return {f.object_id: f for f in found}


def stage(session, case, judged: date, policy: EffectivePolicy | None = None) -> str | None:
    f = by_case(session, judged, policy).get(case.id)
    return f.stage if f is not None else None


@pytest.fixture
def region(build):
    std = build.standard_region()
    std["coord"] = build.contact(std["region"], "SIP-samordnare")
    return std


def plan(build, region, identified: date = date(2026, 3, 2), **kw):
    kw.setdefault("consent_given_on", identified)
    return build.case(
        region["k"],
        participants=(region["r"], region["f"]),
        coordinator=region["coord"],
        identified_on=identified,
        **kw,
    )


def discharge_plan(build, region, discharged: date, identified: date = date(2026, 2, 20), **kw):
    return plan(build, region, identified, origin=PlanOrigin.DISCHARGE, discharged_on=discharged, **kw)


# --- the deadline day and the day after, per kind of plan ------------------------------------------------


def test_ordinary_plan_ladder(build, region, session):
    # identified Monday 2 March: the 10th working day after is Monday 16 March
    case = plan(build, region)
    k, coord, chief = region["k"].id, region["coord"].id, region["k_chief"].id
    expected = {
        date(2026, 3, 13): None,
        date(2026, 3, 16): None,  # the deadline day itself: it may still be called today
        date(2026, 3, 17): ("reminder", (k, coord)),
        date(2026, 3, 23): ("reminder", (k, coord)),
        date(2026, 3, 24): ("escalation-1", (chief,)),  # 5 working days after the reminder
        date(2026, 9, 1): ("escalation-1", (chief,)),
    }
    for judged, want in expected.items():
        found = by_case(session, judged)
        if want is None:
            assert case.id not in found, judged
            continue
        f = found[case.id]
        assert (f.stage, f.recipients) == (f"{want[0]}@2026-03-16", want[1]), judged
        assert f.key == f"first_meeting:case:{case.id}:{want[0]}@2026-03-16"
        assert (f.due, f.object_type, f.case_reference) == (date(2026, 3, 16), "case", case.reference)
        assert f.details == {"limit": "ordinary", "due": "2026-03-16"}


def test_ordinary_plan_across_easter(build, region, session):
    # identified Monday 30 March: Good Friday and Easter Monday do not count, so Wednesday 15 April
    case = plan(build, region, date(2026, 3, 30))
    assert stage(session, case, date(2026, 4, 13)) is None  # the 10th working day without Easter
    assert stage(session, case, date(2026, 4, 15)) is None
    assert stage(session, case, date(2026, 4, 16)) == "reminder@2026-04-15"


def test_child_plan_has_three_weeks(build, region, session):
    # identified Monday 2 March: 21 days later is Monday 23 March
    case = plan(build, region, under_18=True)
    ordinary = plan(build, region)
    assert stage(session, ordinary, date(2026, 3, 17)) == "reminder@2026-03-16"
    assert stage(session, case, date(2026, 3, 17)) is None
    assert stage(session, case, date(2026, 3, 23)) is None
    f = by_case(session, date(2026, 3, 24))[case.id]
    assert (f.stage, f.details["limit"]) == ("reminder@2026-03-23", "child")
    assert stage(session, case, date(2026, 3, 30)) == "reminder@2026-03-23"
    assert stage(session, case, date(2026, 3, 31)) == "escalation-1@2026-03-23"


def test_child_limit_ending_on_easter_monday_ends_the_next_working_day(build, region, session):
    # identified Monday 16 March: 21 days later is Easter Monday 6 April, so Tuesday 7 April
    case = plan(build, region, date(2026, 3, 16), under_18=True)
    assert stage(session, case, date(2026, 4, 6)) is None
    assert stage(session, case, date(2026, 4, 7)) is None
    assert stage(session, case, date(2026, 4, 8)) == "reminder@2026-04-07"


def test_discharge_plan_counts_three_days_from_the_discharge(build, region, session):
    # identified on the ward 20 February, discharged Monday 2 March: Thursday 5 March
    case = discharge_plan(build, region, date(2026, 3, 2))
    k, coord, chief = region["k"].id, region["coord"].id, region["k_chief"].id
    assert stage(session, case, date(2026, 3, 5)) is None
    f = by_case(session, date(2026, 3, 6))[case.id]
    assert (f.stage, f.recipients, f.due) == ("reminder@2026-03-05", (k, coord), date(2026, 3, 5))
    assert f.details == {"limit": "discharge", "due": "2026-03-05"}
    assert stage(session, case, date(2026, 3, 12)) == "reminder@2026-03-05"
    f = by_case(session, date(2026, 3, 13))[case.id]
    assert (f.stage, f.recipients) == ("escalation-1@2026-03-05", (chief,))


def test_discharge_limit_ending_on_good_friday_ends_after_easter(build, region, session):
    # discharged Tuesday 31 March: 3 days later is Good Friday; the next working day is Tuesday 7 April
    case = discharge_plan(build, region, date(2026, 3, 31))
    assert stage(session, case, date(2026, 4, 3)) is None
    assert stage(session, case, date(2026, 4, 7)) is None
    assert stage(session, case, date(2026, 4, 8)) == "reminder@2026-04-07"


def test_discharge_limit_ending_on_a_saturday_ends_on_monday(build, region, session):
    case = discharge_plan(build, region, date(2026, 3, 4))  # Wednesday; +3 is Saturday 7 March
    assert stage(session, case, date(2026, 3, 9)) is None
    assert stage(session, case, date(2026, 3, 10)) == "reminder@2026-03-09"


def test_a_discharge_plan_for_a_child_follows_the_law(build, region, session):
    case = discharge_plan(build, region, date(2026, 3, 2), under_18=True)
    f = by_case(session, date(2026, 3, 6))[case.id]
    assert (f.stage, f.details["limit"]) == ("reminder@2026-03-05", "discharge")


def test_a_discharge_plan_is_not_chased_before_its_discharge(build, region, session):
    # the need was identified on the ward weeks ago: the ordinary limit does not apply to it
    case = discharge_plan(build, region, date(2026, 3, 20), identified=date(2026, 2, 2))
    assert stage(session, case, date(2026, 3, 20)) is None
    assert stage(session, case, date(2026, 3, 23)) is None  # Friday 20 March + 3 days
    assert stage(session, case, date(2026, 3, 24)) == "reminder@2026-03-23"


# --- per organisation --------------------------------------------------------------------------------


def test_per_organisation_override(build, region, session):
    policy = build_policy(
        [
            Layer(
                "policy.toml",
                {
                    "first_meeting": {"discharge_days": 2},
                    "organisations": {
                        "KOP-IFO": {"first_meeting": {"ordinary_working_days": 5, "child_days": 14}}
                    },
                },
            )
        ]
    )
    kommun = plan(build, region)  # convened by KOP-IFO
    child = plan(build, region, under_18=True)
    in_region = build.case(
        region["r"], identified_on=date(2026, 3, 2), consent_given_on=date(2026, 3, 2)
    )  # RV-VC-KOP: the file's values
    discharged = build.case(
        region["r"],
        identified_on=date(2026, 3, 2),
        consent_given_on=date(2026, 3, 2),
        origin=PlanOrigin.DISCHARGE,
        discharged_on=date(2026, 3, 2),
    )
    # KOP-IFO: 5 working days, Monday 9 March; a child 14 days, Monday 16 March
    assert stage(session, kommun, date(2026, 3, 9), policy) is None
    assert stage(session, kommun, date(2026, 3, 10), policy) == "reminder@2026-03-09"
    assert stage(session, child, date(2026, 3, 16), policy) is None
    assert stage(session, child, date(2026, 3, 17), policy) == "reminder@2026-03-16"
    # RV-VC-KOP keeps 10 working days; the file's 2 discharge days hold for everyone
    assert stage(session, in_region, date(2026, 3, 10), policy) is None
    assert stage(session, in_region, date(2026, 3, 17), policy) == "reminder@2026-03-16"
    assert stage(session, discharged, date(2026, 3, 4), policy) is None
    assert stage(session, discharged, date(2026, 3, 5), policy) == "reminder@2026-03-04"
    # the default policy still says 10 working days for KOP-IFO
    assert stage(session, kommun, date(2026, 3, 10)) is None


def test_an_organisations_closed_day_moves_the_limit(build, region, session):
    lss_org = build.org("KOP-LSS", closed_days=(date(2026, 3, 11),))
    lss = build.contact(lss_org, "Handläggare LSS", escalation=region["k_chief"])
    case = build.case(lss, identified_on=date(2026, 3, 2), consent_given_on=date(2026, 3, 2))
    assert stage(session, case, date(2026, 3, 17)) is None  # the 10th working day is now 17 March
    assert stage(session, case, date(2026, 3, 18)) == "reminder@2026-03-17"


# --- what ends or prevents the ladder ----------------------------------------------------------------


@pytest.mark.parametrize("status", [MeetingStatus.SCHEDULED, MeetingStatus.HELD])
def test_a_booked_sip_meeting_stops_the_ladder(build, region, session, status):
    case = plan(build, region)
    assert stage(session, case, date(2026, 3, 24)) == "escalation-1@2026-03-16"
    # booked late, for a day after the judged one: still booked, nobody needs to be chased
    meeting = build.meeting(case, date(2026, 4, 14), status=status)
    assert case.id not in by_case(session, date(2026, 3, 24))
    assert case.id not in by_case(session, date(2026, 3, 17))
    meeting.status = MeetingStatus.CANCELLED
    session.flush()
    assert stage(session, case, date(2026, 3, 24)) == "escalation-1@2026-03-16"


def test_meetings_that_are_not_the_first_sip_meeting(build, region, session):
    cases = {}
    for name, kind, status in (
        ("cancelled", MeetingKind.SIP_MEETING, MeetingStatus.CANCELLED),
        ("pre-meeting", MeetingKind.PRE_MEETING, MeetingStatus.HELD),
    ):
        cases[name] = plan(build, region, reference=f"SIP-{name}")
        build.meeting(cases[name], date(2026, 3, 10), kind=kind, status=status)
    found = by_case(session, date(2026, 3, 17))
    assert {name for name, c in cases.items() if c.id in found} == set(cases)


def test_closed_withdrawn_and_unconsented_plans_produce_nothing(build, region, session):
    quiet = [
        plan(build, region, status=CaseStatus.CLOSED, closed_on=date(2026, 3, 5)),
        plan(
            build,
            region,
            status=CaseStatus.CLOSED,
            consent_withdrawn_on=date(2026, 3, 4),
            closed_on=date(2026, 3, 4),
        ),
        # withdrawn while the register still says active: withdrawn consent ends it at once
        plan(build, region, consent_withdrawn_on=date(2026, 3, 4)),
        plan(build, region, status=CaseStatus.OFFERED, consent_given_on=None),
        plan(build, region, status=CaseStatus.IDENTIFIED, consent_given_on=None),
        discharge_plan(build, region, date(2026, 3, 2), status=CaseStatus.CLOSED, closed_on=date(2026, 3, 3)),
    ]
    waiting = plan(build, region)
    for judged in (date(2026, 3, 17), date(2026, 3, 24), date(2026, 6, 1)):
        found = set(by_case(session, judged))
        assert found == {waiting.id} and not found & {c.id for c in quiet}, judged


def test_the_register_refuses_a_discharge_plan_without_its_date(build, region, session):
    with pytest.raises(IntegrityError), session.begin_nested():
        plan(build, region, origin=PlanOrigin.DISCHARGE)
    with pytest.raises(IntegrityError), session.begin_nested():
        plan(build, region, discharged_on=date(2026, 3, 2))


# --- notices -----------------------------------------------------------------------------------------


def test_notices_in_both_languages_say_the_plan_and_the_day_and_nothing_of_the_person(build, region, session):
    case = discharge_plan(build, region, date(2026, 3, 2), under_18=True, reference="SIP-2026-41")
    assert region["r"].language.value == "en"
    found = run(session, date(2026, 3, 6)) + run(session, date(2026, 3, 13))
    # the English-speaking participant is told as an extra recipient of the reminder
    reminder = found[0]
    reminder = Finding(**{**reminder.__dict__, "recipients": (*reminder.recipients, region["r"].id)})
    drafts = build_notices(session, [reminder, found[1]], SETTINGS)
    by_address = {(d.kind, d.address): d for d in drafts}
    assert {d.kind for d in drafts} == {"first_meeting.reminder", "first_meeting.escalation"}
    sv = by_address["first_meeting.reminder", region["k"].email]
    en = by_address["first_meeting.reminder", region["r"].email]
    esc = by_address["first_meeting.escalation", region["k_chief"].email]
    assert sv.subject == "Första SIP-mötet är inte kallat: plan SIP-2026-41"
    assert "skulle ha kallats senast torsdag 5 mars 2026" in sv.body_text
    assert "torsdag 5 mars 2026" in sv.body_html
    assert en.subject == "The first SIP meeting has not been called: plan SIP-2026-41"
    assert "should have been called by Thursday 5 March 2026" in en.body_text
    assert esc.subject.startswith("Eskalering:") and "torsdag 5 mars 2026" in esc.body_text
    for d in drafts:
        for part in (d.subject, d.body_text, d.body_html):
            assert "SIP-2026-41" in part
            for secret in SECRETS:
                assert secret not in part, f"{d.key} leaks {secret!r}"
            # neither the discharge (health data) nor the age says anything to a mailbox
            for word in ("utskriv", "discharge", "sluten", "inpatient", "barn", "child", "2 mars", "2 March"):
                assert word not in part, f"{d.key} says {word!r}"
        assert case.id == d.case_id and d.meeting_id is None


def test_the_sweep_enqueues_the_reminder_once(build, region, session, engine):
    case = plan(build, region, reference="SIP-2026-42")
    session.commit()
    judged = date(2026, 3, 17)
    first = run_sweep(engine, judged, default_policy(), local(judged, "06:30"), SETTINGS)
    again = run_sweep(engine, judged, default_policy(), local(judged, "07:30"), SETTINGS)
    assert [f.case_reference for f in first.findings["first_meeting"]] == ["SIP-2026-42"]
    assert (first.enqueued, again.enqueued) == (2, 0)
    notices = session.scalars(select(Notice).where(Notice.case_id == case.id)).all()
    assert {(n.kind, n.address) for n in notices} == {
        ("first_meeting.reminder", region["k"].email),
        ("first_meeting.reminder", region["coord"].email),
    }
    assert "first_meeting" in run_checks(session, judged, default_policy())

"""The report's figures against a register counted by hand (April 2026: Easter, a closed day, overrides).

Every expected number below is counted from the fixture's comments, not computed by the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy.orm import Session

from sipflows.models import (
    Answer,
    CaseStatus,
    ClosedDay,
    ClosureReason,
    DeviationKind,
    MeetingKind,
    MeetingStatus,
    Severity,
    SipCase,
)
from sipflows.policy import EffectivePolicy, Layer, build_policy
from sipflows.stats import TOTAL, Period, UnknownOrganisation, compute_stats, dimension
from tests.factories import RegisterBuilder, local

APRIL = Period(date(2026, 4, 1), date(2026, 4, 30))
AS_OF = date(2026, 5, 4)  # the due day of the undocumented follow-up M4: still pending
KOMMUN, REGION, FK = "KOP-IFO", "RV-VC-KOP", "FK"
FU, SIP = "meeting_kind=follow_up", "meeting_kind=sip_meeting"


def fixture_policy() -> EffectivePolicy:
    """Documentation within 2 working days, but 1 for the region's health centre."""
    return build_policy(
        [Layer("test", {"organisations": {REGION: {"documentation": {"due_working_days": 1}}}})]
    )


@dataclass
class FixtureRegister:
    references: list[str]
    contact_names: list[str]
    contact_emails: list[str]


def build_fixture_register(build: RegisterBuilder) -> FixtureRegister:
    """Kommun (closed 14 April) and region (due 1 working day) plans; Easter is 3–6 April 2026."""
    w = build.standard_region()
    kommun, region, fk = w["kommun"], w["region"], w["fk"]
    k, r, f, s = w["k"], w["r"], w["f"], w["s"]
    session: Session = build.session
    session.add(ClosedDay(organisation_id=kommun.id, day=date(2026, 4, 14), reason="studiedag"))
    session.flush()

    # plans. identified / offered (= identified_on, by the builder) / started (= consent date) / ended
    a1 = build.case(k, identified_on=date(2026, 3, 20), consent_given_on=date(2026, 4, 2))  # started
    a2 = build.case(k, identified_on=date(2026, 4, 1), consent_given_on=date(2026, 4, 7))  # id, off, start
    a3 = build.case(k, status=CaseStatus.OFFERED, identified_on=date(2026, 4, 10))  # id, off
    build.case(k, status=CaseStatus.IDENTIFIED, identified_on=date(2026, 4, 20), consent_given_on=None)  # id
    a5 = build.case(
        k,
        status=CaseStatus.CLOSED,
        identified_on=date(2026, 1, 5),
        consent_withdrawn_on=date(2026, 4, 15),
        closed_on=date(2026, 4, 15),
    )  # ended, consent withdrawn
    a6 = build.case(
        r,
        status=CaseStatus.CLOSED,
        identified_on=date(2026, 2, 2),
        consent_given_on=date(2026, 2, 3),
        closed_on=date(2026, 4, 30),
    )  # ended (need met)
    a7 = build.case(r, identified_on=date(2026, 4, 3), consent_given_on=date(2026, 4, 8))  # id, off, start
    build.case(
        r, status=CaseStatus.IDENTIFIED, identified_on=date(2026, 5, 1), consent_given_on=None
    )  # after
    a9 = build.case(
        k, status=CaseStatus.CLOSED, identified_on=date(2026, 1, 5), closed_on=date(2026, 3, 31)
    )  # ended before
    a5.closure_reason = ClosureReason.CONSENT_WITHDRAWN
    a6.closure_reason = ClosureReason.NEED_MET
    a9.closure_reason = ClosureReason.NEED_MET
    session.flush()

    held, fu = MeetingStatus.HELD, MeetingKind.FOLLOW_UP
    # kommun: due 2 working days on its calendar (Easter, 14 April closed)
    m1 = build.meeting(a1, date(2026, 4, 2), status=held, documented_at=local(date(2026, 4, 8), "16:00"))
    # Thu 2 Apr -> due Wed 8 Apr (3 and 6 April are holidays): in time, 2 working days
    m2 = build.meeting(a2, date(2026, 4, 13), status=held, documented_at=local(date(2026, 4, 16)))
    # Mon 13 Apr -> due Thu 16 (14 closed): in time, 2 working days (late without the closed day)
    build.meeting(a1, date(2026, 4, 20), status=held, documented_at=local(date(2026, 4, 21)))  # in time, 1
    m3 = build.meeting(a2, date(2026, 4, 27), kind=fu, status=held, documented_at=local(date(2026, 4, 30)))
    # follow-up Mon 27 Apr -> due Wed 29: late, 3 working days
    build.meeting(a1, date(2026, 4, 29), kind=fu, status=held)  # due Mon 4 May (1 May): pending on 4 May
    build.meeting(a2, date(2026, 4, 8), kind=MeetingKind.PRE_MEETING, status=held)
    m9 = build.meeting(a3, date(2026, 4, 21), status=MeetingStatus.CANCELLED)
    build.meeting(a5, date(2026, 3, 10), status=held, documented_at=local(date(2026, 3, 10)))  # before
    # region: due 1 working day (override)
    m5 = build.meeting(a7, date(2026, 4, 9), status=held, documented_at=local(date(2026, 4, 13), "08:00"))
    # Thu 9 Apr -> due Fri 10: late, 2 working days (in time with the default of 2)
    build.meeting(a7, date(2026, 4, 30), at="23:30", status=held, documented_at=local(date(2026, 5, 4)))
    # 23:30 on 30 April is 21:30 UTC: in the period; due Mon 4 May: in time, 1 working day
    m7 = build.meeting(a7, date(2026, 5, 1), at="00:30", status=held)  # 30 April 22:30 UTC: NOT in April

    # invitations (sent in period: I3..I11; attendance: held April meetings only)
    build.invite(m1, f, sent_on=date(2026, 3, 25), answer=Answer.ACCEPTED, attended=False)  # I1
    build.invite(m1, r, sent_on=date(2026, 3, 25), answer=Answer.ACCEPTED, attended=True)  # I2
    build.invite(m2, f, sent_on=date(2026, 4, 1), attended=False)  # I3
    build.invite(m2, s, sent_on=date(2026, 4, 1), answer=Answer.ACCEPTED, attended=True)  # I4
    build.invite(m2, r, sent_on=date(2026, 4, 1), answer=Answer.DECLINED, attended=False)  # I5
    build.invite(m5, k, sent_on=date(2026, 4, 3), answer=Answer.ACCEPTED, attended=True)  # I6
    build.invite(m5, f, sent_on=date(2026, 4, 3), answer=Answer.TENTATIVE)  # I7
    build.invite(m9, s, sent_on=date(2026, 4, 14))  # I8
    build.invite(m7, f, sent_on=date(2026, 4, 24), answer=Answer.ACCEPTED, attended=True)  # I9
    build.invite(m3, f, sent_on=date(2026, 4, 20), answer=Answer.DECLINED, attended=False)  # I10
    build.invite(m3, s, sent_on=date(2026, 4, 20), attended=True)  # I11
    build.invite(m9, k, sent_on=None)  # never sent: counts nowhere

    # deviations, by the concerning organisation
    build.deviation(
        a2,
        k,
        region,
        date(2026, 4, 2),
        acknowledged_on=date(2026, 4, 7),
        replied_on=date(2026, 4, 20),
        resolved_on=date(2026, 4, 21),
    )  # D1 party absent, normal, closed; ack 5 days, reply 18 days
    build.deviation(
        a1, k, fk, date(2026, 4, 10), severity=Severity.HIGH, acknowledged_on=date(2026, 4, 10)
    )  # D2
    build.deviation(
        a7, r, kommun, date(2026, 4, 15), kind=DeviationKind.DOCUMENTATION_LATE
    )  # D3 open, no ack
    build.deviation(a2, k, region, date(2026, 3, 30), resolved_on=date(2026, 4, 5))  # D4 before the period
    build.deviation(
        a2,
        k,
        region,
        date(2026, 4, 28),
        kind=DeviationKind.INVITATION_NOT_ANSWERED,
        severity=Severity.HIGH,
        acknowledged_on=date(2026, 4, 29),
        replied_on=date(2026, 4, 30),
        resolved_on=date(2026, 5, 2),
    )  # D5 open at the end of April; ack 1 day, reply 2 days
    session.flush()

    contacts = [c for c in w.values() if hasattr(c, "email")]
    refs = [c.reference for c in session.query(SipCase).all()]
    return FixtureRegister(
        references=refs,
        contact_names=[c.name for c in contacts],
        contact_emails=[c.email for c in contacts],
    )


@pytest.fixture
def register(build: RegisterBuilder) -> FixtureRegister:
    return build_fixture_register(build)


def test_plans_by_stage_per_convener_and_in_total(session, register):
    st = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    expected = {
        # metric: (kommun, region, total)
        "plans_identified": (3, 1, 4),
        "plans_offered": (2, 1, 3),
        "plans_started": (2, 1, 3),
        "plans_ended": (1, 1, 2),
        "plans_ended_consent_withdrawn": (1, 0, 1),
        "pre_meetings_held": (1, 0, 1),
        "sip_meetings_held": (3, 2, 5),
        "plans_held": (2, 1, 3),
        "follow_ups_held": (2, 0, 2),
        "plans_followed_up": (2, 0, 2),
        "plans_first_sip_meeting": (2, 1, 3),
    }
    for metric, (kom, reg, total) in expected.items():
        assert st.value(metric, KOMMUN) == kom, metric
        assert st.value(metric, REGION) == reg, metric
        assert st.value(metric) == total, metric
        assert st.figure(metric).unit == "count"
    # identified -> first held SIP meeting: A1 20 Mar -> 2 Apr = 9, A2 1 Apr -> 13 Apr = 6 (Easter),
    # A7 3 Apr -> 9 Apr = 3
    assert st.value("identified_to_first_sip_median_working_days", KOMMUN) == 7.5
    assert st.value("identified_to_first_sip_median_working_days", REGION) == 3
    assert st.value("identified_to_first_sip_median_working_days") == 6
    assert st.figure("identified_to_first_sip_median_working_days").unit == "working_days"
    # organisations without plans get no plan rows; FK only appears among deviations
    assert st.organisations_in(st_section("plans")) == [KOMMUN, REGION]


def st_section(name: str):
    from sipflows.stats import Section

    return Section(name)


def test_documentation_in_time_uses_each_conveners_calendar_and_policy(session, register):
    st = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)

    def row(org: str, dim: str = "") -> tuple:
        names = (
            "documentation_meetings_held",
            "documented_in_time",
            "documented_late",
            "undocumented_overdue",
            "documentation_pending",
            "documented_in_time_share",
            "documentation_median_working_days",
        )
        return tuple(st.value(n, org, dim) for n in names)

    assert row(KOMMUN, SIP) == (3, 3, 0, 0, 0, 100.0, 2)
    assert row(KOMMUN, FU) == (2, 0, 1, 0, 1, 0.0, 3)
    assert row(KOMMUN) == (5, 3, 1, 0, 1, 75.0, 2)
    assert row(REGION, SIP) == (2, 1, 1, 0, 0, 50.0, 1.5)
    assert st.value("documentation_meetings_held", REGION, FU) is None  # no row: nothing counted
    assert row(TOTAL, SIP) == (5, 4, 1, 0, 0, 80.0, 2)
    assert row(TOTAL, FU) == (2, 0, 1, 0, 1, 0.0, 3)
    assert row(TOTAL)[:5] == (7, 4, 2, 0, 1)
    assert row(TOTAL)[5] == pytest.approx(100 * 4 / 6)
    assert st.figure("documented_in_time_share").unit == "percent"
    assert st.documentation_due == {TOTAL: 2, REGION: 1}

    # a day later the undocumented follow-up is overdue and counts against the share
    later = compute_stats(session, APRIL, fixture_policy(), as_of=date(2026, 5, 5))
    assert later.value("undocumented_overdue") == 1
    assert later.value("documentation_pending") == 0
    assert later.value("documented_in_time_share") == pytest.approx(100 * 4 / 7)

    # without the override the region's Thursday meeting documented on Monday is in time
    default = compute_stats(session, APRIL, build_policy([]), as_of=AS_OF)
    assert default.value("documented_in_time", REGION) == 2
    assert default.value("documented_in_time_share", REGION) == 100.0


def test_invitation_answers_and_attendance_by_invitee_kind(session, register):
    st = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    fk, school = dimension(invitee_kind="forsakringskassan"), dimension(invitee_kind="school")
    region_kind, kommun_kind = dimension(invitee_kind="region_unit"), dimension(invitee_kind="municipal_unit")

    # sent in April: kommun convener I3 I4 I5 I8 I10 I11, region convener I6 I7 I9
    assert st.value("invitations_sent") == 9
    assert st.value("invitations_answered") == 6
    assert st.value("invitation_answer_rate") == pytest.approx(100 * 6 / 9)
    assert (
        st.value("invitations_accepted"),
        st.value("invitations_tentative"),
        st.value("invitations_declined"),
    ) == (
        3,
        1,
        2,
    )
    assert (st.value("invitations_sent", TOTAL, fk), st.value("invitations_answered", TOTAL, fk)) == (4, 3)
    assert st.value("invitation_answer_rate", TOTAL, fk) == 75.0
    assert st.value("invitation_answer_rate", TOTAL, school) == pytest.approx(100 / 3)
    assert st.value("invitation_answer_rate", TOTAL, region_kind) == 100.0
    assert st.value("invitation_answer_rate", TOTAL, kommun_kind) == 100.0
    assert st.value("invitations_sent", KOMMUN) == 6
    assert st.value("invitation_answer_rate", KOMMUN, fk) == 50.0
    assert st.value("invitation_answer_rate", REGION, fk) == 100.0

    # attendance at meetings held in April (I1 I2 I3 I4 I5 I10 I11 at kommun's, I6 at region's)
    assert (st.value("attendance_recorded"), st.value("attendance_attended")) == (8, 4)
    assert st.value("attendance_rate") == 50.0
    assert st.value("attendance_rate", TOTAL, fk) == 0.0
    assert st.value("attendance_recorded", TOTAL, fk) == 3
    assert st.value("attendance_rate", TOTAL, region_kind) == 50.0
    assert st.value("attendance_rate", TOTAL, school) == 100.0
    assert st.value("attendance_rate", KOMMUN) == pytest.approx(100 * 3 / 7)
    assert st.value("attendance_rate", REGION) == 100.0
    # the region's FK invitee answered but attendance was never recorded: a row with no rate
    assert st.value("attendance_recorded", REGION, fk) == 0
    assert st.figure("attendance_rate", REGION, fk).value is None
    assert st.dimension_values("invitations_sent", "invitee_kind") == [
        "forsakringskassan",
        "municipal_unit",
        "region_unit",
        "school",
    ]


def test_deviations_by_kind_severity_and_time_to_acknowledge(session, register):
    st = compute_stats(session, APRIL, fixture_policy(), as_of=AS_OF)
    assert (st.value("deviations_reported"), st.value("deviations_open"), st.value("deviations_closed")) == (
        4,
        3,
        1,
    )
    assert (st.value("deviations_acknowledged"), st.value("deviations_replied")) == (3, 2)
    absent = dimension(kind="party_absent")
    assert (st.value("deviations_reported", TOTAL, absent), st.value("deviations_open", TOTAL, absent)) == (
        2,
        1,
    )
    assert st.value("deviations_reported", TOTAL, dimension(kind="party_absent", severity="high")) == 1
    assert (
        st.value("deviations_reported", TOTAL, dimension(kind="documentation_late", severity="normal")) == 1
    )
    assert st.value("deviations_reported", TOTAL, dimension(kind="invitation_not_answered")) == 1
    assert st.value("deviations_reported", TOTAL, dimension(kind="other")) is None
    assert st.value("deviations_reported", TOTAL, dimension(severity="high")) == 2
    # calendar days: D1 5 / 18, D2 0 / -, D5 1 / 2
    assert st.value("deviation_acknowledgement_median_days") == 1
    assert st.value("deviation_reply_median_days") == 10
    assert st.value("deviation_acknowledgement_median_days", TOTAL, dimension(severity="high")) == 0.5
    assert st.value("deviation_reply_median_days", TOTAL, dimension(severity="normal")) == 18
    assert st.figure("deviation_reply_median_days").unit == "days"
    # per concerning organisation
    assert (st.value("deviations_reported", REGION), st.value("deviations_open", REGION)) == (2, 1)
    assert st.value("deviation_acknowledgement_median_days", REGION) == 3
    assert (st.value("deviations_reported", FK), st.value("deviations_open", FK)) == (1, 1)
    assert st.value("deviation_reply_median_days", FK) is None
    assert st.value("deviations_reported", KOMMUN) == 1
    assert st.value("deviation_acknowledgement_median_days", KOMMUN) is None


def test_scope_limits_every_section_to_the_organisations_given(session, register):
    st = compute_stats(session, APRIL, fixture_policy(), organisations=[REGION], as_of=AS_OF)
    assert st.scope == (REGION,)
    assert st.value("plans_identified") == 1
    assert st.value("sip_meetings_held") == 2
    assert st.value("invitations_sent") == 3
    assert st.value("deviations_reported") == 2
    assert st.value("plans_identified", KOMMUN) is None
    # an organisation in scope without any data still gets its zero rows
    fk_only = compute_stats(session, APRIL, fixture_policy(), organisations=[FK], as_of=AS_OF)
    assert fk_only.value("plans_identified", FK) == 0
    assert fk_only.value("plans_identified") == 0
    assert fk_only.value("documented_in_time_share") is None
    assert fk_only.value("deviations_reported", FK) == 1


def test_unknown_organisation_and_reversed_period_are_refused(session, register):
    with pytest.raises(UnknownOrganisation, match="NOPE"):
        compute_stats(session, APRIL, fixture_policy(), organisations=["NOPE"])
    with pytest.raises(ValueError, match="ends"):
        Period(date(2026, 4, 30), date(2026, 4, 1))


def test_an_empty_period_gives_zero_totals(session, register):
    st = compute_stats(session, Period(date(2025, 1, 1), date(2025, 1, 31)), fixture_policy())
    assert st.value("plans_identified") == 0
    assert st.value("invitations_sent") == 0
    assert st.value("invitation_answer_rate") is None
    assert st.value("deviation_acknowledgement_median_days") is None
    assert st.organisations_in(st_section("plans")) == []

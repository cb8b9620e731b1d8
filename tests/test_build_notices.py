"""From findings to notices: kinds, recipients re-validated against the plan, set-based loading, and the
privacy guarantee over every kind of notice the service sends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from sipflows.booking import book_meeting, cancel_meeting, move_meeting, withdraw_consent
from sipflows.checks.base import Finding
from sipflows.models import Answer, Contact, MeetingKind, MeetingStatus, Notice, Organisation, SipCase
from sipflows.notices.build import _Register, build_notices, enqueue_findings
from sipflows.notices.invitations import sync_invitations
from sipflows.notices.render import FINDING_KINDS, MEETING_KINDS, RenderError
from sipflows.settings import Settings
from tests.factories import DEVIATION_TEXT, DIAGNOSIS, PERSONAL_NAME, PERSONAL_NUMBER, SECRETS, local

SETTINGS = Settings(_env_file=None, mail_domain="sipflows.test", sender_name="SIP-påminnelser")  # type: ignore[call-arg]
JUDGED = date(2026, 3, 2)  # a Monday
NOW = local(JUDGED, "07:00")
# what a careless check might put in details: none of it may reach a notice
LEAKY_DETAILS = {
    "individual_name": PERSONAL_NAME,
    "personal_identity_number": PERSONAL_NUMBER,
    "case_notes": DIAGNOSIS,
    "description": DEVIATION_TEXT,
}


@dataclass
class World:
    r: dict[str, Any]
    case: SipCase
    other_case: SipCase
    coord: Contact
    outsider: Contact
    held: Any
    upcoming: Any
    invitation: Any
    deviation: Any
    other_meeting: Any


@pytest.fixture
def world(build: Any, session: Session) -> World:
    r = build.standard_region()
    region: Organisation = r["region"]
    coord = build.contact(region, "SIP-samordnare Stina")
    outsider = build.contact(r["kommun"], "Handläggare i en annan plan")
    case = build.case(
        r["k"],
        reference="SIP-2026-7",
        participants=(r["r"], r["f"], r["s"]),
        coordinator=coord,
        follow_up_due=date(2026, 3, 4),
    )
    other_case = build.case(outsider, reference="SIP-2026-8")
    held = build.meeting(case, date(2026, 2, 25), status=MeetingStatus.HELD)
    upcoming = build.meeting(case, date(2026, 3, 5), at="13:00", digital_link="https://meet.example.se/sip7")
    invitation = build.invite(upcoming, r["r"], sent_on=date(2026, 2, 20))
    build.invite(upcoming, r["s"], sent_on=date(2026, 2, 20), answer=Answer.DECLINED)
    deviation = build.deviation(case, r["k"], region, reported_on=date(2026, 2, 16))
    other_meeting = build.meeting(other_case, date(2026, 2, 24), status=MeetingStatus.HELD)
    session.commit()
    return World(r, case, other_case, coord, outsider, held, upcoming, invitation, deviation, other_meeting)


def finding(
    w: World, check: str, stage: str, obj: str, obj_id: int, recipients: list[Contact], **kw: Any
) -> Finding:
    return Finding(
        check=check,
        stage=stage,
        object_type=obj,
        object_id=obj_id,
        case_id=kw.pop("case_id", w.case.id),
        case_reference=w.case.reference,
        recipients=tuple(c.id for c in recipients),
        due=kw.pop("due", date(2026, 2, 27)),
        details={**LEAKY_DETAILS, **kw.pop("details", {})},
    )


def every_finding(w: World) -> list[Finding]:
    r = w.r
    k, k_chief, r_chief = r["k"], r["k_chief"], r["r_chief"]
    return [
        finding(w, "documentation", "reminder", "meeting", w.held.id, [k]),
        finding(w, "documentation", "overdue", "meeting", w.held.id, [k, w.coord]),
        finding(w, "documentation", "escalation-1", "meeting", w.held.id, [k_chief]),
        finding(w, "meeting_held", "reminder", "meeting", w.held.id, [k]),
        finding(w, "meeting_held", "escalation-1", "meeting", w.held.id, [k_chief]),
        finding(w, "invitations", "reminder", "invitation", w.invitation.id, [r["r"]], due=None),
        finding(
            w,
            "invitations",
            "convener-alert",
            "meeting",
            w.upcoming.id,
            [k, w.coord],
            due=date(2026, 3, 5),
            details={"unanswered": 1, "declined": 1, "missing_principals": ["region"]},
        ),
        finding(w, "pre_meeting", "alert", "meeting", w.upcoming.id, [k, w.coord], due=date(2026, 3, 5)),
        finding(w, "follow_up", "reminder@2026-03-04", "case", w.case.id, [k, w.coord], due=date(2026, 3, 4)),
        finding(w, "follow_up", "overdue@2026-03-04", "case", w.case.id, [k, w.coord], due=date(2026, 3, 4)),
        finding(
            w, "follow_up", "escalation-1@2026-03-04", "case", w.case.id, [k_chief], due=date(2026, 3, 4)
        ),
        finding(w, "deviations", "acknowledgement-reminder", "deviation", w.deviation.id, [r["r"]]),
        finding(w, "deviations", "acknowledgement-escalation-1", "deviation", w.deviation.id, [r_chief]),
        finding(w, "deviations", "acknowledgement-escalation-2", "deviation", w.deviation.id, [r_chief]),
        finding(w, "deviations", "reply-reminder", "deviation", w.deviation.id, [r["r"]]),
        finding(w, "deviations", "reply-escalation-1", "deviation", w.deviation.id, [r_chief]),
        finding(
            w,
            "first_meeting",
            "reminder@2026-02-27",
            "case",
            w.case.id,
            [k, w.coord],
            details={"limit": "discharge"},
        ),
        finding(w, "first_meeting", "escalation-1@2026-02-27", "case", w.case.id, [k_chief]),
    ]


def test_privacy_no_notice_of_any_kind_carries_personal_data_or_free_text(
    session: Session, world: World
) -> None:
    w, r = world, world.r
    assert enqueue_findings(session, every_finding(w), NOW, SETTINGS) == 24
    # invitations, an update, and cancellations (meeting cancelled, plan closed by withdrawn consent)
    m1 = book_meeting(
        session,
        w.case.reference,
        MeetingKind.FOLLOW_UP,
        local(date(2026, 3, 30), "09:00"),
        local(date(2026, 3, 30), "10:00"),
        invitees=[(r["r"].code, True), (r["f"].code, False), (w.coord.code, True)],
        place="Vårdcentralen Köping",
        purpose="Följa upp planens insatser",
        now=NOW,
        settings=SETTINGS,
    )
    m2 = book_meeting(
        session,
        w.case.reference,
        MeetingKind.SIP_MEETING,
        local(date(2026, 4, 7), "13:00"),
        local(date(2026, 4, 7), "14:00"),
        invitees=[(r["s"].code, True), (r["r"].code, True)],
        digital_link="https://meet.example.se/x",
        now=NOW,
        settings=SETTINGS,
    )
    sync_invitations(session, NOW, SETTINGS)
    move_meeting(
        session, m1.code, local(date(2026, 3, 31), "09:00"), local(date(2026, 3, 31), "10:00"), now=NOW
    )
    sync_invitations(session, NOW, SETTINGS)
    cancel_meeting(session, m2.code, now=NOW)
    sync_invitations(session, NOW, SETTINGS)
    withdraw_consent(session, w.case.reference, JUDGED, now=NOW)
    sync_invitations(session, NOW, SETTINGS)
    session.commit()

    notices = session.scalars(select(Notice)).all()
    assert {n.kind for n in notices} == FINDING_KINDS | MEETING_KINDS  # every kind was produced
    # the fixture's upcoming meeting (2 invitees) is invited and then cancelled too; the convener is sent
    # every meeting as well
    requests, updates, cancels = 3 + 4 + 3, 4, 3 + 3 + 4
    assert sum(n.ics is not None for n in notices) == requests + updates + cancels
    for n in notices:
        for part in (n.subject, n.body_text, n.body_html, n.ics or ""):
            for secret in SECRETS:
                assert secret not in part, f"{n.key} leaks {secret!r}"
        assert w.case.reference in n.subject and w.case.reference in n.body_text
        # the plan's staff contact is named, the individual never is
        assert r["k"].email in n.body_text
    # the individual's name is not even a substring of any unfolded calendar line
    for n in notices:
        if n.ics:
            unfolded = n.ics.replace("\r\n ", "")
            assert "Ebba" not in unfolded and "1234" not in unfolded


def test_recipient_outside_the_plan_gets_nothing(
    session: Session, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    f = finding(w, "documentation", "reminder", "meeting", w.held.id, [w.r["k"], w.outsider])
    with caplog.at_level(logging.WARNING, logger="sipflows.notices.build"):
        drafts = build_notices(session, [f], SETTINGS)
    assert [d.contact_id for d in drafts] == [w.r["k"].id]
    assert f"contact {w.outsider.id} is not a contact of the plan" in caplog.text
    assert PERSONAL_NAME not in caplog.text
    only_outsider = finding(w, "pre_meeting", "alert", "meeting", w.upcoming.id, [w.outsider])
    assert build_notices(session, [only_outsider], SETTINGS) == []


def test_escalation_contacts_of_the_plans_contacts_are_allowed(session: Session, world: World) -> None:
    w = world
    # k_chief: the convener contact's own escalation contact; r_chief: the region unit's escalation contact
    f = finding(w, "documentation", "escalation-1", "meeting", w.held.id, [w.r["k_chief"], w.r["r_chief"]])
    drafts = build_notices(session, [f], SETTINGS)
    assert {d.contact_id for d in drafts} == {w.r["k_chief"].id, w.r["r_chief"].id}
    assert all(d.kind == "documentation.escalation" for d in drafts)


def test_recipients_kept_are_exactly_the_plans_allowed_recipients(session: Session, world: World) -> None:
    """Every contact of the register as a recipient: the drafts go to the plan's participants, convener
    contact, coordinator and their escalation contacts (``allowed_recipients``), and to no one else."""
    w = world
    everyone = list(session.scalars(select(Contact).where(Contact.email.is_not(None))))
    f = finding(w, "documentation", "escalation-1", "meeting", w.held.id, everyone)
    drafts = build_notices(session, [f], SETTINGS)
    allowed = _Register(session, [f]).allowed_recipients(w.case.id)
    assert {d.contact_id for d in drafts} == allowed
    assert w.outsider.id not in allowed and {w.r["k_chief"].id, w.r["r_chief"].id} <= allowed


def test_a_finding_whose_object_belongs_to_another_plan_is_dropped(session: Session, world: World) -> None:
    w = world
    wrong = finding(w, "documentation", "reminder", "meeting", w.other_meeting.id, [w.r["k"]])
    assert build_notices(session, [wrong], SETTINGS) == []
    gone = finding(w, "deviations", "reply-reminder", "deviation", 999_999, [w.r["r"]])
    assert build_notices(session, [gone], SETTINGS) == []


def test_drafts_carry_key_kind_language_and_ids(session: Session, world: World) -> None:
    w = world
    f = finding(
        w, "deviations", "acknowledgement-escalation-2", "deviation", w.deviation.id, [w.r["r_chief"]]
    )
    g = finding(w, "invitations", "reminder", "invitation", w.invitation.id, [w.r["r"]], due=None)
    h = finding(w, "documentation", "overdue", "meeting", w.held.id, [w.r["k"], w.coord, w.r["k"]])
    drafts = build_notices(session, [f, g, h], SETTINGS)
    by_key = {d.key: d for d in drafts}
    assert list(by_key) == [
        f.notice_key(w.r["r_chief"].id),
        g.notice_key(w.r["r"].id),
        h.notice_key(w.r["k"].id),
        h.notice_key(w.coord.id),
    ]  # one per (finding, recipient); a repeated recipient once
    esc = by_key[f.notice_key(w.r["r_chief"].id)]
    assert esc.kind == "deviations.acknowledgement-escalation" and "nivå 2" in esc.subject
    assert esc.case_id == w.case.id and esc.meeting_id is None and esc.address == w.r["r_chief"].email
    reminder = by_key[g.notice_key(w.r["r"].id)]  # Rolf reads English
    assert reminder.kind == "invitations.reminder" and reminder.meeting_id == w.upcoming.id
    assert "Please answer the invitation" in reminder.subject and "Thursday 5 March 2026" in reminder.subject
    assert "13:00" in reminder.body_text and "https://meet.example.se/sip7" in reminder.body_text
    overdue = by_key[h.notice_key(w.r["k"].id)]
    assert "onsdag 25 februari 2026" in overdue.body_text and "fredag 27 februari 2026" in overdue.body_text
    assert overdue.ics is None


def test_enqueue_findings_twice_enqueues_once(session: Session, world: World) -> None:
    findings = every_finding(world)
    first = enqueue_findings(session, findings, NOW, SETTINGS)
    session.commit()
    assert first == 24
    assert enqueue_findings(session, findings, NOW + timedelta(hours=1), SETTINGS) == 0
    session.commit()
    assert len(session.scalars(select(Notice.id)).all()) == 24


def test_unknown_stage_is_an_error_not_a_silent_drop(session: Session, world: World) -> None:
    bad = finding(world, "documentation", "weird", "meeting", world.held.id, [world.r["k"]])
    with pytest.raises(RenderError, match="no notice kind"):
        build_notices(session, [bad], SETTINGS)


def _count_queries(session: Session, fn: Any) -> int:
    engine = session.get_bind()
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return len(statements)


def test_loading_is_set_based_not_a_query_per_finding(session: Session, build: Any) -> None:
    r = build.standard_region()
    findings = []
    for _ in range(40):
        case = build.case(r["k"], participants=(r["r"],))
        held = build.meeting(case, date(2026, 2, 25), status=MeetingStatus.HELD)
        findings.append(
            Finding(
                "documentation", "overdue", "meeting", held.id, case.id, case.reference, (r["k"].id,), JUDGED
            )
        )
        dev = build.deviation(case, r["k"], r["region"], reported_on=date(2026, 2, 16))
        findings.append(
            Finding(
                "deviations",
                "reply-reminder",
                "deviation",
                dev.id,
                case.id,
                case.reference,
                (r["r"].id,),
                JUDGED,
            )
        )
    session.commit()
    small = _count_queries(session, lambda: build_notices(session, findings[:2], SETTINGS))
    large = _count_queries(session, lambda: build_notices(session, findings, SETTINGS))
    assert small == large <= 8
    assert len(build_notices(session, findings, SETTINGS)) == 80


def test_invitation_ics_in_the_ledger_parses(session: Session, world: World) -> None:
    w = world
    m = book_meeting(
        session,
        w.case.reference,
        "sip_meeting",
        local(date(2026, 3, 10), "09:00"),
        local(date(2026, 3, 10), "10:00"),
        invitees=[(w.r["r"].code, True)],
        place="Rum 3",
        now=NOW,
        settings=SETTINGS,
    )
    sync_invitations(session, NOW, SETTINGS)
    n = session.scalars(
        select(Notice).where(Notice.meeting_id == m.id, Notice.contact_id == w.r["r"].id)
    ).one()
    ev = Calendar.from_ical(n.ics).walk("VEVENT")[0]
    assert str(ev["UID"]) == m.ical_uid == f"{m.code}@sipflows.test"


@pytest.mark.parametrize(
    ("language", "asked", "meeting_day"),
    [
        ("sv", "så snart som möjligt, före mötet", "torsdag 10 december 2026 kl. 09:00"),
        ("en", "as soon as possible, before the meeting on", "Thursday 10 December 2026 at 09:00"),
    ],
)
def test_the_invitation_reminder_never_asks_for_an_answer_by_a_day_gone_by(
    session: Session, build: Any, language: str, asked: str, meeting_day: str
) -> None:
    """Sent Wednesday 25 November, the reminder fell due Monday 30 November; the sweep of Tuesday 1 December
    must not ask for an answer "by Monday 30 November" but as soon as possible, naming the meeting's day."""
    from sipflows.checks import invitations
    from sipflows.checks.base import CheckContext
    from sipflows.models import Language
    from sipflows.policy import default_policy

    r = build.standard_region()
    invitee = build.contact(r["region"], "Sjuksköterska Siv", language=Language(language))
    case = build.case(r["k"], participants=(invitee,))
    meeting = build.meeting(case, date(2026, 12, 10), at="09:00")
    build.invite(meeting, invitee, sent_on=date(2026, 11, 25))
    judged = date(2026, 12, 1)
    findings = [
        f
        for f in invitations.run(session, CheckContext.load(session, judged, default_policy()))
        if f.stage == "reminder"
    ]
    assert [f.due for f in findings] == [date(2026, 11, 30)]  # what the check computes stays as it was
    (notice,) = build_notices(session, findings, SETTINGS)
    for body in (notice.body_text, notice.body_html, notice.subject):
        assert "30 november" not in body.lower() and "november" not in body.lower()
        assert "senast" not in body and "answer the calendar invitation (accept or decline) by" not in body
    text = " ".join(notice.body_text.split())
    assert asked in text and meeting_day in text
    assert asked.split(",")[0] in notice.body_html

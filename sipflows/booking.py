"""Booking, moving and cancelling meetings, and ending a plan — the register changes behind invitations.

Each function changes rows only; ``sipflows.notices.invitations.sync_invitations`` then turns the new
state into REQUEST/CANCEL notices. Nothing here reads the wall clock: the caller passes ``now``. A change
that calendar clients must see raises the meeting's SEQUENCE; its UID never changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from urllib.parse import quote

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sipflows.hygiene import IDENTITY_REASON, identity_number_in, normalise_code
from sipflows.models import (
    CaseStatus,
    ClosureReason,
    Contact,
    Invitation,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Participant,
    PlanOrigin,
    SipCase,
)
from sipflows.settings import Settings, get_settings
from sipflows.timeutil import local_date, local_datetime, start_of_local_day_utc

UID_MAX = 200  # Meeting.ical_uid


def meeting_uid(code: str, mail_domain: str) -> str:
    """A new meeting's iCalendar UID: the meeting code at the service's mail domain.

    Derived from the code (unique in the register) and fixed when the meeting is made, so a re-import or
    a move never changes it and calendars keep recognising the meeting. Percent-encoded where needed."""
    return f"{quote(normalise_code(code), safe='')}@{mail_domain}"


class BookingError(ValueError):
    """A booking request that cannot be carried out; the message says which reference and why."""


def _aware(name: str, dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise BookingError(f"{name} must be an aware datetime (got {dt.isoformat()})")


def check_staff_text(field: str, value: str | None) -> None:
    """Text that notices and calendar invitations carry: no personal identity number, no NUL; the message
    names the field, never the value."""
    if value is None:
        return
    if "\x00" in value:
        raise BookingError(f"{field}: contains a NUL character")
    if identity_number_in(value):
        raise BookingError(f"{field}: {IDENTITY_REASON}")


def _check_times(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    _aware("starts_at", starts_at)
    _aware("ends_at", ends_at)
    _aware("now", now)
    if not ends_at > starts_at:
        raise BookingError(
            f"the meeting must end after it starts ({starts_at.isoformat()} – {ends_at.isoformat()})"
        )
    if not starts_at > now:
        raise BookingError(f"the meeting must start in the future (starts {starts_at.isoformat()})")


def _case(session: Session, reference: str) -> SipCase:
    case = session.scalars(
        select(SipCase).where(SipCase.reference == normalise_code(reference))
    ).one_or_none()
    if case is None:
        raise BookingError(f"no plan with reference {reference!r}")
    return case


def _meeting(session: Session, code: str) -> Meeting:
    meeting = session.scalars(select(Meeting).where(Meeting.code == normalise_code(code))).one_or_none()
    if meeting is None:
        raise BookingError(f"no meeting with code {code!r}")
    return meeting


def _live(case: SipCase) -> None:
    if case.consent_withdrawn_on is not None:
        raise BookingError(f"plan {case.reference}: consent was withdrawn on {case.consent_withdrawn_on}")
    if case.status == CaseStatus.CLOSED:
        raise BookingError(f"plan {case.reference} is closed")


def _next_code(session: Session, reference: str) -> str:
    """``<reference>-M<n>``: readable, unique with the reference, stable once given."""
    codes = session.scalars(select(Meeting.code).where(Meeting.code.like(f"{reference}-M%"))).all()
    pattern = re.compile(rf"^{re.escape(reference)}-M(\d+)$")
    numbers = [int(m.group(1)) for c in codes if (m := pattern.match(c))]
    return f"{reference}-M{max(numbers, default=0) + 1}"


def book_meeting(
    session: Session,
    case_reference: str,
    kind: MeetingKind | str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    invitees: Sequence[tuple[str, bool]],
    now: datetime,
    place: str | None = None,
    digital_link: str | None = None,
    purpose: str | None = None,
    code: str | None = None,
    chair: str | None = None,
    settings: Settings | None = None,
) -> Meeting:
    """Book a meeting of a live plan and invite contacts (code, required). Invitees become participants
    of the plan: a notice about a plan only ever goes to its participants. ``chair`` (a contact code) must
    be the convener, the coordinator, a participant or an invitee."""
    try:
        kind = MeetingKind(kind)
    except ValueError:
        names = ", ".join(k.value for k in MeetingKind)
        raise BookingError(f"unknown meeting kind {kind!r} (one of {names})") from None
    _check_times(starts_at, ends_at, now)
    place = (place or "").strip() or None
    digital_link = (digital_link or "").strip() or None
    if place is None and digital_link is None:
        raise BookingError("a meeting needs a place or a digital link")
    check_staff_text("place", place)
    check_staff_text("purpose", purpose)
    case = _case(session, case_reference)
    _live(case)
    if not invitees:
        raise BookingError("a meeting needs at least one invitee")
    seen: dict[str, bool] = {}
    for contact_code, required in ((normalise_code(c), r) for c, r in invitees):
        if contact_code in seen:
            raise BookingError(f"contact {contact_code!r} is invited twice")
        seen[contact_code] = required
    contacts = {c.code: c for c in session.scalars(select(Contact).where(Contact.code.in_(list(seen)))).all()}
    missing = sorted(set(seen) - set(contacts))
    if missing:
        raise BookingError(f"no contact with code {', '.join(repr(m) for m in missing)}")
    if code is not None:
        code = normalise_code(code)
        if not code:
            raise BookingError("the meeting code must not be empty")
        if session.scalar(select(func.count()).select_from(Meeting).where(Meeting.code == code)):
            raise BookingError(f"a meeting with code {code!r} already exists")
    else:
        code = _next_code(session, case.reference)
    domain = (settings or get_settings()).mail_domain
    uid = meeting_uid(code, domain)
    if len(code) > 64 or len(uid) > UID_MAX:
        raise BookingError(
            f"the meeting code is too long: at most 64 characters, and its calendar UID ({len(uid)} "
            f"characters) must fit in {UID_MAX}"
        )
    meeting = Meeting(
        code=code,
        case_id=case.id,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        place=place,
        digital_link=digital_link,
        purpose=(purpose or "").strip() or None,
        status=MeetingStatus.SCHEDULED,
        ical_uid=uid,
        sequence=0,
        updated_at=now,
    )
    session.add(meeting)
    session.flush()
    members = set(session.scalars(select(Participant.contact_id).where(Participant.case_id == case.id)).all())
    for contact_code, required in seen.items():
        contact = contacts[contact_code]
        if contact.id not in members:
            session.add(Participant(case_id=case.id, contact_id=contact.id, role="invitee"))
            members.add(contact.id)
        session.add(Invitation(meeting_id=meeting.id, contact_id=contact.id, required=required))
    if chair is not None:
        meeting.chair_contact_id = _chair_id(session, case, chair, members)
    session.flush()
    return meeting


def _chair_id(session: Session, case: SipCase, code: str, members: set[int]) -> int:
    contact_id = session.scalar(select(Contact.id).where(Contact.code == normalise_code(code)))
    if contact_id is None:
        raise BookingError(f"no contact with code {code!r}")
    if contact_id not in members | {case.convener_contact_id, case.coordinator_contact_id}:
        raise BookingError(
            f"the chair {code!r} is not a participant of plan {case.reference}; invite them or add them "
            "as a participant first"
        )
    return contact_id


def _new_text(given: str | None, current: str | None) -> str | None:
    """None keeps the current value; an empty string clears it."""
    if given is None:
        return current
    return given.strip() or None


def move_meeting(
    session: Session,
    meeting_code: str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    now: datetime,
    place: str | None = None,
    digital_link: str | None = None,
    purpose: str | None = None,
) -> Meeting:
    """New time (and optionally place, link or purpose); raises SEQUENCE when anything changed."""
    meeting = _meeting(session, meeting_code)
    if meeting.status != MeetingStatus.SCHEDULED:
        raise BookingError(f"meeting {meeting_code} is {meeting.status.value} and cannot be moved")
    _live(session.get_one(SipCase, meeting.case_id))
    _check_times(starts_at, ends_at, now)
    new_place, new_purpose = _new_text(place, meeting.place), _new_text(purpose, meeting.purpose)
    changes = {
        "starts_at": starts_at,
        "ends_at": ends_at,
        "place": new_place,
        "digital_link": _new_text(digital_link, meeting.digital_link),
        "purpose": new_purpose,
    }
    if changes["place"] is None and changes["digital_link"] is None:
        raise BookingError("a meeting needs a place or a digital link")
    check_staff_text("place", new_place)
    check_staff_text("purpose", new_purpose)
    if all(getattr(meeting, k) == v for k, v in changes.items()):
        return meeting
    for k, v in changes.items():
        setattr(meeting, k, v)
    meeting.sequence += 1
    meeting.updated_at = now
    session.flush()
    return meeting


def cancel_meeting(session: Session, meeting_code: str, *, now: datetime) -> Meeting:
    """Cancel a scheduled meeting; cancelling it again changes nothing."""
    _aware("now", now)
    meeting = _meeting(session, meeting_code)
    if meeting.status == MeetingStatus.CANCELLED:
        return meeting
    if meeting.status == MeetingStatus.HELD:
        raise BookingError(f"meeting {meeting_code} has been held and cannot be cancelled")
    meeting.status = MeetingStatus.CANCELLED
    meeting.sequence += 1
    meeting.updated_at = now
    session.flush()
    return meeting


def cancel_future_meetings(session: Session, case_ids: Iterable[int], now: datetime) -> int:
    """Cancel the scheduled meetings after ``now`` of plans that ended: a new SEQUENCE each, so the
    invitation sync sends their CANCELs. One UPDATE per 900 plans; returns how many meetings."""
    ids = sorted(set(case_ids))
    cancelled = 0
    for start in range(0, len(ids), 900):
        result = session.execute(
            update(Meeting)
            .where(
                Meeting.case_id.in_(ids[start : start + 900]),
                Meeting.status == MeetingStatus.SCHEDULED,
                Meeting.starts_at > now,
            )
            .values(status=MeetingStatus.CANCELLED, sequence=Meeting.sequence + 1, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )
        cancelled += int(getattr(result, "rowcount", 0) or 0)
    return cancelled


def close_case(
    session: Session, reference: str, on: date, reason: ClosureReason | str, *, now: datetime
) -> SipCase:
    """End the coordination on ``on`` (a local date) and cancel the plan's future meetings."""
    _aware("now", now)
    try:
        reason = ClosureReason(reason)
    except ValueError:
        names = ", ".join(r.value for r in ClosureReason)
        raise BookingError(f"unknown closure reason {reason!r} (one of {names})") from None
    case = _case(session, reference)
    if case.status == CaseStatus.CLOSED:
        raise BookingError(f"plan {reference} is already closed (on {case.closed_on})")
    if on < case.identified_on:
        raise BookingError(
            f"plan {reference} cannot close on {on}, before it was identified ({case.identified_on})"
        )
    case.status = CaseStatus.CLOSED
    case.closed_on = on
    case.closure_reason = reason
    session.flush()
    cancel_future_meetings(session, [case.id], now)
    return case


def withdraw_consent(session: Session, reference: str, on: date, *, now: datetime) -> SipCase:
    """Withdrawn consent ends the coordination at once: the plan closes and its future meetings are off."""
    _aware("now", now)
    case = _case(session, reference)
    if case.consent_withdrawn_on is not None:
        raise BookingError(f"plan {reference}: consent was already withdrawn on {case.consent_withdrawn_on}")
    if case.consent_given_on is not None and on < case.consent_given_on:
        raise BookingError(
            f"plan {reference}: consent cannot be withdrawn on {on}, "
            f"before it was given ({case.consent_given_on})"
        )
    case.consent_withdrawn_on = on
    if case.status != CaseStatus.CLOSED:
        case.status = CaseStatus.CLOSED
        case.closed_on = on
        case.closure_reason = ClosureReason.CONSENT_WITHDRAWN
    session.flush()
    cancel_future_meetings(session, [case.id], now)
    return case


def set_plan_origin(
    session: Session, reference: str, origin: PlanOrigin | str, discharged_on: date | None = None
) -> SipCase:
    """Where the plan's need arose: ``discharge`` (Lag 2017:612) with the discharge date, or ``ordinary``
    (the date cleared). The first-meeting check takes its limit and its starting day from this."""
    try:
        origin = PlanOrigin(origin)
    except ValueError:
        names = ", ".join(o.value for o in PlanOrigin)
        raise BookingError(f"unknown origin {origin!r} (one of {names})") from None
    case = _case(session, reference)
    _live(case)
    if origin == PlanOrigin.DISCHARGE and discharged_on is None:
        raise BookingError(f"plan {reference}: a plan from discharge needs its discharge date")
    if origin != PlanOrigin.DISCHARGE and discharged_on is not None:
        raise BookingError(f"plan {reference}: a discharge date is only for a plan from discharge")
    case.origin = origin
    case.discharged_on = discharged_on
    session.flush()
    return case


def set_under_18(session: Session, reference: str, under_18: bool) -> SipCase:
    """Whether the plan is for a child or young person: a yes or no, never a date of birth."""
    case = _case(session, reference)
    _live(case)
    case.under_18 = under_18
    session.flush()
    return case


def record_held(
    session: Session, meeting_code: str, *, now: datetime, documented: date | datetime | None = None
) -> Meeting:
    """The convener's answer to "was it held?": the meeting is marked held (its documentation deadline
    then runs from its day, as always) and, with ``documented``, documented. A local date alone is
    stored as the meeting's end, or the start of that day when later, never after ``now``.

    Held changes nobody's calendar, so the SEQUENCE stays. Recording it again changes nothing."""
    _aware("now", now)
    meeting = _meeting(session, meeting_code)
    if meeting.status == MeetingStatus.CANCELLED:
        raise BookingError(f"meeting {meeting.code} was cancelled; it cannot have been held")
    if meeting.starts_at > now:
        raise BookingError(
            f"meeting {meeting.code} starts {local_datetime(meeting.starts_at):%Y-%m-%d %H:%M}: "
            "it cannot have been held yet"
        )
    changed = False
    if meeting.status != MeetingStatus.HELD:
        meeting.status = MeetingStatus.HELD
        changed = True
    if documented is not None:
        at = _documented_at(meeting, documented, now)
        if meeting.documented_at != at:
            meeting.documented_at = at
            changed = True
    if changed:
        meeting.updated_at = now
        session.flush()
    return meeting


def _documented_at(meeting: Meeting, documented: date | datetime, now: datetime) -> datetime:
    if isinstance(documented, datetime):
        _aware("documented", documented)
        at = documented
    else:
        if documented < local_date(meeting.starts_at):
            raise BookingError(
                f"meeting {meeting.code} was on {local_date(meeting.starts_at)}: it cannot have been "
                f"documented on {documented}, before it"
            )
        at = min(max(meeting.ends_at, start_of_local_day_utc(documented)), now)
    if at > now:
        raise BookingError(f"the documentation time {local_datetime(at):%Y-%m-%d %H:%M} is in the future")
    if at < meeting.starts_at:
        raise BookingError(f"meeting {meeting.code}: documented before it started")
    return at

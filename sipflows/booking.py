"""Booking, moving and cancelling meetings, and ending a plan — the register changes behind invitations.

Each function changes rows only; ``sipflows.notices.invitations.sync_invitations`` then turns the new
state into REQUEST/CANCEL notices. Nothing here reads the wall clock: the caller passes ``now``. A change
that calendar clients must see raises the meeting's SEQUENCE; its UID never changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sipflows.models import (
    CaseStatus,
    ClosureReason,
    Contact,
    Invitation,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Participant,
    SipCase,
)
from sipflows.settings import Settings, get_settings


class BookingError(ValueError):
    """A booking request that cannot be carried out; the message says which reference and why."""


def _aware(name: str, dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise BookingError(f"{name} must be an aware datetime (got {dt.isoformat()})")


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
    case = session.scalars(select(SipCase).where(SipCase.reference == reference)).one_or_none()
    if case is None:
        raise BookingError(f"no plan with reference {reference!r}")
    return case


def _meeting(session: Session, code: str) -> Meeting:
    meeting = session.scalars(select(Meeting).where(Meeting.code == code)).one_or_none()
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
    settings: Settings | None = None,
) -> Meeting:
    """Book a meeting of a live plan and invite contacts (code, required). Invitees become participants
    of the plan: a notice about a plan only ever goes to its participants."""
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
    case = _case(session, case_reference)
    _live(case)
    if not invitees:
        raise BookingError("a meeting needs at least one invitee")
    seen: dict[str, bool] = {}
    for contact_code, required in invitees:
        if contact_code in seen:
            raise BookingError(f"contact {contact_code!r} is invited twice")
        seen[contact_code] = required
    contacts = {c.code: c for c in session.scalars(select(Contact).where(Contact.code.in_(list(seen)))).all()}
    missing = sorted(set(seen) - set(contacts))
    if missing:
        raise BookingError(f"no contact with code {', '.join(repr(m) for m in missing)}")
    if code is not None:
        code = code.strip()
        if not code:
            raise BookingError("the meeting code must not be empty")
        if session.scalar(select(func.count()).select_from(Meeting).where(Meeting.code == code)):
            raise BookingError(f"a meeting with code {code!r} already exists")
    else:
        code = _next_code(session, case.reference)
    domain = (settings or get_settings()).mail_domain
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
        ical_uid=f"{code}@{domain}",
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
    session.flush()
    return meeting


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
    changes = {
        "starts_at": starts_at,
        "ends_at": ends_at,
        "place": _new_text(place, meeting.place),
        "digital_link": _new_text(digital_link, meeting.digital_link),
        "purpose": _new_text(purpose, meeting.purpose),
    }
    if changes["place"] is None and changes["digital_link"] is None:
        raise BookingError("a meeting needs a place or a digital link")
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


def _cancel_future_meetings(session: Session, case_id: int, now: datetime) -> int:
    result = session.execute(
        update(Meeting)
        .where(
            Meeting.case_id == case_id,
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.starts_at > now,
        )
        .values(status=MeetingStatus.CANCELLED, sequence=Meeting.sequence + 1, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


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
    _cancel_future_meetings(session, case.id, now)
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
    _cancel_future_meetings(session, case.id, now)
    return case

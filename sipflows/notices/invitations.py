"""Keep every invitee's calendar in step with the register: REQUESTs for new or changed meetings, CANCELs
for meetings that will not take place.

The ledger is the memory: a notice row records which SEQUENCE of which meeting a contact was sent, so a
sync asks the database (NOT EXISTS on the notices' (meeting_id, contact_id, kind) index) who still lacks
the current version and enqueues exactly that. Running it twice, or after a crash, enqueues nothing new.
An invitation imported as already sent (``Invitation.sent_sequence``, from an export of another system)
counts as that version sent: no REQUEST asks for an answer again, a later change sends an update, a
cancellation a CANCEL.

Who is who in the calendar object: the ORGANIZER is the mailbox sipflows reads the answers from
(``Settings.organizer()``), named after the convener ("Linnéa Åberg via SIP-kallelser"), so that Accept
and Decline from Outlook, Thunderbird or Google reach sipflows. The plan's convener is an ATTENDEE with
ROLE=CHAIR and is sent the invitation like everyone else, so the meeting is in the convener's calendar
too — but gets no ``Invitation`` row: the convener calls the meeting and is not chased for an answer.
Human replies to the mail go to the convener (Reply-To, set at dispatch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select, union
from sqlalchemy.orm import Session, aliased

from sipflows.models import (
    CaseStatus,
    Contact,
    Invitation,
    Meeting,
    MeetingStatus,
    Notice,
    Organisation,
    Participant,
    SipCase,
)
from sipflows.notices.build import chunked, rows_by_id
from sipflows.notices.calendar import meeting_cancel, meeting_request
from sipflows.notices.ledger import NoticeDraft, enqueue
from sipflows.notices.render import (
    MEETING_CANCEL,
    MEETING_INVITATION,
    MEETING_UPDATE,
    Rendered,
    contact_view,
    get_renderer,
    language_of,
    meeting_view,
)
from sipflows.settings import Settings
from sipflows.transports.base import Attendee, MeetingInfo

log = logging.getLogger(__name__)

REQUEST_KINDS = (MEETING_INVITATION, MEETING_UPDATE)


@dataclass(frozen=True)
class SyncSummary:
    invitations: int = 0  # first REQUEST to an invitee
    updates: int = 0  # REQUEST at a higher SEQUENCE after a change
    cancels: int = 0
    skipped: int = 0  # invitees who are not contacts of the plan: never sent anything

    @property
    def enqueued(self) -> int:
        return self.invitations + self.updates + self.cancels


def request_key(meeting_id: int, sequence: int, contact_id: int) -> str:
    return f"meeting:{meeting_id}:seq{sequence}:request:c{contact_id}"


def cancel_key(meeting_id: int, contact_id: int) -> str:
    return f"meeting:{meeting_id}:cancel:c{contact_id}"


def _pending_requests(session: Session, now: datetime) -> list[tuple[int, int, bool, bool]]:
    """(meeting, contact, sent an earlier sequence?, contact of the plan?) for every invitee of a future
    scheduled meeting of a live plan who has no REQUEST at the meeting's current SEQUENCE."""
    current = aliased(Notice)
    earlier = aliased(Notice)
    imported = Invitation.sent_sequence.is_not(None)  # never NULL in the OR: NOT (NULL OR false) is NULL
    has_current = or_(
        and_(imported, Invitation.sent_sequence >= Meeting.sequence),
        exists().where(
            current.meeting_id == Meeting.id,
            current.contact_id == Invitation.contact_id,
            current.kind.in_(REQUEST_KINDS),
            current.ics_sequence >= Meeting.sequence,
        ),
    )
    has_earlier = or_(
        and_(imported, Invitation.sent_sequence < Meeting.sequence),
        exists().where(
            earlier.meeting_id == Meeting.id,
            earlier.contact_id == Invitation.contact_id,
            earlier.kind.in_(REQUEST_KINDS),
            earlier.ics_sequence < Meeting.sequence,
        ),
    )
    in_plan = or_(
        exists().where(
            Participant.case_id == Meeting.case_id, Participant.contact_id == Invitation.contact_id
        ),
        Invitation.contact_id == SipCase.convener_contact_id,
        Invitation.contact_id == SipCase.coordinator_contact_id,
    )
    stmt = (
        select(Meeting.id, Invitation.contact_id, has_earlier.label("sent_before"), in_plan.label("in_plan"))
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(Invitation, Invitation.meeting_id == Meeting.id)
        .where(
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.starts_at > now,
            SipCase.status != CaseStatus.CLOSED,
            SipCase.consent_withdrawn_on.is_(None),
            ~has_current,
        )
        .order_by(Meeting.id, Invitation.contact_id)
    )
    invitees = [(m, c, bool(before), bool(member)) for m, c, before, member in session.execute(stmt)]
    return sorted(invitees + _pending_convener_requests(session, now))


def _pending_convener_requests(session: Session, now: datetime) -> list[tuple[int, int, bool, bool]]:
    """The same for the conveners of those meetings who are not among the invitees: they are sent the
    invitation (as chair) without an Invitation row that would ask them for an answer."""
    current = aliased(Notice)
    earlier = aliased(Notice)
    convener = SipCase.convener_contact_id
    has_current = exists().where(
        current.meeting_id == Meeting.id,
        current.contact_id == convener,
        current.kind.in_(REQUEST_KINDS),
        current.ics_sequence >= Meeting.sequence,
    )
    has_earlier = or_(
        exists().where(
            earlier.meeting_id == Meeting.id,
            earlier.contact_id == convener,
            earlier.kind.in_(REQUEST_KINDS),
            earlier.ics_sequence < Meeting.sequence,
        ),
        # an earlier version another system sent (imported): the convener had it as its organizer
        exists().where(Invitation.meeting_id == Meeting.id, Invitation.sent_sequence < Meeting.sequence),
    )
    invited = exists().where(Invitation.meeting_id == Meeting.id, Invitation.contact_id == convener)
    stmt = (
        select(Meeting.id, convener, has_earlier.label("sent_before"))
        .join(SipCase, SipCase.id == Meeting.case_id)
        .where(
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.starts_at > now,
            SipCase.status != CaseStatus.CLOSED,
            SipCase.consent_withdrawn_on.is_(None),
            exists().where(Invitation.meeting_id == Meeting.id),  # a meeting nobody is invited to waits
            # a version another system already sent (imported): its convener has it in their calendar
            ~exists().where(
                Invitation.meeting_id == Meeting.id, Invitation.sent_sequence >= Meeting.sequence
            ),
            ~invited,
            ~has_current,
        )
    )
    return [(m, c, bool(before), True) for m, c, before in session.execute(stmt)]


def _pending_cancels(session: Session, now: datetime) -> list[tuple[int, int]]:
    """(meeting, contact) for everyone sent a REQUEST for a future meeting that will not take place —
    cancelled, or its plan closed or consent withdrawn — who has no CANCEL yet. Sent means a REQUEST in
    the ledger, or an invitation imported as already sent."""
    sent = aliased(Notice)
    cancelled = aliased(Notice)
    off = and_(
        Meeting.starts_at > now,
        or_(
            Meeting.status == MeetingStatus.CANCELLED,
            and_(
                Meeting.status == MeetingStatus.SCHEDULED,
                or_(SipCase.status == CaseStatus.CLOSED, SipCase.consent_withdrawn_on.is_not(None)),
            ),
        ),
    )

    def no_cancel_for(contact_id: Any) -> Any:
        return ~exists().where(
            cancelled.meeting_id == Meeting.id,
            cancelled.contact_id == contact_id,
            cancelled.kind == MEETING_CANCEL,
        )

    by_ledger = (
        select(Meeting.id, sent.contact_id)
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(sent, and_(sent.meeting_id == Meeting.id, sent.kind.in_(REQUEST_KINDS)))
        .where(off, sent.contact_id.is_not(None), no_cancel_for(sent.contact_id))
    )
    by_import = (
        select(Meeting.id, Invitation.contact_id)
        .join(SipCase, SipCase.id == Meeting.case_id)
        .join(Invitation, Invitation.meeting_id == Meeting.id)
        .where(off, Invitation.sent_sequence.is_not(None), no_cancel_for(Invitation.contact_id))
    )
    pairs: set[tuple[int, int]] = set()
    rows: Sequence[Any] = session.execute(union(by_ledger, by_import)).all()
    for meeting_id, contact_id in rows:
        if contact_id is not None:
            pairs.add((int(meeting_id), int(contact_id)))
    return sorted(pairs)


class _Meetings:
    """Meetings, their plans, invitees and contacts for the pending notices, in a few chunked queries."""

    def __init__(self, session: Session, meeting_ids: set[int], extra_contacts: set[int]) -> None:
        self.meetings = rows_by_id(
            session,
            select(
                Meeting.id,
                Meeting.case_id,
                Meeting.code,
                Meeting.kind,
                Meeting.starts_at,
                Meeting.ends_at,
                Meeting.place,
                Meeting.digital_link,
                Meeting.purpose,
                Meeting.ical_uid,
                Meeting.sequence,
            ),
            Meeting.id,
            meeting_ids,
        )
        # only the reference and the staff contacts: the individual's data is never selected
        self.cases = rows_by_id(
            session,
            select(
                SipCase.id, SipCase.reference, SipCase.convener_contact_id, SipCase.coordinator_contact_id
            ),
            SipCase.id,
            {m.case_id for m in self.meetings.values()},
        )
        self.invitees: dict[int, list[tuple[int, bool]]] = {}
        for chunk in chunked(meeting_ids):
            stmt = (
                select(Invitation.meeting_id, Invitation.contact_id, Invitation.required)
                .where(Invitation.meeting_id.in_(chunk))
                .order_by(Invitation.meeting_id, Invitation.id)
            )
            for meeting_id, contact_id, required in session.execute(stmt):
                self.invitees.setdefault(meeting_id, []).append((contact_id, bool(required)))
        contact_ids = set(extra_contacts)
        for pairs in self.invitees.values():
            contact_ids |= {c for c, _ in pairs}
        for case in self.cases.values():
            contact_ids.add(case.convener_contact_id)
            if case.coordinator_contact_id is not None:
                contact_ids.add(case.coordinator_contact_id)
        self.contacts = rows_by_id(
            session,
            select(Contact.id, Contact.name, Contact.email, Contact.language, Contact.organisation_id),
            Contact.id,
            contact_ids,
        )
        self.orgs = rows_by_id(
            session,
            select(Organisation.id, Organisation.name),
            Organisation.id,
            {c.organisation_id for c in self.contacts.values()},
        )

    def staff(self, contact_id: int | None) -> dict[str, Any] | None:
        contact = self.contacts.get(contact_id) if contact_id is not None else None
        if contact is None:
            return None
        org = self.orgs.get(contact.organisation_id)
        return contact_view(contact.name, contact.email, org.name if org is not None else None)

    def attendees(self, meeting_id: int, also: Set[int] = frozenset()) -> tuple[Attendee, ...]:
        """The convener first, as chair, then the invitees (and ``also``), each address once."""
        convener_id = self.cases[self.meetings[meeting_id].case_id].convener_contact_id
        pairs = [(convener_id, True)] + list(self.invitees.get(meeting_id, []))
        listed = {c for c, _ in pairs}
        pairs += [(c, True) for c in sorted(also - listed)]
        out: list[Attendee] = []
        seen: set[str] = set()
        for contact_id, required in pairs:
            contact = self.contacts.get(contact_id)
            email = (contact.email or "").strip() if contact is not None else ""
            if contact is None or not email or email.casefold() in seen:
                continue
            seen.add(email.casefold())
            out.append(Attendee(email, contact.name, required, chair=contact_id == convener_id))
        return tuple(out)


class _Composer:
    """Renders each (meeting, kind, language) once: mail parts and the calendar object."""

    def __init__(
        self, data: _Meetings, settings: Settings, now: datetime, cancel_recipients: dict[int, set[int]]
    ) -> None:
        self.data = data
        self.settings = settings
        self.now = now
        self.renderer = get_renderer(settings.template_dir)
        self._cache: dict[tuple[int, str, str, int, bool], tuple[Rendered, str]] = {}
        self._ics: dict[tuple[int, str, str, int], str] = {}
        # a CANCEL also lists whoever was sent the meeting but is no longer among its invitees
        self._cancel_attendees = cancel_recipients

    def _context(self, meeting_id: int, kind: str, lang: str) -> dict[str, Any]:
        m = self.data.meetings[meeting_id]
        case = self.data.cases[m.case_id]
        convener = self.data.staff(case.convener_contact_id)
        if convener is None:
            raise ValueError(f"meeting {m.code}: the plan's convener contact is missing")
        return {
            "case": {"reference": case.reference},
            "meeting": meeting_view(
                kind=m.kind,
                starts_at=m.starts_at,
                ends_at=m.ends_at,
                place=m.place,
                digital_link=m.digital_link,
                purpose=m.purpose,
                code=m.code,
                lang=lang,
            ),
            "convener": convener,
            "coordinator": self.data.staff(case.coordinator_contact_id),
            "stage": kind.split(".", 1)[1],
            "level": None,
            "due": None,
            "sender_name": self.settings.sender_name,
            "for_convener": False,
        }

    def _calendar(self, meeting_id: int, kind: str, lang: str, sequence: int, context: dict[str, Any]) -> str:
        """The calendar object: the same for the convener and the invitees, so made once."""
        key = (meeting_id, kind, lang, sequence)
        if key not in self._ics:
            m = self.data.meetings[meeting_id]
            event = MeetingInfo(
                uid=m.ical_uid,
                sequence=sequence,
                method="CANCEL" if kind == MEETING_CANCEL else "REQUEST",
                starts_at=m.starts_at,
                ends_at=m.ends_at,
                subject=self.renderer.render_text(kind, lang, "ics-summary", context),
                description=self.renderer.render_text(kind, lang, "ics-description", context),
                organizer_email=self.settings.organizer(),
                organizer_name=self.renderer.render_text(kind, lang, "ics-organizer", context),
                attendees=self.data.attendees(
                    meeting_id,
                    self._cancel_attendees.get(meeting_id, set()) if kind == MEETING_CANCEL else set(),
                ),
                place=m.place,
                digital_link=m.digital_link,
            )
            self._ics[key] = (
                meeting_cancel(event, self.now)
                if kind == MEETING_CANCEL
                else meeting_request(event, self.now)
            )
        return self._ics[key]

    def compose(
        self, meeting_id: int, kind: str, lang: str, sequence: int, for_convener: bool = False
    ) -> tuple[Rendered, str]:
        """Mail parts and calendar object; the convener's mail says they are the convener."""
        cache_key = (meeting_id, kind, lang, sequence, for_convener)
        if cache_key not in self._cache:
            context = self._context(meeting_id, kind, lang)
            rendered = self.renderer.render(kind, lang, {**context, "for_convener": for_convener})
            self._cache[cache_key] = (rendered, self._calendar(meeting_id, kind, lang, sequence, context))
        return self._cache[cache_key]

    def draft(
        self, meeting_id: int, contact_id: int, kind: str, sequence: int, key: str
    ) -> NoticeDraft | None:
        contact = self.data.contacts.get(contact_id)
        if contact is None or not (contact.email or "").strip():
            log.warning("meeting notice %s not made: contact %s has no address", key, contact_id)
            return None
        convener_id = self.data.cases[self.data.meetings[meeting_id].case_id].convener_contact_id
        lang = language_of(contact.language)
        rendered, ics = self.compose(meeting_id, kind, lang, sequence, contact_id == convener_id)
        return NoticeDraft(
            key=key,
            kind=kind,
            address=contact.email.strip(),
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            case_id=self.data.meetings[meeting_id].case_id,
            meeting_id=meeting_id,
            contact_id=contact_id,
            ics=ics,
            ics_method="CANCEL" if kind == MEETING_CANCEL else "REQUEST",
            ics_sequence=sequence,
        )


def sync_invitations(session: Session, now: datetime, settings: Settings) -> SyncSummary:
    """Enqueue the REQUESTs and CANCELs the register calls for as of ``now``. Does not commit."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    requests = _pending_requests(session, now)
    cancels = _pending_cancels(session, now)
    skipped = 0
    wanted: list[tuple[int, int, bool]] = []
    for meeting_id, contact_id, sent_before, in_plan in requests:
        if not in_plan:
            skipped += 1
            log.warning(
                "invitation not sent: contact %s invited to meeting %s is not a contact of its plan",
                contact_id,
                meeting_id,
            )
            continue
        wanted.append((meeting_id, contact_id, sent_before))
    if not wanted and not cancels:
        return SyncSummary(skipped=skipped)

    data = _Meetings(
        session,
        {m for m, _, _ in wanted} | {m for m, _ in cancels},
        {c for _, c in cancels},
    )
    cancel_recipients: dict[int, set[int]] = {}
    for meeting_id, contact_id in cancels:
        cancel_recipients.setdefault(meeting_id, set()).add(contact_id)
    composer = _Composer(data, settings, now, cancel_recipients)

    by_kind: dict[str, list[NoticeDraft]] = {MEETING_INVITATION: [], MEETING_UPDATE: [], MEETING_CANCEL: []}
    for meeting_id, contact_id, sent_before in wanted:
        seq = data.meetings[meeting_id].sequence
        kind = MEETING_UPDATE if sent_before and seq > 0 else MEETING_INVITATION
        d = composer.draft(meeting_id, contact_id, kind, seq, request_key(meeting_id, seq, contact_id))
        if d is not None:
            by_kind[kind].append(d)
    for meeting_id, contact_id in cancels:
        seq = data.meetings[meeting_id].sequence + 1
        d = composer.draft(meeting_id, contact_id, MEETING_CANCEL, seq, cancel_key(meeting_id, contact_id))
        if d is not None:
            by_kind[MEETING_CANCEL].append(d)

    counts = {kind: enqueue(session, drafts, now, settings.mail_domain) for kind, drafts in by_kind.items()}
    summary = SyncSummary(
        invitations=counts[MEETING_INVITATION],
        updates=counts[MEETING_UPDATE],
        cancels=counts[MEETING_CANCEL],
        skipped=skipped,
    )
    log.info(
        "invitations synced: %s new, %s updates, %s cancels, %s skipped",
        summary.invitations,
        summary.updates,
        summary.cancels,
        summary.skipped,
    )
    return summary

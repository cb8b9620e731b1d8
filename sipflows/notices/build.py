"""From findings to rendered notice drafts: one draft per (finding, recipient), loaded set-based.

Everything a notice shows is read with a handful of column-level queries (IN-lists in chunks) — never
whole ORM rows of cases or deviations, so the individual's personal data and a deviation's free text are
not even loaded. Recipients are checked again here, whatever the check said: a notice about a plan goes
only to that plan's participants, convener contact, coordinator, or the escalation contacts of those.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Integer, Row, Select, String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session

from sipflows.checks.base import Finding
from sipflows.models import Contact, Deviation, Invitation, Meeting, Organisation, Participant, SipCase
from sipflows.notices.ledger import NoticeDraft, enqueue
from sipflows.notices.render import (
    NoticeTemplates,
    Rendered,
    contact_view,
    date_view,
    deviation_view,
    finding_kind,
    get_renderer,
    language_of,
    meeting_view,
    principal_labels,
)
from sipflows.settings import Settings
from sipflows.stages import split_stage

log = logging.getLogger(__name__)

CHUNK = 500


def chunked(ids: Iterable[int], size: int = CHUNK) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


# Ids per statement of :func:`rows_by_id`: one bound value however many; this only bounds its size.
ID_CHUNK = 20_000


def ids_in(session: Session, column: InstrumentedAttribute[int], ids: Sequence[int]) -> ColumnElement[bool]:
    """``column`` among ``ids`` in a single bound value: an integer array on PostgreSQL (``= ANY``), a
    JSON array read by ``json_each`` on SQLite. The statement is the same for any number of ids, so it is
    compiled once and not re-rendered with hundreds of literals per chunk."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=postgresql.ARRAY(Integer())))
    if dialect == "sqlite":
        each = func.json_each(bindparam("ids", json.dumps(list(ids)), type_=String())).table_valued("value")
        return column.in_(select(each.c.value))
    raise NotImplementedError(f"notices support SQLite and PostgreSQL, not {dialect}")


def rows_by_id(
    session: Session, stmt: Select[*tuple[Any, ...]], column: InstrumentedAttribute[int], ids: Iterable[int]
) -> dict[int, Row[Any]]:
    """``stmt`` with ``column`` among ``ids``, keyed by the row's first column (see :func:`rows_of`)."""
    return {row[0]: row for row in rows_of(session, stmt, column, ids)}


def rows_of(
    session: Session, stmt: Select[*tuple[Any, ...]], column: InstrumentedAttribute[int], ids: Iterable[int]
) -> Iterator[Row[*tuple[Any, ...]]]:
    """Every row of ``stmt`` with ``column`` among ``ids``, in one statement per 20,000 ids.

    Plain rows through the session's connection (the session's pending changes flushed first, as its own
    ``execute`` would): no ORM result processing per row."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    if session.autoflush:  # a no-op when nothing is pending
        session.flush()
    connection = session.connection()
    for start in range(0, len(wanted), ID_CHUNK):
        # all of a chunk's rows in one fetch: iterating the result fetches row by row
        chunk = stmt.where(ids_in(session, column, wanted[start : start + ID_CHUNK]))
        yield from connection.execute(chunk).all()


@lru_cache(maxsize=256)
def _object_kind(object_type: str) -> str:
    """The object a finding is about; checks may append a due date to object_type (``case@2026-05-04``)."""
    for name in ("meeting", "invitation", "deviation", "case"):
        if object_type.startswith(name):
            return name
    return object_type


class _Register:
    """The slice of the register the findings need, loaded in a few set-based queries."""

    def __init__(self, session: Session, findings: Sequence[Finding]) -> None:
        case_ids = {f.case_id for f in findings}
        by_kind: dict[str, set[int]] = {}
        for f in findings:
            by_kind.setdefault(_object_kind(f.object_type), set()).add(f.object_id)

        self.cases = rows_by_id(
            session,
            select(
                SipCase.id,
                SipCase.reference,
                SipCase.convener_org_id,
                SipCase.convener_contact_id,
                SipCase.coordinator_contact_id,
            ),
            SipCase.id,
            case_ids,
        )
        self.participants: dict[int, set[int]] = {}
        parties = select(Participant.case_id, Participant.contact_id)
        for row in rows_of(session, parties, Participant.case_id, case_ids):
            self.participants.setdefault(row[0], set()).add(row[1])

        self.invitations = rows_by_id(
            session,
            select(Invitation.id, Invitation.meeting_id, Invitation.contact_id),
            Invitation.id,
            by_kind.get("invitation", ()),
        )
        meeting_ids = by_kind.get("meeting", set()) | {i.meeting_id for i in self.invitations.values()}
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
            ),
            Meeting.id,
            meeting_ids,
        )
        # the deviation's description is not selected: it must never leave the register
        self.deviations = rows_by_id(
            session,
            select(
                Deviation.id,
                Deviation.case_id,
                Deviation.code,
                Deviation.kind,
                Deviation.severity,
                Deviation.reported_at,
                Deviation.concerning_org_id,
            ),
            Deviation.id,
            by_kind.get("deviation", ()),
        )

        contact_ids: set[int] = {r for f in findings for r in f.recipients}
        for case in self.cases.values():
            contact_ids.add(case.convener_contact_id)
            if case.coordinator_contact_id is not None:
                contact_ids.add(case.coordinator_contact_id)
        for members in self.participants.values():
            contact_ids |= members
        self.contacts = rows_by_id(
            session,
            select(
                Contact.id,
                Contact.name,
                Contact.email,
                Contact.language,
                Contact.organisation_id,
                Contact.escalation_contact_id,
            ),
            Contact.id,
            contact_ids,
        )
        org_ids = {c.organisation_id for c in self.contacts.values()}
        org_ids |= {c.convener_org_id for c in self.cases.values()}
        org_ids |= {d.concerning_org_id for d in self.deviations.values()}
        self.orgs = rows_by_id(
            session,
            select(Organisation.id, Organisation.name, Organisation.escalation_contact_id),
            Organisation.id,
            org_ids,
        )
        self._allowed: dict[int, set[int]] = {}

    def may_receive(self, case_id: int, contact_id: int) -> bool:
        """Whether ``contact_id`` is among :meth:`allowed_recipients`, found without building the set: a
        participant, the convener contact or the coordinator (nearly every recipient), or one of the
        escalation contacts (about half of a first day's findings' recipients are asked for: each case's
        set was built once and used once)."""
        case = self.cases[case_id]
        if contact_id == case.convener_contact_id or contact_id == case.coordinator_contact_id:
            return True
        members = self.participants.get(case_id, ())
        if contact_id in members:
            return True
        # an escalation contact (the rest of allowed_recipients), looked for without building the set
        org = self.orgs.get(case.convener_org_id)
        if org is not None and org.escalation_contact_id == contact_id:
            return True
        for cid in (*members, case.convener_contact_id, case.coordinator_contact_id):
            contact = self.contacts.get(cid) if cid is not None else None
            if contact is None:
                continue
            if contact.escalation_contact_id == contact_id:
                return True
            org = self.orgs.get(contact.organisation_id)
            if org is not None and org.escalation_contact_id == contact_id:
                return True
        return False

    def allowed_recipients(self, case_id: int) -> set[int]:
        """Participants, convener contact, coordinator, and the escalation contacts of each of them
        (the contact's own escalation contact and its organisation's)."""
        if case_id not in self._allowed:
            case = self.cases[case_id]
            base = set(self.participants.get(case_id, set()))
            base.add(case.convener_contact_id)
            if case.coordinator_contact_id is not None:
                base.add(case.coordinator_contact_id)
            allowed = set(base)
            convener_org = self.orgs.get(case.convener_org_id)
            if convener_org is not None and convener_org.escalation_contact_id is not None:
                allowed.add(convener_org.escalation_contact_id)
            for cid in base:
                contact = self.contacts.get(cid)
                if contact is None:
                    continue
                if contact.escalation_contact_id is not None:
                    allowed.add(contact.escalation_contact_id)
                org = self.orgs.get(contact.organisation_id)
                if org is not None and org.escalation_contact_id is not None:
                    allowed.add(org.escalation_contact_id)
            self._allowed[case_id] = allowed
        return self._allowed[case_id]

    def staff(self, contact_id: int | None) -> dict[str, Any] | None:
        contact = self.contacts.get(contact_id) if contact_id is not None else None
        if contact is None:
            return None
        org = self.orgs.get(contact.organisation_id)
        return contact_view(contact.name, contact.email, org.name if org is not None else None)


def _meeting_of(reg: _Register, finding: Finding) -> Row[Any] | None:
    kind = _object_kind(finding.object_type)
    if kind == "meeting":
        return reg.meetings.get(finding.object_id)
    if kind == "invitation":
        inv = reg.invitations.get(finding.object_id)
        return reg.meetings.get(inv.meeting_id) if inv is not None else None
    return None


def _context(
    reg: _Register, finding: Finding, lang: str, meeting: Row[Any] | None, settings: Settings
) -> dict[str, Any]:
    """The allow list: only these plain values reach a template."""
    case = reg.cases[finding.case_id]
    stage, level = split_stage(finding.stage)
    deviation = None
    if _object_kind(finding.object_type) == "deviation":
        d = reg.deviations[finding.object_id]
        org = reg.orgs.get(d.concerning_org_id)
        deviation = deviation_view(
            code=d.code,
            kind=d.kind,
            severity=d.severity,
            reported_at=d.reported_at,
            concerning_organisation=org.name if org is not None else None,
            lang=lang,
        )
    alert = None
    if finding.check == "invitations" and stage == "convener-alert":
        details = finding.details or {}
        alert = {
            "unanswered": int(details.get("unanswered") or 0),
            "declined": int(details.get("declined") or 0),
            "missing_principals": principal_labels(
                [str(p) for p in details.get("missing_principals") or ()], lang
            ),
        }
    return {
        "case": {"reference": case.reference},
        "stage": stage,
        "level": level,
        "due": date_view(finding.due, lang),
        "meeting": meeting_view(
            kind=meeting.kind,
            starts_at=meeting.starts_at,
            ends_at=meeting.ends_at,
            place=meeting.place,
            digital_link=meeting.digital_link,
            code=meeting.code,
            lang=lang,
        )
        if meeting is not None
        else None,
        "convener": reg.staff(case.convener_contact_id),
        "coordinator": reg.staff(case.coordinator_contact_id),
        "deviation": deviation,
        "alert": alert,
        "sender_name": settings.sender_name,
    }


def _consistent(reg: _Register, finding: Finding) -> bool:
    """The finding's object must exist and belong to the finding's case, or the notice could mix plans."""
    if finding.case_id not in reg.cases:
        log.warning("notice skipped: finding %s names a case that does not exist", finding.key)
        return False
    kind = _object_kind(finding.object_type)
    owner: int | None
    if kind == "meeting" or kind == "invitation":
        meeting = _meeting_of(reg, finding)
        owner = meeting.case_id if meeting is not None else None
    elif kind == "deviation":
        dev = reg.deviations.get(finding.object_id)
        owner = dev.case_id if dev is not None else None
    elif kind == "case":
        owner = finding.object_id
    else:
        log.error("notice skipped: finding %s is about an unknown object type", finding.key)
        return False
    if owner != finding.case_id:
        log.error("notice skipped: finding %s's object is missing or belongs to another case", finding.key)
        return False
    return True


def build_notices(session: Session, findings: Sequence[Finding], settings: Settings) -> list[NoticeDraft]:
    """One rendered draft per (finding, recipient). Unknown kinds raise; recipients outside the plan and
    findings whose object is gone are dropped and logged (by key and contact id only)."""
    return read_for_notices(session, findings).render(settings)


class NoticeInputs:
    """The findings with the slice of the register their notices show, read from the database: rendering
    them (:meth:`render`) needs no database, so a caller may render while the database works on something
    else (the sweep's previous batch's insert on PostgreSQL)."""

    def __init__(self, session: Session, findings: Sequence[Finding]) -> None:
        self.findings = findings
        self.stage_kinds: dict[tuple[str, str], str] = {}
        for f in findings:  # fail before any work
            if (f.check, f.stage) not in self.stage_kinds:
                self.stage_kinds[f.check, f.stage] = finding_kind(f.check, f.stage)
        self.register = _Register(session, findings) if findings else None

    def render(self, settings: Settings) -> list[NoticeDraft]:
        """The drafts of :func:`build_notices`; touches no database."""
        if self.register is None:
            return []
        return _render_drafts(self.register, self.findings, self.stage_kinds, settings)


def read_for_notices(session: Session, findings: Sequence[Finding]) -> NoticeInputs:
    """Everything :func:`build_notices` reads from the register for ``findings``, in a few statements."""
    return NoticeInputs(session, findings)


def _render_drafts(
    reg: _Register, findings: Sequence[Finding], stage_kinds: dict[tuple[str, str], str], settings: Settings
) -> list[NoticeDraft]:
    renderer = get_renderer(settings.template_dir)
    templates: dict[tuple[str, str], NoticeTemplates] = {}  # looked up once per kind and language
    drafts: list[NoticeDraft] = []
    for finding in findings:
        if not _consistent(reg, finding):
            continue
        kind = stage_kinds[finding.check, finding.stage]
        extra: int | None = None  # a deviation's concerning organisation's escalation contact
        if _object_kind(finding.object_type) == "deviation":
            org = reg.orgs.get(reg.deviations[finding.object_id].concerning_org_id)
            if org is not None:
                extra = org.escalation_contact_id
        meeting = _meeting_of(reg, finding)
        rendered: dict[str, Rendered] = {}
        for contact_id in dict.fromkeys(finding.recipients):
            if contact_id != extra and not reg.may_receive(finding.case_id, contact_id):
                log.warning(
                    "notice dropped: contact %s is not a contact of the plan of finding %s",
                    contact_id,
                    finding.key,
                )
                continue
            contact = reg.contacts.get(contact_id)
            if contact is None or not (contact.email or "").strip():
                log.warning(
                    "notice dropped: contact %s of finding %s has no address", contact_id, finding.key
                )
                continue
            lang = language_of(contact.language)
            if lang not in rendered:
                if (kind, lang) not in templates:
                    templates[kind, lang] = renderer.templates(kind, lang)
                context = _context(reg, finding, lang, meeting, settings)
                rendered[lang] = renderer.render(kind, lang, context, templates[kind, lang])
            r = rendered[lang]
            drafts.append(
                NoticeDraft(
                    key=finding.notice_key(contact_id),
                    kind=kind,
                    address=contact.email.strip(),
                    subject=r.subject,
                    body_text=r.text,
                    body_html=r.html,
                    case_id=finding.case_id,
                    meeting_id=meeting.id if meeting is not None else None,
                    contact_id=contact_id,
                )
            )
    return drafts


def enqueue_findings(session: Session, findings: Sequence[Finding], now: datetime, settings: Settings) -> int:
    """Build and enqueue; returns how many notices were new. Does not commit."""
    return enqueue(session, build_notices(session, findings, settings), now, settings.mail_domain)

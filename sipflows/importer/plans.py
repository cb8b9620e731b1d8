"""Upserts of the plan files: cases (ending a plan cancels its future meetings), participants, meetings
(SEQUENCE rises when the invitees' calendars change), invitations and deviations."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from sipflows.booking import UID_MAX, cancel_future_meetings, meeting_uid
from sipflows.hygiene import shown
from sipflows.importer.csvfile import Record
from sipflows.importer.register import (
    _Case,
    _changes,
    _Job,
    _select_dicts,
    _select_in,
    _unique,
    _write,
)
from sipflows.importer.results import FileResult
from sipflows.importer.specs import _DEFAULTS, CALENDAR_FIELDS
from sipflows.models import (
    Answer,
    CaseStatus,
    ClosureReason,
    Deviation,
    Invitation,
    Meeting,
    MeetingStatus,
    Participant,
    PlanOrigin,
    Severity,
    SipCase,
)

# codes that ``meeting_uid`` leaves as they are (unreserved characters, no percent-encoding needed)
_PLAIN_CODE = re.compile(r"[A-Za-z0-9_.~-]*")


def _uid(code: str, mail_domain: str) -> str:
    """``meeting_uid`` for a code as the parser returns it (NFC, trimmed), without its per-code quoting
    where the code is plain letters, digits and ``-._~``."""
    return f"{code}@{mail_domain}" if _PLAIN_CODE.fullmatch(code) else meeting_uid(code, mail_domain)


def _import_cases(job: _Job) -> FileResult:
    job.check_duplicates()
    contacts = job.contacts("convener_contact", "coordinator")
    orgs = job.organisations("convener_organisation")
    attrs = (
        "convener_org_id",
        "convener_contact_id",
        "coordinator_contact_id",
        "individual_name",
        "personal_identity_number",
        "case_notes",
        "status",
        "identified_on",
        "offered_on",
        "activated_on",
        "closed_on",
        "closure_reason",
        "consent_given_on",
        "consent_withdrawn_on",
        "follow_up_due",
        "origin",
        "discharged_on",
        "under_18",
    )
    existing = job.existing(SipCase, SipCase.reference, attrs)
    bad_cells = {(i.line, i.column) for i in job.issues}  # cells already reported while parsing
    defaults = _DEFAULTS["cases"]
    has_org = job.has("convener_organisation")
    given_later = {later: job.has(later) for later in ("offered_on", "activated_on", "closed_on")}
    # what withdrawn consent sets on each row, found while validating and written below
    closings: list[dict[str, Any]] = []
    for rec in job.records:
        v = rec.values
        convener = contacts.get(v.get("convener_contact") or "")
        org_code = v.get("convener_organisation") if has_org else None
        if convener and org_code in orgs and orgs[org_code] != convener[1]:
            job.issue(
                rec.line,
                "convener_organisation",
                "the convener contact does not belong to this organisation",
            )
        current = existing.get(v.get("reference"))
        # each field's value after the import: the file's where the column is given (a row holds every
        # column of the header), else the register's, else the documented default
        eff = {**(defaults if current is None else current), **v}
        closing = _closure_by_consent(eff)
        closings.append(closing)
        identified = eff["identified_on"]
        for later, given in given_later.items():
            d = closing.get(later, eff[later])
            if d is not None and identified is not None and d < identified:
                # a closing date taken from consent_withdrawn_on is reported there
                column = later if given or later not in closing else "consent_withdrawn_on"
                job.issue(rec.line, column, "is before identified_on")
        given_on, withdrawn = eff["consent_given_on"], eff["consent_withdrawn_on"]
        if given_on is not None and withdrawn is not None and withdrawn < given_on:
            job.issue(rec.line, "consent_withdrawn_on", "is before consent_given_on")
        _check_origin(rec, eff.__getitem__, job, bad_cells)
        status = closing.get("status", eff["status"])
        if status == CaseStatus.CLOSED and closing.get("closed_on", eff["closed_on"]) is None:
            job.issue(rec.line, "closed_on", "a closed case needs the date it was closed")
        if status is not None and status != CaseStatus.CLOSED:
            for column in ("closed_on", "closure_reason"):
                if v.get(column) is not None:  # only a column in the file has a value in the row
                    job.issue(rec.line, column, f"given but the status is '{status}', not 'closed'")
    job.raise_if_issues()

    inserts, updates = [], []
    ended: list[int] = []
    has_coordinator = job.has("coordinator")
    given_attrs = [a for a in attrs[3:] if job.has(a)]
    new_defaults: dict[str, Any] = dict.fromkeys(attrs)
    new_defaults.update(status=CaseStatus.IDENTIFIED, origin=PlanOrigin.ORDINARY, under_18=False)
    for rec, closing in zip(job.records, closings, strict=True):
        v = rec.values
        convener_id, convener_org = contacts[v["convener_contact"]]
        new: dict[str, Any] = {"convener_contact_id": convener_id, "convener_org_id": convener_org}
        if has_coordinator:
            new["coordinator_contact_id"] = contacts[v["coordinator"]][0] if v["coordinator"] else None
        for attr in given_attrs:
            new[attr] = v[attr]
        new.update(closing)
        row = existing.get(v["reference"])
        if row is None:
            inserts.append({**new_defaults, "reference": v["reference"], **new})
            continue
        if changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
        after = {**row, **new}
        if after["status"] == CaseStatus.CLOSED or after["consent_withdrawn_on"] is not None:
            ended.append(row["id"])
    _write(job.session, SipCase, inserts, updates)
    # as `sipflows case close|withdraw-consent` do: an ended plan's future meetings are cancelled, so the
    # invitation sync sends their CANCELs and no check chases them (a new plan has no meetings yet)
    cancelled = cancel_future_meetings(job.session, ended, job.now)
    return replace(job.result(len(inserts), len(updates)), cancelled_meetings=cancelled)


def _check_origin(
    rec: Record, eff: Callable[[str], Any], job: _Job, bad_cells: set[tuple[int | None, str | None]]
) -> None:
    """A plan from discharge needs its discharge date (the first-meeting limit counts from it); an
    ordinary plan has none. Not judged when either cell was already reported as unreadable."""
    if (rec.line, "origin") in bad_cells or (rec.line, "discharged_on") in bad_cells:
        return
    origin, discharged = eff("origin"), eff("discharged_on")
    if origin == PlanOrigin.DISCHARGE and discharged is None:
        job.issue(rec.line, "discharged_on", "a plan with origin 'discharge' needs its discharge date")
    elif origin != PlanOrigin.DISCHARGE and discharged is not None:
        if job.has("discharged_on"):
            job.issue(
                rec.line, "discharged_on", "a discharge date is given but the origin is not 'discharge'"
            )
        else:
            job.issue(
                rec.line,
                "origin",
                "the plan has a discharge date in the register: add an empty discharged_on column to "
                "make it an ordinary plan",
            )


def _closure_by_consent(eff: Mapping[str, Any]) -> dict[str, Any]:
    """Withdrawn consent ends the coordination at once: the plan is closed, on the day consent was
    withdrawn and for that reason unless the row (or the register) already says when and why, exactly as
    ``sipflows case withdraw-consent`` does. ``eff``: the row's fields as they will be after the import.
    Returns the fields to set; empty when consent stands."""
    withdrawn = eff["consent_withdrawn_on"]
    if withdrawn is None:
        return {}
    closing: dict[str, Any] = {"status": CaseStatus.CLOSED}
    if eff["closed_on"] is None:
        closing["closed_on"] = withdrawn
    if eff["closure_reason"] is None:
        closing["closure_reason"] = ClosureReason.CONSENT_WITHDRAWN
    return closing


def _import_participants(job: _Job) -> FileResult:
    job.check_duplicates()
    cases = job.cases("case")
    contacts = job.contacts("contact")
    job.raise_if_issues()
    rows = _select_dicts(
        job.session,
        (Participant.id, Participant.case_id, Participant.contact_id, Participant.role),
        Participant.case_id,
        (c.id for c in cases.values()),
    )
    existing = {(r["case_id"], r["contact_id"]): r for r in rows}
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        key = (cases[v["case"]].id, contacts[v["contact"]][0])
        row = existing.get(key)
        new = {"role": v["role"]} if job.has("role") else {}
        if row is None:
            inserts.append({"case_id": key[0], "contact_id": key[1], "role": "participant", **new})
        elif changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
    _write(job.session, Participant, inserts, updates)
    return job.result(len(inserts), len(updates))


def _import_meetings(job: _Job) -> FileResult:
    job.check_duplicates()
    cases = job.cases("case")
    chairs = job.contacts("chair") if job.has("chair") else {}
    members = _chair_candidates(job, cases) if chairs else set()
    attrs = (
        "case_id",
        "kind",
        *CALENDAR_FIELDS,
        "status",
        "documented_at",
        "chair_contact_id",
        "sequence",
    )
    existing = job.existing(Meeting, Meeting.code, attrs)
    has_status, has_documented = job.has("status"), job.has("documented_at")
    default_status, default_documented = (
        _DEFAULTS["meetings"]["status"],
        _DEFAULTS["meetings"]["documented_at"],
    )
    uids: dict[str, str] = {}  # a new meeting's calendar UID, made once
    for rec in job.records:
        v = rec.values
        if chairs:
            case, chair = cases.get(v.get("case") or ""), chairs.get(v.get("chair") or "")
            if case is not None and chair is not None and (case.id, chair[0]) not in members:
                job.issue(
                    rec.line,
                    "chair",
                    f"contact '{shown(v['chair'])}' is not a participant, the convener or the coordinator "
                    "of the meeting's case; add it to participants.csv",
                )
        code = v.get("code")
        current = existing.get(code)
        if code is not None and current is None:
            uids[code] = uid = _uid(code, job.mail_domain)
            if len(uid) > UID_MAX:
                job.issue(
                    rec.line,
                    "code",
                    f"too long for the meeting's calendar UID: with the mail domain it makes {len(uid)} "
                    f"characters (letters outside A–Z are percent-encoded), at most {UID_MAX} fit",
                )
        start, end = v.get("starts_at"), v.get("ends_at")
        if start is not None and end is not None and end <= start:
            job.issue(rec.line, "ends_at", "the meeting ends before (or when) it starts")
        # the fields' values after the import: the file's, else the register's, else the default
        if has_status:
            status = v.get("status")
        else:
            status = current["status"] if current is not None else default_status
        if has_documented:
            documented = v.get("documented_at")
        else:
            documented = current["documented_at"] if current is not None else default_documented
        if documented is not None and status is not None and status != MeetingStatus.HELD:
            job.issue(
                rec.line,
                "documented_at" if has_documented else "status",
                f"documented_at is set but the status is '{status}', not 'held'",
            )
        if documented is not None and start is not None and documented < start:
            job.issue(rec.line, "documented_at", "documented before the meeting started")
    job.raise_if_issues()

    inserts, updates = [], []
    given = [a for a in ("kind", *CALENDAR_FIELDS, "status", "documented_at") if job.has(a)]
    has_chair = job.has("chair")
    base = dict.fromkeys(CALENDAR_FIELDS) | {
        "status": MeetingStatus.SCHEDULED,
        "documented_at": None,
        "chair_contact_id": None,
    }
    for rec in job.records:
        v = rec.values
        case = cases[v["case"]]
        new: dict[str, Any] = {"case_id": case.id}
        for attr in given:
            new[attr] = v[attr]
        if has_chair:
            new["chair_contact_id"] = chairs[v["chair"]][0] if v["chair"] else None
        row = existing.get(v["code"])
        if case.status == CaseStatus.CLOSED or case.consent_withdrawn_on is not None:
            # an ended plan has no future meetings: as closing it cancelled them, so does the import
            status = new.get("status", row["status"] if row is not None else MeetingStatus.SCHEDULED)
            start = new.get("starts_at", row["starts_at"] if row is not None else None)
            if status == MeetingStatus.SCHEDULED and start is not None and start > job.now:
                new["status"] = MeetingStatus.CANCELLED
        if row is None:
            inserts.append(
                {
                    **base,
                    **new,
                    "code": v["code"],
                    "ical_uid": uids[v["code"]],
                    "sequence": 0,
                    "updated_at": job.now,
                }
            )
            continue
        changes = _changes(row, new)
        if not changes:
            continue
        cancelled_before = row["status"] == MeetingStatus.CANCELLED
        cancelled_after = changes.get("status", row["status"]) == MeetingStatus.CANCELLED
        if any(f in changes for f in CALENDAR_FIELDS) or cancelled_before != cancelled_after:
            # what the invitees' calendars show changed: a new revision of the event
            changes["sequence"] = row["sequence"] + 1
        updates.append({"id": row["id"], **changes, "updated_at": job.now})
    _write(job.session, Meeting, inserts, updates)
    return job.result(len(inserts), len(updates))


def _chair_candidates(job: _Job, cases: Mapping[str, _Case]) -> set[tuple[int, int]]:
    """(case id, contact id) of who may chair a meeting of the plans that the file gives a chair for:
    their participants (one look-up), conveners and coordinators (known from the plans already)."""
    chaired = {row.values.get("case") for row in job.records if row.values.get("chair") is not None}
    plans = [case for code, case in cases.items() if code in chaired]
    columns = (Participant.case_id, Participant.contact_id)
    allowed = set(_select_in(job.session, columns, Participant.case_id, [case.id for case in plans]))
    for case in plans:
        allowed.add((case.id, case.convener_contact_id))
        if case.coordinator_contact_id is not None:
            allowed.add((case.id, case.coordinator_contact_id))
    return allowed


def _plan_contacts(session: Session, case_ids: Iterable[int]) -> set[tuple[int, int]]:
    """(case id, contact id) of every participant, convener and coordinator of the cases."""
    case_ids = _unique(case_ids)
    columns = (Participant.case_id, Participant.contact_id)
    allowed: set[tuple[int, int]] = set(_select_in(session, columns, Participant.case_id, case_ids))
    for case_id, convener, coordinator in _select_in(
        session,
        (SipCase.id, SipCase.convener_contact_id, SipCase.coordinator_contact_id),
        SipCase.id,
        case_ids,
    ):
        allowed.add((case_id, convener))
        if coordinator is not None:
            allowed.add((case_id, coordinator))
    return allowed


def _import_invitations(job: _Job) -> FileResult:
    job.check_duplicates()
    meetings = job.meetings("meeting")
    contacts = job.contacts("contact")
    allowed = _plan_contacts(job.session, (case_id for _, case_id, _ in meetings.values()))
    rows = _select_dicts(
        job.session,
        (
            Invitation.id,
            Invitation.meeting_id,
            Invitation.contact_id,
            Invitation.required,
            Invitation.sent_at,
            Invitation.answer,
            Invitation.answered_at,
            Invitation.attended,
            Invitation.sent_sequence,
        ),
        Invitation.meeting_id,
        (mid for mid, _, _ in meetings.values()),
    )
    existing = {(r["meeting_id"], r["contact_id"]): r for r in rows}
    defaults = _DEFAULTS["invitations"]
    all_given = all(job.has(c) for c in ("answer", "answered_at", "sent_at"))
    for rec in job.records:
        v = rec.values
        meeting, contact = meetings.get(v.get("meeting") or ""), contacts.get(v.get("contact") or "")
        if meeting is None or contact is None:
            continue
        if (meeting[1], contact[0]) not in allowed:
            job.issue(
                rec.line,
                "contact",
                f"contact '{shown(v['contact'])}' is not a participant of the meeting's case; add it to "
                "participants.csv (a notice about a plan goes only to that plan's participants)",
            )
        current = existing.get((meeting[0], contact[0]))
        # the fields after the import: the file's where given (a row holds every column of the header),
        # else the register's, else the default
        eff = v if all_given else {**(defaults if current is None else current), **v}
        answer, answered, sent = eff["answer"], eff["answered_at"], eff["sent_at"]
        if answered is not None and answer == Answer.NONE:
            job.issue(rec.line, "answered_at", "an answer time is given but the answer is 'none'")
        if answered is not None and sent is not None and answered < sent:
            job.issue(rec.line, "answered_at", "answered before the invitation was sent")
    job.raise_if_issues()

    attrs = ("required", "sent_at", "answer", "answered_at", "attended", "sent_sequence")
    inserts, updates = [], []
    given = [a for a in attrs if job.has(a)]
    has_sent = job.has("sent_at")
    base = {
        "required": True,
        "sent_at": None,
        "answer": Answer.NONE,
        "answered_at": None,
        "attended": None,
        "sent_sequence": None,
    }
    for rec in job.records:
        v = rec.values
        meeting_id, _, sequence = meetings[v["meeting"]]
        key = (meeting_id, contacts[v["contact"]][0])
        new = {a: v[a] for a in given}
        row = existing.get(key)
        if has_sent:
            new.update(_sent_before(v["sent_at"], row, sequence))
        if row is None:
            inserts.append({**base, **new, "meeting_id": key[0], "contact_id": key[1]})
        elif changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
    _write(job.session, Invitation, inserts, updates)
    return job.result(len(inserts), len(updates))


def _sent_before(sent_at: datetime | None, row: Mapping[str, Any] | None, sequence: int) -> dict[str, Any]:
    """An invitation imported with ``sent_at`` was sent by the system the export came from: the invitee
    holds the meeting's current version, so the invitation sync sends no REQUEST asking again (only a later
    change of the meeting sends an update, and a cancellation a CANCEL). Emptying sent_at undoes it."""
    if sent_at is None:
        return {"sent_sequence": None}
    if row is None or row["sent_at"] is None:
        return {"sent_sequence": sequence}
    return {}


def _import_deviations(job: _Job) -> FileResult:
    job.check_duplicates()
    cases = job.cases("case")
    contacts = job.contacts("reported_by")
    orgs = job.organisations("concerning_organisation")
    later = ("acknowledged_at", "replied_at", "resolved_at")
    attrs = (
        "case_id",
        "reported_by_contact_id",
        "concerning_org_id",
        "kind",
        "severity",
        "description",
        "reported_at",
        *later,
    )
    existing = job.existing(Deviation, Deviation.code, attrs)
    defaults = _DEFAULTS["deviations"]
    all_given = all(job.has(c) for c in later)
    for rec in job.records:
        v = rec.values
        reported = v.get("reported_at")
        if reported is None:
            continue  # reported_at is required: its cell is already reported
        current = existing.get(v.get("code"))
        # the fields after the import: the file's where given (a row holds every column of the header),
        # else the register's, else the default
        eff = v if all_given else {**(defaults if current is None else current), **v}
        for column in later:
            value = eff[column]
            if value is not None and reported is not None and value < reported:
                job.issue(rec.line, column, "before the deviation was reported (reported_at)")
    job.raise_if_issues()

    inserts, updates = [], []
    given = [a for a in ("severity", "description", *later) if job.has(a)]
    base = {"severity": Severity.NORMAL, "description": None} | dict.fromkeys(later)
    for rec in job.records:
        v = rec.values
        new: dict[str, Any] = {
            "case_id": cases[v["case"]].id,
            "reported_by_contact_id": contacts[v["reported_by"]][0],
            "concerning_org_id": orgs[v["concerning_organisation"]],
            "kind": v["kind"],
            "reported_at": v["reported_at"],
        }
        for attr in given:
            new[attr] = v[attr]
        row = existing.get(v["code"])
        if row is None:
            inserts.append({**base, **new, "code": v["code"]})
        elif changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
    _write(job.session, Deviation, inserts, updates)
    return job.result(len(inserts), len(updates))

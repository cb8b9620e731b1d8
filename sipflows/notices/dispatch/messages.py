"""The message for each claimed ledger row: what every transport takes (``OutgoingMessage``).

The batch's context (contact names, meetings, their attendees, earlier calendar items) is read in a
handful of set-based queries, never one per notice, and never any personal data of the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from sipflows.models import Contact, Invitation, Meeting, NoticeStatus, SipCase
from sipflows.notices.dispatch.claims import Row, notices
from sipflows.transports.base import Attendee, MeetingInfo, OutgoingMessage, attachments_from_json


@dataclass
class BatchContext:
    contact_names: dict[int, str]
    meetings: dict[int, Row]
    attendees: dict[int, list[Attendee]]
    previous_external: dict[tuple[int, int], str]
    organizer: tuple[str, str] = ("", "")  # (address, name) of the mailbox that receives the answers


def load_context(
    conn: Connection, rows: Sequence[Row], organizer: tuple[str, str] = ("", "")
) -> BatchContext:
    """Everything the batch's messages need, in a handful of set-based queries (never one per notice).

    Only the columns a message needs are read: no personal data of the plan is ever loaded here. A
    meeting's attendees are its invitees and, first and as chair, the plan's convener.
    """
    contact_ids = {r["contact_id"] for r in rows if r["contact_id"] is not None}
    meeting_ids = {r["meeting_id"] for r in rows if r["meeting_id"] is not None and r["ics"]}
    names: dict[int, str] = {}
    if contact_ids:
        names = dict(
            conn.execute(select(Contact.id, Contact.name).where(Contact.id.in_(contact_ids))).tuples().all()
        )
    meetings: dict[int, Row] = {}
    attendees: dict[int, list[Attendee]] = {}
    previous: dict[tuple[int, int], str] = {}
    if meeting_ids:
        q = (
            select(
                Meeting.id,
                Meeting.ical_uid,
                Meeting.sequence,
                Meeting.starts_at,
                Meeting.ends_at,
                Meeting.place,
                Meeting.digital_link,
                Contact.email.label("convener_email"),
                Contact.name.label("convener_name"),
            )
            .join(SipCase, SipCase.id == Meeting.case_id)
            .join(Contact, Contact.id == SipCase.convener_contact_id)
            .where(Meeting.id.in_(meeting_ids))
        )
        meetings = {m["id"]: m for m in conn.execute(q).mappings()}
        q2 = (
            select(Invitation.meeting_id, Invitation.required, Contact.email, Contact.name)
            .join(Contact, Contact.id == Invitation.contact_id)
            .where(Invitation.meeting_id.in_(meeting_ids))
            .order_by(Invitation.meeting_id, Invitation.id)
        )
        for m in meetings.values():
            attendees[m["id"]] = [Attendee(m["convener_email"], m["convener_name"], True, chair=True)]
        for meeting_id, required, email, name in conn.execute(q2).tuples():
            listed = attendees.setdefault(meeting_id, [])
            if not any(a.chair and a.email.casefold() == email.casefold() for a in listed):
                listed.append(Attendee(email=email, name=name, required=required))
        # the calendar item an earlier send created for the same meeting and person (Exchange updates it)
        q3 = (
            select(notices.c.meeting_id, notices.c.contact_id, notices.c.external_id)
            .where(
                notices.c.meeting_id.in_(meeting_ids),
                notices.c.external_id.is_not(None),
                notices.c.status == NoticeStatus.SENT,
            )
            .order_by(notices.c.id)
        )
        for meeting_id, contact_id, external_id in conn.execute(q3).tuples():
            if contact_id is not None:
                previous[(meeting_id, contact_id)] = external_id
    return BatchContext(names, meetings, attendees, previous, organizer)


def _meeting_info(row: Row, ctx: BatchContext) -> MeetingInfo | None:
    m = ctx.meetings.get(row["meeting_id"]) if row["ics"] and row["meeting_id"] is not None else None
    if m is None:
        return None
    return MeetingInfo(
        uid=m["ical_uid"],
        # the SEQUENCE the notice's ics carries, so a resend or a late retry books the same version
        sequence=row["ics_sequence"] if row["ics_sequence"] is not None else m["sequence"],
        method=(row["ics_method"] or "REQUEST").upper(),
        subject=row["subject"],
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        place=m["place"],
        digital_link=m["digital_link"],
        organizer_email=ctx.organizer[0] or m["convener_email"],
        organizer_name=ctx.organizer[1] or m["convener_name"],
        attendees=tuple(ctx.attendees.get(m["id"], ())),
    )


def build_message(row: Row, ctx: BatchContext, now: datetime) -> OutgoingMessage:
    """The message for one ledger row; ``AttachmentError`` if its attachments are unusable."""
    external_id = row["external_id"]
    if external_id is None and row["meeting_id"] is not None and row["contact_id"] is not None:
        external_id = ctx.previous_external.get((row["meeting_id"], row["contact_id"]))
    # an invitation's human replies go to the convener; calendar answers go to the ORGANIZER mailbox
    meeting = ctx.meetings.get(row["meeting_id"]) if row["ics"] and row["meeting_id"] is not None else None
    return OutgoingMessage(
        notice_id=row["id"],
        key=row["key"],
        message_id=row["message_id"],
        to_address=row["address"],
        to_name=ctx.contact_names.get(row["contact_id"]) if row["contact_id"] is not None else None,
        subject=row["subject"],
        body_text=row["body_text"],
        body_html=row["body_html"],
        ics=row["ics"],
        ics_method=(row["ics_method"] or "REQUEST").upper() if row["ics"] else row["ics_method"],
        meeting=_meeting_info(row, ctx),
        external_id=external_id,
        reply_to=meeting["convener_email"] if meeting is not None else None,
        reply_to_name=meeting["convener_name"] if meeting is not None else None,
        date=now,
        attachments=attachments_from_json(row["attachments"]),
    )

"""The messages the Exchange and Graph transport tests send: one meeting of plan SIP-2026-7 and the
invitation notice that carries it, with what each test varies as arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sipflows.transports.base import Attendee, MeetingInfo, OutgoingMessage

STARTS = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)  # 09:00 in Stockholm (CET)
ATTENDEES = (Attendee("sara@kommun.example.se", "Sara", True), Attendee("fk@fk.example.se", "FK", False))


def meeting_info(
    organizer: tuple[str, str],
    uid: str = "m1-sip-2026-7@sipflows.test",
    method: str = "REQUEST",
    starts_at: datetime = STARTS,
    minutes: int = 90,
    location: str | None = "Köpings vårdcentral, rum 3",
    attendees: tuple[Attendee, ...] = ATTENDEES,
) -> MeetingInfo:
    return MeetingInfo(
        uid=uid,
        sequence=0,
        method=method,
        subject="SIP-möte SIP-2026-7",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
        place=location,
        organizer_email=organizer[0],
        organizer_name=organizer[1],
        attendees=attendees,
    )


def outgoing(
    to: str = "sara@kommun.example.se",
    meeting: MeetingInfo | None = None,
    external_id: str | None = None,
    notice_id: int = 1,
    key: str = "invitation:m1:c1:0",
    **extra: Any,
) -> OutgoingMessage:
    return OutgoingMessage(
        notice_id=notice_id,
        key=key,
        message_id=f"<{key.replace(':', '-')}@sipflows.local>",
        to_address=to,
        to_name="Sara Socialsekreterare",
        subject="Kallelse: SIP-möte SIP-2026-7",
        body_text="Kallelse till SIP-möte.",
        body_html="<p>Kallelse till <b>SIP-möte</b> för SIP-2026-7.</p>",
        meeting=meeting,
        external_id=external_id,
        **extra,
    )

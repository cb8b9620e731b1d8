"""Meeting invitations as iCalendar (RFC 5545) iTIP messages (RFC 5546): REQUEST and CANCEL.

The UID stays the meeting's for its whole life and SEQUENCE rises with every change, so calendar clients
update or remove the one event they already hold instead of adding a second one. Times are written in
local Stockholm time with ``TZID=Europe/Stockholm`` and a VTIMEZONE (EU summer-time rules as RRULEs,
which Outlook, Exchange and Google read), so a meeting at 09:00 stays at 09:00 across the DST change.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Calendar, Event, Timezone, TimezoneDaylight, TimezoneStandard, vCalAddress

from sipflows.timeutil import STOCKHOLM, as_utc
from sipflows.transports.base import MeetingInfo

TZID = "Europe/Stockholm"
PRODID = "-//sipflows//SIP meetings//SV"


def stockholm_vtimezone() -> Timezone:
    """VTIMEZONE for Europe/Stockholm: CET/CEST, switching the last Sundays of March and October."""
    tz = Timezone()
    tz.add("TZID", TZID)
    tz.add("X-LIC-LOCATION", TZID)
    summer = TimezoneDaylight()
    summer.add("TZNAME", "CEST")
    summer.add("TZOFFSETFROM", timedelta(hours=1))
    summer.add("TZOFFSETTO", timedelta(hours=2))
    summer.add("DTSTART", datetime(1970, 3, 29, 2, 0, 0))
    summer.add("RRULE", {"FREQ": "YEARLY", "BYMONTH": 3, "BYDAY": "-1SU"})
    winter = TimezoneStandard()
    winter.add("TZNAME", "CET")
    winter.add("TZOFFSETFROM", timedelta(hours=2))
    winter.add("TZOFFSETTO", timedelta(hours=1))
    winter.add("DTSTART", datetime(1970, 10, 25, 3, 0, 0))
    winter.add("RRULE", {"FREQ": "YEARLY", "BYMONTH": 10, "BYDAY": "-1SU"})
    tz.add_component(summer)
    tz.add_component(winter)
    return tz


def _address(email: str, name: str, **params: str) -> vCalAddress:
    addr = vCalAddress(f"mailto:{email}")
    # one line, no double quote: what every client reads without RFC 6868's ^' and ^n escapes
    addr.params["CN"] = " ".join(name.replace('"', "'").split())
    for key, value in params.items():
        addr.params[key.replace("_", "-").upper()] = value
    return addr


def _local(dt: datetime) -> datetime:
    return as_utc(dt).astimezone(STOCKHOLM)


def _calendar(event: MeetingInfo, method: str, status: str, sequence: int, now: datetime) -> str:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not event.ends_at > event.starts_at:
        raise ValueError(f"meeting {event.uid} ends before it starts")
    cal = Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("CALSCALE", "GREGORIAN")
    cal.add("METHOD", method)
    cal.add_component(stockholm_vtimezone())

    vevent = Event()
    vevent.add("UID", event.uid)
    vevent.add("SEQUENCE", sequence)
    vevent.add("DTSTAMP", as_utc(now))
    vevent.add("DTSTART", _local(event.starts_at))
    vevent.add("DTEND", _local(event.ends_at))
    vevent.add("SUMMARY", event.subject)
    if event.location:
        vevent.add("LOCATION", event.location)
    if event.url:
        vevent.add("URL", event.url)
    vevent.add("DESCRIPTION", event.description)
    vevent.add("ORGANIZER", _address(event.organizer_email, event.organizer_name))
    for a in event.attendees:
        vevent.add(
            "ATTENDEE",
            _address(
                a.email,
                a.name,
                CUTYPE="INDIVIDUAL",
                ROLE="CHAIR" if a.chair else "REQ-PARTICIPANT" if a.required else "OPT-PARTICIPANT",
                PARTSTAT="NEEDS-ACTION",
                RSVP="TRUE",
            ),
        )
    vevent.add("STATUS", status)
    vevent.add("TRANSP", "OPAQUE")
    cal.add_component(vevent)
    ical: bytes = cal.to_ical()
    return ical.decode("utf-8")


def meeting_request(event: MeetingInfo, now: datetime) -> str:
    """METHOD:REQUEST for a new or changed meeting, at the meeting's current SEQUENCE."""
    return _calendar(event, "REQUEST", "CONFIRMED", event.sequence, now)


def meeting_cancel(event: MeetingInfo, now: datetime) -> str:
    """METHOD:CANCEL; ``event.sequence`` must already be above every SEQUENCE sent for the UID."""
    return _calendar(event, "CANCEL", "CANCELLED", event.sequence, now)

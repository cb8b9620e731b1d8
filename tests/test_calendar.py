"""iCalendar output: parsed back with icalendar and checked property by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from sipflows.notices.calendar import (
    meeting_cancel,
    meeting_request,
    stockholm_vtimezone,
)
from sipflows.transports.base import Attendee, MeetingInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 3, 2, 8, 15, 30, tzinfo=UTC)


def meeting_info_from_ics(ics: str) -> MeetingInfo:
    """The meeting an invitation describes, read back as a calendar client reads it."""
    cal = Calendar.from_ical(ics)
    (ev,) = cal.walk("VEVENT")
    organizer = ev.get("ORGANIZER")
    raw = ev.get("ATTENDEE", [])
    attendees = tuple(
        Attendee(
            email=str(a).removeprefix("mailto:"),
            name=str(a.params.get("CN", "")),
            required=str(a.params.get("ROLE", "REQ-PARTICIPANT")).upper() != "OPT-PARTICIPANT",
            chair=str(a.params.get("ROLE", "")).upper() == "CHAIR",
        )
        for a in (raw if isinstance(raw, list) else [raw])
    )
    location, url = ev.get("LOCATION"), ev.get("URL")
    return MeetingInfo(
        uid=str(ev["UID"]),
        sequence=int(ev.get("SEQUENCE", 0)),
        method=str(cal.get("METHOD", "REQUEST")).upper(),
        subject=str(ev.get("SUMMARY", "")),
        starts_at=ev.decoded("DTSTART").astimezone(UTC),
        ends_at=ev.decoded("DTEND").astimezone(UTC),
        place=str(location) if location is not None else None,
        digital_link=str(url) if url is not None else None,
        description=str(ev.get("DESCRIPTION", "")),
        organizer_email=str(organizer).removeprefix("mailto:") if organizer is not None else "",
        organizer_name=str(organizer.params.get("CN", "")) if organizer is not None else "",
        attendees=attendees,
    )


def event(
    starts_at: datetime = datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    sequence: int = 0,
    place: str | None = "Vårdcentralen Köping, rum 3; plan 2",
    link: str | None = None,
) -> MeetingInfo:
    return MeetingInfo(
        uid="SIP-2026-1-M1@sipflows.test",
        sequence=sequence,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=90),
        subject="SIP-möte, plan SIP-2026-1",
        description="SIP-möte i plan SIP-2026-1.\n\nSyfte och frågor:\nSkolstart",
        organizer_email="sara@kommun.example.se",
        organizer_name="Socialsekreterare Sara",
        attendees=(
            Attendee("rolf@region.example.se", "Distriktssköterska Rolf", True),
            Attendee("fk@fk.example.se", "Försäkringskassan, SIP", False),
        ),
        place=place,
        digital_link=link,
    )


def parse(ics: str) -> tuple[Calendar, Any]:
    cal = Calendar.from_ical(ics)
    events = cal.walk("VEVENT")
    assert len(events) == 1
    return cal, events[0]


def test_request_carries_every_property() -> None:
    ics = meeting_request(event(sequence=3), NOW)
    assert "\r\n" in ics  # RFC 5545 line endings
    cal, ev = parse(ics)
    assert str(cal["METHOD"]) == "REQUEST"
    assert str(cal["VERSION"]) == "2.0" and cal.get("PRODID")
    assert str(ev["UID"]) == "SIP-2026-1-M1@sipflows.test"
    assert int(ev["SEQUENCE"]) == 3
    assert ev.decoded("DTSTAMP") == NOW
    assert str(ev["STATUS"]) == "CONFIRMED"
    assert str(ev["SUMMARY"]) == "SIP-möte, plan SIP-2026-1"
    assert "Syfte och frågor:\nSkolstart" in str(ev["DESCRIPTION"])
    assert str(ev["LOCATION"]) == "Vårdcentralen Köping, rum 3; plan 2"
    assert "URL" not in ev

    # local time with TZID and a VTIMEZONE for it
    assert ev["DTSTART"].params["TZID"] == "Europe/Stockholm"
    assert ev["DTEND"].params["TZID"] == "Europe/Stockholm"
    assert "DTSTART;TZID=Europe/Stockholm:20260330T090000" in ics
    assert "DTEND;TZID=Europe/Stockholm:20260330T103000" in ics
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Stockholm"]

    organizer = ev["ORGANIZER"]
    assert str(organizer) == "mailto:sara@kommun.example.se"
    assert organizer.params["CN"] == "Socialsekreterare Sara"

    attendees = ev["ATTENDEE"]
    assert [str(a) for a in attendees] == ["mailto:rolf@region.example.se", "mailto:fk@fk.example.se"]
    assert [a.params["ROLE"] for a in attendees] == ["REQ-PARTICIPANT", "OPT-PARTICIPANT"]
    assert {a.params["PARTSTAT"] for a in attendees} == {"NEEDS-ACTION"}
    assert {a.params["RSVP"] for a in attendees} == {"TRUE"}
    assert [a.params["CN"] for a in attendees] == ["Distriktssköterska Rolf", "Försäkringskassan, SIP"]


def test_digital_link_goes_to_location_url_and_description() -> None:
    link = "https://meet.example.se/sip/abc?pwd=1"
    _, ev = parse(meeting_request(event(place=None, link=link), NOW))
    assert str(ev["LOCATION"]) == link
    assert str(ev["URL"]) == link
    both = event(place="Rum 3", link=link)
    _, ev2 = parse(meeting_request(both, NOW))
    assert str(ev2["LOCATION"]) == "Rum 3" and str(ev2["URL"]) == link


@pytest.mark.parametrize(
    ("utc", "local_stamp"),
    [
        (datetime(2026, 3, 27, 8, 0, tzinfo=UTC), "20260327T090000"),  # Friday, winter time (UTC+1)
        (datetime(2026, 3, 30, 7, 0, tzinfo=UTC), "20260330T090000"),  # Monday, summer time (UTC+2)
        (datetime(2026, 10, 23, 7, 0, tzinfo=UTC), "20261023T090000"),  # Friday, summer time
        (datetime(2026, 10, 26, 8, 0, tzinfo=UTC), "20261026T090000"),  # Monday, winter time again
    ],
)
def test_dtstart_is_local_time_across_dst(utc: datetime, local_stamp: str) -> None:
    ics = meeting_request(event(starts_at=utc), NOW)
    assert f"DTSTART;TZID=Europe/Stockholm:{local_stamp}" in ics
    cal, ev = parse(ics)
    start = ev.decoded("DTSTART")
    assert start == utc and start.astimezone(STOCKHOLM).hour == 9
    # the VTIMEZONE we send, on its own (not looked up by name), places the event at the same instant
    tz = cal.walk("VTIMEZONE")[0].to_tz(lookup_tzid=False)
    naive = datetime.strptime(local_stamp, "%Y%m%dT%H%M%S")
    assert naive.replace(tzinfo=tz).astimezone(UTC) == utc


def test_vtimezone_matches_the_tz_database_for_years() -> None:
    tz = stockholm_vtimezone().to_tz(lookup_tzid=False)
    instants = [datetime(2025, 1, 1, 12, tzinfo=UTC) + timedelta(days=3 * i) for i in range(2600 // 3)]
    for year in range(2025, 2032):
        for month in (3, 10):  # the changes happen at 01:00 UTC on the last Sunday
            last = max(d for d in range(25, 32) if datetime(year, month, d).weekday() == 6)
            change = datetime(year, month, last, 1, 0, tzinfo=UTC)
            instants += [change + timedelta(minutes=m) for m in (-61, -1, 0, 1, 59, 61)]
    for t in instants:
        assert t.astimezone(tz).utcoffset() == t.astimezone(STOCKHOLM).utcoffset(), t


def test_cancel_keeps_uid_and_is_cancelled() -> None:
    request = meeting_request(event(sequence=1), NOW)
    cancel = meeting_cancel(event(sequence=2), NOW + timedelta(days=1))
    cal_r, ev_r = parse(request)
    cal_c, ev_c = parse(cancel)
    assert str(cal_c["METHOD"]) == "CANCEL" and str(ev_c["STATUS"]) == "CANCELLED"
    assert str(ev_c["UID"]) == str(ev_r["UID"])
    assert int(ev_c["SEQUENCE"]) > int(ev_r["SEQUENCE"])
    assert len(ev_c["ATTENDEE"]) == 2


def test_meeting_info_round_trip_for_native_transports() -> None:
    info = meeting_info_from_ics(meeting_request(event(sequence=4), NOW))
    assert (info.uid, info.sequence, info.method) == ("SIP-2026-1-M1@sipflows.test", 4, "REQUEST")
    assert info.starts_at == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert info.ends_at == datetime(2026, 3, 30, 8, 30, tzinfo=UTC)
    assert (info.organizer_email, info.organizer_name) == ("sara@kommun.example.se", "Socialsekreterare Sara")
    assert [(a.email, a.required) for a in info.attendees] == [
        ("rolf@region.example.se", True),
        ("fk@fk.example.se", False),
    ]
    assert info.location == "Vårdcentralen Köping, rum 3; plan 2"
    assert meeting_info_from_ics(meeting_cancel(event(sequence=5), NOW)).method == "CANCEL"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        meeting_request(event(), datetime(2026, 3, 1))
    bad = MeetingInfo(
        uid="u",
        sequence=0,
        starts_at=NOW,
        ends_at=NOW,
        subject="s",
        description="d",
        organizer_email="o@x",
        organizer_name="O",
    )
    with pytest.raises(ValueError, match="ends before it starts"):
        meeting_request(bad, NOW)


def test_names_are_one_line_without_double_quotes_and_the_chair_is_marked() -> None:
    from dataclasses import replace

    odd = replace(
        event(),
        organizer_name='Sara "Sassa" Berg\nvia SIP-kallelser',
        attendees=(Attendee("sara@kommun.example.se", 'Sara "Sassa"\r\nBerg', True, chair=True),),
    )
    ics = meeting_request(odd, NOW)
    unfolded = ics.replace("\r\n ", "")
    assert "^'" not in unfolded and "^n" not in unfolded  # no RFC 6868 escapes that Outlook shows raw
    _, ev = parse(ics)
    assert ev["ORGANIZER"].params["CN"] == "Sara 'Sassa' Berg via SIP-kallelser"
    assert (ev["ATTENDEE"].params["CN"], ev["ATTENDEE"].params["ROLE"]) == ("Sara 'Sassa' Berg", "CHAIR")
    info = meeting_info_from_ics(ics)
    assert [(a.email, a.chair, a.required) for a in info.attendees] == [
        ("sara@kommun.example.se", True, True)
    ]

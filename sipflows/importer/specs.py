"""The files' columns: which kinds of file there are (in import order), each kind's columns with their
parsers, required flags and defaults, and the key that identifies a row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipflows.importer.cells import (
    Parser,
    _bool,
    _code_text,
    _date,
    _datetime,
    _email,
    _enum,
    _text,
    _url,
)
from sipflows.models import (
    Answer,
    CaseStatus,
    ClosureReason,
    ContactKind,
    DeviationKind,
    Language,
    MeetingKind,
    MeetingStatus,
    OrgKind,
    PlanOrigin,
    Principal,
    Severity,
)

# The order files are imported in: every file refers only to kinds before it.
KINDS = (
    "organisations",
    "closed_days",
    "contacts",
    "cases",
    "participants",
    "meetings",
    "invitations",
    "deviations",
)

# Meeting fields whose change the invitees must hear about: a change raises the iCalendar SEQUENCE.
CALENDAR_FIELDS = ("starts_at", "ends_at", "place", "digital_link", "purpose")

# Files whose cells may hold personal data, even where they should not (a shifted row, a missing header):
# their errors never quote a cell or a header name, they say which column and what is wrong with it.
PERSONAL_KINDS = frozenset({"cases", "deviations"})


@dataclass(frozen=True)
class Column:
    """One documented column. Required columns must be in the header and non-empty in every row; an
    empty optional cell means ``default`` (None for most)."""

    name: str
    parse: Parser
    required: bool = False
    default: Any = None


def _code(name: str, required: bool = True) -> Column:
    return Column(name, _code_text, required=required)


def _name(name: str, one_line_only: bool = False) -> Column:
    """An organisation's or contact's name: in every notice; a contact's also in the calendar's CN and the
    To: header, where a line break has no place."""
    return Column(name, _text(200, one_line_only=one_line_only, staff=True), required=True)


SPECS: dict[str, tuple[Column, ...]] = {
    "organisations": (
        _code("code"),
        _name("name"),
        Column("kind", _enum(OrgKind), required=True),
        Column("principal", _enum(Principal)),
    ),
    "closed_days": (
        _code("organisation"),
        Column("day", _date, required=True),
        Column("reason", _text(200)),
    ),
    "contacts": (
        _code("code"),
        _code("organisation"),
        _name("name", one_line_only=True),
        Column("email", _email, required=True),
        Column("kind", _enum(ContactKind), default=ContactKind.PERSON),
        Column("language", _enum(Language), default=Language.SV),
        _code("escalation_contact", required=False),
        Column("escalation_for_organisation", _bool, default=False),
        Column("report_recipient", _bool, default=False),
    ),
    "cases": (
        _code("reference"),
        _code("convener_contact"),
        _code("convener_organisation", required=False),
        _code("coordinator", required=False),
        Column("individual_name", _text(200)),
        Column("personal_identity_number", _text(20)),
        Column("case_notes", _text(None)),
        Column("status", _enum(CaseStatus), default=CaseStatus.IDENTIFIED),
        Column("identified_on", _date, required=True),
        Column("offered_on", _date),
        Column("activated_on", _date),
        Column("closed_on", _date),
        Column("closure_reason", _enum(ClosureReason)),
        Column("consent_given_on", _date),
        Column("consent_withdrawn_on", _date),
        Column("follow_up_due", _date),
        Column("origin", _enum(PlanOrigin), default=PlanOrigin.ORDINARY),
        Column("discharged_on", _date),
        Column("under_18", _bool, default=False),
    ),
    "participants": (
        _code("case"),
        _code("contact"),
        Column("role", _text(64), default="participant"),
    ),
    "meetings": (
        _code("code"),
        _code("case"),
        Column("kind", _enum(MeetingKind), required=True),
        Column("starts_at", _datetime, required=True),
        Column("ends_at", _datetime, required=True),
        Column("place", _text(300, staff=True)),
        Column("digital_link", _url),
        Column("purpose", _text(None, staff=True)),
        Column("status", _enum(MeetingStatus), default=MeetingStatus.SCHEDULED),
        Column("documented_at", _datetime),
        _code("chair", required=False),
    ),
    "invitations": (
        _code("meeting"),
        _code("contact"),
        Column("required", _bool, default=True),
        Column("sent_at", _datetime),
        Column("answer", _enum(Answer), default=Answer.NONE),
        Column("answered_at", _datetime),
        Column("attended", _bool),
    ),
    "deviations": (
        _code("code"),
        _code("case"),
        _code("reported_by"),
        _code("concerning_organisation"),
        Column("kind", _enum(DeviationKind), required=True),
        Column("severity", _enum(Severity), default=Severity.NORMAL),
        Column("description", _text(None)),
        Column("reported_at", _datetime, required=True),
        Column("acknowledged_at", _datetime),
        Column("replied_at", _datetime),
        Column("resolved_at", _datetime),
    ),
}

# The columns that identify a row within its file (and in the register).
KEYS: dict[str, tuple[str, ...]] = {
    "organisations": ("code",),
    "closed_days": ("organisation", "day"),
    "contacts": ("code",),
    "cases": ("reference",),
    "participants": ("case", "contact"),
    "meetings": ("code",),
    "invitations": ("meeting", "contact"),
    "deviations": ("code",),
}


_DEFAULTS = {kind: {c.name: c.default for c in columns} for kind, columns in SPECS.items()}

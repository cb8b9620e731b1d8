"""The SIP register and the notice ledger as typed SQLAlchemy 2.0 models.

Times are stored in UTC (``UTCDateTime``); plain dates (consent, status dates, follow-up due) are
local Stockholm dates as the people involved know them.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out; SQLite keeps naive UTC, PostgreSQL ``timestamptz``."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as the value string with a CHECK constraint: portable and readable in both databases.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class OrgKind(enum.StrEnum):
    MUNICIPAL_UNIT = "municipal_unit"
    REGION_UNIT = "region_unit"
    FORSAKRINGSKASSAN = "forsakringskassan"
    ARBETSFORMEDLINGEN = "arbetsformedlingen"
    SCHOOL = "school"
    KRIMINALVARDEN = "kriminalvarden"
    POLICE = "police"
    USER_ORGANISATION = "user_organisation"
    OTHER = "other"


class Principal(enum.StrEnum):
    KOMMUN = "kommun"
    REGION = "region"


class ContactKind(enum.StrEnum):
    PERSON = "person"
    FUNCTIONAL = "functional"


class Language(enum.StrEnum):
    SV = "sv"
    EN = "en"


class CaseStatus(enum.StrEnum):
    IDENTIFIED = "identified"
    OFFERED = "offered"
    ACTIVE = "active"
    CLOSED = "closed"


class PlanOrigin(enum.StrEnum):
    """Where the need for the plan arose: the ordinary way, or at discharge from inpatient care (Lag
    2017:612 om samverkan vid utskrivning från sluten hälso- och sjukvård), which has its own time limit."""

    ORDINARY = "ordinary"
    DISCHARGE = "discharge"


class ClosureReason(enum.StrEnum):
    NEED_MET = "need_met"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    OTHER = "other"


class MeetingKind(enum.StrEnum):
    PRE_MEETING = "pre_meeting"
    SIP_MEETING = "sip_meeting"
    FOLLOW_UP = "follow_up"


class MeetingStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    CANCELLED = "cancelled"


class Answer(enum.StrEnum):
    NONE = "none"
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"


class DeviationKind(enum.StrEnum):
    PARTY_ABSENT = "party_absent"
    PLAN_NOT_FOLLOWED = "plan_not_followed"
    DOCUMENTATION_LATE = "documentation_late"
    INVITATION_NOT_ANSWERED = "invitation_not_answered"
    OTHER = "other"


class Severity(enum.StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class NoticeStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[OrgKind] = mapped_column(_enum(OrgKind, "org_kind"))
    principal: Mapped[Principal | None] = mapped_column(_enum(Principal, "principal"))
    escalation_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL", use_alter=True, name="fk_org_escalation_contact")
    )

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="organisation", foreign_keys="Contact.organisation_id"
    )
    closed_days: Mapped[list[ClosedDay]] = relationship(back_populates="organisation")


class ClosedDay(Base):
    """A day an organisation is closed beyond the national holidays (its own klämdag, say)."""

    __tablename__ = "closed_days"
    __table_args__ = (UniqueConstraint("organisation_id", "day", name="uq_closed_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(200))

    organisation: Mapped[Organisation] = relationship(back_populates="closed_days")


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_organisation", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ContactKind] = mapped_column(_enum(ContactKind, "contact_kind"), default=ContactKind.PERSON)
    email: Mapped[str] = mapped_column(String(254))
    language: Mapped[Language] = mapped_column(_enum(Language, "language"), default=Language.SV)
    escalation_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    report_recipient: Mapped[bool] = mapped_column(Boolean, default=False)

    organisation: Mapped[Organisation] = relationship(
        back_populates="contacts", foreign_keys=[organisation_id]
    )
    escalation_contact: Mapped[Contact | None] = relationship(remote_side="Contact.id")


class SipCase(Base):
    """One individual's plan. The personal fields exist because real registers hold them;
    they must never leave the register (see notices)."""

    __tablename__ = "sip_cases"
    __table_args__ = (
        Index("ix_cases_status", "status"),
        Index("ix_cases_convener_org", "convener_org_id"),
        Index("ix_cases_follow_up_due", "follow_up_due"),
        # a plan from discharge carries its discharge date, and only such a plan does
        CheckConstraint(
            "(origin = 'discharge' AND discharged_on IS NOT NULL) "
            "OR (origin <> 'discharge' AND discharged_on IS NULL)",
            name="ck_case_discharge_date",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    convener_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    convener_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    coordinator_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    # personal data: never in a notice, a log, an artifact or a report
    individual_name: Mapped[str | None] = mapped_column(String(200))
    personal_identity_number: Mapped[str | None] = mapped_column(String(20))
    case_notes: Mapped[str | None] = mapped_column(Text)

    consent_given_on: Mapped[date | None] = mapped_column(Date)
    consent_withdrawn_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[CaseStatus] = mapped_column(
        _enum(CaseStatus, "case_status"), default=CaseStatus.IDENTIFIED
    )
    identified_on: Mapped[date] = mapped_column(Date)
    offered_on: Mapped[date | None] = mapped_column(Date)
    activated_on: Mapped[date | None] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)
    closure_reason: Mapped[ClosureReason | None] = mapped_column(_enum(ClosureReason, "closure_reason"))
    follow_up_due: Mapped[date | None] = mapped_column(Date)
    # what the first-meeting check needs: which time limit applies and from which day it counts
    origin: Mapped[PlanOrigin] = mapped_column(
        _enum(PlanOrigin, "plan_origin"),
        default=PlanOrigin.ORDINARY,
        server_default=PlanOrigin.ORDINARY.value,
    )
    discharged_on: Mapped[date | None] = mapped_column(
        Date, doc="The local date of discharge from inpatient care; set exactly when origin is discharge."
    )
    under_18: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        doc="The plan is for a child or young person: a yes/no only, never a birth date or identity number.",
    )

    convener_org: Mapped[Organisation] = relationship(foreign_keys=[convener_org_id])
    convener_contact: Mapped[Contact] = relationship(foreign_keys=[convener_contact_id])
    coordinator_contact: Mapped[Contact | None] = relationship(foreign_keys=[coordinator_contact_id])
    participants: Mapped[list[Participant]] = relationship(back_populates="case")
    meetings: Mapped[list[Meeting]] = relationship(back_populates="case")


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("case_id", "contact_id", name="uq_participant"),
        Index("ix_participants_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sip_cases.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    role: Mapped[str] = mapped_column(String(64), default="participant")

    case: Mapped[SipCase] = relationship(back_populates="participants")
    contact: Mapped[Contact] = relationship()


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ck_meeting_ends_after_start"),
        # a plan's meetings of one kind and status around a time (pre_meeting, follow_up): fast with or
        # without planner statistics (migration 0004)
        Index("ix_meetings_case_kind_status_start", "case_id", "kind", "status", "starts_at"),
        Index("ix_meetings_status_start", "status", "starts_at"),
        # the documentation check: held meetings still undocumented, by start
        Index("ix_meetings_status_documented_start", "status", "documented_at", "kind", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sip_cases.id", ondelete="CASCADE"))
    kind: Mapped[MeetingKind] = mapped_column(_enum(MeetingKind, "meeting_kind"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    place: Mapped[str | None] = mapped_column(String(300))
    digital_link: Mapped[str | None] = mapped_column(String(500))
    purpose: Mapped[str | None] = mapped_column(Text, doc="Purpose and questions agreed at the pre-meeting.")
    status: Mapped[MeetingStatus] = mapped_column(
        _enum(MeetingStatus, "meeting_status"), default=MeetingStatus.SCHEDULED
    )
    documented_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    chair_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id"),
        doc="Who leads the meeting (mötesledare); their principal is present by definition.",
    )
    # iCalendar identity: UID stays for the meeting's life, SEQUENCE rises with every change
    ical_uid: Mapped[str] = mapped_column(String(200), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    case: Mapped[SipCase] = relationship(back_populates="meetings")
    invitations: Mapped[list[Invitation]] = relationship(back_populates="meeting")


class Invitation(Base):
    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("meeting_id", "contact_id", name="uq_invitation"),
        Index("ix_invitations_answer_sent", "answer", "sent_at", "meeting_id", "contact_id"),
        Index("ix_invitations_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_sequence: Mapped[int | None] = mapped_column(
        Integer,
        doc="The meeting's SEQUENCE the invitee already holds from a send outside sipflows (an imported "
        "invitation with sent_at); what sipflows sends itself is in the notice ledger.",
    )
    answer: Mapped[Answer] = mapped_column(_enum(Answer, "answer"), default=Answer.NONE)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attended: Mapped[bool | None] = mapped_column(Boolean)

    meeting: Mapped[Meeting] = relationship(back_populates="invitations")
    contact: Mapped[Contact] = relationship()


class Deviation(Base):
    __tablename__ = "deviations"
    __table_args__ = (
        Index("ix_deviations_open", "resolved_at", "acknowledged_at", "reported_at"),
        Index("ix_deviations_unreplied", "resolved_at", "replied_at", "reported_at"),
        Index("ix_deviations_case", "case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sip_cases.id", ondelete="CASCADE"))
    reported_by_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    concerning_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[DeviationKind] = mapped_column(_enum(DeviationKind, "deviation_kind"))
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "severity"), default=Severity.NORMAL)
    description: Mapped[str | None] = mapped_column(Text, doc="Free text: never leaves the register.")
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replied_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), doc="When the concerning organisation replied with measures."
    )
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Notice(Base):
    """The ledger: every message the service sends, exactly one row per idempotency key."""

    __tablename__ = "notices"
    __table_args__ = (
        Index("ix_notices_due", "status", "next_attempt_at"),
        Index("ix_notices_case", "case_id"),
        Index("ix_notices_meeting_contact", "meeting_id", "contact_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("sip_cases.id", ondelete="SET NULL"))
    meeting_id: Mapped[int | None] = mapped_column(ForeignKey("meetings.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    ics: Mapped[str | None] = mapped_column(Text, doc="text/calendar part, when the notice carries one")
    ics_method: Mapped[str | None] = mapped_column(String(16))
    ics_sequence: Mapped[int | None] = mapped_column(
        Integer, doc="the meeting's SEQUENCE this notice carries"
    )
    attachments: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[NoticeStatus] = mapped_column(
        _enum(NoticeStatus, "notice_status"), default=NoticeStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    external_id: Mapped[str | None] = mapped_column(String(500), doc="Exchange item id, when sent there.")


class SweepRun(Base):
    """One row per sweep, so operations can see when the checks last ran and what they found."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    judged_on: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    findings: Mapped[int] = mapped_column(Integer, default=0)
    enqueued: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))

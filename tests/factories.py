"""A small builder for register content in tests: local Stockholm dates and times in, UTC rows out.

Every case it makes carries personal data (name, personal identity number, a diagnosis in the notes) and
every deviation a free-text description, so that privacy tests can assert none of it leaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import count

from sqlalchemy.orm import Session

from sipflows.models import (
    Answer,
    CaseStatus,
    ClosedDay,
    Contact,
    ContactKind,
    Deviation,
    DeviationKind,
    Invitation,
    Language,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Organisation,
    OrgKind,
    Participant,
    PlanOrigin,
    Principal,
    Severity,
    SipCase,
)
from sipflows.timeutil import from_local

PERSONAL_NAME = "Ebba Lindqvist-Örn"
PERSONAL_NUMBER = "19850412-1234"
DIAGNOSIS = "paranoid schizofreni F20.0"
DEVIATION_TEXT = "Socialsekreteraren uteblev och Ebba blev mycket ledsen"
SECRETS = (PERSONAL_NAME, PERSONAL_NUMBER, "8504121234", DIAGNOSIS, "F20.0", DEVIATION_TEXT)


def local(d: date, hhmm: str = "09:00") -> datetime:
    """A Stockholm wall-clock time as aware UTC."""
    h, m = (int(x) for x in hhmm.split(":"))
    return from_local(d, time(h, m))


@dataclass
class RegisterBuilder:
    session: Session
    _n: count[int] = field(default_factory=lambda: count(1))

    def _next(self, prefix: str) -> str:
        return f"{prefix}{next(self._n)}"

    def org(
        self,
        code: str | None = None,
        kind: OrgKind = OrgKind.MUNICIPAL_UNIT,
        principal: Principal | None = Principal.KOMMUN,
        name: str | None = None,
        closed_days: tuple[date, ...] = (),
    ) -> Organisation:
        code = code or self._next("ORG")
        o = Organisation(code=code, name=name or f"Organisation {code}", kind=kind, principal=principal)
        self.session.add(o)
        self.session.flush()
        for d in closed_days:
            self.session.add(ClosedDay(organisation_id=o.id, day=d))
        self.session.flush()
        return o

    def contact(
        self,
        org: Organisation,
        name: str | None = None,
        email: str | None = None,
        language: Language = Language.SV,
        escalation: Contact | None = None,
        kind: ContactKind = ContactKind.PERSON,
        report_recipient: bool = False,
    ) -> Contact:
        code = self._next("C")
        c = Contact(
            code=code,
            organisation_id=org.id,
            name=name or f"Kontakt {code}",
            email=email or f"{code.lower()}@{org.code.lower()}.example.se",
            language=language,
            kind=kind,
            escalation_contact_id=escalation.id if escalation else None,
            report_recipient=report_recipient,
        )
        self.session.add(c)
        self.session.flush()
        return c

    def case(
        self,
        convener: Contact,
        reference: str | None = None,
        status: CaseStatus = CaseStatus.ACTIVE,
        identified_on: date = date(2026, 1, 5),
        consent_given_on: date | None = date(2026, 1, 7),
        consent_withdrawn_on: date | None = None,
        closed_on: date | None = None,
        follow_up_due: date | None = None,
        participants: tuple[Contact, ...] = (),
        coordinator: Contact | None = None,
        origin: PlanOrigin = PlanOrigin.ORDINARY,
        discharged_on: date | None = None,
        under_18: bool = False,
    ) -> SipCase:
        c = SipCase(
            reference=reference or self._next("SIP-2026-"),
            convener_org_id=convener.organisation_id,
            convener_contact_id=convener.id,
            coordinator_contact_id=coordinator.id if coordinator else None,
            individual_name=PERSONAL_NAME,
            personal_identity_number=PERSONAL_NUMBER,
            case_notes=f"Diagnos: {DIAGNOSIS}",
            status=status,
            identified_on=identified_on,
            offered_on=identified_on if status != CaseStatus.IDENTIFIED else None,
            activated_on=consent_given_on if status in (CaseStatus.ACTIVE, CaseStatus.CLOSED) else None,
            consent_given_on=consent_given_on,
            consent_withdrawn_on=consent_withdrawn_on,
            closed_on=closed_on,
            follow_up_due=follow_up_due,
            origin=origin,
            discharged_on=discharged_on,
            under_18=under_18,
        )
        self.session.add(c)
        self.session.flush()
        for p in {convener.id: convener, **{p.id: p for p in participants}}.values():
            self.session.add(Participant(case_id=c.id, contact_id=p.id))
        self.session.flush()
        return c

    def meeting(
        self,
        case: SipCase,
        on: date,
        at: str = "09:00",
        kind: MeetingKind = MeetingKind.SIP_MEETING,
        status: MeetingStatus = MeetingStatus.SCHEDULED,
        minutes: int = 90,
        documented_at: datetime | None = None,
        place: str | None = "Köpings vårdcentral, rum 3",
        digital_link: str | None = None,
        purpose: str | None = "Samordna insatser inför skolstart",
    ) -> Meeting:
        code = self._next("M")
        start = local(on, at)
        m = Meeting(
            code=code,
            case_id=case.id,
            kind=kind,
            starts_at=start,
            ends_at=start + timedelta(minutes=minutes),
            status=status,
            documented_at=documented_at,
            place=place,
            digital_link=digital_link,
            purpose=purpose,
            ical_uid=f"{code.lower()}-{case.reference.lower()}@sipflows.test",
        )
        self.session.add(m)
        self.session.flush()
        return m

    def invite(
        self,
        meeting: Meeting,
        contact: Contact,
        sent_on: date | None = None,
        answer: Answer = Answer.NONE,
        required: bool = True,
        answered_on: date | None = None,
        attended: bool | None = None,
    ) -> Invitation:
        inv = Invitation(
            meeting_id=meeting.id,
            contact_id=contact.id,
            required=required,
            sent_at=local(sent_on, "10:00") if sent_on else None,
            answer=answer,
            answered_at=local(answered_on, "11:00") if answered_on else None,
            attended=attended,
        )
        self.session.add(inv)
        self.session.flush()
        return inv

    def deviation(
        self,
        case: SipCase,
        reported_by: Contact,
        concerning: Organisation,
        reported_on: date,
        kind: DeviationKind = DeviationKind.PARTY_ABSENT,
        severity: Severity = Severity.NORMAL,
        acknowledged_on: date | None = None,
        replied_on: date | None = None,
        resolved_on: date | None = None,
    ) -> Deviation:
        d = Deviation(
            code=self._next("AVV-"),
            case_id=case.id,
            reported_by_contact_id=reported_by.id,
            concerning_org_id=concerning.id,
            kind=kind,
            severity=severity,
            description=DEVIATION_TEXT,
            reported_at=local(reported_on, "13:00"),
            acknowledged_at=local(acknowledged_on, "13:00") if acknowledged_on else None,
            replied_at=local(replied_on, "13:00") if replied_on else None,
            resolved_at=local(resolved_on, "13:00") if resolved_on else None,
        )
        self.session.add(d)
        self.session.flush()
        return d

    def standard_region(self) -> dict[str, object]:
        """A kommun unit, a region unit, Försäkringskassan and a school with contacts and escalations."""
        kommun = self.org(
            "KOP-IFO", OrgKind.MUNICIPAL_UNIT, Principal.KOMMUN, "Köping individ- och familjeomsorg"
        )
        region = self.org("RV-VC-KOP", OrgKind.REGION_UNIT, Principal.REGION, "Vårdcentralen Köping")
        fk = self.org("FK", OrgKind.FORSAKRINGSKASSAN, None, "Försäkringskassan")
        school = self.org("KOP-SKOLA", OrgKind.SCHOOL, Principal.KOMMUN, "Karlbergsskolan")
        k_chief = self.contact(kommun, "Enhetschef IFO")
        r_chief = self.contact(region, "Verksamhetschef VC")
        kommun.escalation_contact_id = k_chief.id
        region.escalation_contact_id = r_chief.id
        k = self.contact(kommun, "Socialsekreterare Sara", escalation=k_chief)
        r = self.contact(region, "Distriktssköterska Rolf", escalation=r_chief, language=Language.EN)
        f = self.contact(fk, "Försäkringskassan SIP", kind=ContactKind.FUNCTIONAL)
        s = self.contact(school, "Kurator Sven")
        self.session.flush()
        return {
            "kommun": kommun,
            "region": region,
            "fk": fk,
            "school": school,
            "k": k,
            "r": r,
            "f": f,
            "s": s,
            "k_chief": k_chief,
            "r_chief": r_chief,
        }

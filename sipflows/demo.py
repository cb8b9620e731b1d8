"""A demo region: Västra Mälardalen (Köping, Arboga, Kungsör) with Region Västmanland and the agencies.

Every date is laid out relative to the judged day, so that on that day every check finds something, at
several stages of its ladder, and several plans have nothing due. Where a stage depends on the working-day
calendar (holidays, an organisation's own closed day) the demo searches the base date with the same
calendar and ladder the checks use, so the scenario holds on any working day, not only ``DEMO_DATE``.

The rows go through the CSV importer (``sipflows.importer.import_table``), so the demo is deterministic
and idempotent: a second run with the same date changes nothing; a run with another date moves the
timeline. Individuals are obviously fake ("Testperson 7", Skatteverket's test number 19121212-1212) and
every address is under example.se.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sipflows.checks import first_meeting
from sipflows.checks.base import ladder_stage
from sipflows.importer import KINDS, FileResult, import_table, table_from_rows
from sipflows.models import ClosedDay, Organisation, Severity
from sipflows.policy import EffectivePolicy, Policy, default_policy
from sipflows.timeutil import from_local
from sipflows.workdays import WorkCalendar

# A Tuesday in late November 2026, no holiday near it: every check fires on it.
DEMO_DATE = date(2026, 11, 24)

TEST_PERSONAL_NUMBER = "19121212-1212"  # Skatteverket's well-known test number (Tolvan Tolvansson)

Row = dict[str, str]


@dataclass(frozen=True)
class Expectation:
    """A finding the demo is built to produce on its date."""

    case_reference: str
    check: str
    stage: str
    what: str


@dataclass
class DemoSummary:
    today: date
    files: list[FileResult]
    expected: list[Expectation]
    quiet_cases: list[str]
    skipped: list[str] = field(default_factory=list)
    private_values: tuple[str, ...] = field(repr=False, default=())

    def lines(self) -> list[str]:
        out = [f"Demo region Västra Mälardalen, judged on {self.today.isoformat()}"]
        for f in self.files:
            counts = f"{f.inserted} new, {f.updated} updated, {f.unchanged} unchanged"
            out.append(f"  {f.kind:<14} {f.rows:>3} rows: {counts}")
        out.append("Due on that day:")
        for e in self.expected:
            out.append(f"  {e.case_reference:<13} {e.check}/{e.stage}: {e.what}")
        out.append("Nothing due: " + ", ".join(self.quiet_cases))
        if self.skipped:
            out.append("Not laid out (the date gives no base day for them): " + ", ".join(self.skipped))
        return out


ORGANISATIONS: list[Row] = [
    {
        "code": "KOP-IFO",
        "name": "Köpings kommun, individ- och familjeomsorgen",
        "kind": "municipal_unit",
        "principal": "kommun",
    },
    {
        "code": "KOP-VOO",
        "name": "Köpings kommun, vård och omsorg",
        "kind": "municipal_unit",
        "principal": "kommun",
    },
    {
        "code": "KOP-LSS",
        "name": "Köpings kommun, LSS-handläggningen",
        "kind": "municipal_unit",
        "principal": "kommun",
    },
    {
        "code": "KOP-ELEVHALSA",
        "name": "Köpings kommun, elevhälsan (Demoskolan)",
        "kind": "school",
        "principal": "kommun",
    },
    {
        "code": "ARB-IFO",
        "name": "Arboga kommun, socialtjänsten",
        "kind": "municipal_unit",
        "principal": "kommun",
    },
    {
        "code": "ARB-VOO",
        "name": "Arboga kommun, vård och omsorg",
        "kind": "municipal_unit",
        "principal": "kommun",
    },
    {
        "code": "KUN-IFO",
        "name": "Kungsörs kommun, individ- och familjeomsorgen",
        "kind": "municipal_unit",
        "principal": "kommun",
    },
    {"code": "KUN-LSS", "name": "Kungsörs kommun, LSS", "kind": "municipal_unit", "principal": "kommun"},
    {
        "code": "RV-VC-KOP",
        "name": "Region Västmanland, Vårdcentralen Köping",
        "kind": "region_unit",
        "principal": "region",
    },
    {
        "code": "RV-BUP-VAS",
        "name": "Region Västmanland, BUP Västerås",
        "kind": "region_unit",
        "principal": "region",
    },
    {
        "code": "RV-VUP-KOP",
        "name": "Region Västmanland, vuxenpsykiatrin Köping",
        "kind": "region_unit",
        "principal": "region",
    },
    {
        "code": "RV-HAB",
        "name": "Region Västmanland, habiliteringen",
        "kind": "region_unit",
        "principal": "region",
    },
    {"code": "FK", "name": "Försäkringskassan", "kind": "forsakringskassan", "principal": ""},
    {"code": "AF", "name": "Arbetsförmedlingen", "kind": "arbetsformedlingen", "principal": ""},
    {
        "code": "BRUK",
        "name": "Brukarföreningen Västra Mälardalen (demo)",
        "kind": "user_organisation",
        "principal": "",
    },
]

_DOMAINS = {
    "KOP": "koping.example.se",
    "ARB": "arboga.example.se",
    "KUN": "kungsor.example.se",
    "RV": "regionvastmanland.example.se",
    "FK": "forsakringskassan.example.se",
    "AF": "arbetsformedlingen.example.se",
    "BRUK": "brukarforeningen.example.se",
}


def _contact(
    code: str,
    org: str,
    name: str,
    mailbox: str,
    *,
    escalation: str = "",
    chief: bool = False,
    functional: bool = False,
    language: str = "sv",
    report: bool = False,
) -> Row:
    return {
        "code": code,
        "organisation": org,
        "name": name,
        "email": f"{mailbox}@{_DOMAINS[org.split('-')[0]]}",
        "kind": "functional" if functional else "person",
        "language": language,
        "escalation_contact": escalation,
        "escalation_for_organisation": "yes" if chief else "no",
        "report_recipient": "yes" if report else "no",
    }


CONTACTS: list[Row] = [
    _contact("KOP-IFO-CHEF", "KOP-IFO", "Maria Holm, enhetschef IFO", "maria.holm", chief=True, report=True),
    _contact(
        "KOP-IFO-SARA", "KOP-IFO", "Sara Lind, socialsekreterare", "sara.lind", escalation="KOP-IFO-CHEF"
    ),
    # no personal escalation contact: escalations go to the organisation's
    _contact("KOP-IFO-ERIK", "KOP-IFO", "Erik Nyström, socialsekreterare", "erik.nystrom"),
    _contact(
        "KOP-SIP",
        "KOP-IFO",
        "Lena Forsberg, SIP-samordnare Västra Mälardalen",
        "lena.forsberg",
        escalation="KOP-IFO-CHEF",
        report=True,
    ),
    _contact("KOP-VOO-CHEF", "KOP-VOO", "Per Strand, enhetschef vård och omsorg", "per.strand", chief=True),
    _contact(
        "KOP-VOO-ANNA",
        "KOP-VOO",
        "Anna Svensson, biståndshandläggare",
        "anna.svensson",
        escalation="KOP-VOO-CHEF",
    ),
    _contact("KOP-LSS-CHEF", "KOP-LSS", "Ingrid Sand, enhetschef LSS", "ingrid.sand", chief=True),
    _contact(
        "KOP-LSS-JOHAN", "KOP-LSS", "Johan Berg, LSS-handläggare", "johan.berg", escalation="KOP-LSS-CHEF"
    ),
    _contact("KOP-EH-REKTOR", "KOP-ELEVHALSA", "Rektor, Demoskolan", "rektor.demoskolan", chief=True),
    _contact(
        "KOP-EH-KURATOR", "KOP-ELEVHALSA", "Karin Ek, skolkurator", "karin.ek", escalation="KOP-EH-REKTOR"
    ),
    _contact("ARB-IFO-CHEF", "ARB-IFO", "Göran Vik, enhetschef socialtjänsten", "goran.vik", chief=True),
    _contact(
        "ARB-IFO-MIKAEL",
        "ARB-IFO",
        "Mikael Larsson, socialsekreterare",
        "mikael.larsson",
        escalation="ARB-IFO-CHEF",
    ),
    _contact(
        "ARB-IFO-LINNEA",
        "ARB-IFO",
        "Linnéa Åberg, familjebehandlare",
        "linnea.aberg",
        escalation="ARB-IFO-CHEF",
    ),
    _contact("ARB-VOO-CHEF", "ARB-VOO", "Birgitta Ros, enhetschef", "birgitta.ros", chief=True),
    _contact(
        "ARB-VOO-HANNA",
        "ARB-VOO",
        "Hanna Öberg, biståndshandläggare",
        "hanna.oberg",
        escalation="ARB-VOO-CHEF",
    ),
    _contact("KUN-IFO-CHEF", "KUN-IFO", "Stefan Ljung, enhetschef IFO", "stefan.ljung", chief=True),
    _contact(
        "KUN-IFO-PETRA", "KUN-IFO", "Petra Dahl, socialsekreterare", "petra.dahl", escalation="KUN-IFO-CHEF"
    ),
    _contact("KUN-LSS-CHEF", "KUN-LSS", "Camilla Berg, enhetschef LSS", "camilla.berg", chief=True),
    _contact("KUN-LSS-OLLE", "KUN-LSS", "Olle Nord, LSS-handläggare", "olle.nord", escalation="KUN-LSS-CHEF"),
    _contact(
        "RV-VC-KOP-CHEF", "RV-VC-KOP", "Verksamhetschef, Vårdcentralen Köping", "vc.koping.chef", chief=True
    ),
    _contact(
        "RV-VC-KOP-EVA",
        "RV-VC-KOP",
        "Eva Karlsson, distriktssköterska",
        "eva.karlsson",
        escalation="RV-VC-KOP-CHEF",
    ),
    _contact(
        "RV-VC-KOP-SIP",
        "RV-VC-KOP",
        "SIP-funktionen, Vårdcentralen Köping",
        "sip.vckoping",
        functional=True,
        escalation="RV-VC-KOP-CHEF",
    ),
    _contact(
        "RV-SIPUTV", "RV-VC-KOP", "Jenny Falk, SIP-utvecklare Region Västmanland", "jenny.falk", report=True
    ),
    _contact("RV-BUP-CHEF", "RV-BUP-VAS", "Verksamhetschef, BUP Västerås", "bup.chef", chief=True),
    _contact(
        "RV-BUP-ALEX",
        "RV-BUP-VAS",
        "Alex Morgan, psychologist",
        "alex.morgan",
        language="en",
        escalation="RV-BUP-CHEF",
    ),
    _contact("RV-BUP-SOFIA", "RV-BUP-VAS", "Sofia Lund, kurator", "sofia.lund", escalation="RV-BUP-CHEF"),
    _contact("RV-VUP-CHEF", "RV-VUP-KOP", "Verksamhetschef, vuxenpsykiatrin Köping", "vup.chef", chief=True),
    _contact(
        "RV-VUP-NILS", "RV-VUP-KOP", "Nils Ahmadi, specialistläkare", "nils.ahmadi", escalation="RV-VUP-CHEF"
    ),
    _contact("RV-HAB-CHEF", "RV-HAB", "Verksamhetschef, habiliteringen", "hab.chef", chief=True),
    _contact(
        "RV-HAB-TOVE", "RV-HAB", "Tove Sjöberg, arbetsterapeut", "tove.sjoberg", escalation="RV-HAB-CHEF"
    ),
    _contact(
        "FK-SAMVERKAN",
        "FK",
        "Samverkansansvarig, Försäkringskassan",
        "samverkan.vastmanland",
        functional=True,
        chief=True,
    ),
    _contact("FK-SIP", "FK", "Försäkringskassan, SIP Västmanland", "sip.vastmanland", functional=True),
    _contact(
        "AF-SAMVERKAN",
        "AF",
        "Samverkansansvarig, Arbetsförmedlingen",
        "samverkan.malardalen",
        functional=True,
        chief=True,
    ),
    _contact("AF-SIP", "AF", "Arbetsförmedlingen, SIP Västra Mälardalen", "sip.malardalen", functional=True),
    _contact("BRUK-KONTAKT", "BRUK", "Kontaktperson, Brukarföreningen", "kontakt"),
]


_ORG_OF = {c["code"]: c["organisation"] for c in CONTACTS}


class _Timeline:
    """Dates relative to the judged day, on the calendar and policy of the deciding organisation."""

    def __init__(self, today: date, calendars: dict[str, WorkCalendar], policy: EffectivePolicy) -> None:
        self.today = today
        self.calendars = calendars
        self.policy = policy

    def cal(self, org: str) -> WorkCalendar:
        return self.calendars.get(org) or WorkCalendar()

    def pol(self, org: str) -> Policy:
        return self.policy.for_organisation(org)

    def wd(self, n: int, org: str = "") -> date:
        return self.cal(org).add_working_days(self.today, n)

    def search(
        self, org: str, wanted: str, stage_of: Callable[[date], str | None], start: date
    ) -> date | None:
        """The latest day on or before ``start`` whose stage on the judged day is ``wanted``: a working day
        if there is one (people mostly work then), else any day (a deviation can be reported on Easter
        Sunday)."""
        cal = self.cal(org)
        for working_only in (True, False):
            day = start
            for _ in range(400):
                if (cal.is_working_day(day) or not working_only) and stage_of(day) == wanted:
                    return day
                day -= timedelta(days=1)
        return None

    def documentation_meeting_day(self, org: str, stage: str) -> date | None:
        doc = self.pol(org).documentation
        steps = [("reminder", 0), ("overdue", 1), ("escalation-1", doc.escalation_after_working_days)]
        cal = self.cal(org)

        def stage_of(day: date) -> str | None:
            return ladder_stage(cal, cal.add_working_days(day, doc.due_working_days), self.today, steps)

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))

    def unconfirmed_meeting_day(self, org: str, stage: str) -> date | None:
        held = self.pol(org).meeting_held
        steps = [("reminder", 0), ("escalation-1", held.escalation_after_working_days)]
        cal = self.cal(org)

        def stage_of(day: date) -> str | None:
            return ladder_stage(
                cal, cal.add_working_days(day, held.ask_after_working_days), self.today, steps
            )

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))

    def follow_up_due(self, org: str, stage: str) -> date | None:
        fu = self.pol(org).follow_up
        steps = [
            ("reminder", -fu.reminder_before_working_days),
            ("overdue", fu.overdue_after_working_days),
            ("escalation-1", fu.overdue_after_working_days + fu.escalation_after_working_days),
        ]
        cal = self.cal(org)

        def stage_of(day: date) -> str | None:
            return ladder_stage(cal, day, self.today, steps)

        return self.search(org, stage, stage_of, self.wd(fu.reminder_before_working_days + 20, org))

    def deviation_reported_day(self, org: str, severity: Severity, ladder: str, stage: str) -> date | None:
        dev = self.pol(org).deviations
        steps = [(f"{ladder}-reminder", 1)]
        for i in range(1, dev.max_escalations + 1):
            offset = (
                1 + dev.escalation_after_working_days + (i - 1) * dev.repeat_escalation_every_working_days
            )
            steps.append((f"{ladder}-escalation-{i}", offset))
        cal = self.cal(org)

        def due(day: date) -> date:
            if ladder == "acknowledgement":
                return cal.add_working_days(day, dev.acknowledgement_for(severity))
            return cal.next_working_day(day + timedelta(days=dev.reply_for(severity)))

        def stage_of(day: date) -> str | None:
            return ladder_stage(cal, due(day), self.today, steps)

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))

    def first_meeting_base_day(self, org: str, kind: str, stage: str) -> date | None:
        """The identified day (or, for a discharge, the discharge date) whose first-meeting stage on the
        judged day is ``stage``."""
        policy, cal = self.pol(org).first_meeting, self.cal(org)

        def stage_of(day: date) -> str | None:
            return first_meeting.stage_on(cal, policy, kind, day, self.today)[1]

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))


def _follow_up(status: str, given: date | None, today: date) -> str:
    if given is not None:
        return given.isoformat()
    # an active plan has its next follow-up set, half a year ahead unless the scenario says otherwise
    return (today + timedelta(days=180)).isoformat() if status == "active" else ""


def _at(day: date, hhmm: str) -> str:
    return f"{day.isoformat()} {hhmm}"


def _end(day: date, hhmm: str, minutes: int) -> str:
    start = datetime.combine(day, time.fromisoformat(hhmm))
    return (start + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M")


class _Builder:
    """Collects the demo's rows; each plan is a few calls."""

    def __init__(self, t: _Timeline) -> None:
        self.t = t
        self.rows: dict[str, list[Row]] = {kind: [] for kind in KINDS}
        self.expected: list[Expectation] = []
        self.quiet: list[str] = []
        self.skipped: list[str] = []
        self._n = 0

    def case(
        self,
        ref: str,
        convener: str,
        participants: list[str],
        *,
        status: str = "active",
        coordinator: str = "",
        identified: date | None = None,
        follow_up_due: date | None = None,
        consent_withdrawn: date | None = None,
        closed: date | None = None,
        closure_reason: str = "",
        discharged: date | None = None,
        under_18: bool = False,
    ) -> None:
        self._n += 1
        identified = identified or self.t.today - timedelta(days=240)
        consented = identified + timedelta(days=10)
        self.rows["cases"].append(
            {
                "reference": ref,
                "convener_contact": convener,
                "coordinator": coordinator,
                "individual_name": f"Testperson {self._n}",
                "personal_identity_number": TEST_PERSONAL_NUMBER,
                "case_notes": f"Demoanteckning {self._n}: påhittad diagnos Z99.{self._n} (finns inte)",
                "status": status,
                "identified_on": identified.isoformat(),
                "offered_on": (identified + timedelta(days=3)).isoformat() if status != "identified" else "",
                "activated_on": consented.isoformat() if status in ("active", "closed") else "",
                "consent_given_on": consented.isoformat() if status in ("active", "closed") else "",
                "consent_withdrawn_on": consent_withdrawn.isoformat() if consent_withdrawn else "",
                "closed_on": closed.isoformat() if closed else "",
                "closure_reason": closure_reason,
                "follow_up_due": _follow_up(status, follow_up_due, self.t.today),
                "origin": "discharge" if discharged else "ordinary",
                "discharged_on": discharged.isoformat() if discharged else "",
                "under_18": "yes" if under_18 else "no",
            }
        )
        for i, contact in enumerate(
            dict.fromkeys([convener, *participants, *([coordinator] if coordinator else [])])
        ):
            role = "sammankallande" if i == 0 else "samordnare" if contact == coordinator else "deltagare"
            self.rows["participants"].append({"case": ref, "contact": contact, "role": role})

    def meeting(
        self,
        code: str,
        ref: str,
        kind: str,
        day: date,
        hhmm: str = "09:00",
        *,
        status: str = "scheduled",
        documented: bool = False,
        digital: bool = False,
        place: str = "Samtalsrum 2, Köpings vårdcentral (demo)",
    ) -> None:
        purpose = {
            "pre_meeting": "Förmöte: syfte, frågor och vilka som ska bjudas in",
            "sip_meeting": "Samordna insatserna i planen",
            "follow_up": "Följa upp planens insatser och mål",
        }[kind]
        self.rows["meetings"].append(
            {
                "code": code,
                "case": ref,
                "kind": kind,
                "starts_at": _at(day, hhmm),
                "ends_at": _end(day, hhmm, 90 if kind != "pre_meeting" else 45),
                "place": "" if digital else place,
                "digital_link": f"https://meet.example.se/{code.lower()}" if digital else "",
                "purpose": purpose,
                "status": status,
                "documented_at": _at(day + timedelta(days=1), "15:00") if documented else "",
            }
        )

    def past_sip_meeting(self, ref: str, invitees: list[str], days_ago: int = 150) -> None:
        """The plan's first SIP meeting, held and documented on time, everyone came."""
        day = self.t.cal("").next_working_day(self.t.today - timedelta(days=days_ago))
        code = f"{ref}-M1"
        self.meeting(code, ref, "sip_meeting", day, status="held", documented=True)
        for contact in invitees:
            self.invite(
                code, contact, day - timedelta(days=14), "accepted", day - timedelta(days=12), attended=True
            )

    def invite(
        self,
        meeting: str,
        contact: str,
        sent: date | None,
        answer: str = "none",
        answered: date | None = None,
        *,
        required: bool = True,
        attended: bool | None = None,
    ) -> None:
        self.rows["invitations"].append(
            {
                "meeting": meeting,
                "contact": contact,
                "required": "yes" if required else "no",
                "sent_at": _at(sent, "10:00") if sent else "",
                "answer": answer,
                "answered_at": _at(answered, "11:30") if answered else "",
                "attended": "" if attended is None else ("yes" if attended else "no"),
            }
        )

    def deviation(
        self,
        code: str,
        ref: str,
        reported_by: str,
        concerning: str,
        kind: str,
        reported: date,
        *,
        severity: str = "normal",
        acknowledged: bool = False,
        replied: bool = False,
        resolved: bool = False,
    ) -> None:
        self.rows["deviations"].append(
            {
                "code": code,
                "case": ref,
                "reported_by": reported_by,
                "concerning_organisation": concerning,
                "kind": kind,
                "severity": severity,
                "description": f"Demotext för {code}: fritext som aldrig får lämna registret",
                "reported_at": _at(reported, "13:00"),
                "acknowledged_at": _at(reported + timedelta(days=1), "09:00") if acknowledged else "",
                "replied_at": _at(reported + timedelta(days=7), "09:00") if replied else "",
                "resolved_at": _at(reported + timedelta(days=8), "09:00") if resolved else "",
            }
        )

    def expect(self, ref: str, check: str, stage: str, what: str) -> None:
        self.expected.append(Expectation(ref, check, stage, what))


def _plans(b: _Builder) -> None:
    """The plans, read top to bottom: what each is built to show is in its comment."""
    t = b.t

    # -- documentation: reminder, overdue, escalation (Kungsör has its own closed day) -------------------
    for ref, convener, others, coordinator, stage in (
        ("SIP-DEMO-001", "KOP-IFO-SARA", ["RV-VC-KOP-EVA", "FK-SIP"], "", "reminder"),
        ("SIP-DEMO-002", "RV-VUP-NILS", ["ARB-IFO-MIKAEL"], "KOP-SIP", "overdue"),
        ("SIP-DEMO-003", "KUN-IFO-PETRA", ["RV-VUP-NILS", "KUN-LSS-OLLE"], "", "escalation-1"),
    ):
        org = _ORG_OF[convener]
        day = t.documentation_meeting_day(org, stage)
        if day is None:
            b.skipped.append(f"{ref} documentation/{stage}")
            continue
        b.case(ref, convener, others, coordinator=coordinator)
        if ref == "SIP-DEMO-003":
            b.past_sip_meeting(ref, others)
            code, kind = f"{ref}-U1", "follow_up"
        else:
            code, kind = f"{ref}-M1", "sip_meeting"
            b.meeting(f"{ref}-F1", ref, "pre_meeting", day - timedelta(days=7), status="held")
        b.meeting(code, ref, kind, day, status="held")
        for contact in others:
            b.invite(
                code, contact, day - timedelta(days=10), "accepted", day - timedelta(days=9), attended=True
            )
        b.expect(ref, "documentation", stage, f"{kind} held {day} not documented")

    # -- invitations: unanswered invitations (reminders) -------------------------------------------------
    ref = "SIP-DEMO-004"
    b.case(ref, "KOP-LSS-JOHAN", ["RV-HAB-TOVE", "FK-SIP", "BRUK-KONTAKT"])
    b.meeting(f"{ref}-F1", ref, "pre_meeting", t.wd(-6), status="held")
    meeting_day = t.wd(8)
    sent = t.wd(-(t.pol("KOP-LSS").invitations.reminder_after_working_days + 1), "KOP-LSS")
    b.meeting(f"{ref}-M1", ref, "sip_meeting", meeting_day, "13:00")
    b.invite(f"{ref}-M1", "RV-HAB-TOVE", sent)
    b.invite(f"{ref}-M1", "FK-SIP", sent)
    b.invite(f"{ref}-M1", "BRUK-KONTAKT", sent, "accepted", sent + timedelta(days=1), required=False)
    b.expect(ref, "invitations", "reminder", f"RV-HAB-TOVE has not answered the invitation sent {sent}")
    b.expect(ref, "invitations", "reminder", f"FK-SIP has not answered the invitation sent {sent}")

    # -- convener alert (a decline, an unanswered required invitation, no kommun acceptance) + no pre-meeting
    ref = "SIP-DEMO-005"
    b.case(ref, "RV-BUP-ALEX", ["RV-BUP-SOFIA", "KOP-IFO-ERIK", "KOP-EH-KURATOR"])
    day = t.wd(1)
    sent = t.wd(-2)
    b.meeting(f"{ref}-M1", ref, "sip_meeting", day, "14:00", digital=True)
    b.invite(f"{ref}-M1", "RV-BUP-SOFIA", sent, "accepted", sent)
    b.invite(f"{ref}-M1", "KOP-IFO-ERIK", sent, "declined", sent + timedelta(days=1))
    b.invite(f"{ref}-M1", "KOP-EH-KURATOR", sent)
    b.expect(ref, "invitations", "convener-alert", f"SIP meeting {day}: 1 declined, 1 unanswered, no kommun")
    b.expect(ref, "pre_meeting", "alert", f"SIP meeting {day} without a held pre-meeting (English convener)")

    # -- convener alert: every answer in, but the region has not accepted (a follow-up meeting) ----------
    ref = "SIP-DEMO-006"
    day = t.wd(1)
    b.case(ref, "ARB-IFO-LINNEA", ["ARB-IFO-MIKAEL", "FK-SIP", "RV-VC-KOP-SIP"], follow_up_due=day)
    b.past_sip_meeting(ref, ["ARB-IFO-MIKAEL", "FK-SIP", "RV-VC-KOP-SIP"])
    sent = t.wd(-6)
    b.meeting(f"{ref}-U1", ref, "follow_up", day, "10:00")
    b.invite(f"{ref}-U1", "ARB-IFO-MIKAEL", sent, "accepted", sent + timedelta(days=1))
    b.invite(f"{ref}-U1", "FK-SIP", sent, "accepted", sent + timedelta(days=2))
    b.invite(f"{ref}-U1", "RV-VC-KOP-SIP", sent, "tentative", sent + timedelta(days=2))
    b.expect(ref, "invitations", "convener-alert", f"follow-up {day}: no region participant has accepted")

    # -- pre-meeting alert only ----------------------------------------------------------------------------
    ref = "SIP-DEMO-007"
    b.case(ref, "KOP-VOO-ANNA", ["RV-VC-KOP-EVA", "KOP-IFO-SARA"])
    day = t.wd(4)
    sent = t.wd(-5)
    b.meeting(f"{ref}-M1", ref, "sip_meeting", day, "09:30")
    b.invite(f"{ref}-M1", "RV-VC-KOP-EVA", sent, "accepted", sent + timedelta(days=1))
    b.invite(f"{ref}-M1", "KOP-IFO-SARA", sent, "accepted", sent + timedelta(days=1))
    b.expect(ref, "pre_meeting", "alert", f"SIP meeting {day} without a held pre-meeting")

    # -- follow-up: reminder, overdue, escalation ------------------------------------------------------------
    for ref, convener, others, coordinator, stage in (
        ("SIP-DEMO-008", "KOP-IFO-ERIK", ["RV-VUP-NILS", "AF-SIP"], "", "reminder"),
        ("SIP-DEMO-009", "RV-VC-KOP-EVA", ["KOP-VOO-ANNA"], "KOP-SIP", "overdue"),
        ("SIP-DEMO-010", "ARB-VOO-HANNA", ["RV-VC-KOP-SIP"], "", "escalation-1"),
    ):
        org = _ORG_OF[convener]
        due = t.follow_up_due(org, stage)
        if due is None:
            b.skipped.append(f"{ref} follow_up/{stage}")
            continue
        b.case(ref, convener, others, coordinator=coordinator, follow_up_due=due)
        b.past_sip_meeting(ref, others)
        b.expect(ref, "follow_up", f"{stage}@{due.isoformat()}", f"follow-up due {due}, none booked")

    # -- deviations: acknowledgement reminder and repeated escalation --------------------------------------
    ref = "SIP-DEMO-011"
    b.case(ref, "KOP-IFO-SARA", ["RV-VUP-NILS", "AF-SIP"])
    b.past_sip_meeting(ref, ["RV-VUP-NILS", "AF-SIP"])
    for code, concerning, kind, stage in (
        ("AVV-DEMO-01", "RV-VUP-KOP", "party_absent", "acknowledgement-reminder"),
        ("AVV-DEMO-02", "AF", "plan_not_followed", "acknowledgement-escalation-2"),
    ):
        day = t.deviation_reported_day(concerning, Severity.NORMAL, "acknowledgement", stage)
        if day is None:
            b.skipped.append(f"{code} deviations/{stage}")
            continue
        b.deviation(code, ref, "KOP-IFO-SARA", concerning, kind, day)
        b.expect(ref, "deviations", stage, f"{code} ({kind}, normal) reported {day}, not acknowledged")

    # -- a high-severity deviation to Kungsör (own closed day) not acknowledged ------------------------------
    ref = "SIP-DEMO-012"
    b.case(ref, "RV-HAB-TOVE", ["KUN-LSS-OLLE", "KUN-IFO-PETRA"])
    b.past_sip_meeting(ref, ["KUN-LSS-OLLE", "KUN-IFO-PETRA"])
    stage = "acknowledgement-escalation-1"
    day = t.deviation_reported_day("KUN-IFO", Severity.HIGH, "acknowledgement", stage)
    if day is None:
        b.skipped.append(f"AVV-DEMO-03 deviations/{stage}")
    else:
        b.deviation("AVV-DEMO-03", ref, "RV-HAB-TOVE", "KUN-IFO", "party_absent", day, severity="high")
        b.expect(
            ref, "deviations", stage, f"AVV-DEMO-03 (party_absent, high) reported {day}, not acknowledged"
        )

    # -- deviations acknowledged but never answered with measures ------------------------------------------
    ref = "SIP-DEMO-013"
    b.case(
        ref,
        "RV-BUP-SOFIA",
        ["FK-SIP", "KOP-EH-KURATOR", "RV-VC-KOP-EVA"],
        identified=t.today - timedelta(days=300),
    )
    b.past_sip_meeting(ref, ["FK-SIP", "KOP-EH-KURATOR", "RV-VC-KOP-EVA"], days_ago=200)
    for code, reporter, concerning, kind, severity, stage in (
        ("AVV-DEMO-04", "RV-BUP-SOFIA", "FK", "other", Severity.NORMAL, "reply-reminder"),
        (
            "AVV-DEMO-05",
            "KOP-EH-KURATOR",
            "RV-VC-KOP",
            "plan_not_followed",
            Severity.HIGH,
            "reply-escalation-1",
        ),
    ):
        day = t.deviation_reported_day(concerning, severity, "reply", stage)
        if day is None:
            b.skipped.append(f"{code} deviations/{stage}")
            continue
        b.deviation(code, ref, reporter, concerning, kind, day, severity=severity.value, acknowledged=True)
        b.expect(ref, "deviations", stage, f"{code} ({kind}, {severity.value}) reported {day}, no reply")

    # -- meetings whose day has passed but nobody marked them held: the convener is asked, then escalated ----
    for ref, convener, others, coordinator, kind, stage in (
        ("SIP-DEMO-020", "KOP-LSS-JOHAN", ["RV-HAB-TOVE", "FK-SIP"], "", "sip_meeting", "reminder"),
        ("SIP-DEMO-021", "RV-VUP-NILS", ["KOP-IFO-ERIK"], "KOP-SIP", "follow_up", "escalation-1"),
    ):
        org = _ORG_OF[convener]
        day = t.unconfirmed_meeting_day(org, stage)
        if day is None:
            b.skipped.append(f"{ref} meeting_held/{stage}")
            continue
        b.case(ref, convener, others, coordinator=coordinator)
        if kind == "follow_up":
            b.past_sip_meeting(ref, others)
            code = f"{ref}-U1"
        else:
            b.meeting(f"{ref}-F1", ref, "pre_meeting", day - timedelta(days=7), status="held")
            code = f"{ref}-M1"
        b.meeting(code, ref, kind, day, "10:00")
        for contact in others:
            b.invite(code, contact, day - timedelta(days=10), "accepted", day - timedelta(days=9))
        b.expect(ref, "meeting_held", stage, f"{kind} on {day} still scheduled: held, moved or cancelled?")

    # -- consent given, the first SIP meeting never called: a plan identified weeks ago (escalated to the
    # convener's manager) and one from discharge a few days ago (the law's three days: the reminder) --------
    for ref, convener, others, coordinator, kind, stage in (
        ("SIP-DEMO-023", "KOP-IFO-ERIK", ["RV-VC-KOP-EVA", "FK-SIP"], "KOP-SIP", "ordinary", "escalation-1"),
        ("SIP-DEMO-024", "RV-VC-KOP-EVA", ["KOP-VOO-ANNA"], "", "discharge", "reminder"),
    ):
        org = _ORG_OF[convener]
        day = t.first_meeting_base_day(org, kind, stage)
        if day is None:
            b.skipped.append(f"{ref} first_meeting/{stage}")
            continue
        if kind == "discharge":
            # the need was seen on the ward twelve days before the discharge, consent given there
            b.case(
                ref,
                convener,
                others,
                coordinator=coordinator,
                identified=day - timedelta(days=12),
                discharged=day,
            )
            due = first_meeting.due_day(t.cal(org), t.pol(org).first_meeting, kind, day)
            what = f"discharged {day}, the first SIP meeting should have been called by {due}"
        else:
            b.case(ref, convener, others, coordinator=coordinator, identified=day)
            due = first_meeting.due_day(t.cal(org), t.pol(org).first_meeting, kind, day)
            what = f"identified {day}, the first SIP meeting should have been called by {due}"
        b.expect(ref, "first_meeting", f"{stage}@{due.isoformat()}", what)

    # -- plans where nothing is due -------------------------------------------------------------------------
    ref = "SIP-DEMO-014"  # everything in order: follow-up booked and accepted, the deviation resolved
    follow_up = t.wd(8)
    b.case(ref, "KUN-LSS-OLLE", ["RV-HAB-TOVE", "BRUK-KONTAKT", "FK-SIP"], follow_up_due=follow_up)
    b.past_sip_meeting(ref, ["RV-HAB-TOVE", "BRUK-KONTAKT", "FK-SIP"])
    b.meeting(f"{ref}-U1", ref, "follow_up", follow_up, "13:00", digital=True)
    sent = t.wd(-1)
    for contact in ("RV-HAB-TOVE", "BRUK-KONTAKT", "FK-SIP"):
        b.invite(f"{ref}-U1", contact, sent, "accepted", t.today)
    b.deviation(
        "AVV-DEMO-06",
        ref,
        "KUN-LSS-OLLE",
        "FK",
        "party_absent",
        t.wd(-40),
        acknowledged=True,
        replied=True,
        resolved=True,
    )
    b.quiet.append(ref)

    ref = "SIP-DEMO-015"  # just identified, no consent yet
    b.case(ref, "ARB-IFO-MIKAEL", [], status="identified", identified=t.today - timedelta(days=2))
    b.quiet.append(ref)

    ref = "SIP-DEMO-016"  # offered; the pre-meeting with the individual is booked
    b.case(ref, "KOP-VOO-ANNA", ["RV-VC-KOP-EVA"], status="offered", identified=t.today - timedelta(days=9))
    b.meeting(f"{ref}-F1", ref, "pre_meeting", t.wd(3), "10:00")
    b.quiet.append(ref)

    ref = "SIP-DEMO-017"  # closed (need met): its undocumented meeting and open deviation are not chased
    closed = t.wd(-15)
    b.case(
        ref,
        "KOP-IFO-SARA",
        ["FK-SIP"],
        status="closed",
        closed=closed,
        closure_reason="need_met",
        follow_up_due=t.wd(-25),
    )
    b.meeting(f"{ref}-U1", ref, "follow_up", t.wd(-20), status="held")
    b.deviation("AVV-DEMO-07", ref, "KOP-IFO-SARA", "FK", "documentation_late", t.wd(-18))
    b.quiet.append(ref)

    # consent withdrawn yesterday; the register had not closed the plan yet. The import closes it and cancels
    # its future follow-up, as `sipflows case withdraw-consent` does: nothing may be chased
    ref = "SIP-DEMO-018"
    b.case(ref, "RV-VUP-NILS", ["KOP-IFO-ERIK", "AF-SIP"], consent_withdrawn=t.wd(-1), follow_up_due=t.wd(-3))
    b.meeting(f"{ref}-M1", ref, "sip_meeting", t.wd(-4), status="held")
    b.meeting(f"{ref}-U1", ref, "follow_up", t.wd(1), "10:00")
    b.invite(f"{ref}-U1", "KOP-IFO-ERIK", t.wd(-6))
    b.invite(f"{ref}-U1", "AF-SIP", t.wd(-6), "declined", t.wd(-5))
    b.deviation("AVV-DEMO-08", ref, "RV-VUP-NILS", "KOP-IFO", "party_absent", t.wd(-10))
    b.quiet.append(ref)

    # a SIP meeting booked today, after a held pre-meeting: its invitations are not sent yet, so the
    # invitations flow sends them as calendar requests (the other invitations came in as already sent)
    ref = "SIP-DEMO-022"
    b.case(ref, "ARB-VOO-HANNA", ["RV-VC-KOP-EVA", "AF-SIP"], coordinator="KOP-SIP")
    b.meeting(f"{ref}-F1", ref, "pre_meeting", t.wd(-1), "14:00", status="held")
    b.meeting(f"{ref}-M1", ref, "sip_meeting", t.wd(12), "09:00")
    for contact in ("RV-VC-KOP-EVA", "AF-SIP", "KOP-SIP"):
        b.invite(f"{ref}-M1", contact, None)
    b.quiet.append(ref)

    ref = "SIP-DEMO-019"  # closed because consent was withdrawn
    b.case(
        ref,
        "ARB-IFO-LINNEA",
        ["RV-BUP-SOFIA"],
        status="closed",
        closed=t.wd(-30),
        closure_reason="consent_withdrawn",
        consent_withdrawn=t.wd(-30),
    )
    b.quiet.append(ref)


def _calendars(session: Session) -> dict[str, WorkCalendar]:
    closed: dict[str, set[date]] = {}
    rows = session.execute(select(Organisation.code, ClosedDay.day).join(ClosedDay.organisation)).tuples()
    for code, day in rows:
        closed.setdefault(code, set()).add(day)
    return {code: WorkCalendar(days) for code, days in closed.items()}


def build_demo(
    session: Session,
    today: date = DEMO_DATE,
    *,
    policy: EffectivePolicy | None = None,
    mail_domain: str | None = None,
    now: datetime | None = None,
) -> DemoSummary:
    """Load the demo region into the register for judging on ``today``; idempotent. Does not commit.

    ``policy`` (default: the built-in one) is the policy the stages are laid out for. ``now`` stamps
    changed meetings; by default 07:00 Stockholm time on ``today``, so the demo never reads the clock."""
    policy = policy or default_policy()
    if mail_domain is None:
        from sipflows.settings import get_settings

        mail_domain = get_settings().mail_domain
    now = now or from_local(today, time(7, 0))
    files: list[FileResult] = []

    def load(kind: str, rows: list[Row]) -> None:
        if rows:
            table = table_from_rows(kind, rows, f"demo/{kind}.csv")
            files.append(import_table(session, table, now, mail_domain))

    load("organisations", ORGANISATIONS)
    # Kungsör's IFO has a planning day two working days ago: its deadlines run on its own calendar
    closed_day = WorkCalendar().add_working_days(today, -2)
    load(
        "closed_days", [{"organisation": "KUN-IFO", "day": closed_day.isoformat(), "reason": "Planeringsdag"}]
    )
    load("contacts", CONTACTS)

    builder = _Builder(_Timeline(today, _calendars(session), policy))
    _plans(builder)
    for kind in KINDS[3:]:
        load(kind, builder.rows[kind])

    private: list[str] = [TEST_PERSONAL_NUMBER, TEST_PERSONAL_NUMBER.replace("-", "")[2:]]
    for row in builder.rows["cases"]:
        private += [row["individual_name"], row["case_notes"]]
    private += [row["description"] for row in builder.rows["deviations"]]
    return DemoSummary(
        today=today,
        files=files,
        expected=builder.expected,
        quiet_cases=builder.quiet,
        skipped=builder.skipped,
        private_values=tuple(private),
    )

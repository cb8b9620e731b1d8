"""The demo's rows, collected plan by plan: a case, its meetings, invitations and deviations, and the
findings each plan is built to produce."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sipflows.demo.timeline import Timeline
from sipflows.importer import KINDS

TEST_PERSONAL_NUMBER = "19121212-1212"  # Skatteverket's well-known test number (Tolvan Tolvansson)

Row = dict[str, str]


@dataclass(frozen=True)
class Expectation:
    """A finding the demo is built to produce on its date."""

    case_reference: str
    check: str
    stage: str
    what: str


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


class Builder:
    """Collects the demo's rows; each plan is a few calls."""

    def __init__(self, t: Timeline, organisation_of: dict[str, str]) -> None:
        self.t = t
        self.organisation_of = organisation_of  # contact code -> organisation code
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

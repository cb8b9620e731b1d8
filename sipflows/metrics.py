"""The metric registry: every figure the statistics report shows, with its section, unit and words.

One entry per metric, so a new figure is added in one place: ``sipflows.stats`` uses the section and
unit to compute and group it, ``sipflows.report`` the Swedish and English label and explanation to show
it. It sits below both so that neither has to import the other for it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Unit(enum.StrEnum):
    COUNT = "count"
    PERCENT = "percent"
    WORKING_DAYS = "working_days"
    DAYS = "days"


class Section(enum.StrEnum):
    PLANS = "plans"
    DOCUMENTATION = "documentation"
    INVITATIONS = "invitations"
    DEVIATIONS = "deviations"


@dataclass(frozen=True)
class MetricDef:
    """``sv`` and ``en`` are (label, plain-words explanation of how it is counted)."""

    section: Section
    unit: Unit
    sv: tuple[str, str]
    en: tuple[str, str]

    def words(self, lang: str) -> tuple[str, str]:
        return self.sv if lang == "sv" else self.en


_C, _P, _W, _D = Unit.COUNT, Unit.PERCENT, Unit.WORKING_DAYS, Unit.DAYS

# in the order the report lists them: plans by the convener organisation; documentation of held SIP and
# follow-up meetings; invitations by convener and the invitee's organisation kind; deviations by the
# concerning organisation
METRICS: dict[str, MetricDef] = {
    "plans_identified": MetricDef(
        Section.PLANS,
        _C,
        (
            "Identifierade planer",
            "Planer där behovet av en SIP noterades (identifierad-datum) under perioden.",
        ),
        ("Plans identified", "Plans whose need for a SIP was noted (identified date) during the period."),
    ),
    "plans_offered": MetricDef(
        Section.PLANS,
        _C,
        ("Erbjudna planer", "Planer där den enskilde erbjöds en SIP under perioden."),
        ("Plans offered", "Plans where the individual was offered a SIP during the period."),
    ),
    "plans_started": MetricDef(
        Section.PLANS,
        _C,
        ("Startade planer", "Planer som blev aktiva (samtycke gavs) under perioden."),
        ("Plans started", "Plans that became active (consent given) during the period."),
    ),
    "pre_meetings_held": MetricDef(
        Section.PLANS,
        _C,
        ("Förmöten hållna", "Förmöten med status hållet som började under perioden."),
        ("Pre-meetings held", "Pre-meetings with status held that started during the period."),
    ),
    "sip_meetings_held": MetricDef(
        Section.PLANS,
        _C,
        ("SIP-möten hållna", "SIP-möten med status hållet som började under perioden (antal möten)."),
        (
            "SIP meetings held",
            "SIP meetings with status held that started during the period (number of meetings).",
        ),
    ),
    "plans_held": MetricDef(
        Section.PLANS,
        _C,
        (
            "Planer med hållet SIP-möte",
            "Antal olika planer som hade minst ett hållet SIP-möte under perioden.",
        ),
        (
            "Plans with a SIP meeting held",
            "Number of distinct plans with at least one SIP meeting held during the period.",
        ),
    ),
    "follow_ups_held": MetricDef(
        Section.PLANS,
        _C,
        (
            "Uppföljningsmöten hållna",
            "Uppföljningsmöten med status hållet som började under perioden (antal möten).",
        ),
        (
            "Follow-up meetings held",
            "Follow-up meetings with status held that started during the period (number of meetings).",
        ),
    ),
    "plans_followed_up": MetricDef(
        Section.PLANS,
        _C,
        ("Uppföljda planer", "Antal olika planer som hade minst ett hållet uppföljningsmöte under perioden."),
        (
            "Plans followed up",
            "Number of distinct plans with at least one follow-up meeting held during the period.",
        ),
    ),
    "plans_ended": MetricDef(
        Section.PLANS,
        _C,
        ("Avslutade planer", "Planer som avslutades under perioden, oavsett skäl."),
        ("Plans ended", "Plans that ended during the period, for any reason."),
    ),
    "plans_ended_consent_withdrawn": MetricDef(
        Section.PLANS,
        _C,
        (
            "varav samtycke återkallat",
            "Av de avslutade planerna: de som avslutades för att den enskilde återkallade sitt samtycke.",
        ),
        (
            "of which consent withdrawn",
            "Of the plans ended: those ended because the individual withdrew consent.",
        ),
    ),
    "plans_first_sip_meeting": MetricDef(
        Section.PLANS,
        _C,
        (
            "Planer med första SIP-mötet",
            "Planer vars första hållna SIP-möte (någonsin) ägde rum under perioden.",
        ),
        (
            "Plans with their first SIP meeting",
            "Plans whose first held SIP meeting (ever) took place during the period.",
        ),
    ),
    "identified_to_first_sip_median_working_days": MetricDef(
        Section.PLANS,
        _W,
        (
            "Tid till första SIP-mötet (median)",
            "För dessa planer: medianen av antalet arbetsdagar från att behovet identifierades till det "
            "första SIP-mötet. Helgdagar och organisationens stängda dagar räknas inte.",
        ),
        (
            "Time to the first SIP meeting (median)",
            "For those plans: the median number of working days from identification to the first SIP "
            "meeting. Public holidays and the organisation's closed days do not count.",
        ),
    ),
    "documentation_meetings_held": MetricDef(
        Section.DOCUMENTATION,
        _C,
        (
            "Hållna möten att dokumentera",
            "SIP- och uppföljningsmöten med status hållet som började under perioden.",
        ),
        (
            "Held meetings to document",
            "SIP and follow-up meetings with status held that started during the period.",
        ),
    ),
    "documented_in_time": MetricDef(
        Section.DOCUMENTATION,
        _C,
        (
            "Dokumenterade i tid",
            "Möten som dokumenterades senast den sista dagen för dokumentation (mötesdagen plus policyns "
            "antal arbetsdagar, i den sammankallande organisationens kalender).",
        ),
        (
            "Documented in time",
            "Meetings documented no later than the due day (the meeting day plus the policy's working days, "
            "in the convener organisation's calendar).",
        ),
    ),
    "documented_late": MetricDef(
        Section.DOCUMENTATION,
        _C,
        ("Dokumenterade för sent", "Möten som dokumenterades efter sista dagen."),
        ("Documented late", "Meetings documented after the due day."),
    ),
    "undocumented_overdue": MetricDef(
        Section.DOCUMENTATION,
        _C,
        (
            "Ej dokumenterade, försenade",
            "Möten som ännu inte är dokumenterade fast sista dagen har passerat.",
        ),
        ("Not documented, overdue", "Meetings not yet documented although the due day has passed."),
    ),
    "documentation_pending": MetricDef(
        Section.DOCUMENTATION,
        _C,
        (
            "Ej dokumenterade, inom tiden",
            "Möten som ännu inte är dokumenterade men vars sista dag inte har passerat; de räknas inte i "
            "andelen.",
        ),
        (
            "Not documented, still in time",
            "Meetings not yet documented whose due day has not passed; they are left out of the share.",
        ),
    ),
    "documented_in_time_share": MetricDef(
        Section.DOCUMENTATION,
        _P,
        (
            "Andel dokumenterade i tid",
            "Dokumenterade i tid delat med hållna möten minus de som fortfarande är inom tiden.",
        ),
        (
            "Share documented in time",
            "Documented in time divided by the held meetings less those still in time.",
        ),
    ),
    "documentation_median_working_days": MetricDef(
        Section.DOCUMENTATION,
        _W,
        (
            "Tid till dokumentation (median)",
            "Medianen av antalet arbetsdagar från mötet till att det dokumenterades, för dokumenterade "
            "möten.",
        ),
        (
            "Time to documentation (median)",
            "The median number of working days from the meeting to its documentation, for documented "
            "meetings.",
        ),
    ),
    "invitations_sent": MetricDef(
        Section.INVITATIONS,
        _C,
        ("Skickade kallelser", "Kallelser som skickades under perioden, till alla slags möten."),
        ("Invitations sent", "Invitations sent during the period, to meetings of every kind."),
    ),
    "invitations_answered": MetricDef(
        Section.INVITATIONS,
        _C,
        (
            "Besvarade kallelser",
            "Av de skickade kallelserna: de som har fått ett svar (ja, kanske eller nej).",
        ),
        (
            "Invitations answered",
            "Of the invitations sent: those that have an answer (accepted, tentative or declined).",
        ),
    ),
    "invitations_accepted": MetricDef(
        Section.INVITATIONS,
        _C,
        ("Accepterade", "Besvarade med ja."),
        ("Accepted", "Answered with yes."),
    ),
    "invitations_tentative": MetricDef(
        Section.INVITATIONS,
        _C,
        ("Preliminära", "Besvarade med kanske."),
        ("Tentative", "Answered with maybe."),
    ),
    "invitations_declined": MetricDef(
        Section.INVITATIONS,
        _C,
        ("Avböjda", "Besvarade med nej."),
        ("Declined", "Answered with no."),
    ),
    "invitation_answer_rate": MetricDef(
        Section.INVITATIONS,
        _P,
        ("Svarsfrekvens", "Besvarade kallelser delat med skickade kallelser."),
        ("Answer rate", "Invitations answered divided by invitations sent."),
    ),
    "attendance_recorded": MetricDef(
        Section.INVITATIONS,
        _C,
        (
            "Närvaro registrerad",
            "Kallelser till möten som hölls under perioden där det är registrerat om den inbjudna kom.",
        ),
        (
            "Attendance recorded",
            "Invitations to meetings held during the period where it is recorded whether the invitee came.",
        ),
    ),
    "attendance_attended": MetricDef(
        Section.INVITATIONS,
        _C,
        ("Närvarande", "Av dessa: de inbjudna som kom."),
        ("Attended", "Of those: the invitees who came."),
    ),
    "attendance_rate": MetricDef(
        Section.INVITATIONS,
        _P,
        ("Närvaro", "Närvarande delat med registrerad närvaro."),
        ("Attendance", "Attended divided by attendance recorded."),
    ),
    "deviations_reported": MetricDef(
        Section.DEVIATIONS,
        _C,
        (
            "Rapporterade avvikelser",
            "Avvikelser som rapporterades under perioden, räknade hos den organisation de gäller.",
        ),
        (
            "Deviations reported",
            "Deviations reported during the period, counted for the organisation they concern.",
        ),
    ),
    "deviations_open": MetricDef(
        Section.DEVIATIONS,
        _C,
        (
            "Öppna vid periodens slut",
            "Av de rapporterade avvikelserna: de som inte var avslutade när perioden tog slut.",
        ),
        (
            "Open at the end of the period",
            "Of the deviations reported: those not resolved when the period ended.",
        ),
    ),
    "deviations_closed": MetricDef(
        Section.DEVIATIONS,
        _C,
        (
            "Stängda vid periodens slut",
            "Av de rapporterade avvikelserna: de som var avslutade när perioden tog slut.",
        ),
        (
            "Closed at the end of the period",
            "Of the deviations reported: those resolved by the end of the period.",
        ),
    ),
    "deviations_acknowledged": MetricDef(
        Section.DEVIATIONS,
        _C,
        ("Kvitterade", "Av de rapporterade avvikelserna: de som den berörda organisationen har kvitterat."),
        ("Acknowledged", "Of the deviations reported: those the concerning organisation has acknowledged."),
    ),
    "deviations_replied": MetricDef(
        Section.DEVIATIONS,
        _C,
        (
            "Besvarade med åtgärder",
            "Av de rapporterade avvikelserna: de som den berörda organisationen har svarat på med åtgärder.",
        ),
        (
            "Replied with measures",
            "Of the deviations reported: those the concerning organisation has replied to with measures.",
        ),
    ),
    "deviation_acknowledgement_median_days": MetricDef(
        Section.DEVIATIONS,
        _D,
        (
            "Tid till kvittens (median)",
            "Medianen av antalet kalenderdagar från rapport till kvittens, för kvitterade avvikelser.",
        ),
        (
            "Time to acknowledgement (median)",
            "The median number of calendar days from report to acknowledgement, for acknowledged deviations.",
        ),
    ),
    "deviation_reply_median_days": MetricDef(
        Section.DEVIATIONS,
        _D,
        (
            "Tid till svar (median)",
            "Medianen av antalet kalenderdagar från rapport till svar med åtgärder, för besvarade "
            "avvikelser.",
        ),
        (
            "Time to reply (median)",
            "The median number of calendar days from report to reply with measures, for replied deviations.",
        ),
    ),
}

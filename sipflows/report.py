"""The statistics report: an HTML page with charts, a CSV of every figure, and the weekly mail.

Written for people who never saw the code: Swedish labels by default (English on request), every
figure explained in plain words, axes with units. Everything in it comes from ``ReportStats`` —
aggregates and organisation names only, never a plan reference, a person or free text.

Folder layout::

    index.html        title, period, key figures, tables, charts, definitions
    charts/*.png      matplotlib (Agg), one chart per question
    figures.csv       metric, organisation, dimension, value, unit, label, organisation_name (UTF-8 with BOM,
                      so that Excel shows å, ä and ö)

The weekly report (``weekly_report``) writes the folder for the week and enqueues one ``report.weekly``
notice per contact marked ``report_recipient`` through the ledger: the key
``report:weekly:<week ending>:c<contact id>`` makes a rerun send nothing twice. Its subject and body come
from the notice templates (``sipflows.notices.render.render_report``) in the contact's language, with the
key figures; the self-contained HTML report and the CSV travel as attachments.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.text import Text
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipflows.db import session_scope
from sipflows.hygiene import csv_cell
from sipflows.models import Contact, DeviationKind, Notice, Severity
from sipflows.notices.ledger import NoticeDraft, enqueue
from sipflows.notices.render import REPORT_WEEKLY, render_report
from sipflows.policy import EffectivePolicy
from sipflows.settings import Settings
from sipflows.stats import METRICS, TOTAL, Period, ReportStats, Section, Unit, Value, compute_stats, dimension
from sipflows.timeutil import local_date, local_datetime

TEMPLATES = Path(__file__).with_name("report_templates")
LANGUAGES = ("sv", "en")
REPORT_KIND = REPORT_WEEKLY

# --- words -----------------------------------------------------------------------------------------------

TEXT: dict[str, dict[str, str]] = {
    "sv": {
        "title": "SIP-statistik",
        "weekly_title": "SIP-veckorapport",
        "week": "vecka",
        "period": "Period",
        "scope": "Organisationer",
        "all_organisations": "alla organisationer",
        "as_of": "Bedömt per",
        "generated": "Skapad",
        "key_figures": "Nyckeltal",
        "figure": "Mått",
        "value": "Värde",
        "total": "Totalt",
        "organisation": "Organisation",
        "convener": "Sammankallande organisation",
        "concerning": "Berörd organisation",
        "meeting_kind": "Mötestyp",
        "all_meetings": "alla",
        "invitee_kind": "Den inbjudnas organisationstyp",
        "all_kinds": "alla typer",
        "deviation_kind": "Typ av avvikelse",
        "severity": "Allvarlighetsgrad",
        "all_severities": "alla",
        "no_data": "Inga data för perioden.",
        "definitions": "Så räknas siffrorna",
        "privacy": "Rapporten innehåller bara sammanräknade siffror per organisation: inga planer, inga "
        "personer och inga fritexter.",
        "due_note": "Dokumentationen ska vara klar inom {days} efter mötet",
        "due_override": "{org}: {days}",
        "per_organisation": "Per organisation",
        "per_kind": "Per organisationstyp, alla sammankallande",
        "per_convener_kind": "Per sammankallande organisation och den inbjudnas organisationstyp",
        "per_kind_severity": "Per typ och allvarlighetsgrad, alla organisationer",
        "per_severity": "Tid till kvittens och svar per allvarlighetsgrad",
        "series_sip": "SIP-möten",
        "series_follow_up": "Uppföljningsmöten",
        "series_answer": "Svarsfrekvens",
        "series_attendance": "Närvaro",
        "series_open": "Öppna",
        "series_closed": "Stängda",
        "csv_name": "figures.csv",
        "csv_link": "Alla siffror som CSV-fil",
        "attachment_html": "sip-rapport-{end}.html",
        "attachment_csv": "sip-siffror-{end}.csv",
        "mail_intro": "Hela rapporten med diagram och förklaringar finns i bilagan; alla siffror finns i "
        "CSV-filen.",
    },
    "en": {
        "title": "SIP statistics",
        "weekly_title": "SIP weekly report",
        "week": "week",
        "period": "Period",
        "scope": "Organisations",
        "all_organisations": "all organisations",
        "as_of": "Judged on",
        "generated": "Generated",
        "key_figures": "Key figures",
        "figure": "Figure",
        "value": "Value",
        "total": "Total",
        "organisation": "Organisation",
        "convener": "Convener organisation",
        "concerning": "Concerning organisation",
        "meeting_kind": "Meeting kind",
        "all_meetings": "all",
        "invitee_kind": "Invitee's organisation kind",
        "all_kinds": "all kinds",
        "deviation_kind": "Kind of deviation",
        "severity": "Severity",
        "all_severities": "all",
        "no_data": "No data for the period.",
        "definitions": "How the figures are counted",
        "privacy": "This report holds only aggregated figures per organisation: no plans, no persons and no "
        "free text.",
        "due_note": "Documentation is due within {days} of the meeting",
        "due_override": "{org}: {days}",
        "per_organisation": "By organisation",
        "per_kind": "By organisation kind, all conveners",
        "per_convener_kind": "By convener organisation and invitee's organisation kind",
        "per_kind_severity": "By kind and severity, all organisations",
        "per_severity": "Time to acknowledgement and reply by severity",
        "series_sip": "SIP meetings",
        "series_follow_up": "Follow-up meetings",
        "series_answer": "Answer rate",
        "series_attendance": "Attendance",
        "series_open": "Open",
        "series_closed": "Closed",
        "csv_name": "figures.csv",
        "csv_link": "Every figure as a CSV file",
        "attachment_html": "sip-report-{end}.html",
        "attachment_csv": "sip-figures-{end}.csv",
        "mail_intro": "The full report with charts and explanations is attached; every figure is in the CSV "
        "file.",
    },
}

SECTION_TITLES = {
    "sv": {
        Section.PLANS: "Planer per steg",
        Section.DOCUMENTATION: "Dokumentation i tid",
        Section.INVITATIONS: "Kallelser och närvaro",
        Section.DEVIATIONS: "Avvikelser",
    },
    "en": {
        Section.PLANS: "Plans by stage",
        Section.DOCUMENTATION: "Documentation in time",
        Section.INVITATIONS: "Invitations and attendance",
        Section.DEVIATIONS: "Deviations",
    },
}

UNIT_LABELS = {
    "sv": {
        Unit.COUNT: "antal",
        Unit.PERCENT: "procent",
        Unit.WORKING_DAYS: "arbetsdagar",
        Unit.DAYS: "kalenderdagar",
    },
    "en": {
        Unit.COUNT: "count",
        Unit.PERCENT: "percent",
        Unit.WORKING_DAYS: "working days",
        Unit.DAYS: "calendar days",
    },
}

DAY_WORDS = {  # (singular, plural)
    "sv": {Unit.WORKING_DAYS: ("arbetsdag", "arbetsdagar"), Unit.DAYS: ("kalenderdag", "kalenderdagar")},
    "en": {Unit.WORKING_DAYS: ("working day", "working days"), Unit.DAYS: ("calendar day", "calendar days")},
}

ORG_KIND_LABELS = {
    "sv": {
        "municipal_unit": "Kommunal verksamhet",
        "region_unit": "Regionens verksamhet",
        "forsakringskassan": "Försäkringskassan",
        "arbetsformedlingen": "Arbetsförmedlingen",
        "school": "Skola/elevhälsa",
        "kriminalvarden": "Kriminalvården",
        "police": "Polisen",
        "user_organisation": "Brukarorganisation",
        "other": "Annan",
    },
    "en": {
        "municipal_unit": "Municipal unit",
        "region_unit": "Region unit",
        "forsakringskassan": "Försäkringskassan",
        "arbetsformedlingen": "Arbetsförmedlingen",
        "school": "School / pupil health",
        "kriminalvarden": "Kriminalvården",
        "police": "Police",
        "user_organisation": "User organisation",
        "other": "Other",
    },
}
DEVIATION_KIND_LABELS = {
    "sv": {
        "party_absent": "Part uteblev",
        "plan_not_followed": "Planen följdes inte",
        "documentation_late": "Sen dokumentation",
        "invitation_not_answered": "Kallelse obesvarad",
        "other": "Övrigt",
    },
    "en": {
        "party_absent": "Party absent",
        "plan_not_followed": "Plan not followed",
        "documentation_late": "Documentation late",
        "invitation_not_answered": "Invitation not answered",
        "other": "Other",
    },
}
SEVERITY_LABELS = {"sv": {"normal": "Normal", "high": "Hög"}, "en": {"normal": "Normal", "high": "High"}}
MEETING_KIND_LABELS = {
    "sv": {"sip_meeting": "SIP-möten", "follow_up": "Uppföljningsmöten"},
    "en": {"sip_meeting": "SIP meetings", "follow_up": "Follow-up meetings"},
}

# metric: (Swedish label, Swedish explanation, English label, English explanation)
METRIC_TEXT: dict[str, tuple[str, str, str, str]] = {
    "plans_identified": (
        "Identifierade planer",
        "Planer där behovet av en SIP noterades (identifierad-datum) under perioden.",
        "Plans identified",
        "Plans whose need for a SIP was noted (identified date) during the period.",
    ),
    "plans_offered": (
        "Erbjudna planer",
        "Planer där den enskilde erbjöds en SIP under perioden.",
        "Plans offered",
        "Plans where the individual was offered a SIP during the period.",
    ),
    "plans_started": (
        "Startade planer",
        "Planer som blev aktiva (samtycke gavs) under perioden.",
        "Plans started",
        "Plans that became active (consent given) during the period.",
    ),
    "pre_meetings_held": (
        "Förmöten hållna",
        "Förmöten med status hållet som började under perioden.",
        "Pre-meetings held",
        "Pre-meetings with status held that started during the period.",
    ),
    "sip_meetings_held": (
        "SIP-möten hållna",
        "SIP-möten med status hållet som började under perioden (antal möten).",
        "SIP meetings held",
        "SIP meetings with status held that started during the period (number of meetings).",
    ),
    "plans_held": (
        "Planer med hållet SIP-möte",
        "Antal olika planer som hade minst ett hållet SIP-möte under perioden.",
        "Plans with a SIP meeting held",
        "Number of distinct plans with at least one SIP meeting held during the period.",
    ),
    "follow_ups_held": (
        "Uppföljningsmöten hållna",
        "Uppföljningsmöten med status hållet som började under perioden (antal möten).",
        "Follow-up meetings held",
        "Follow-up meetings with status held that started during the period (number of meetings).",
    ),
    "plans_followed_up": (
        "Uppföljda planer",
        "Antal olika planer som hade minst ett hållet uppföljningsmöte under perioden.",
        "Plans followed up",
        "Number of distinct plans with at least one follow-up meeting held during the period.",
    ),
    "plans_ended": (
        "Avslutade planer",
        "Planer som avslutades under perioden, oavsett skäl.",
        "Plans ended",
        "Plans that ended during the period, for any reason.",
    ),
    "plans_ended_consent_withdrawn": (
        "varav samtycke återkallat",
        "Av de avslutade planerna: de som avslutades för att den enskilde återkallade sitt samtycke.",
        "of which consent withdrawn",
        "Of the plans ended: those ended because the individual withdrew consent.",
    ),
    "plans_first_sip_meeting": (
        "Planer med första SIP-mötet",
        "Planer vars första hållna SIP-möte (någonsin) ägde rum under perioden.",
        "Plans with their first SIP meeting",
        "Plans whose first held SIP meeting (ever) took place during the period.",
    ),
    "identified_to_first_sip_median_working_days": (
        "Tid till första SIP-mötet (median)",
        "För dessa planer: medianen av antalet arbetsdagar från att behovet identifierades till det första "
        "SIP-mötet. Helgdagar och organisationens stängda dagar räknas inte.",
        "Time to the first SIP meeting (median)",
        "For those plans: the median number of working days from identification to the first SIP meeting. "
        "Public holidays and the organisation's closed days do not count.",
    ),
    "documentation_meetings_held": (
        "Hållna möten att dokumentera",
        "SIP- och uppföljningsmöten med status hållet som började under perioden.",
        "Held meetings to document",
        "SIP and follow-up meetings with status held that started during the period.",
    ),
    "documented_in_time": (
        "Dokumenterade i tid",
        "Möten som dokumenterades senast den sista dagen för dokumentation (mötesdagen plus policyns antal "
        "arbetsdagar, i den sammankallande organisationens kalender).",
        "Documented in time",
        "Meetings documented no later than the due day (the meeting day plus the policy's working days, in "
        "the convener organisation's calendar).",
    ),
    "documented_late": (
        "Dokumenterade för sent",
        "Möten som dokumenterades efter sista dagen.",
        "Documented late",
        "Meetings documented after the due day.",
    ),
    "undocumented_overdue": (
        "Ej dokumenterade, försenade",
        "Möten som ännu inte är dokumenterade fast sista dagen har passerat.",
        "Not documented, overdue",
        "Meetings not yet documented although the due day has passed.",
    ),
    "documentation_pending": (
        "Ej dokumenterade, inom tiden",
        "Möten som ännu inte är dokumenterade men vars sista dag inte har passerat; de räknas inte i "
        "andelen.",
        "Not documented, still in time",
        "Meetings not yet documented whose due day has not passed; they are left out of the share.",
    ),
    "documented_in_time_share": (
        "Andel dokumenterade i tid",
        "Dokumenterade i tid delat med hållna möten minus de som fortfarande är inom tiden.",
        "Share documented in time",
        "Documented in time divided by the held meetings less those still in time.",
    ),
    "documentation_median_working_days": (
        "Tid till dokumentation (median)",
        "Medianen av antalet arbetsdagar från mötet till att det dokumenterades, för dokumenterade möten.",
        "Time to documentation (median)",
        "The median number of working days from the meeting to its documentation, for documented meetings.",
    ),
    "invitations_sent": (
        "Skickade kallelser",
        "Kallelser som skickades under perioden, till alla slags möten.",
        "Invitations sent",
        "Invitations sent during the period, to meetings of every kind.",
    ),
    "invitations_answered": (
        "Besvarade kallelser",
        "Av de skickade kallelserna: de som har fått ett svar (ja, kanske eller nej).",
        "Invitations answered",
        "Of the invitations sent: those that have an answer (accepted, tentative or declined).",
    ),
    "invitations_accepted": (
        "Accepterade",
        "Besvarade med ja.",
        "Accepted",
        "Answered with yes.",
    ),
    "invitations_tentative": (
        "Preliminära",
        "Besvarade med kanske.",
        "Tentative",
        "Answered with maybe.",
    ),
    "invitations_declined": (
        "Avböjda",
        "Besvarade med nej.",
        "Declined",
        "Answered with no.",
    ),
    "invitation_answer_rate": (
        "Svarsfrekvens",
        "Besvarade kallelser delat med skickade kallelser.",
        "Answer rate",
        "Invitations answered divided by invitations sent.",
    ),
    "attendance_recorded": (
        "Närvaro registrerad",
        "Kallelser till möten som hölls under perioden där det är registrerat om den inbjudna kom.",
        "Attendance recorded",
        "Invitations to meetings held during the period where it is recorded whether the invitee came.",
    ),
    "attendance_attended": (
        "Närvarande",
        "Av dessa: de inbjudna som kom.",
        "Attended",
        "Of those: the invitees who came.",
    ),
    "attendance_rate": (
        "Närvaro",
        "Närvarande delat med registrerad närvaro.",
        "Attendance",
        "Attended divided by attendance recorded.",
    ),
    "deviations_reported": (
        "Rapporterade avvikelser",
        "Avvikelser som rapporterades under perioden, räknade hos den organisation de gäller.",
        "Deviations reported",
        "Deviations reported during the period, counted for the organisation they concern.",
    ),
    "deviations_open": (
        "Öppna vid periodens slut",
        "Av de rapporterade avvikelserna: de som inte var avslutade när perioden tog slut.",
        "Open at the end of the period",
        "Of the deviations reported: those not resolved when the period ended.",
    ),
    "deviations_closed": (
        "Stängda vid periodens slut",
        "Av de rapporterade avvikelserna: de som var avslutade när perioden tog slut.",
        "Closed at the end of the period",
        "Of the deviations reported: those resolved by the end of the period.",
    ),
    "deviations_acknowledged": (
        "Kvitterade",
        "Av de rapporterade avvikelserna: de som den berörda organisationen har kvitterat.",
        "Acknowledged",
        "Of the deviations reported: those the concerning organisation has acknowledged.",
    ),
    "deviations_replied": (
        "Besvarade med åtgärder",
        "Av de rapporterade avvikelserna: de som den berörda organisationen har svarat på med åtgärder.",
        "Replied with measures",
        "Of the deviations reported: those the concerning organisation has replied to with measures.",
    ),
    "deviation_acknowledgement_median_days": (
        "Tid till kvittens (median)",
        "Medianen av antalet kalenderdagar från rapport till kvittens, för kvitterade avvikelser.",
        "Time to acknowledgement (median)",
        "The median number of calendar days from report to acknowledgement, for acknowledged deviations.",
    ),
    "deviation_reply_median_days": (
        "Tid till svar (median)",
        "Medianen av antalet kalenderdagar från rapport till svar med åtgärder, för besvarade avvikelser.",
        "Time to reply (median)",
        "The median number of calendar days from report to reply with measures, for replied deviations.",
    ),
}

KEY_FIGURES = (
    "plans_identified",
    "plans_offered",
    "plans_started",
    "plans_held",
    "plans_followed_up",
    "plans_ended",
    "plans_ended_consent_withdrawn",
    "identified_to_first_sip_median_working_days",
    "documented_in_time_share",
    "documentation_median_working_days",
    "invitation_answer_rate",
    "attendance_rate",
    "deviations_reported",
    "deviations_open",
    "deviation_acknowledgement_median_days",
)

CHART_TITLES = {
    "sv": {
        "plans_by_stage": "SIP-planer per steg",
        "documentation_in_time": "Dokumentation i tid per organisation",
        "invitations_by_org_kind": "Svar på kallelser och närvaro per organisationstyp",
        "deviations_by_kind": "Avvikelser per typ och allvarlighetsgrad",
        "deviations_open_closed": "Avvikelser öppna och stängda vid periodens slut",
    },
    "en": {
        "plans_by_stage": "SIP plans by stage",
        "documentation_in_time": "Documentation in time by organisation",
        "invitations_by_org_kind": "Invitation answers and attendance by organisation kind",
        "deviations_by_kind": "Deviations by kind and severity",
        "deviations_open_closed": "Deviations open and closed at the end of the period",
    },
}
AXIS_LABELS = {
    "sv": {
        "plans_y": "Antal planer (st)",
        "plans_x": "Steg",
        "documentation_x": "Andel dokumenterade i tid (%)",
        "documentation_y": "Sammankallande organisation",
        "invitations_y": "Andel (%)",
        "invitations_x": "Den inbjudnas organisationstyp",
        "deviations_y": "Antal avvikelser (st)",
        "deviations_x": "Typ av avvikelse",
        "open_closed_x": "Antal avvikelser (st)",
        "open_closed_y": "Berörd organisation",
    },
    "en": {
        "plans_y": "Number of plans",
        "plans_x": "Stage",
        "documentation_x": "Share documented in time (%)",
        "documentation_y": "Convener organisation",
        "invitations_y": "Share (%)",
        "invitations_x": "Invitee's organisation kind",
        "deviations_y": "Number of deviations",
        "deviations_x": "Kind of deviation",
        "open_closed_x": "Number of deviations",
        "open_closed_y": "Concerning organisation",
    },
}
PLAN_STAGES = (
    "plans_identified",
    "plans_offered",
    "plans_started",
    "plans_held",
    "plans_followed_up",
    "plans_ended",
    "plans_ended_consent_withdrawn",
)


def _lang(language: str) -> str:
    lang = str(getattr(language, "value", language)).lower()
    if lang not in LANGUAGES:
        raise ValueError(f"report language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    return lang


def metric_label(metric: str, lang: str) -> str:
    sv, _, en, _ = METRIC_TEXT[metric]
    return sv if lang == "sv" else en


def metric_explanation(metric: str, lang: str) -> str:
    _, sv, _, en = METRIC_TEXT[metric]
    return sv if lang == "sv" else en


def format_value(value: Value, unit: str | Unit, lang: str) -> str:
    """Numbers as a Swedish or English reader writes them; ``–`` when there is nothing to measure."""
    if value is None:
        return "–"
    unit = Unit(unit)
    if unit == Unit.COUNT:
        text = f"{int(value):,}".replace(",", "\u00a0" if lang == "sv" else ",")
    elif float(value).is_integer():
        text = str(int(value))
    else:
        text = f"{value:.1f}"
    if lang == "sv":
        text = text.replace(".", ",")
    if unit == Unit.PERCENT:
        return f"{text}\u00a0%" if lang == "sv" else f"{text}%"
    if unit in (Unit.WORKING_DAYS, Unit.DAYS):
        return f"{text} {DAY_WORDS[lang][unit][0 if value == 1 else 1]}"
    return text


def organisation_label(stats: ReportStats, code: str, lang: str) -> str:
    if code == TOTAL:
        return TEXT[lang]["total"]
    info = stats.organisations.get(code)
    return f"{info.name} ({code})" if info else code


def dimension_label(dim: str, lang: str) -> str:
    """``kind=party_absent;severity=high`` → ``Part uteblev, Hög``."""
    if not dim:
        return ""
    labels = []
    for part in dim.split(";"):
        key, _, value = part.partition("=")
        table = {
            "invitee_kind": ORG_KIND_LABELS,
            "kind": DEVIATION_KIND_LABELS,
            "severity": SEVERITY_LABELS,
            "meeting_kind": MEETING_KIND_LABELS,
        }.get(key)
        labels.append(table[lang].get(value, value) if table else value)
    return ", ".join(labels)


def period_text(stats: ReportStats) -> str:
    return f"{stats.period.start.isoformat()} – {stats.period.end.isoformat()}"


def _is_week(period: Period) -> bool:
    return period.start.weekday() == 0 and period.end - period.start == timedelta(days=6)


def report_title(stats: ReportStats, lang: str, weekly: bool = False) -> str:
    t = TEXT[lang]
    if weekly:
        title = t["weekly_title"]
        if _is_week(stats.period):
            year, week, _ = stats.period.start.isocalendar()
            title = f"{title} {t['week']} {week} {year}"
        return f"{title}, {period_text(stats)}"
    return f"{t['title']} {period_text(stats)}"


def scope_text(stats: ReportStats, lang: str) -> str:
    if not stats.scope:
        return TEXT[lang]["all_organisations"]
    return ", ".join(organisation_label(stats, c, lang) for c in stats.scope)


def key_figures(stats: ReportStats, lang: str = "sv") -> list[tuple[str, str]]:
    """(label, formatted value) of the headline totals."""
    lang = _lang(lang)
    return [(metric_label(m, lang), format_value(stats.value(m), METRICS[m].unit, lang)) for m in KEY_FIGURES]


# --- charts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """A rendered matplotlib figure, before it becomes a PNG; ``title`` is its suptitle."""

    name: str
    title: str
    figure: MplFigure

    def png(self) -> bytes:
        buf = io.BytesIO()
        with rc_context(_LITERAL_TEXT):  # tick labels made while drawing are literal too
            _draw_literally(self.figure)
            self.figure.savefig(buf, format="png", metadata={"Title": self.title, "Software": "sipflows"})
        return buf.getvalue()


# Organisation names come from the register: "$x^2$" is drawn as those five characters, never typeset as
# mathematics (and a lone "$\frac{1}{$" does not fail the report), whatever the local matplotlibrc says.
_LITERAL_TEXT: Any = {"text.parse_math": False, "text.usetex": False}


def _draw_literally(figure: MplFigure) -> None:
    for text in figure.findobj(Text):
        assert isinstance(text, Text)
        text.set_parse_math(False)
        text.set_usetex(False)


def _new_chart(name: str, stats: ReportStats, lang: str, height: float = 4.8) -> tuple[Chart, Any]:
    fig = MplFigure(figsize=(9, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
    title = CHART_TITLES[lang][name]
    fig.suptitle(title, fontsize=14, fontweight="bold")
    ax = fig.subplots()
    scope = "" if not stats.scope else f" · {scope_text(stats, lang)}"
    ax.set_title(f"{TEXT[lang]['period']} {period_text(stats)}{scope}", fontsize=9, color="#555555")
    ax.spines[["top", "right"]].set_visible(False)
    return Chart(name, title, fig), ax


def _no_data(ax: Any, lang: str) -> None:
    ax.text(
        0.5, 0.5, TEXT[lang]["no_data"], ha="center", va="center", transform=ax.transAxes, color="#666666"
    )


def _org_tick(stats: ReportStats, code: str, lang: str) -> str:
    """An organisation's name on an axis: wrapped on two lines at most."""
    if code == TOTAL:
        return TEXT[lang]["total"]
    info = stats.organisations.get(code)
    lines = _wrap(info.name if info else code, 24).split("\n")
    if len(lines) > 2:
        lines = [lines[0], lines[1][:22] + "…"]
    return "\n".join(lines)


def _chart_plans(stats: ReportStats, lang: str) -> Chart:
    chart, ax = _new_chart("plans_by_stage", stats, lang)
    labels = [metric_label(m, lang) for m in PLAN_STAGES]
    values = [int(stats.value(m) or 0) for m in PLAN_STAGES]
    colors = ["#1f5f8b"] * (len(PLAN_STAGES) - 1) + ["#c0504d"]
    bars = ax.bar(range(len(values)), values, color=colors)
    ax.bar_label(bars, labels=[format_value(v, Unit.COUNT, lang) for v in values], padding=2)
    ax.set_xticks(range(len(values)), [_wrap(label) for label in labels], fontsize=8)
    ax.set_ylabel(AXIS_LABELS[lang]["plans_y"])
    ax.set_xlabel(AXIS_LABELS[lang]["plans_x"])
    ax.set_ylim(0, max([*values, 1]) * 1.15)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if not any(values):
        _no_data(ax, lang)
    return chart


def _wrap(text: str, width: int = 14) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines)


def _chart_documentation(stats: ReportStats, lang: str) -> Chart:
    orgs = [*stats.organisations_in(Section.DOCUMENTATION), TOTAL]
    chart, ax = _new_chart("documentation_in_time", stats, lang, height=max(3.5, 1.2 + 0.55 * len(orgs)))
    series = (
        ("meeting_kind=sip_meeting", "series_sip", "#1f5f8b"),
        ("meeting_kind=follow_up", "series_follow_up", "#7fb3d5"),
    )
    height = 0.38
    any_data = False
    for i, (dim, key, color) in enumerate(series):
        ys = [n + (i - 0.5) * height for n in range(len(orgs))]
        shares = [stats.value("documented_in_time_share", o, dim) for o in orgs]
        ax.barh(ys, [s or 0 for s in shares], height=height, color=color, label=TEXT[lang][key])
        for y, o, s in zip(ys, orgs, shares, strict=True):
            judged = int(stats.value("documentation_meetings_held", o, dim, 0) or 0) - int(
                stats.value("documentation_pending", o, dim, 0) or 0
            )
            text = "–" if s is None else f"{format_value(s, Unit.PERCENT, lang)} (n={judged})"
            any_data = any_data or s is not None
            ax.text((s or 0) + 1, y, text, va="center", fontsize=8)
    ax.set_yticks(range(len(orgs)), [_org_tick(stats, o, lang) for o in orgs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.set_xlabel(AXIS_LABELS[lang]["documentation_x"])
    ax.set_ylabel(AXIS_LABELS[lang]["documentation_y"])
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if not any_data:
        _no_data(ax, lang)
    return chart


def _chart_invitations(stats: ReportStats, lang: str) -> Chart:
    chart, ax = _new_chart("invitations_by_org_kind", stats, lang)
    kinds = sorted(
        set(stats.dimension_values("invitations_sent", "invitee_kind"))
        | set(stats.dimension_values("attendance_recorded", "invitee_kind")),
        key=lambda k: ORG_KIND_LABELS[lang].get(k, k),
    )
    width = 0.38
    series = (
        ("invitation_answer_rate", "invitations_sent", "series_answer", "#1f5f8b"),
        ("attendance_rate", "attendance_recorded", "series_attendance", "#e59c3c"),
    )
    for i, (metric, base, key, color) in enumerate(series):
        xs = [n + (i - 0.5) * width for n in range(len(kinds))]
        rates = [stats.value(metric, TOTAL, dimension(invitee_kind=k)) for k in kinds]
        bars = ax.bar(xs, [r or 0 for r in rates], width=width, color=color, label=TEXT[lang][key])
        ns = [int(stats.value(base, TOTAL, dimension(invitee_kind=k), 0) or 0) for k in kinds]
        ax.bar_label(
            bars,
            labels=[
                "–" if r is None else f"{format_value(r, Unit.PERCENT, lang)}\nn={n}"
                for r, n in zip(rates, ns, strict=True)
            ],
            fontsize=7,
            padding=2,
        )
    ax.set_xticks(range(len(kinds)), [_wrap(ORG_KIND_LABELS[lang].get(k, k)) for k in kinds], fontsize=8)
    ax.set_ylim(0, 120)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(AXIS_LABELS[lang]["invitations_y"])
    ax.set_xlabel(AXIS_LABELS[lang]["invitations_x"])
    if kinds:
        ax.legend(loc="upper right", fontsize=8, ncols=2)
    else:
        _no_data(ax, lang)
    return chart


def _chart_deviation_kinds(stats: ReportStats, lang: str) -> Chart:
    chart, ax = _new_chart("deviations_by_kind", stats, lang)
    kinds = [k.value for k in DeviationKind]
    bottom = [0] * len(kinds)
    for severity, color in ((Severity.NORMAL, "#7fb3d5"), (Severity.HIGH, "#c0504d")):
        counts = [
            int(stats.value("deviations_reported", TOTAL, dimension(kind=k, severity=severity), 0) or 0)
            for k in kinds
        ]
        ax.bar(
            range(len(kinds)), counts, bottom=bottom, color=color, label=SEVERITY_LABELS[lang][severity.value]
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    for x, total in enumerate(bottom):
        ax.text(
            x,
            total + 0.05 * max([*bottom, 1]),
            format_value(total, Unit.COUNT, lang),
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(range(len(kinds)), [_wrap(DEVIATION_KIND_LABELS[lang][k]) for k in kinds], fontsize=8)
    ax.set_ylim(0, max([*bottom, 1]) * 1.2)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(AXIS_LABELS[lang]["deviations_y"])
    ax.set_xlabel(AXIS_LABELS[lang]["deviations_x"])
    ax.legend(title=TEXT[lang]["severity"], fontsize=8, title_fontsize=8)
    if not any(bottom):
        _no_data(ax, lang)
    return chart


def _chart_deviations_open(stats: ReportStats, lang: str) -> Chart:
    orgs = stats.organisations_in(Section.DEVIATIONS)
    chart, ax = _new_chart("deviations_open_closed", stats, lang, height=max(3.5, 1.5 + 0.45 * len(orgs)))
    left = [0] * len(orgs)
    for metric, key, color in (
        ("deviations_open", "series_open", "#c0504d"),
        ("deviations_closed", "series_closed", "#6aa84f"),
    ):
        counts = [int(stats.value(metric, o, "", 0) or 0) for o in orgs]
        bars = ax.barh(range(len(orgs)), counts, left=left, color=color, label=TEXT[lang][key])
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], label_type="center", color="white")
        left = [a + c for a, c in zip(left, counts, strict=True)]
    ax.set_yticks(range(len(orgs)), [_org_tick(stats, o, lang) for o in orgs], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(0, max([*left, 1]) * 1.1)
    ax.set_xlabel(AXIS_LABELS[lang]["open_closed_x"])
    ax.set_ylabel(AXIS_LABELS[lang]["open_closed_y"])
    if any(left):
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        _no_data(ax, lang)
    return chart


def render_charts(stats: ReportStats, language: str = "sv") -> list[Chart]:
    """Every chart of the report, as matplotlib figures (Agg) with their titles."""
    lang = _lang(language)
    with rc_context(_LITERAL_TEXT):
        charts = [
            _chart_plans(stats, lang),
            _chart_documentation(stats, lang),
            _chart_invitations(stats, lang),
            _chart_deviation_kinds(stats, lang),
            _chart_deviations_open(stats, lang),
        ]
    for chart in charts:
        _draw_literally(chart.figure)
    return charts


# --- tables and text -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    caption: str
    headers: list[str]
    rows: list[dict[str, Any]]  # {"cells": [str, …], "total": bool}


def _table(
    stats: ReportStats,
    lang: str,
    caption: str,
    first_header: str,
    metrics: Sequence[str],
    keys: Iterable[tuple[str, str, str]],
) -> Table:
    """Rows of (row label, organisation, dimension); a column per metric."""
    rows = []
    for label, org, dim in keys:
        if stats.value(metrics[0], org, dim) is None and METRICS[metrics[0]].unit == Unit.COUNT:
            continue  # no such row in the figures
        cells = [label, *(format_value(stats.value(m, org, dim), METRICS[m].unit, lang) for m in metrics)]
        rows.append({"cells": cells, "total": org == TOTAL and not dim})
    return Table(caption, [first_header, *(metric_label(m, lang) for m in metrics)], rows)


def _org_keys(stats: ReportStats, section: Section, lang: str, dim: str = "") -> list[tuple[str, str, str]]:
    return [(organisation_label(stats, o, lang), o, dim) for o in [*stats.organisations_in(section), TOTAL]]


def _tables(stats: ReportStats, lang: str) -> dict[Section, list[Table]]:
    t = TEXT[lang]
    plans = [m for m in METRICS if METRICS[m].section == Section.PLANS]
    docs = [m for m in METRICS if METRICS[m].section == Section.DOCUMENTATION]
    invites = [m for m in METRICS if METRICS[m].section == Section.INVITATIONS]
    dev_counts = [
        "deviations_reported",
        "deviations_open",
        "deviations_closed",
        "deviations_acknowledged",
        "deviations_replied",
    ]
    dev_medians = ["deviation_acknowledgement_median_days", "deviation_reply_median_days"]

    doc_keys = []
    for o in [*stats.organisations_in(Section.DOCUMENTATION), TOTAL]:
        for dim in ("", "meeting_kind=sip_meeting", "meeting_kind=follow_up"):
            kind = dimension_label(dim, lang) or t["all_meetings"]
            doc_keys.append((f"{organisation_label(stats, o, lang)} – {kind}", o, dim))

    kinds = sorted(
        set(stats.dimension_values("invitations_sent", "invitee_kind"))
        | set(stats.dimension_values("attendance_recorded", "invitee_kind")),
        key=lambda k: ORG_KIND_LABELS[lang].get(k, k),
    )
    kind_keys = [(ORG_KIND_LABELS[lang].get(k, k), TOTAL, dimension(invitee_kind=k)) for k in kinds]
    kind_keys.append((t["all_kinds"], TOTAL, ""))
    convener_kind_keys = []
    for o in stats.organisations_in(Section.INVITATIONS):
        for k in [*kinds, None]:
            dim = dimension(invitee_kind=k) if k else ""
            kind = ORG_KIND_LABELS[lang].get(k, k) if k else t["all_kinds"]
            convener_kind_keys.append((f"{organisation_label(stats, o, lang)} – {kind}", o, dim))

    kind_sev_keys = []
    for k in DeviationKind:
        for s in Severity:
            dim = dimension(kind=k, severity=s)
            label = dimension_label(dim, lang)
            kind_sev_keys.append((label, TOTAL, dim))
    kind_sev_keys.append((t["total"], TOTAL, ""))
    sev_keys = [(SEVERITY_LABELS[lang][s.value], TOTAL, dimension(severity=s)) for s in Severity]
    sev_keys.append((t["all_severities"], TOTAL, ""))

    return {
        Section.PLANS: [
            _table(
                stats,
                lang,
                t["per_organisation"],
                t["convener"],
                plans,
                _org_keys(stats, Section.PLANS, lang),
            )
        ],
        Section.DOCUMENTATION: [_table(stats, lang, t["per_organisation"], t["convener"], docs, doc_keys)],
        Section.INVITATIONS: [
            _table(stats, lang, t["per_kind"], t["invitee_kind"], invites, kind_keys),
            _table(stats, lang, t["per_convener_kind"], t["convener"], invites, convener_kind_keys),
        ],
        Section.DEVIATIONS: [
            _table(stats, lang, t["per_kind_severity"], t["deviation_kind"], dev_counts, kind_sev_keys),
            _table(
                stats,
                lang,
                t["per_organisation"],
                t["concerning"],
                dev_counts + dev_medians,
                _org_keys(stats, Section.DEVIATIONS, lang),
            ),
            _table(
                stats, lang, t["per_severity"], t["severity"], ["deviations_reported", *dev_medians], sev_keys
            ),
        ],
    }


SECTION_CHARTS = {
    Section.PLANS: ["plans_by_stage"],
    Section.DOCUMENTATION: ["documentation_in_time"],
    Section.INVITATIONS: ["invitations_by_org_kind"],
    Section.DEVIATIONS: ["deviations_by_kind", "deviations_open_closed"],
}


def _due_note(stats: ReportStats, lang: str) -> str:
    t = TEXT[lang]
    note = t["due_note"].format(days=format_value(stats.documentation_due[TOTAL], Unit.WORKING_DAYS, lang))
    overrides = [
        t["due_override"].format(
            org=organisation_label(stats, code, lang), days=format_value(days, Unit.WORKING_DAYS, lang)
        )
        for code, days in sorted(stats.documentation_due.items())
        if code != TOTAL
    ]
    return f"{note} ({'; '.join(overrides)})." if overrides else f"{note}."


def render_html(
    stats: ReportStats,
    language: str = "sv",
    chart_sources: Mapping[str, str] | None = None,
    chart_titles: Mapping[str, str] | None = None,
    generated_at: datetime | None = None,
    weekly: bool = False,
    csv_href: str | None = "figures.csv",
) -> str:
    """The report page; ``chart_sources`` maps chart name to an ``<img src>`` (a path or a data URI)."""
    lang = _lang(language)
    t = TEXT[lang]
    tables = _tables(stats, lang)
    titles = chart_titles or CHART_TITLES[lang]
    sections = []
    for section in Section:
        sections.append(
            {
                "title": SECTION_TITLES[lang][section],
                "note": _due_note(stats, lang) if section == Section.DOCUMENTATION else None,
                "charts": [
                    {"src": chart_sources[name], "alt": titles[name]}
                    for name in SECTION_CHARTS[section]
                    if chart_sources and name in chart_sources
                ],
                "tables": tables[section],
            }
        )
    definitions = [
        {
            "label": metric_label(m, lang),
            "unit": UNIT_LABELS[lang][METRICS[m].unit],
            "text": metric_explanation(m, lang),
        }
        for m in METRICS
    ]
    env = _environment()
    return env.get_template("report.html.j2").render(
        lang=lang,
        t=t,
        title=report_title(stats, lang, weekly),
        period=period_text(stats),
        scope=scope_text(stats, lang),
        as_of=stats.as_of.isoformat(),
        generated=local_datetime(generated_at).strftime("%Y-%m-%d %H:%M") if generated_at else None,
        key_figures=key_figures(stats, lang),
        sections=sections,
        definitions=definitions,
        csv_href=csv_href,
    )


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _csv_value(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(round(value, 2))
    return str(value)


CSV_COLUMNS = ("metric", "organisation", "dimension", "value", "unit", "label", "organisation_name")


def figures_csv(stats: ReportStats, language: str = "sv") -> str:
    """Every figure, one per line; ``organisation`` is the code or ``*`` for the total.

    Every cell goes through ``csv_cell``: an organisation named ``=HYPERLINK(…)`` is text in Excel, not a
    formula; numbers stay numbers."""
    lang = _lang(language)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for f in stats.figures:
        label = metric_label(f.metric, lang)
        if f.dimension:
            label = f"{label} – {dimension_label(f.dimension, lang)}"
        cells = [
            f.metric,
            f.organisation,
            f.dimension,
            _csv_value(f.value),
            f.unit,
            label,
            organisation_label(stats, f.organisation, lang),
        ]
        writer.writerow([csv_cell(c) for c in cells])
    return buf.getvalue()


def table_rows(stats: ReportStats, language: str = "sv") -> list[dict[str, Any]]:
    """Every figure as a row for a Prefect table artifact."""
    lang = _lang(language)
    return [
        {
            "metric": f.metric,
            "label": metric_label(f.metric, lang),
            "organisation": f.organisation,
            "dimension": f.dimension,
            "value": round(f.value, 2) if isinstance(f.value, float) else f.value,
            "unit": f.unit,
        }
        for f in stats.figures
    ]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(stats: ReportStats, language: str = "sv", weekly: bool = False) -> str:
    """Key figures and a per-organisation table, as Markdown for a Prefect artifact."""
    lang = _lang(language)
    t = TEXT[lang]
    lines = [
        f"# {_md(report_title(stats, lang, weekly))}",
        "",
        f"{t['scope']}: {_md(scope_text(stats, lang))} · {t['as_of']} {stats.as_of.isoformat()}",
        "",
        f"## {t['key_figures']}",
        "",
        f"| {t['figure']} | {t['value']} |",
        "|---|---:|",
        *(f"| {_md(label)} | {_md(value)} |" for label, value in key_figures(stats, lang)),
        "",
        f"## {t['per_organisation']}",
        "",
    ]
    columns = (
        "plans_identified",
        "plans_started",
        "plans_held",
        "plans_followed_up",
        "plans_ended",
        "documented_in_time_share",
        "invitation_answer_rate",
        "attendance_rate",
    )
    lines.append(f"| {t['convener']} | " + " | ".join(_md(metric_label(m, lang)) for m in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    orgs = sorted(
        set(stats.organisations_in(Section.PLANS))
        | set(stats.organisations_in(Section.DOCUMENTATION))
        | set(stats.organisations_in(Section.INVITATIONS)),
        key=lambda c: organisation_label(stats, c, lang).casefold(),
    )
    for o in [*orgs, TOTAL]:
        cells = [format_value(stats.value(m, o), METRICS[m].unit, lang) for m in columns]
        lines.append(f"| {_md(organisation_label(stats, o, lang))} | " + " | ".join(cells) + " |")
    lines += ["", t["privacy"], ""]
    return "\n".join(lines)


# --- the folder ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFolder:
    path: Path
    index_html: Path
    figures_csv: Path
    charts: dict[str, Path]
    chart_titles: dict[str, str]


def _write_atomically(path: Path, data: bytes) -> None:
    """Write then rename: a killed run leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ChartImage:
    """A chart as PNG bytes: rendered once, written to the folder and embedded in the mail."""

    name: str
    title: str
    png: bytes


def chart_images(stats: ReportStats, language: str = "sv") -> list[ChartImage]:
    return [ChartImage(c.name, c.title, c.png()) for c in render_charts(stats, language)]


def write_report(
    stats: ReportStats,
    out_dir: Path | str,
    language: str = "sv",
    generated_at: datetime | None = None,
    weekly: bool = False,
    images: Sequence[ChartImage] | None = None,
) -> ReportFolder:
    """Write ``index.html``, ``charts/*.png`` and ``figures.csv`` into ``out_dir`` (created if needed).

    ``images`` are charts already rendered in ``language`` (``chart_images``); rendered here when absent.
    """
    lang = _lang(language)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    charts_dir = out / "charts"
    charts_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    titles: dict[str, str] = {}
    for image in images if images is not None else chart_images(stats, lang):
        path = charts_dir / f"{image.name}.png"
        _write_atomically(path, image.png)
        paths[image.name], titles[image.name] = path, image.title
    csv_path = out / "figures.csv"
    _write_atomically(csv_path, figures_csv(stats, lang).encode("utf-8-sig"))
    html = render_html(
        stats,
        lang,
        chart_sources={name: f"charts/{p.name}" for name, p in paths.items()},
        chart_titles=titles,
        generated_at=generated_at,
        weekly=weekly,
    )
    index = out / "index.html"
    _write_atomically(index, html.encode("utf-8"))
    return ReportFolder(out, index, csv_path, paths, titles)


def self_contained_html(
    stats: ReportStats,
    language: str = "sv",
    generated_at: datetime | None = None,
    weekly: bool = False,
    images: Sequence[ChartImage] | None = None,
) -> str:
    """The report as one file (charts as data URIs), for a mail attachment."""
    lang = _lang(language)
    charts = images if images is not None else chart_images(stats, lang)
    sources = {c.name: "data:image/png;base64," + base64.b64encode(c.png).decode("ascii") for c in charts}
    titles = {c.name: c.title for c in charts}
    return render_html(stats, lang, sources, titles, generated_at, weekly, csv_href=None)


# --- the weekly report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeeklyReport:
    period: Period
    stats: ReportStats
    folder: ReportFolder
    recipients: int
    enqueued: int


def last_week_ending(today: date) -> date:
    """The Sunday before ``today``: the last day of the latest complete week."""
    return today - timedelta(days=today.weekday() + 1)


def weekly_report_key(week_ending: date, contact_id: int) -> str:
    return f"report:weekly:{week_ending.isoformat()}:c{contact_id}"


def mail_context(stats: ReportStats, language: str = "sv") -> dict[str, Any]:
    """The plain figures for the notice templates: period, scope and sections of (label, value)."""
    lang = _lang(language)
    sections = []
    for section in Section:
        rows = [
            {"label": metric_label(m, lang), "value": format_value(stats.value(m), METRICS[m].unit, lang)}
            for m in KEY_FIGURES
            if METRICS[m].section == section
        ]
        sections.append({"title": SECTION_TITLES[lang][section], "rows": rows})
    return {
        "period": {"start": stats.period.start, "end": stats.period.end},
        "organisation": scope_text(stats, lang) if stats.scope else None,
        "title": report_title(stats, lang, weekly=True),
        "intro": TEXT[lang]["mail_intro"],
        "privacy": TEXT[lang]["privacy"],
        "sections": sections,
    }


def _attachment(filename: str, content_type: str, data: bytes) -> dict[str, str]:
    return {
        "filename": filename,
        "content_type": content_type,
        "content_base64": base64.b64encode(data).decode("ascii"),
    }


def weekly_report_drafts(
    stats: ReportStats,
    recipients: Sequence[tuple[int, str, str]],
    week_ending: date,
    settings: Settings,
    generated_at: datetime | None = None,
    images: Mapping[str, Sequence[ChartImage]] | None = None,
) -> list[NoticeDraft]:
    """One ``report.weekly`` draft per recipient (contact id, email, language), in their language.

    Subject and body come from the notice templates (``report.<lang>.*``, overridable like every notice);
    ``images`` maps a language to its charts already rendered; the others are rendered here, once.
    """
    per_language: dict[str, tuple[str, str, str, dict[str, Any]]] = {}
    drafts = []
    for contact_id, email, language in recipients:
        lang = language if language in LANGUAGES else "sv"
        if lang not in per_language:
            t = TEXT[lang]
            end = week_ending.isoformat()
            html = self_contained_html(
                stats, lang, generated_at, weekly=True, images=(images or {}).get(lang)
            )
            files = {
                "files": [
                    _attachment(t["attachment_html"].format(end=end), "text/html", html.encode("utf-8")),
                    _attachment(
                        t["attachment_csv"].format(end=end),
                        "text/csv",
                        figures_csv(stats, lang).encode("utf-8-sig"),
                    ),
                ]
            }
            mail = render_report(mail_context(stats, lang), lang, settings, kind=REPORT_KIND)
            per_language[lang] = (mail.subject, mail.text, mail.html, files)
        subject, text, body_html, files = per_language[lang]
        drafts.append(
            NoticeDraft(
                key=weekly_report_key(week_ending, contact_id),
                kind=REPORT_KIND,
                address=email,
                subject=subject,
                body_text=text,
                body_html=body_html,
                contact_id=contact_id,
                attachments=files,
            )
        )
    return drafts


def report_recipients(session: Session) -> list[tuple[int, str, str]]:
    stmt = (
        select(Contact.id, Contact.email, Contact.language)
        .where(Contact.report_recipient.is_(True))
        .order_by(Contact.id)
    )
    return [
        (cid, email, str(getattr(lang, "value", lang))) for cid, email, lang in session.execute(stmt).tuples()
    ]


def weekly_report(
    engine: Engine,
    week_ending: date,
    out_dir: Path | str,
    settings: Settings,
    policy: EffectivePolicy,
    now: datetime,
    *,
    language: str = "sv",
) -> WeeklyReport:
    """Figures for the seven days ending ``week_ending``, judged on ``now``'s local date; the folder goes
    to ``out_dir/week-<week_ending>`` (rewritten on a rerun) and the mails into the ledger (once)."""
    period = Period.week_ending(week_ending)
    lang = _lang(language)
    with Session(engine) as session:
        stats = compute_stats(session, period, policy, as_of=local_date(now))
    images = {lang: chart_images(stats, lang)}
    folder_path = Path(out_dir) / f"week-{week_ending.isoformat()}"
    folder = write_report(stats, folder_path, lang, now, weekly=True, images=images[lang])
    with session_scope(engine) as session:
        recipients = report_recipients(session)
        # skip rendering mails already in the ledger; the insert below still settles any race
        keys = {weekly_report_key(week_ending, cid): cid for cid, _, _ in recipients}
        queued = (
            set(session.scalars(select(Notice.key).where(Notice.key.in_(list(keys)))).all())
            if keys
            else set()
        )
        todo = [r for r in recipients if weekly_report_key(week_ending, r[0]) not in queued]
        drafts = weekly_report_drafts(stats, todo, week_ending, settings, now, images) if todo else []
        enqueued = enqueue(session, drafts, now, settings.mail_domain)
    return WeeklyReport(period, stats, folder, len(recipients), enqueued)

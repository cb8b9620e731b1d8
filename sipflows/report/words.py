"""The report's words: Swedish and English labels, and how numbers, organisations and periods are written.

Kept apart from what draws and writes the report so that a translator finds every word in one place
(the metrics' labels and explanations are in ``sipflows.metrics``, beside their definitions; the
register's words — meeting, deviation and organisation kinds, severities — in ``sipflows.labels``, shared
with the notices), and so
that the charts, the page and the weekly mail say the same thing the same way.
"""

from __future__ import annotations

from datetime import timedelta

from sipflows import labels
from sipflows.labels import headings
from sipflows.metrics import METRICS, Section, Unit
from sipflows.stats import TOTAL, Period, ReportStats, Value

LANGUAGES = ("sv", "en")


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

# the register's words (sipflows.labels) as the report's rows and columns start with them
ORG_KIND_LABELS = headings(labels.ORG_KIND_LABELS)
DEVIATION_KIND_LABELS = headings(labels.DEVIATION_KIND_LABELS)
SEVERITY_LABELS = headings(labels.SEVERITY_LABELS)
MEETING_KIND_LABELS = headings(labels.MEETING_KIND_PLURALS)

# metric: (Swedish label, Swedish explanation, English label, English explanation)

PLAN_STAGES = (  # a plan's way from identified to ended: the plans chart's bars, left to right
    "plans_identified",
    "plans_offered",
    "plans_started",
    "plans_held",
    "plans_followed_up",
    "plans_ended",
    "plans_ended_consent_withdrawn",
)

KEY_FIGURES = (
    *PLAN_STAGES,
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


def report_language(language: str) -> str:
    """``sv`` or ``en`` (a ``Language`` member will do); anything else is a ``ValueError``."""
    lang = str(getattr(language, "value", language)).lower()
    if lang not in LANGUAGES:
        raise ValueError(f"report language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    return lang


def metric_label(metric: str, lang: str) -> str:
    return METRICS[metric].words(lang)[0]


def metric_explanation(metric: str, lang: str) -> str:
    """How the figure is counted, in plain words."""
    return METRICS[metric].words(lang)[1]


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
    lang = report_language(lang)
    return [(metric_label(m, lang), format_value(stats.value(m), METRICS[m].unit, lang)) for m in KEY_FIGURES]

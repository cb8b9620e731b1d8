"""The report as files: the HTML page, the CSV of every figure, Markdown and rows for Prefect artifacts.

Everything here is text built from ``ReportStats`` with the report's words; every CSV cell goes through
``sipflows.hygiene.csv_cell`` because organisation names arrive from outside. Files are written
atomically so that a killed run leaves the old report or the new one.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from sipflows.hygiene import csv_cell
from sipflows.metrics import METRICS, Section, Unit
from sipflows.models import DeviationKind, Severity
from sipflows.report.charts import ChartImage, chart_images
from sipflows.report.words import (
    CHART_TITLES,
    ORG_KIND_LABELS,
    SECTION_TITLES,
    SEVERITY_LABELS,
    TEXT,
    UNIT_LABELS,
    dimension_label,
    format_value,
    key_figures,
    metric_explanation,
    metric_label,
    organisation_label,
    period_text,
    report_language,
    report_title,
    scope_text,
)
from sipflows.stats import TOTAL, ReportStats, Value, dimension
from sipflows.timeutil import local_datetime

TEMPLATES = Path(__file__).parent.parent / "report_templates"


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
    lang = report_language(language)
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
    lang = report_language(language)
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
    lang = report_language(language)
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
    lang = report_language(language)
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
    lang = report_language(language)
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
    lang = report_language(language)
    charts = images if images is not None else chart_images(stats, lang)
    sources = {c.name: "data:image/png;base64," + base64.b64encode(c.png).decode("ascii") for c in charts}
    titles = {c.name: c.title for c in charts}
    return render_html(stats, lang, sources, titles, generated_at, weekly, csv_href=None)

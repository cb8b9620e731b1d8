"""The report's charts: matplotlib on the Agg backend, one figure per question, every text drawn literally.

Organisation names come from the register, so nothing on a chart may be read as mathematics or TeX;
apart from the page so that the page and the mail can embed charts rendered once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.text import Text

from sipflows.metrics import Section, Unit
from sipflows.models import DeviationKind, Severity
from sipflows.report.words import (
    AXIS_LABELS,
    CHART_TITLES,
    DEVIATION_KIND_LABELS,
    ORG_KIND_LABELS,
    PLAN_STAGES,
    SEVERITY_LABELS,
    TEXT,
    format_value,
    metric_label,
    period_text,
    report_language,
    scope_text,
)
from sipflows.stats import TOTAL, ReportStats, dimension


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
    lang = report_language(language)
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


@dataclass(frozen=True)
class ChartImage:
    """A chart as PNG bytes: rendered once, written to the folder and embedded in the mail."""

    name: str
    title: str
    png: bytes


def chart_images(stats: ReportStats, language: str = "sv") -> list[ChartImage]:
    return [ChartImage(c.name, c.title, c.png()) for c in render_charts(stats, language)]

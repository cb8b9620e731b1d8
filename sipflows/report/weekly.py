"""The weekly report: last week's figures written to a folder and mailed, once, through the ledger.

One ``report.weekly`` notice per contact marked ``report_recipient``; the key
``report:weekly:<week ending>:c<contact id>`` makes a rerun send nothing twice. Subject and body come
from the notice templates in the contact's language; the self-contained HTML and the CSV travel as
attachments. This is what the weekly-report flow calls.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sipflows.db import read_scope, session_scope
from sipflows.metrics import METRICS, Section
from sipflows.models import Contact, Notice
from sipflows.notices.ledger import NoticeDraft, enqueue
from sipflows.notices.render import REPORT_WEEKLY, render_report
from sipflows.policy import EffectivePolicy
from sipflows.report.charts import ChartImage, chart_images
from sipflows.report.page import ReportFolder, figures_csv, self_contained_html, write_report
from sipflows.report.words import (
    KEY_FIGURES,
    LANGUAGES,
    SECTION_TITLES,
    TEXT,
    format_value,
    metric_label,
    report_language,
    report_title,
    scope_text,
)
from sipflows.settings import Settings
from sipflows.stats import Period, ReportStats, compute_stats
from sipflows.timeutil import local_date

REPORT_KIND = REPORT_WEEKLY


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
    lang = report_language(language)
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
    lang = report_language(language)
    with read_scope(engine) as session:
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

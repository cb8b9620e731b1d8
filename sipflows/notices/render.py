"""Rendering notices: Jinja2 templates per notice family and language, fed only allow-listed plain values.

Templates are looked up first in the administrator's folder (``Settings.template_dir``) and then among the
built-in ones. For a notice kind like ``documentation.overdue`` in Swedish the subject is the first of
``documentation.overdue.sv.subject.txt`` and ``documentation.sv.subject.txt`` that exists (likewise
``….txt`` for the plain-text body and ``….html`` for the HTML body), so an administrator can override one
kind or a whole family by dropping a file with that name into the folder.

Privacy by construction: ``render`` refuses anything but plain values (str, numbers, dates, lists and
dicts of them), so an ORM object — and with it the individual's name, personal identity number, case
notes or a deviation's free text — can never reach a template. The ``*_view`` helpers below are the allow
list: they take the few fields a notice may show and nothing else.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from sipflows.labels import (  # the words notices and the report share
    DEVIATION_KIND_LABELS,
    MEETING_KIND_LABELS,
    MONTHS,
    PRINCIPAL_LABELS,
    SEVERITY_LABELS,
    WEEKDAYS,
)
from sipflows.notices.flat import CannotFlatten, flat_template
from sipflows.settings import Settings, get_settings
from sipflows.stages import split_stage
from sipflows.timeutil import local_datetime

BUILTIN_TEMPLATES = Path(__file__).with_name("templates")
LANGUAGES = ("sv", "en")
DEFAULT_LANGUAGE = "sv"
SUBJECT_MAX = 300  # Notice.subject column

# Every kind a notice can have. Findings map to "<check>.<stage without level or due date>".
FINDING_KINDS = frozenset(
    {
        "documentation.reminder",
        "documentation.overdue",
        "documentation.escalation",
        "meeting_held.reminder",
        "meeting_held.escalation",
        "invitations.reminder",
        "invitations.convener-alert",
        "pre_meeting.alert",
        "follow_up.reminder",
        "follow_up.overdue",
        "follow_up.escalation",
        "deviations.acknowledgement-reminder",
        "deviations.acknowledgement-escalation",
        "deviations.reply-reminder",
        "deviations.reply-escalation",
        "first_meeting.reminder",
        "first_meeting.escalation",
    }
)
MEETING_INVITATION = "meeting.invitation"
MEETING_UPDATE = "meeting.update"
MEETING_CANCEL = "meeting.cancel"
MEETING_KINDS = frozenset({MEETING_INVITATION, MEETING_UPDATE, MEETING_CANCEL})
REPORT_WEEKLY = "report.weekly"
REPORT_KINDS = frozenset({REPORT_WEEKLY})
ALL_KINDS = FINDING_KINDS | MEETING_KINDS | REPORT_KINDS


class RenderError(ValueError):
    """A notice cannot be rendered: unknown kind, a missing template, or a non-plain value in the context."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def language_of(value: object) -> str:
    """The notice language for a contact's language value: English when it says so, else Swedish."""
    text = str(getattr(value, "value", value) or "").lower()
    return text if text in LANGUAGES else DEFAULT_LANGUAGE


def finding_kind(check: str, stage: str) -> str:
    """The notice kind for a finding's check and stage; unknown ones are an error, never a silent drop."""
    name, _ = split_stage(stage)
    kind = f"{check}.{name}"
    if kind not in FINDING_KINDS:
        raise RenderError(f"no notice kind for check {check!r} stage {stage!r} (looked for {kind!r})")
    return kind


# --- the allow list: plain views of the few fields a notice may show --------------------------------


# A sweep shows the same few dates and clock times in thousands of notices: each is worded once. The
# caches hold strings only; every view is a new dict.


@lru_cache(maxsize=4096)
def _date_words(d: date, lang: str) -> tuple[str, str, str]:
    weekday = WEEKDAYS[lang][d.weekday()]
    month = MONTHS[lang][d.month - 1]
    return d.isoformat(), weekday, f"{weekday} {d.day} {month} {d.year}"


@lru_cache(maxsize=4096)
def _local_clock(dt: datetime) -> tuple[date, str]:
    """The Stockholm date and ``HH:MM`` of an instant."""
    local = local_datetime(dt)
    return local.date(), local.strftime("%H:%M")


def date_view(d: date | None, lang: str) -> dict[str, Any] | None:
    if d is None:
        return None
    iso, weekday, text = _date_words(d, lang)
    return {"iso": iso, "weekday": weekday, "text": text}


def _safe_link(link: str | None) -> str | None:
    """Only web links become clickable; anything else (``javascript:``…) is not a link."""
    if link and re.match(r"^https?://", link.strip(), re.IGNORECASE):
        return link.strip()
    return None


def meeting_view(
    *,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    place: str | None,
    digital_link: str | None,
    lang: str,
    purpose: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The meeting as people know it: local Stockholm date, weekday and clock times."""
    (start_date, start), (end_date, end) = _local_clock(starts_at), _local_clock(ends_at)
    kind = str(getattr(kind, "value", kind))
    link = (digital_link or "").strip() or None
    label = MEETING_KIND_LABELS[lang].get(kind, kind)
    return {
        "code": code,
        "kind": kind,
        "kind_label": label,
        "kind_title": label[:1].upper() + label[1:],
        "date": date_view(start_date, lang),
        "end_date": date_view(end_date, lang) if end_date != start_date else None,
        "start": start,
        "end": end,
        "place": (place or "").strip() or None,
        "link": link,
        "link_href": _safe_link(link),
        "purpose": (purpose or "").strip() or None,
    }


def contact_view(name: str, email: str, organisation: str | None) -> dict[str, Any]:
    """A staff contact (convener, coordinator): whom to turn to with questions."""
    return {"name": name, "email": email, "organisation": organisation}


def deviation_view(
    *,
    code: str,
    kind: str,
    severity: str,
    reported_at: datetime,
    concerning_organisation: str | None,
    lang: str,
) -> dict[str, Any]:
    """A deviation by its code, kind and severity — its free-text description is deliberately absent."""
    kind = str(getattr(kind, "value", kind))
    severity = str(getattr(severity, "value", severity))
    return {
        "code": code,
        "kind": kind,
        "kind_label": DEVIATION_KIND_LABELS[lang].get(kind, kind),
        "severity": severity,
        "severity_label": SEVERITY_LABELS[lang].get(severity, severity),
        "high": severity == "high",
        "reported": date_view(_local_clock(reported_at)[0], lang),
        "concerning_organisation": concerning_organisation,
    }


def principal_labels(principals: Sequence[str], lang: str) -> list[str]:
    return [PRINCIPAL_LABELS[lang].get(str(p), str(p)) for p in principals]


# --- the environment -----------------------------------------------------------------------------------


_PLAIN = (str, bool, int, float, Decimal, date)
# The same types exactly, and None: a set look-up settles nearly every value before isinstance is asked.
_EXACTLY_PLAIN = frozenset({str, bool, int, float, Decimal, date, datetime, type(None)})


def _check_plain(value: Any, path: str) -> None:
    if type(value) in _EXACTLY_PLAIN or isinstance(value, _PLAIN):
        return
    if type(value) is dict or isinstance(value, Mapping):
        for k, v in value.items():
            if type(k) is not str and not isinstance(k, str):
                raise RenderError(f"render context key {path}[{k!r}] is not a string")
            if type(v) not in _EXACTLY_PLAIN and not isinstance(v, _PLAIN):  # spelt out for containers only
                _check_plain(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if type(v) not in _EXACTLY_PLAIN and not isinstance(v, _PLAIN):
                _check_plain(v, f"{path}[{i}]")
        return
    raise RenderError(
        f"render context value {path} is a {type(value).__name__}: only plain values may reach a template"
    )


def _one_line(text: str) -> str:
    """Subjects are headers: one line, no control characters, within the column's length."""
    line = " ".join(text.split())
    return line if len(line) <= SUBJECT_MAX else line[: SUBJECT_MAX - 1].rstrip() + "…"


class _BuiltinEnvironment(Environment):
    """For the built-in templates: ``meeting.date`` on the plain dicts of a context looks the key up
    first (Jinja asks for an attribute first, and a dict has none: an exception per look-up)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


@dataclass(frozen=True)
class NoticeTemplates:
    """The three templates of one notice kind in one language."""

    subject: Template
    text: Template
    html: Template


class Renderer:
    """Renders notice parts from the override folder first, then the built-in templates."""

    def __init__(self, template_dir: Path | None = None) -> None:
        loaders = []
        if template_dir is not None:
            if not Path(template_dir).is_dir():
                raise RenderError(f"template folder {template_dir} does not exist")
            loaders.append(FileSystemLoader(str(template_dir)))
        loaders.append(FileSystemLoader(str(BUILTIN_TEMPLATES)))
        self.template_dir = template_dir
        self._flat: dict[tuple[str, str, str], Template] = {}
        # Sandboxed: override templates come from a folder an administrator edits, not from code review;
        # and they are reloaded when edited. The built-in templates alone are code shipped with sipflows:
        # they need neither, and render about a third faster without (the sweep renders thousands).
        environment = _BuiltinEnvironment if template_dir is None else SandboxedEnvironment
        self.env = environment(
            loader=ChoiceLoader(loaders),
            auto_reload=template_dir is not None,
            autoescape=select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def template_names(self, kind: str, lang: str, part: str) -> list[str]:
        """Candidate file names, most specific first: the kind, then its family."""
        family = kind.split(".", 1)[0]
        return [f"{kind}.{lang}.{part}", f"{family}.{lang}.{part}"]

    def template(self, kind: str, lang: str, part: str) -> Template:
        """The template for one part: the override folder's if it has one (edited files are reloaded).

        The built-in templates alone are compiled once each with their layout and includes inlined
        (:func:`flat_template`): the same output, one context per render instead of up to four."""
        names = self.template_names(kind, lang, part)
        if self.template_dir is None and (found := self._flat.get((kind, lang, part))) is not None:
            return found
        try:
            template = self.env.select_template(names)
        except Exception as exc:  # TemplatesNotFound, TemplateSyntaxError: name the files looked for
            raise RenderError(f"no usable template for {kind} ({lang}) {part}: {exc}") from exc
        if self.template_dir is None and template.name is not None:
            with contextlib.suppress(CannotFlatten):  # else as loaded: a little slower
                template = flat_template(self.env, template.name)
            self._flat[kind, lang, part] = template
        return template

    def render_part(self, kind: str, lang: str, part: str, context: Mapping[str, Any]) -> str:
        return self.template(kind, lang, part).render(context)

    def templates(self, kind: str, lang: str) -> NoticeTemplates:
        """Subject, text and HTML templates of a kind in a language, looked up once for a batch of
        notices (:meth:`render` with ``templates``): each look-up asks the loaders and the file system."""
        if kind not in ALL_KINDS:
            raise RenderError(f"unknown notice kind {kind!r}")
        lang = language_of(lang)
        return NoticeTemplates(
            self.template(kind, lang, "subject.txt"),
            self.template(kind, lang, "txt"),
            self.template(kind, lang, "html"),
        )

    def render_text(self, kind: str, lang: str, part: str, context: Mapping[str, Any]) -> str:
        """One extra plain-text part (the calendar event's summary and description)."""
        lang = language_of(lang)
        _check_plain(context, "context")
        return self.render_part(kind, lang, f"{part}.txt", {**context, "kind": kind, "lang": lang}).strip()

    def render(
        self, kind: str, lang: str, context: Mapping[str, Any], templates: NoticeTemplates | None = None
    ) -> Rendered:
        """Subject, plain-text and HTML body for one notice; the context must be plain values.

        ``templates``: this kind's in this language from :meth:`templates`, when rendering many."""
        if kind not in ALL_KINDS:
            raise RenderError(f"unknown notice kind {kind!r}")
        lang = language_of(lang)
        _check_plain(context, "context")
        if templates is None:
            templates = self.templates(kind, lang)
        base = {**context, "kind": kind, "lang": lang}
        subject = _one_line(templates.subject.render(base))
        full = {**base, "subject": subject}
        text = templates.text.render(full).strip() + "\n"
        html = templates.html.render(full).strip() + "\n"
        return Rendered(subject, text, html)


@lru_cache(maxsize=8)
def get_renderer(template_dir: Path | None = None) -> Renderer:
    """One renderer per override folder (Jinja caches compiled templates and reloads edited files)."""
    return Renderer(template_dir)


def render_report(
    figures: Mapping[str, Any], lang: str, settings: Settings | None = None, kind: str = REPORT_WEEKLY
) -> Rendered:
    """A statistics report. ``figures`` is plain values, by convention::

        {"period": {"start": date, "end": date}, "organisation": str | None,
         "sections": [{"title": str, "rows": [{"label": str, "value": str | int | float}]}],
         "title": str | None, "intro": str | None, "privacy": str | None}

    and it may carry more keys (as ``figures``) for override templates. No register data is read here.
    """
    settings = settings or get_settings()
    lang = language_of(lang)
    period = figures.get("period") or {}
    context = {
        "organisation": figures.get("organisation"),
        "title": figures.get("title"),
        "intro": figures.get("intro"),
        "privacy": figures.get("privacy"),
        "sections": figures.get("sections") or [],
        "period_start": date_view(period.get("start"), lang),
        "period_end": date_view(period.get("end"), lang),
        "figures": dict(figures),
        "sender_name": settings.sender_name,
    }
    return get_renderer(settings.template_dir).render(kind, lang, context)

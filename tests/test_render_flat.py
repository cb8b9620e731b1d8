"""The built-in templates compiled flat (layout and includes inlined) render exactly as Jinja renders them."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader, Environment, StrictUndefined, UndefinedError, select_autoescape

from sipflows.notices.flat import CannotFlatten, flat_template
from sipflows.notices.render import (
    BUILTIN_TEMPLATES,
    FINDING_KINDS,
    MEETING_KINDS,
    Renderer,
    contact_view,
    date_view,
    deviation_view,
    meeting_view,
)
from tests.test_render import full_context

RENDERED = sorted(p.name for p in BUILTIN_TEMPLATES.iterdir() if not p.name.startswith("_"))
STAGES = sorted({k.split(".", 1)[1] for k in FINDING_KINDS | MEETING_KINDS} | {"weekly"})


def variants(lang: str) -> list[dict[str, Any]]:
    """Contexts that take every branch the templates have: stages, levels, optional parts, odd values."""
    out = []
    base = full_context("documentation.reminder", lang)
    starts = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)  # ends on the next local day
    meetings = [
        base["meeting"],
        meeting_view(
            kind="pre_meeting",
            starts_at=starts,
            ends_at=starts + timedelta(hours=2),
            place=None,
            digital_link="javascript:alert(1)",
            lang=lang,
            code="M<1>&",
        ),
        meeting_view(
            kind="follow_up",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=30),
            place=" <b>Rum</b> & 'hall' ",
            digital_link="https://meet.example/x?a=1&b=<2>",
            purpose="Uppföljning",
            lang=lang,
        ),
    ]
    coordinators = [None, contact_view("Kim", "kim@region.example.se", None)]
    alerts = [
        base["alert"],
        {"unanswered": 0, "declined": 0, "missing_principals": []},
        {"unanswered": 3, "declined": 0, "missing_principals": ["kommunen", "regionen"]},
    ]
    deviations = [
        base["deviation"],
        deviation_view(
            code="AVV<&>",
            kind="other",
            severity="normal",
            reported_at=datetime(2026, 1, 1, 23, 30, tzinfo=UTC),
            concerning_organisation=None,
            lang=lang,
        ),
    ]
    for stage, level, meeting, coordinator, alert, deviation in itertools.product(
        STAGES, (None, 2), meetings, coordinators, alerts, deviations
    ):
        ctx = {**base, "stage": stage, "level": level, "meeting": meeting, "coordinator": coordinator}
        ctx.update(alert=alert, deviation=deviation, kind=f"x.{stage}", lang=lang, subject="Ämne <&>")
        out.append(ctx)
    for organisation, title, sections in itertools.product(
        (None, "Region <V>"),
        (None, "Vecka 13"),
        (
            [],
            [
                {"title": "Avvikelser <öppna>", "rows": [{"label": "hög & låg", "value": 3}]},
                {"title": "T", "rows": []},
            ],
        ),
    ):
        out.append(
            {
                "organisation": organisation,
                "title": title,
                "intro": title,
                "privacy": title,
                "sections": sections,
                "period_start": date_view(date(2026, 3, 23), lang),
                "period_end": date_view(date(2026, 3, 29), lang) if sections else None,
                "figures": {},
                "sender_name": "SIP & co",
                "kind": "report.weekly",
                "lang": lang,
                "subject": "Rapport <1>",
            }
        )
    return out


@pytest.mark.parametrize("name", RENDERED)
def test_every_builtin_template_flattens_and_renders_as_jinja_does(name: str) -> None:
    env = Renderer().env
    flat, loaded = flat_template(env, name), env.get_template(name)
    lang = name.split(".")[1]
    compared = 0
    for ctx in variants(lang):
        try:
            expected = loaded.render(ctx)
        except UndefinedError:
            with pytest.raises(UndefinedError):
                flat.render(ctx)
            continue
        assert flat.render(ctx) == expected
        compared += 1
    assert compared


def test_the_renderer_uses_the_flat_templates_for_the_builtin_ones_only(tmp_path: Path) -> None:
    assert Renderer().template("documentation.reminder", "sv", "html").blocks == {}  # the layout inlined
    (tmp_path / "documentation.sv.txt").write_text("Egen text {{ case.reference }}\n", encoding="utf-8")
    overridden = Renderer(tmp_path)
    # an override folder's renderer loads as Jinja does (layouts, sandbox, edited files reloaded)
    assert "content" in overridden.template("documentation.reminder", "sv", "html").blocks
    ctx = full_context("documentation.reminder", "sv")
    assert overridden.render("documentation.reminder", "sv", ctx).text == "Egen text SIP-2026-17\n"
    path = tmp_path / "documentation.sv.txt"
    path.write_text("Ändrad {{ case.reference }}\n", encoding="utf-8")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert overridden.render("documentation.reminder", "sv", ctx).text == "Ändrad SIP-2026-17\n"


def _env(templates: dict[str, str]) -> Environment:
    return Environment(
        loader=DictLoader(templates),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@pytest.mark.parametrize(
    "templates",
    [
        {"t.txt": "{% set x = 1 %}{{ x }}"},
        {"t.txt": "{% macro m() %}a{% endmacro %}{{ m() }}"},
        {"t.txt": "{% include name %}", "a.txt": "a"},
        {"t.txt": '{% include "a.txt" ignore missing %}'},
        {
            "t.txt": '{% extends "l.txt" %}{% block b %}{{ super() }}c{% endblock %}',
            "l.txt": "{% block b %}{% endblock %}",
        },
        {"t.txt": '{% extends "l.txt" %}outside', "l.txt": "{% block b %}{% endblock %}"},
        {"t.html": '{% include "a.txt" %}', "a.txt": "<{{ v }}>"},
        {"t.txt": '{% include "t.txt" %}'},
        {"t.txt": '{% include "missing.txt" %}'},
    ],
)
def test_what_cannot_be_inlined_simply_is_refused(templates: dict[str, str]) -> None:
    name = next(iter(templates))
    with pytest.raises(CannotFlatten):
        flat_template(_env(templates), name)


def test_a_layout_and_includes_inline() -> None:
    env = _env(
        {
            "t.html": '{% extends "l.html" %}\n{% block b %}\n<{{ v }}>\n'
            '{% include "i.html" %}\n{% endblock %}',
            "l.html": "<p>{{ v }}</p>\n{% block a %}A{% endblock %}{% block b %}B{% endblock %}\nend\n",
            "i.html": "{% if v %}[{{ v }}]{% endif %}\n",
        }
    )
    assert flat_template(env, "t.html").render(v="&") == env.get_template("t.html").render(v="&")
    assert flat_template(env, "t.html").render(v="&") == "<p>&amp;</p>\nA<&amp;>\n[&amp;]end"

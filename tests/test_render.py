"""Rendering: languages, local times and weekdays, override folders, escaping, and the plain-value guard."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sipflows.models import SipCase
from sipflows.notices.render import (
    ALL_KINDS,
    FINDING_KINDS,
    MEETING_KINDS,
    Renderer,
    RenderError,
    contact_view,
    date_view,
    deviation_view,
    finding_kind,
    meeting_view,
    render_report,
)
from sipflows.settings import Settings
from sipflows.stages import split_stage


def context(
    lang: str, *, place: str | None = "Vårdcentralen, rum 3", link: str | None = None
) -> dict[str, Any]:
    # Monday 30 March 2026 09:00–10:30 in Stockholm (summer time: UTC+2)
    starts = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    return {
        "case": {"reference": "SIP-2026-17"},
        "stage": "reminder",
        "level": None,
        "due": date_view(date(2026, 4, 1), lang),
        "meeting": meeting_view(
            kind="sip_meeting",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=90),
            place=place,
            digital_link=link,
            purpose="Samordna insatser",
            lang=lang,
        ),
        "convener": contact_view("Socialsekreterare Sara", "sara@kommun.example.se", "Köping IFO"),
        "coordinator": None,
        "deviation": None,
        "alert": None,
        "sender_name": "SIP-påminnelser",
    }


def full_context(kind: str, lang: str) -> dict[str, Any]:
    ctx = context(lang)
    ctx["stage"] = kind.split(".", 1)[1]
    ctx["level"] = 2 if "escalation" in kind else None
    ctx["alert"] = {"unanswered": 2, "declined": 1, "missing_principals": ["regionen"]}
    ctx["deviation"] = deviation_view(
        code="AVV-9",
        kind="party_absent",
        severity="high",
        reported_at=datetime(2026, 3, 2, 12, tzinfo=UTC),
        concerning_organisation="Vårdcentralen Köping",
        lang=lang,
    )
    return ctx


def test_swedish_by_default_with_local_time_and_swedish_weekdays() -> None:
    r = Renderer().render("documentation.reminder", "sv", context("sv"))
    assert "måndag 30 mars 2026 kl. 09:00–10:30" in r.text
    assert "onsdag 1 april 2026" in r.subject
    assert "SIP-2026-17" in r.subject and "SIP-2026-17" in r.text and "SIP-2026-17" in r.html
    assert "Socialsekreterare Sara" in r.text and "sara@kommun.example.se" in r.html
    assert "Vårdcentralen, rum 3" in r.text
    assert r.html.startswith("<!DOCTYPE html>") and 'lang="sv"' in r.html


def test_english_for_english_contacts() -> None:
    r = Renderer().render("documentation.reminder", "en", context("en"))
    assert "Monday 30 March 2026, 09:00–10:30" in r.text
    assert "Wednesday 1 April 2026" in r.subject
    assert "Dokumentera" not in r.subject and 'lang="en"' in r.html
    # an unknown language falls back to Swedish
    assert "onsdag" in Renderer().render("documentation.reminder", "de", context("sv")).subject


def test_weekday_names_do_not_depend_on_os_locale() -> None:
    monday = date(2026, 3, 30)
    sv = [date_view(monday + timedelta(days=i), "sv")["weekday"] for i in range(7)]
    en = [date_view(monday + timedelta(days=i), "en")["weekday"] for i in range(7)]
    assert sv == ["måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag"]
    assert en == ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def test_local_time_follows_daylight_saving() -> None:
    winter = meeting_view(
        kind="follow_up",
        starts_at=datetime(2026, 3, 27, 8, 0, tzinfo=UTC),  # Friday before the change: UTC+1
        ends_at=datetime(2026, 3, 27, 9, 0, tzinfo=UTC),
        place="x",
        digital_link=None,
        lang="sv",
    )
    summer = meeting_view(
        kind="follow_up",
        starts_at=datetime(2026, 3, 30, 7, 0, tzinfo=UTC),  # Monday after: UTC+2
        ends_at=datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
        place="x",
        digital_link=None,
        lang="sv",
    )
    assert (winter["start"], winter["date"]["weekday"]) == ("09:00", "fredag")
    assert (summer["start"], summer["date"]["weekday"]) == ("09:00", "måndag")
    assert winter["kind_label"] == "uppföljningsmöte"


@pytest.mark.parametrize("lang", ["sv", "en"])
@pytest.mark.parametrize("kind", sorted(FINDING_KINDS | MEETING_KINDS))
def test_every_kind_renders_in_both_languages(kind: str, lang: str) -> None:
    r = Renderer().render(kind, lang, full_context(kind, lang))
    assert r.subject and "\n" not in r.subject
    assert "SIP-2026-17" in r.subject and "SIP-2026-17" in r.text and "SIP-2026-17" in r.html
    assert "sara@kommun.example.se" in r.text
    other = "Hello" if lang == "sv" else "Hej!"
    assert other not in r.text  # the whole notice is in one language


def test_stage_specific_wording() -> None:
    esc = Renderer().render("deviations.acknowledgement-escalation", "sv", full_context("x.escalation", "sv"))
    assert "nivå 2" in esc.subject and "AVV-9" in esc.subject
    assert "part uteblev" in esc.text and "hög" in esc.text and "måndag 2 mars 2026" in esc.text
    ctx = full_context("x.reply-reminder", "en")
    reply = Renderer().render("deviations.reply-reminder", "en", ctx)
    assert "no reply with measures" in reply.subject and "Escalation" not in reply.subject
    alert = Renderer().render("invitations.convener-alert", "sv", full_context("x.convener-alert", "sv"))
    assert "utan svar: 2" in alert.text and "avböjts: 1" in alert.text and "Ingen från regionen" in alert.text


def test_html_is_autoescaped_and_text_is_not() -> None:
    ctx = context("sv", place="Rum <script>alert('x')</script> & co", link="javascript:alert(1)")
    r = Renderer().render("meeting.invitation", "sv", ctx)
    assert "<script>" not in r.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in r.html
    assert "Rum <script>alert('x')</script> & co" in r.text  # plain text is not HTML-escaped
    assert 'href="javascript' not in r.html  # only web links become clickable


def test_web_link_becomes_a_link() -> None:
    r = Renderer().render(
        "meeting.invitation", "en", context("en", place=None, link="https://meet.example/a?b=1&c=2")
    )
    assert '<a href="https://meet.example/a?b=1&amp;c=2">' in r.html
    assert "Link:    https://meet.example/a?b=1&c=2" in r.text


def test_override_folder_replaces_a_builtin(tmp_path: Path) -> None:
    (tmp_path / "documentation.sv.subject.txt").write_text(
        "Egen rubrik {{ case.reference }}\n", encoding="utf-8"
    )
    (tmp_path / "documentation.overdue.sv.txt").write_text(
        "Bara för försenade: {{ due.text }}\n", encoding="utf-8"
    )
    renderer = Renderer(tmp_path)
    reminder = renderer.render("documentation.reminder", "sv", context("sv"))
    assert reminder.subject == "Egen rubrik SIP-2026-17"  # family file overridden for every kind
    assert "ska dokumenteras" in reminder.text  # built-in body still used
    overdue = renderer.render("documentation.overdue", "sv", {**context("sv"), "stage": "overdue"})
    assert overdue.text == "Bara för försenade: onsdag 1 april 2026\n"  # one kind overridden
    assert renderer.render("documentation.reminder", "en", context("en")).subject.startswith(
        "Document the plan"
    )


def test_override_html_is_autoescaped_too(tmp_path: Path) -> None:
    (tmp_path / "meeting.sv.html").write_text("<p>{{ meeting.place }}</p>", encoding="utf-8")
    r = Renderer(tmp_path).render("meeting.invitation", "sv", context("sv", place="<b>x</b>"))
    assert r.html == "<p>&lt;b&gt;x&lt;/b&gt;</p>\n"


def test_missing_override_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="does not exist"):
        Renderer(tmp_path / "nope")


def test_override_with_unknown_variable_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "pre_meeting.sv.subject.txt").write_text("{{ case.individual_name }}", encoding="utf-8")
    with pytest.raises(Exception, match="individual_name"):
        Renderer(tmp_path).render("pre_meeting.alert", "sv", {**context("sv"), "stage": "alert"})


def test_orm_objects_never_reach_a_template() -> None:
    case = SipCase(reference="SIP-1", individual_name="Ebba", personal_identity_number="19850412-1234")
    with pytest.raises(RenderError, match=r"context\.case is a SipCase"):
        Renderer().render("follow_up.reminder", "sv", {**context("sv"), "case": case})
    with pytest.raises(RenderError, match=r"context\.extra\[0\]"):
        Renderer().render("follow_up.reminder", "sv", {**context("sv"), "extra": [object()]})


def test_subject_is_one_line_and_fits_the_column(tmp_path: Path) -> None:
    (tmp_path / "follow_up.sv.subject.txt").write_text("A\nB\r\nBcc: x@y\n" + "x" * 400, encoding="utf-8")
    subject = Renderer(tmp_path).render("follow_up.reminder", "sv", context("sv")).subject
    assert "\n" not in subject and "\r" not in subject and len(subject) <= 300
    assert subject.startswith("A B Bcc: x@y")


def test_kinds_from_checks_and_stages() -> None:
    assert finding_kind("documentation", "escalation-1") == "documentation.escalation"
    assert finding_kind("follow_up", "reminder@2026-05-04") == "follow_up.reminder"
    assert finding_kind("follow_up", "escalation-1@2026-05-04") == "follow_up.escalation"
    assert (
        finding_kind("deviations", "acknowledgement-escalation-3") == "deviations.acknowledgement-escalation"
    )
    assert finding_kind("invitations", "convener-alert") == "invitations.convener-alert"
    assert split_stage("reply-escalation-12") == ("reply-escalation", 12)
    with pytest.raises(RenderError, match="no notice kind"):
        finding_kind("documentation", "whatever")
    with pytest.raises(RenderError, match="unknown notice kind"):
        Renderer().render("nope.kind", "sv", context("sv"))
    assert "report.weekly" in ALL_KINDS


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_weekly_report(lang: str) -> None:
    figures = {
        "period": {"start": date(2026, 3, 23), "end": date(2026, 3, 29)},
        "organisation": "Region Västmanland",
        "sections": [
            {"title": "Dokumentation", "rows": [{"label": "inom två arbetsdagar", "value": "87 %"}]},
            {"title": "Avvikelser <öppna>", "rows": [{"label": "hög", "value": 3}]},
        ],
    }
    r = render_report(figures, lang)
    assert "2026-03-23" in r.subject and "Region Västmanland" in r.subject
    assert "inom två arbetsdagar: 87 %" in r.text and "Avvikelser <öppna>" in r.text
    assert "Avvikelser &lt;öppna&gt;" in r.html
    assert ("måndag 23 mars 2026" if lang == "sv" else "Monday 23 March 2026") in r.text


def test_weekly_report_passes_title_intro_and_privacy_to_override_templates(tmp_path: Path) -> None:
    (tmp_path / "report.sv.subject.txt").write_text("{{ title }}", encoding="utf-8")
    (tmp_path / "report.sv.txt").write_text("{{ intro }}\n{{ privacy }}", encoding="utf-8")
    figures = {
        "period": {"start": date(2026, 3, 23), "end": date(2026, 3, 29)},
        "title": "SIP vecka 13 <Köping>",
        "intro": "Nyckeltal för veckan.",
        "privacy": "Endast antal.",
        "sections": [],
    }
    r = render_report(figures, "sv", Settings(_env_file=None, template_dir=tmp_path))  # type: ignore[call-arg]
    assert r.subject == "SIP vecka 13 <Köping>"
    assert r.text == "Nyckeltal för veckan.\nEndast antal.\n"
    assert "<title>SIP vecka 13 &lt;Köping&gt;</title>" in r.html  # built-in HTML, escaped

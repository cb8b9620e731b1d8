"""Every flow under one Prefect test harness; assertions on the ledger and on the artifacts left behind."""

from __future__ import annotations

import email
from datetime import date
from pathlib import Path

from prefect.client.orchestration import get_client
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flows.daily_sweep import SweepParameters, daily_sweep
from flows.dispatch import dispatch_notices
from flows.invitations import sync_meeting_invitations
from flows.weekly_report import WeeklyReportParameters, weekly_report_flow
from sipflows.models import Answer, Meeting, MeetingKind, MeetingStatus, Notice, NoticeStatus
from tests import smtp_server as smtp_helpers
from tests.factories import SECRETS, local

smtp_server = smtp_helpers.smtp_server  # the fixture


class _Artifact:
    def __init__(self, data: object) -> None:
        self.data = data


def latest_artifact(key: str) -> _Artifact:
    """The newest version of a keyed artifact, read over the REST API the UI uses.

    (Prefect 3.8's client sends nulls its server refuses for artifact filters, so we post the filter.)
    """
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1, "offset": 0},
        )
    found = response.json()
    assert found, f"no artifact {key}"
    return _Artifact(found[0]["data"])


def _register_with_late_documentation(build, session: Session) -> dict:
    r = build.standard_region()
    case = build.case(r["k"], reference="SIP-KOP-0001", participants=(r["r"], r["f"]))
    # held Monday 2026-11-16, due Wednesday 18th: on Thursday 19th it is overdue
    build.meeting(case, date(2026, 11, 16), kind=MeetingKind.SIP_MEETING, status=MeetingStatus.HELD)
    future = build.meeting(case, date(2026, 12, 10), kind=MeetingKind.FOLLOW_UP)
    build.invite(future, r["r"])
    build.invite(future, r["f"], required=False)
    session.commit()
    return {**r, "case": case, "future": future}


def test_daily_sweep_enqueues_once_and_leaves_artifacts(flow_env, build, session):
    _register_with_late_documentation(build, session)
    first = daily_sweep(SweepParameters(date=date(2026, 11, 19)))
    assert first["findings"] >= 1 and first["enqueued"] >= 1
    kinds = set(session.scalars(select(Notice.kind)))
    assert "documentation.overdue" in kinds
    counts = latest_artifact("daily-sweep-counts")
    assert "documentation" in str(counts.data) and "overdue" in str(counts.data)
    notices = latest_artifact("daily-sweep-notices")
    assert "SIP-KOP-0001" in str(notices.data)
    for secret in SECRETS:
        assert secret not in str(notices.data) and secret not in str(counts.data)

    again = daily_sweep(SweepParameters(date=date(2026, 11, 19)))
    assert again["enqueued"] == 0
    assert session.scalar(select(func.count()).select_from(Notice)) == first["enqueued"]


def test_sweep_skips_a_holiday_when_scheduled_but_not_when_asked(flow_env, build, session):
    _register_with_late_documentation(build, session)
    # an explicit date is judged even on a holiday (replays and backfills)
    result = daily_sweep(SweepParameters(date=date(2026, 12, 24)))
    assert result["findings"] >= 1


def test_invalid_policy_fails_loudly_with_an_artifact(flow_env, tmp_path: Path, monkeypatch):
    from sipflows.settings import get_settings

    bad = tmp_path / "policy.toml"
    bad.write_text("[documentation]\ndue_working_days = -3\n")
    monkeypatch.setenv("SIPFLOWS_POLICY_FILE", str(bad))
    get_settings.cache_clear()
    state = daily_sweep(SweepParameters(date=date(2026, 11, 19)), return_state=True)
    assert state.is_failed()
    art = latest_artifact("daily-sweep-configuration-error")
    assert "documentation.due_working_days" in str(art.data)


def test_invitations_then_dispatch_write_the_outbox(flow_env, build, session):
    ctx = _register_with_late_documentation(build, session)
    queued = sync_meeting_invitations()
    assert queued["invitations"] == 3  # the two invitees and the convener (as chair, with no invitation)
    assert sync_meeting_invitations()["invitations"] == 0

    daily_sweep(SweepParameters(date=date(2026, 11, 19)))
    sent = dispatch_notices()
    assert sent["sent"] >= 3 and sent["failed"] == 0
    outbox = Path(flow_env["SIPFLOWS_OUTBOX_DIR"])
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == sent["sent"]
    methods = set()
    for f in files:
        msg = email.message_from_bytes(f.read_bytes())
        assert msg["Message-ID"]
        for part in msg.walk():
            if part.get_content_type() == "text/calendar":
                methods.add(part.get_param("method"))
        raw = f.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in raw
    assert "REQUEST" in methods
    assert dispatch_notices()["sent"] == 0  # nothing new: nothing sent twice
    summary = latest_artifact("dispatch-summary")
    assert "outbox" in str(summary.data)
    session.expire_all()
    statuses = set(session.scalars(select(Notice.status)))
    assert statuses == {NoticeStatus.SENT}
    meeting = session.get(Meeting, ctx["future"].id)
    assert meeting is not None
    assert all(inv.sent_at is not None and inv.answer == Answer.NONE for inv in meeting.invitations)


def test_dispatch_failure_is_recorded_and_reported(flow_env, build, session, smtp_server, monkeypatch):
    from sipflows.settings import get_settings

    _register_with_late_documentation(build, session)
    sync_meeting_invitations()
    daily_sweep(SweepParameters(date=date(2026, 11, 19)))
    # the mail server works, but refuses one recipient for good and another for now
    monkeypatch.setenv("SIPFLOWS_TRANSPORT", "smtp")
    monkeypatch.setenv("SIPFLOWS_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("SIPFLOWS_SMTP_PORT", str(smtp_server.port))
    get_settings.cache_clear()
    addresses = sorted({n.address for n in session.scalars(select(Notice))})
    assert len(addresses) >= 2
    smtp_server.refuse(addresses[0], "550 5.1.1 no such user")
    smtp_server.refuse(addresses[1], "452 4.2.2 mailbox full")
    result = dispatch_notices()
    assert result["dead"] >= 1 and result["failed"] >= 1
    failures = str(latest_artifact("dispatch-failures").data)
    assert "550 5.1.1" in failures and "452 4.2.2" in failures
    session.expire_all()
    failed = session.scalars(select(Notice).where(Notice.status == NoticeStatus.FAILED)).all()
    assert failed and all(n.attempts == 1 and n.last_error for n in failed)
    assert all(n.next_attempt_at > n.created_at for n in failed)
    for secret in SECRETS:
        assert secret not in failures


def test_weekly_report_flow_publishes_aggregates_and_mails_once(flow_env, build, session):
    r = build.standard_region()
    r["k"].report_recipient = True
    case = build.case(r["k"], reference="SIP-KOP-0042", identified_on=date(2026, 11, 17))
    build.meeting(
        case,
        date(2026, 11, 18),
        status=MeetingStatus.HELD,
        documented_at=local(date(2026, 11, 19), "15:00"),
    )
    session.commit()
    params = WeeklyReportParameters(week_ending=date(2026, 11, 22))
    first = weekly_report_flow(params)
    assert first == {"recipients": 1, "enqueued": 1}
    assert weekly_report_flow(params)["enqueued"] == 0
    art = latest_artifact("weekly-report-summary")
    text = str(art.data)
    assert "SIP-KOP-0042" not in text
    for secret in SECRETS:
        assert secret not in text
    table = latest_artifact("weekly-report-figures")
    assert "identified" in str(table.data)
    reports = list(Path(flow_env["SIPFLOWS_REPORTS_DIR"]).rglob("index.html"))
    assert reports


def test_replies_flow_applies_answers_and_sets_hostile_ones_aside(
    flow_env, build, session, tmp_path, monkeypatch
):
    from flows.replies import ingest_replies
    from sipflows.settings import get_settings
    from tests.itip_messages import forwarded, outlook_reply

    ctx = _register_with_late_documentation(build, session)
    uid, r, f = ctx["future"].ical_uid, ctx["r"], ctx["f"]
    folder = tmp_path / "replies"
    folder.mkdir()
    genuine = outlook_reply(uid, r.email, "ACCEPTED", local(date(2026, 11, 20), "10:00"))
    (folder / "1-forged.eml").write_bytes(outlook_reply(uid, r.email, "DECLINED", sender=f.email))
    (folder / "2-forwarded.eml").write_bytes(forwarded(genuine, f.email))
    (folder / "3-genuine.eml").write_bytes(genuine)
    monkeypatch.setenv("SIPFLOWS_REPLIES_DIR", str(folder))
    get_settings.cache_clear()
    result = ingest_replies()
    assert result == {"matched": 1, "applied": 1, "set_aside": 2}
    session.expire_all()
    answers = {inv.contact_id: inv.answer for inv in session.get(Meeting, ctx["future"].id).invitations}
    assert answers == {r.id: Answer.ACCEPTED, f.id: Answer.NONE}
    summary = str(latest_artifact("replies-summary").data)
    assert "folder" in summary and "rejected" in summary
    set_aside = str(latest_artifact("replies-set-aside").data)
    assert "1-forged.eml" in set_aside and "not its sender" in set_aside
    assert r.email not in set_aside and f.email not in set_aside and "@" not in set_aside

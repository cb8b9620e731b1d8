"""The flows end to end with SIPFLOWS_TRANSPORT=graph: invitations, the daily sweep, dispatch and the weekly
report, under the Prefect test harness, against tests/graph_server.py (Entra ID + Graph over HTTPS), with
the client secret in a Prefect Secret block."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from sqlalchemy import select

from flows.daily_sweep import SweepParameters, daily_sweep
from flows.dispatch import dispatch_notices
from flows.invitations import sync_meeting_invitations
from flows.weekly_report import WeeklyReportParameters, weekly_report_flow
from sipflows.models import Answer, Invitation, MeetingKind, MeetingStatus, Notice, NoticeStatus
from sipflows.transports.base import attachments_from_json
from sipflows.transports.graph import MEETING_PROPERTY
from tests.factories import SECRETS
from tests.graph_server import GraphServer

SECRET = "flow-secret-~42"


def latest_artifact(key: str) -> object:
    """The data of the newest artifact with ``key``, read over the REST API the UI uses."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1, "offset": 0},
        )
    found = response.json()
    assert found, f"no artifact {key}"
    return found[0]["data"]


MAILBOX = "sip@kommun.example.se"


@contextmanager
def graph_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    """A Graph server, and the environment a deployment would have to use it; the client secret lives in
    a Prefect Secret block, as operations would keep it."""
    from sipflows.settings import get_settings

    folder = tmp_path / "graph"
    folder.mkdir()
    with GraphServer(folder, client_secret=SECRET, mailbox=MAILBOX) as graph:
        for name, value in {
            "SIPFLOWS_TRANSPORT": "graph",
            "SIPFLOWS_GRAPH_TENANT_ID": graph.tenant,
            "SIPFLOWS_GRAPH_CLIENT_ID": graph.client_id,
            "SIPFLOWS_GRAPH_CREDENTIALS_BLOCK": "graph-client-secret",
            "SIPFLOWS_GRAPH_MAILBOX": MAILBOX,
            "SIPFLOWS_GRAPH_BASE_URL": graph.base_url,
            "SIPFLOWS_GRAPH_AUTHORITY_URL": graph.authority_url,
            "SSL_CERT_FILE": str(graph.ca_file),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SIPFLOWS_GRAPH_CLIENT_SECRET", raising=False)
        get_settings.cache_clear()
        Secret(value=SECRET).save("graph-client-secret", overwrite=True)
        yield graph


def test_flows_run_end_to_end_through_graph(flow_env, build, session, tmp_path, monkeypatch):

    with graph_configured(tmp_path, monkeypatch) as graph:
        r = build.standard_region()
        r["k"].report_recipient = True
        case = build.case(r["k"], reference="SIP-KOP-0007", participants=(r["r"], r["f"]))
        # held Monday 2026-11-16, documentation due Wednesday 18th: overdue when judged on Thursday 19th
        build.meeting(case, date(2026, 11, 16), kind=MeetingKind.SIP_MEETING, status=MeetingStatus.HELD)
        future = build.meeting(case, date.today() + timedelta(days=21), kind=MeetingKind.FOLLOW_UP)
        build.invite(future, r["r"])
        build.invite(future, r["f"], required=False)
        session.commit()

        # the two invitees, and the convener's own copy (as chair, with no invitation to chase)
        assert sync_meeting_invitations()["invitations"] == 3
        daily_sweep(SweepParameters(date=date(2026, 11, 19)))
        first = dispatch_notices()

        assert first["sent"] >= 3 and first["failed"] == 0 and first["dead"] == 0
        events = graph.events()
        assert sorted((e.attendee_addresses()[0], e.attendees[0]["type"]) for e in events) == sorted(
            [(r["k"].email, "required"), (r["r"].email, "required"), (r["f"].email, "optional")]
        )
        assert {e.prop(MEETING_PROPERTY) for e in events} == {future.ical_uid}
        mails = [s for s in graph.sent if s.kind == "message"]
        assert len(mails) == first["sent"] - 3
        session.expire_all()
        by_message_id = {n.message_id: n for n in session.scalars(select(Notice))}
        for mail in mails:
            notice = by_message_id[str(mail.internet_message_id)]  # the ledger's Message-ID travelled
            assert not notice.kind.startswith("meeting.")  # invitations went as events, not mails
            assert mail.recipients == (notice.address,)
        assert any(by_message_id[str(m.internet_message_id)].kind.startswith("documentation.") for m in mails)
        assert all(i.sent_at is not None for i in session.scalars(select(Invitation)))
        assert "graph" in str(latest_artifact("dispatch-summary"))

        report = weekly_report_flow(WeeklyReportParameters(week_ending=date(2026, 11, 22)))
        assert report == {"recipients": 1, "enqueued": 1}
        second = dispatch_notices()

        assert (second["sent"], second["failed"]) == (1, 0)
        weekly = graph.sent[-1]
        session.expire_all()
        (notice,) = session.scalars(select(Notice).where(Notice.kind == "report.weekly"))
        assert weekly.internet_message_id == notice.message_id and weekly.recipients == (r["k"].email,)
        files = attachments_from_json(notice.attachments)
        assert [(name, content) for name, _, content in weekly.attachments()] == [
            (f.filename, f.content) for f in files
        ]
        assert [t.split(";")[0] for _, t, _ in weekly.attachments()] == ["text/html", "text/csv"]

        assert dispatch_notices()["sent"] == 0  # nothing new: nothing sent twice
        assert Counter(s.kind for s in graph.sent)["meeting_request"] == 3
        assert set(session.scalars(select(Notice.status))) == {NoticeStatus.SENT}
        for request in graph.graph_requests():
            text = str(request.body)
            assert not any(secret in text for secret in SECRETS)
        assert SECRET not in str(latest_artifact("dispatch-summary"))


def table(key: str) -> list[dict[str, object]]:
    """The rows of the newest table artifact with ``key`` (stored as JSON text)."""
    data = latest_artifact(key)
    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows


def test_an_answer_given_in_exchange_online_ends_the_reminders(
    flow_env, build, session, tmp_path, monkeypatch
):
    """Invitation sent through Graph, accepted in Exchange Online, read by the replies flow: the daily sweep
    no longer reminds that attendee. With Graph refusing the token, the run fails and names the setting,
    and the replies folder is still read."""
    from flows.replies import RepliesParameters, ingest_replies
    from sipflows.replies import PartialIngestError
    from sipflows.settings import get_settings
    from tests.itip_messages import outlook_reply

    with graph_configured(tmp_path, monkeypatch) as graph:
        r = build.standard_region()
        case = build.case(r["k"], reference="SIP-KOP-0011", participants=(r["r"], r["f"], r["s"]))
        future = build.meeting(case, date.today() + timedelta(days=21), kind=MeetingKind.FOLLOW_UP)
        for contact in (r["r"], r["f"], r["s"]):
            build.invite(future, contact)
        session.commit()
        assert sync_meeting_invitations()["invitations"] == 4  # three invitees, and the convener as chair
        assert dispatch_notices()["sent"] == 4
        events = {e.attendee_addresses()[0]: e.id for e in graph.events()}

        # Rolf accepts in Outlook; the convener accepts their own copy; Sven forwards his invitation and
        # the colleague he forwarded it to accepts on Sven's event
        answered_at = datetime.now(UTC)
        graph.respond(events[r["r"].email], r["r"].email, "accepted", answered_at)
        graph.respond(events[r["k"].email], r["k"].email, "accepted", answered_at)
        graph.forward(events[r["s"].email], "kollega@skola.example.se")
        graph.respond(events[r["s"].email], "kollega@skola.example.se", "accepted", answered_at)

        assert ingest_replies(RepliesParameters(calendar_lookback_days=30)) == {
            "matched": 1,
            "applied": 1,
            "set_aside": 0,
        }

        session.expire_all()
        got = {i.contact_id: i.answer for i in session.scalars(select(Invitation))}
        assert got == {r["r"].id: Answer.ACCEPTED, r["f"].id: Answer.NONE, r["s"].id: Answer.NONE}
        (row,) = [row for row in table("replies-summary") if row["source"] == "graph"]
        assert (row["messages"], row["applied"], row["convener"], row["untrusted"]) == (4, 1, 1, 1)
        assert (row["not_replies"], row["rejected"]) == (2, 0)

        # two weeks on the reminders are due: only for those who have not answered
        daily_sweep(SweepParameters(date=date.today() + timedelta(days=14)))
        session.expire_all()
        reminded = {
            n.contact_id for n in session.scalars(select(Notice).where(Notice.kind == "invitations.reminder"))
        }
        assert reminded == {r["f"].id, r["s"].id}

        # the secret is revoked: the run fails loudly, naming what to check; the folder is still read
        Secret(value="revoked-secret-77").save("graph-client-secret", overwrite=True)
        replies = tmp_path / "replies"
        replies.mkdir()
        (replies / "f.eml").write_bytes(
            outlook_reply(future.ical_uid, r["f"].email, "DECLINED", datetime.now(UTC))
        )
        monkeypatch.setenv("SIPFLOWS_REPLIES_DIR", str(replies))
        get_settings.cache_clear()
        state = ingest_replies(return_state=True)

        assert state.is_failed()
        error = state.result(raise_on_failure=False)
        assert isinstance(error, PartialIngestError)
        assert "refused a token" in str(error) and "SIPFLOWS_GRAPH_CLIENT_ID" in str(error)
        assert "revoked-secret-77" not in str(error)
        session.expire_all()
        assert session.scalars(select(Invitation.answer).where(Invitation.contact_id == r["f"].id)).one() == (
            Answer.DECLINED
        )
        summary = table("replies-summary")
        assert [row["source"] for row in summary] == ["folder"]
        assert summary[0]["applied"] == 1
        assert SECRET not in str(summary) and "revoked-secret-77" not in str(summary)

        # a Secret block that is not there is named as the setting to fix
        monkeypatch.setenv("SIPFLOWS_GRAPH_CREDENTIALS_BLOCK", "no-such-block")
        get_settings.cache_clear()
        missing = ingest_replies(return_state=True)
        assert missing.is_failed()
        assert "SIPFLOWS_GRAPH_CREDENTIALS_BLOCK" in str(missing.result(raise_on_failure=False))

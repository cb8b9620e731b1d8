"""Invitation answers read back from Microsoft Graph: the attendee responses on the events sipflows booked.

Invitations are booked by the real dispatch and GraphTransport, answered in tests/graph_server.py as
Exchange Online records them, and read by msal's and httpx's real code over HTTPS; on SQLite and (when
configured) PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from sipflows.booking import book_meeting, cancel_meeting, close_case, move_meeting
from sipflows.checks import invitations as invitations_check
from sipflows.checks.base import CheckContext
from sipflows.models import Answer, CaseStatus, Contact, Invitation, Meeting, Notice, SipCase
from sipflows.notices.dispatch import dispatch
from sipflows.notices.invitations import sync_invitations
from sipflows.policy import default_policy
from sipflows.replies import (
    PartialIngestError,
    ReplyIngestError,
    ingest_configured,
    ingest_graph,
    poll_graph_responses,
)
from sipflows.replies.graph import MAX_VIEW, windows
from sipflows.settings import Settings
from sipflows.transports.graph import GraphClient, GraphTransport
from tests.conftest import BACKENDS
from tests.factories import SECRETS, RegisterBuilder, local
from tests.graph_server import MAX_VIEW_DAYS, Event, GraphServer, closed_port
from tests.itip_messages import outlook_reply
from tests.test_graph import MAILBOX, SECRET
from tests.test_graph_dispatch import cli, graph_environment, settings_for

NOW = local(date(2026, 3, 2), "08:00")  # invitations sent on Monday morning
D = date(2026, 3, 27)
SINCE = NOW - timedelta(days=90)
READ = NOW + timedelta(days=1)  # when the replies run reads the answers


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer(tmp_path, client_secret=SECRET, mailbox=MAILBOX) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # the private CA an operator trusts
        yield server


@dataclass
class Scene:
    meeting: Meeting
    case: SipCase
    k: Contact  # the convener: the meeting's chair, with an event of their own and no invitation
    r: Contact
    f: Contact
    s: Contact
    events: dict[str, Event]  # by the address each event was booked for
    settings: Settings

    def event(self, contact: Contact) -> str:
        return self.events[contact.email].id


def sync_and_dispatch(engine: Engine, settings: Settings, now: datetime) -> int:
    with Session(engine) as s, s.begin():
        sync_invitations(s, now, settings)
    return dispatch(engine, GraphTransport(settings), now, settings).sent


def book(
    engine: Engine,
    session: Session,
    build: RegisterBuilder,
    graph: GraphServer,
    *,
    now: datetime = NOW,
    on: date = D,
) -> Scene:
    """A SIP meeting booked and sent through Graph: the convener's event and one per invitee."""
    w = build.standard_region()
    case = build.case(w["k"], reference="SIP-2026-7", participants=(w["r"], w["f"], w["s"]))
    session.commit()
    settings = settings_for(graph)
    meeting = book_meeting(
        session,
        case.reference,
        "sip_meeting",
        local(on, "09:00"),
        local(on, "10:30"),
        invitees=[(w["r"].code, True), (w["f"].code, False), (w["s"].code, True)],
        place="Vårdcentralen Köping, rum 3",
        now=now,
        settings=settings,
    )
    session.commit()
    assert sync_and_dispatch(engine, settings, now) == 4
    events = {e.attendee_addresses()[0]: e for e in graph.events()}
    assert set(events) == {w[c].email for c in "krfs"}
    return Scene(meeting, case, w["k"], w["r"], w["f"], w["s"], events, settings)  # type: ignore[arg-type]


@pytest.fixture
def scene(engine: Engine, session: Session, build: RegisterBuilder, graph: GraphServer) -> Scene:
    return book(engine, session, build, graph)


def answers(engine: Engine, meeting: Meeting) -> dict[str, tuple[Answer, datetime | None]]:
    with Session(engine) as s:
        rows = s.execute(
            select(Contact.code, Invitation.answer, Invitation.answered_at)
            .join(Invitation.contact)
            .where(Invitation.meeting_id == meeting.id)
        ).all()
    return {code: (answer, at) for code, answer, at in rows}


def poll(scene: Scene, engine: Engine, now: datetime = READ, **overrides: Any) -> Any:
    settings = settings_for_scene(scene, **overrides)
    return ingest_graph(engine, settings, now, SINCE)


def settings_for_scene(scene: Scene, **overrides: Any) -> Settings:
    values = {**scene.settings.model_dump(), **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


NONE: tuple[Answer, datetime | None] = (Answer.NONE, None)


# --- what is recorded -------------------------------------------------------------------------------------


def test_each_answer_is_recorded_for_exactly_the_attendee_it_was_booked_for(
    scene: Scene, engine: Engine, graph: GraphServer
) -> None:
    t1, t2 = NOW + timedelta(hours=1), NOW + timedelta(hours=3)
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", t1)
    graph.respond(scene.event(scene.f), scene.f.email, "declined", t2)
    graph.respond(scene.event(scene.s), scene.s.email, "tentativelyAccepted", None)  # Graph gave no time
    graph.respond(scene.event(scene.k), scene.k.email, "accepted", t1)  # the convener, as chair
    by_id_before = len(graph.graph_requests("GET", "/events/"))

    summary = poll(scene, engine)

    assert answers(engine, scene.meeting) == {
        scene.r.code: (Answer.ACCEPTED, t1),
        scene.f.code: (Answer.DECLINED, t2),
        scene.s.code: (Answer.TENTATIVE, READ),  # no response time: dated by the reading
    }
    assert (summary.messages, summary.applied, summary.convener, summary.not_replies) == (4, 3, 1, 0)
    assert (summary.unknown, summary.untrusted, summary.stale, summary.rejected) == (0, 0, 0, 0)
    # one calendar view for all of it, in UTC, not a call per event
    (view,) = graph.graph_requests("GET", "/calendarView")
    assert len(graph.graph_requests("GET", "/events/")) == by_id_before
    assert view.query["startDateTime"] == SINCE.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert datetime.fromisoformat(view.query["endDateTime"]) > scene.meeting.ends_at

    # answers are state: reading again changes nothing; a changed answer replaces the old one
    again = poll(scene, engine, READ + timedelta(hours=1))
    assert (again.applied, again.stale, again.convener) == (0, 3, 1)
    assert answers(engine, scene.meeting)[scene.s.code] == (Answer.TENTATIVE, READ)  # not re-dated
    t3 = READ + timedelta(hours=2)
    graph.respond(scene.event(scene.r), scene.r.email, "declined", t3)
    changed = poll(scene, engine, t3 + timedelta(minutes=5))
    assert (changed.applied, changed.stale) == (1, 2)
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, t3)


def test_unanswered_events_are_counted_and_record_nothing(
    scene: Scene, engine: Engine, graph: GraphServer
) -> None:
    graph.respond(scene.event(scene.r), scene.r.email, "notResponded", NOW + timedelta(hours=1))
    graph.respond(scene.event(scene.f), scene.f.email, "organizer", NOW + timedelta(hours=1))

    summary = poll(scene, engine)

    assert set(answers(engine, scene.meeting).values()) == {NONE}
    assert (summary.messages, summary.not_replies, summary.applied) == (4, 4, 0)


def test_an_answer_on_someone_elses_event_changes_nothing(
    scene: Scene, engine: Engine, graph: GraphServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    when = NOW + timedelta(hours=2)
    # Rolf forwarded his invitation to Försäkringskassan (invited on an event of its own) and to an
    # outsider; Exchange added both to Rolf's event, and both accepted there
    for address in (scene.f.email.upper(), "mallory@evil.example"):
        graph.forward(scene.event(scene.r), address)
        graph.respond(scene.event(scene.r), address, "accepted", when)

    summary = poll(scene, engine)

    assert set(answers(engine, scene.meeting).values()) == {NONE}  # Rolf and FK have not answered
    assert (summary.untrusted, summary.applied, summary.not_replies, summary.messages) == (2, 0, 4, 4)
    assert "mallory" not in caplog.text and scene.f.email not in caplog.text  # addresses by domain only

    # Försäkringskassan's answer on its own event is its answer
    graph.respond(scene.event(scene.f), scene.f.email, "declined", when)
    assert poll(scene, engine).applied == 1
    assert answers(engine, scene.meeting)[scene.f.code] == (Answer.DECLINED, when)
    assert answers(engine, scene.meeting)[scene.r.code] == NONE


def test_an_answer_given_before_the_meeting_moved_is_stale(
    scene: Scene, engine: Engine, session: Session, graph: GraphServer
) -> None:
    accepted_at, moved_at = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", accepted_at)
    later = local(D + timedelta(days=3), "13:00")
    move_meeting(session, scene.meeting.code, later, later + timedelta(minutes=90), now=moved_at)
    session.commit()
    assert sync_and_dispatch(engine, scene.settings, moved_at) == 4  # each event PATCHed; answers kept

    summary = poll(scene, engine)

    assert answers(engine, scene.meeting)[scene.r.code] == NONE  # it answered the old time
    assert (summary.stale, summary.applied) == (1, 0)

    again_at = moved_at + timedelta(hours=1)
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", again_at)
    assert poll(scene, engine).applied == 1
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.ACCEPTED, again_at)


def test_answers_for_a_cancelled_meeting_are_not_recorded(
    scene: Scene, engine: Engine, session: Session, graph: GraphServer
) -> None:
    cancelled_at = NOW + timedelta(hours=2)
    cancel_meeting(session, scene.meeting.code, now=cancelled_at)
    session.commit()
    # the cancellation is not sent yet: the events are still there, and attendees still answer them
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", cancelled_at + timedelta(minutes=5))

    before = poll(scene, engine)
    assert sync_and_dispatch(engine, scene.settings, cancelled_at + timedelta(minutes=10)) == 4
    after = poll(scene, engine)

    assert answers(engine, scene.meeting)[scene.r.code] == NONE
    assert (before.messages, before.applied, after.messages, after.applied) == (0, 0, 0, 0)
    assert all(e.cancelled for e in graph.events())


def test_answers_for_a_closed_plan_are_not_recorded(
    scene: Scene, engine: Engine, session: Session, graph: GraphServer
) -> None:
    when = NOW + timedelta(hours=1)
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", when)
    graph.respond(scene.event(scene.s), scene.s.email, "declined", when)
    # the plan closed (say, by an import) while its meeting still stands in the register
    session.execute(
        update(SipCase).where(SipCase.id == scene.case.id).values(status=CaseStatus.CLOSED, closed_on=D)
    )
    session.commit()

    summary = poll(scene, engine)

    assert set(answers(engine, scene.meeting).values()) == {NONE}
    assert (summary.closed, summary.applied) == (2, 0)

    # closed the usual way, the plan's future meetings are cancelled: their events are not read at all
    session.execute(update(SipCase).where(SipCase.id == scene.case.id).values(status=CaseStatus.ACTIVE))
    session.commit()
    close_case(session, scene.case.reference, date(2026, 3, 3), "need_met", now=NOW + timedelta(days=1))
    session.commit()
    closed = poll(scene, engine, READ + timedelta(days=1))
    assert set(answers(engine, scene.meeting).values()) == {NONE}
    assert (closed.messages, closed.applied) == (0, 0)


def test_answers_for_many_meetings_are_looked_up_in_a_few_statements(
    session: Session, build: RegisterBuilder
) -> None:
    from sqlalchemy import event

    from sipflows.replies import CalendarResponse, apply_calendar_responses
    from sipflows.replies.answers import LOOKUP_CHUNK

    w = build.standard_region()
    case = build.case(w["k"], participants=(w["r"],))
    meetings = [
        build.meeting(case, D + timedelta(days=n % 300), at=f"{8 + n % 9}:00")
        for n in range(LOOKUP_CHUNK + 1)
    ]
    invitations = [build.invite(m, w["r"], sent_on=NOW.date() - timedelta(days=1)) for m in meetings]
    session.commit()
    when = NOW + timedelta(hours=1)
    responses = [CalendarResponse(m.ical_uid, w["r"].email, Answer.DECLINED, when) for m in meetings]
    selects: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(session.get_bind(), "before_cursor_execute", count)
    try:
        summary = apply_calendar_responses(session, responses, READ, "Graph")
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", count)
    session.commit()

    assert summary.applied == LOOKUP_CHUNK + 1
    assert len(selects) == 4  # meetings and invitations, per chunk of UIDs
    session.expire_all()
    assert {(i.answer, i.answered_at) for i in invitations} == {(Answer.DECLINED, when)}


# --- only the events the ledger recorded ------------------------------------------------------------------


def test_only_events_the_ledger_recorded_are_believed(
    scene: Scene, engine: Engine, session: Session, graph: GraphServer
) -> None:
    when = NOW + timedelta(hours=1)
    for contact in (scene.r, scene.f):
        graph.respond(scene.event(contact), contact.email, "accepted", when)
    notices = {
        n.address: n
        for n in session.scalars(select(Notice).where(Notice.meeting_id == scene.meeting.id)).all()
    }
    r_id, f_id = notices[scene.r.email].external_id, notices[scene.f.email].external_id

    # the ledger's ids point at each other's events (another booking): neither answer is believed
    notices[scene.r.email].external_id, notices[scene.f.email].external_id = f_id, r_id
    session.commit()
    swapped = poll(scene, engine)
    assert set(answers(engine, scene.meeting).values()) == {NONE}
    assert (swapped.unknown, swapped.applied, swapped.messages) == (2, 0, 2)

    # an event the ledger has not recorded (a run killed between Graph booking it and the ledger
    # recording it, or a booking of another installation sharing the mailbox) is left until recorded
    notices[scene.r.email].external_id, notices[scene.f.email].external_id = None, f_id
    session.commit()
    unrecorded = poll(scene, engine)
    got = answers(engine, scene.meeting)
    assert (got[scene.r.code], got[scene.f.code]) == (NONE, (Answer.ACCEPTED, when))
    assert (unrecorded.applied, unrecorded.messages) == (1, 3)

    notices[scene.r.email].external_id = r_id
    session.commit()
    assert poll(scene, engine).applied == 1
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.ACCEPTED, when)


def test_an_event_that_lost_its_attendee_answers_nothing(
    scene: Scene, engine: Engine, graph: GraphServer
) -> None:
    event = graph.state.events[scene.event(scene.r)]
    # someone edited the event in the SIP mailbox and put another address in Rolf's place
    event.data["attendees"][0]["emailAddress"]["address"] = "other@kommun.example.se"
    graph.respond(event.id, "other@kommun.example.se", "accepted", NOW + timedelta(hours=1))

    summary = poll(scene, engine)

    assert set(answers(engine, scene.meeting).values()) == {NONE}
    assert (summary.unknown, summary.untrusted, summary.applied) == (1, 1, 0)


def test_meetings_far_ahead_are_read_in_views_graph_accepts(
    engine: Engine, session: Session, build: RegisterBuilder, graph: GraphServer
) -> None:
    far = D + timedelta(days=5 * 365 + 30)  # beyond one calendar view from SINCE
    scene = book(engine, session, build, graph, on=far)
    when = NOW + timedelta(hours=1)
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", when)

    summary = poll(scene, engine)

    assert summary.applied == 1 and answers(engine, scene.meeting)[scene.r.code] == (Answer.ACCEPTED, when)
    views = graph.graph_requests("GET", "/calendarView")
    assert len(views) == 2 and all(v.status == 200 for v in views)
    spans = [
        datetime.fromisoformat(v.query["endDateTime"]) - datetime.fromisoformat(v.query["startDateTime"])
        for v in views
    ]
    assert all(span <= timedelta(days=MAX_VIEW_DAYS) for span in spans)


def test_views_cover_the_window_without_gaps() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert windows(start, start) == []
    assert windows(start, start + timedelta(days=3)) == [(start, start + timedelta(days=3))]
    parts = windows(start, start + 2 * MAX_VIEW + timedelta(hours=1))
    assert [p[0] for p in parts[1:]] == [p[1] for p in parts[:-1]]
    assert (parts[0][0], parts[-1][1], len(parts)) == (start, start + 2 * MAX_VIEW + timedelta(hours=1), 3)
    assert timedelta(days=MAX_VIEW_DAYS) >= MAX_VIEW


def test_an_open_client_can_be_reused(
    scene: Scene, engine: Engine, session: Session, graph: GraphServer
) -> None:
    graph.respond(scene.event(scene.s), scene.s.email, "tentativelyAccepted", NOW + timedelta(hours=1))
    tokens = len(graph.token_requests)

    with GraphClient(scene.settings) as client:
        summary = poll_graph_responses(client, session, SINCE, READ)
        assert client.is_open  # the caller's client stays open
    session.commit()

    assert summary.applied == 1 and len(graph.token_requests) == tokens + 1
    assert answers(engine, scene.meeting)[scene.s.code][0] is Answer.TENTATIVE


# --- when Graph cannot be read -----------------------------------------------------------------------------

NOWHERE = "https://127.0.0.1:{port}"


def _broken(graph: GraphServer, kind: str) -> dict[str, Any]:
    """Settings (and server state) for one way of Graph failing the replies run."""
    if kind == "token refused":
        return {"graph_client_secret": SecretStr("a-revoked-secret-123")}
    if kind == "graph unreachable":
        nowhere = NOWHERE.format(port=closed_port())
        graph.resource = nowhere  # Entra ID issues tokens for that Graph; it just cannot be reached
        return {"graph_base_url": f"{nowhere}/v1.0"}
    if kind == "sign-in unreachable":
        return {"graph_authority_url": NOWHERE.format(port=closed_port())}
    if kind == "no permission":
        graph.permissions = {"Mail.Send"}
        return {}
    if kind == "token refused mid-run":
        graph.fail("GET", "/calendarView", status=401, times=2)
        return {}
    if kind == "throttled too long":
        graph.fail("GET", "/calendarView", status=503, retry_after=600, times=5)
        return {}
    if kind == "read refused":
        graph.fail("GET", "/calendarView", status=400, code="ErrorInvalidParameter")
        return {}
    assert kind == "mailbox not set"
    return {"graph_mailbox": None}


FAILURES = {
    "token refused": r"cannot start: Microsoft Entra ID refused a token .*SIPFLOWS_GRAPH_CLIENT_ID",
    "graph unreachable": r"cannot start: cannot reach Microsoft Graph at .* check SIPFLOWS_GRAPH_BASE_URL",
    "sign-in unreachable": r"cannot reach the sign-in authority .* check SIPFLOWS_GRAPH_AUTHORITY_URL",
    "no permission": r"403 ErrorAccessDenied.*Calendars\.ReadWrite.*SIPFLOWS_GRAPH_MAILBOX",
    "token refused mid-run": r"polling failed: .*401 .*a fresh token was refused as well",
    "throttled too long": r"polling failed: .*503 .*SIPFLOWS_GRAPH_MAX_WAIT_SECONDS",
    "read refused": r"polling failed: .*400 ErrorInvalidParameter.*SIPFLOWS_GRAPH_",
    "mailbox not set": r"SIPFLOWS_GRAPH_MAILBOX is not set",
}


# the failures come before the register is touched: each on SQLite, the first on every database too
@pytest.mark.parametrize(
    ("engine", "kind"),
    [("sqlite", kind) for kind in FAILURES] + [(b, next(iter(FAILURES))) for b in BACKENDS if b != "sqlite"],
    indirect=["engine"],
)
def test_graph_failing_fails_the_run_loudly_and_the_other_sources_still_run(
    scene: Scene, engine: Engine, graph: GraphServer, tmp_path: Path, kind: str
) -> None:
    when = NOW + timedelta(hours=1)
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", when)
    folder = tmp_path / "svar"
    folder.mkdir()
    (folder / "s.eml").write_bytes(outlook_reply(scene.meeting.ical_uid, scene.s.email, "DECLINED", when))
    settings = settings_for_scene(scene, replies_dir=folder, **_broken(graph, kind))

    with pytest.raises(PartialIngestError, match=FAILURES[kind]) as raised:
        ingest_configured(engine, settings, READ)

    assert set(raised.value.summaries) == {"folder"} and raised.value.summaries["folder"].applied == 1
    got = answers(engine, scene.meeting)
    assert (got[scene.r.code], got[scene.s.code][0]) == (NONE, Answer.DECLINED)
    message = str(raised.value)
    tokens = [r.headers.get("Authorization", "").partition(" ")[2] for r in graph.graph_requests()]
    for secret in (SECRET, "a-revoked-secret-123", *filter(None, tokens)):
        assert secret not in message


def test_a_missing_setting_is_named_even_with_nothing_to_read(engine: Engine, graph: GraphServer) -> None:
    settings = settings_for(graph, graph_mailbox=None)

    with pytest.raises(PartialIngestError, match="SIPFLOWS_GRAPH_MAILBOX is not set"):
        ingest_configured(engine, settings, READ)
    assert graph.requests == []
    # configured and nothing booked: nothing to ask Graph
    assert ingest_configured(engine, settings_for(graph), READ)["graph"].messages == 0
    assert graph.requests == []


def test_the_graph_source_runs_only_with_the_graph_transport(
    scene: Scene, engine: Engine, graph: GraphServer
) -> None:
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", NOW + timedelta(hours=1))
    calls = len(graph.requests)

    assert ingest_configured(engine, settings_for_scene(scene, transport="outbox"), READ) == {}
    assert len(graph.requests) == calls
    assert ingest_configured(engine, scene.settings, READ)["graph"].applied == 1


def test_an_unreachable_register_is_the_sources_failure(scene: Scene, tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    gone = create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'register.sqlite'}")
    with pytest.raises(ReplyIngestError, match="the register cannot be reached"):
        ingest_graph(gone, scene.settings, READ, SINCE)
    gone.dispose()


# --- the CLI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)  # about the environment: one database is enough
def test_cli_replies_ingest_reads_graph_and_the_check_stops_reminding(
    engine: Engine, session: Session, build: RegisterBuilder, db_url: str, graph: GraphServer, tmp_path: Path
) -> None:
    """``sipflows replies ingest`` as a deployment runs it: its own clock, settings from the environment."""
    now = datetime.now(UTC).replace(microsecond=0)
    scene = book(engine, session, build, graph, now=now, on=now.date() + timedelta(days=21))
    graph.respond(scene.event(scene.r), scene.r.email, "accepted", now + timedelta(seconds=1))
    judged = now.date() + timedelta(days=14)  # reminders are due by then (3 working days)

    def reminded() -> set[int]:
        with Session(engine) as s:
            ctx = CheckContext.load(s, judged, default_policy())
            found = invitations_check.run(s, ctx)
        return {f.recipients[0] for f in found if f.stage == "reminder"}

    assert reminded() == {scene.r.id, scene.f.id, scene.s.id}

    done = cli(["replies", "ingest"], graph_environment(graph, db_url), tmp_path)

    assert done.returncode == 0, done.stderr
    assert "graph: messages 4, applied 1, stale 0, closed 0, cancelled 0, convener 0" in done.stdout
    assert answers(engine, scene.meeting)[scene.r.code][0] is Answer.ACCEPTED
    assert reminded() == {scene.f.id, scene.s.id}
    output = done.stdout + done.stderr
    assert SECRET not in output and scene.r.email not in output
    for secret in SECRETS:
        assert secret not in output

    refused = cli(
        ["replies", "ingest"],
        graph_environment(graph, db_url, SIPFLOWS_GRAPH_CLIENT_SECRET="not-the-secret-42"),
        tmp_path,
    )
    assert refused.returncode == 1
    assert "error: Microsoft Graph polling cannot start" in refused.stderr
    assert "SIPFLOWS_GRAPH_CLIENT_ID" in refused.stderr and "not-the-secret-42" not in refused.stderr


def test_the_benchmark_runs_and_its_figures_add_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import graph_replies

    monkeypatch.setenv("SSL_CERT_FILE", "")  # the benchmark trusts its own server's CA; restored after

    assert graph_replies.main(["--plans", "4", "--answered", "1"]) == 0

    out = capsys.readouterr().out
    assert "4 meetings, 20 events, 16 answers given" in out
    assert '"messages": 20, "applied": 16, "stale": 0' in out
    assert '"messages": 20, "applied": 0, "stale": 16' in out

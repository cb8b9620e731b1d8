"""Dispatch of the notice ledger: claiming, sending, recording, retrying — on SQLite and PostgreSQL.

SMTP tests talk to a real aiosmtpd server in this process and assert what arrived there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.models import Invitation, Meeting, Notice, NoticeStatus
from sipflows.notices.dispatch import backoff, claim, dispatch
from sipflows.notices.ledger import NoticeDraft, enqueue, requeue_dead
from sipflows.settings import Settings
from sipflows.transports.base import (
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    TransportUnavailable,
)
from sipflows.transports.smtp import SmtpTransport
from tests import smtp_server as smtp_helpers
from tests.factories import SECRETS
from tests.smtp_server import SmtpTestServer, settings_for, start_smtp_server

smtp_server = smtp_helpers.smtp_server  # the fixture

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
DOMAIN = "sipflows.test"


# ------------------------------------------------------------------------------------ shared helpers


def draft(n: int, address: str | None = None, **kw: object) -> NoticeDraft:
    """A plain reminder notice (no calendar part)."""
    values: dict[str, object] = {
        "key": f"documentation.reminder:case:{n}:stage:1:contact:{n}",
        "kind": "documentation.reminder",
        "address": address or f"person{n}@kommun.example.se",
        "subject": f"Påminnelse: dokumentera SIP-2026-{n} – två arbetsdagar",
        "body_text": f"Hej!\nPlanen SIP-2026-{n} ska dokumenteras senast 4 mars.\n",
        "body_html": f"<p>Hej!</p><p>Planen <b>SIP-2026-{n}</b> ska dokumenteras senast 4 mars.</p>",
    }
    values.update(kw)
    return NoticeDraft(**values)  # type: ignore[arg-type]


def meeting_ics(meeting: Meeting, method: str = "REQUEST", sequence: int | None = None) -> str:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//sipflows tests//SV")
    cal.add("version", "2.0")
    cal.add("method", method)
    ev = icalendar.Event()
    ev.add("uid", meeting.ical_uid)
    ev.add("sequence", meeting.sequence if sequence is None else sequence)
    ev.add("dtstamp", NOW)
    ev.add("dtstart", meeting.starts_at)
    ev.add("dtend", meeting.ends_at)
    ev.add("summary", "SIP-möte")
    ev.add("location", meeting.place or "")
    if method == "CANCEL":
        ev.add("status", "CANCELLED")
    cal.add_component(ev)
    return cal.to_ical().decode()


def invitation_draft(meeting: Meeting, contact_id: int, address: str, method: str = "REQUEST", seq: int = 0):
    return NoticeDraft(
        key=f"meeting.{method.lower()}:meeting:{meeting.id}:seq:{seq}:contact:{contact_id}",
        kind="meeting.invitation" if method == "REQUEST" else "meeting.cancellation",
        address=address,
        subject=f"Kallelse till SIP-möte {meeting.code}",
        body_text="Du är kallad till ett SIP-möte 10 mars kl 09.00.\n",
        body_html="<p>Du är kallad till ett SIP-möte 10 mars kl 09.00.</p>",
        case_id=meeting.case_id,
        meeting_id=meeting.id,
        contact_id=contact_id,
        ics=meeting_ics(meeting, method, seq),
        ics_method=method,
        ics_sequence=seq,
    )


def unix(text: str) -> str:
    """Mail travels with CRLF line ends; the ledger keeps what the renderer wrote."""
    return text.replace("\r\n", "\n")


def add(engine: Engine, drafts: Sequence[NoticeDraft], now: datetime = NOW) -> None:
    with Session(engine) as s, s.begin():
        enqueue(s, list(drafts), now, DOMAIN)


def ledger(engine: Engine) -> dict[str, Notice]:
    with Session(engine, expire_on_commit=False) as s:
        return {n.key: n for n in s.scalars(select(Notice).order_by(Notice.id))}


def lease_now(engine: Engine) -> datetime:
    """The clock leases run on: PostgreSQL's own, or this machine's for SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            value = conn.execute(text("SELECT now()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def age_claims(engine: Engine, seconds: float) -> None:
    """Let ``seconds`` pass on the lease clock for every live claim (as if the lease were running out)."""
    with Session(engine) as s, s.begin():
        for n in s.scalars(select(Notice).where(Notice.claimed_until.is_not(None))):
            assert n.claimed_until is not None
            n.claimed_until -= timedelta(seconds=seconds)


def fast_settings(server: SmtpTestServer | None = None, **kw: object) -> Settings:
    values: dict[str, object] = {
        "backoff_base_seconds": 60.0,
        "backoff_max_seconds": 3600.0,
        "max_attempts": 4,
        "claim_lease_seconds": 600,
    }
    values.update(kw)
    return settings_for(server, **values)


@dataclass
class RecordingTransport:
    """A Transport of our own (not a mock of a library): records messages, fails on request."""

    fail: dict[str, BaseException] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)
    open_error: BaseException | None = None
    name: str = "recording"
    sent: list[OutgoingMessage] = field(default_factory=list)
    opened: int = 0
    closed: int = 0

    def __enter__(self) -> RecordingTransport:
        if self.open_error is not None:
            raise self.open_error
        self.opened += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed += 1

    def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        if message.key in self.fail:
            raise self.fail[message.key]
        return SendResult(external_id=self.external_ids.get(message.key))


# ----------------------------------------------------------------------------------------------- tests


def test_backoff_doubles_from_the_base_and_stops_at_the_maximum():
    s = fast_settings(backoff_base_seconds=60, backoff_max_seconds=600)
    assert [backoff(a, s).total_seconds() for a in range(1, 7)] == [60, 120, 240, 480, 600, 600]
    assert backoff(10_000, s) == timedelta(seconds=600)


def test_claim_takes_due_notices_in_order_and_never_a_live_claim(engine):
    add(engine, [draft(n) for n in range(1, 6)])
    add(engine, [draft(9)], now=NOW + timedelta(hours=1))  # not due yet
    before = lease_now(engine)
    first = claim(engine, NOW, 3, "worker-a", 600)
    second = claim(engine, NOW, 3, "worker-b", 600)
    after = lease_now(engine)
    assert [r["key"] for r in first] == [draft(n).key for n in (1, 2, 3)]
    assert [r["key"] for r in second] == [draft(n).key for n in (4, 5)]
    assert claim(engine, NOW, 3, "worker-c", 600) == []
    rows = ledger(engine)
    assert {rows[draft(n).key].claimed_by for n in (1, 2, 3)} == {"worker-a"}
    # the lease runs on the lease clock (the database's on PostgreSQL), not on the run's NOW
    until = rows[draft(4).key].claimed_until
    assert until is not None and before + timedelta(seconds=600) <= until <= after + timedelta(seconds=600)
    assert rows[draft(9).key].claimed_by is None
    # an expired lease (a dispatcher that died) is claimable again; the later notice is due by then
    age_claims(engine, 601)
    later = claim(engine, NOW + timedelta(hours=1), 10, "worker-d", 600)
    assert [r["key"] for r in later] == [draft(n).key for n in (1, 2, 3, 4, 5, 9)]


def test_a_clock_ahead_or_a_given_now_never_takes_over_a_live_claim(engine):
    """Two dispatchers, one of them 11 minutes ahead (or run with --now by hand): no notice twice."""
    add(engine, [draft(n) for n in range(1, 41)])
    honest = claim(engine, NOW, 20, "on-time", 600)
    ahead = claim(engine, NOW + timedelta(minutes=11), 40, "eleven-minutes-ahead", 600)
    far = claim(engine, NOW + timedelta(days=3), 40, "given-now", 600)
    keys = [r["key"] for r in honest + ahead + far]
    assert len(honest) == 20 and len(ahead) == 20 and far == []
    assert len(keys) == len(set(keys)) == 40  # every notice claimed once, none taken over
    assert {n.claimed_by for n in ledger(engine).values()} == {"on-time", "eleven-minutes-ahead"}


def test_smtp_dispatch_delivers_exactly_what_the_ledger_holds(engine, session, build, smtp_server):
    r = build.standard_region()
    case = build.case(r["k"], participants=(r["r"], r["f"]))
    meeting = build.meeting(case, date(2026, 3, 10))
    for c in (r["k"], r["r"], r["f"]):
        build.invite(meeting, c, sent_on=date(2026, 2, 20) if c is r["f"] else None)
    session.commit()
    invitees = [(r["k"].id, r["k"].email), (r["r"].id, r["r"].email), (r["f"].id, r["f"].email)]
    add(engine, [invitation_draft(meeting, cid, email) for cid, email in invitees] + [draft(1)])
    settings = fast_settings(smtp_server)

    summary = dispatch(engine, SmtpTransport(settings), NOW, settings)

    assert (summary.sent, summary.failed, summary.dead, summary.failures) == (4, 0, 0, [])
    rows = ledger(engine)
    arrived = {d.message["Message-ID"]: d for d in smtp_server.deliveries}
    assert sorted(arrived) == sorted(n.message_id for n in rows.values())
    assert len({d.connection for d in smtp_server.deliveries}) == 1  # one connection for the batch
    for n in rows.values():
        d = arrived[n.message_id]
        msg = d.message
        assert d.rcpt_tos == (n.address,)
        assert d.mail_from == "sip-noreply@sipflows.test"
        assert msg["From"].addresses[0].display_name == "SIP-påminnelser"
        assert msg["From"].addresses[0].addr_spec == "sip-noreply@sipflows.test"
        assert msg["To"].addresses[0].addr_spec == n.address
        assert msg["Subject"] == n.subject  # decoded from RFC 2047
        assert msg["Date"].datetime == NOW
        assert msg.get_content_type() == "multipart/alternative"
        assert unix(msg.get_body(("plain",)).get_content()) == n.body_text
        assert unix(msg.get_body(("html",)).get_content()).strip() == n.body_html
        calendars = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
        if n.ics is None:
            assert calendars == []
        else:
            (cal,) = calendars
            assert cal.get_param("method") == "REQUEST"
            assert cal.get_content_charset() == "utf-8"
            assert cal.get_content() == n.ics
            assert "\r\n" in cal.get_payload(decode=True).decode()  # RFC 5545 line ends survive
            event_ = icalendar.Calendar.from_ical(cal.get_content()).walk("VEVENT")[0]
            assert str(event_["UID"]) == meeting.ical_uid
        assert (n.status, n.attempts, n.sent_at, n.claimed_until) == (NoticeStatus.SENT, 1, NOW, None)
    # every invitation counts as sent now, except the one already sent earlier
    with Session(engine) as s:
        sent_at = dict(s.execute(select(Invitation.contact_id, Invitation.sent_at)).tuples().all())
    assert sent_at[r["k"].id] == NOW and sent_at[r["r"].id] == NOW
    assert sent_at[r["f"].id] == datetime(2026, 2, 20, 9, 0, tzinfo=UTC)

    # a rerun, even much later, sends nothing again
    again = dispatch(engine, SmtpTransport(settings), NOW + timedelta(days=1), settings)
    assert (again.sent, again.failed, again.dead, again.batches) == (0, 0, 0, 0)
    assert len(smtp_server.deliveries) == 4


def test_refused_recipient_fails_alone_and_the_connection_carries_on(engine, smtp_server):
    add(engine, [draft(1), draft(2, address="gone@region.example.se"), draft(3), draft(4)])
    smtp_server.refuse("gone@region.example.se", "550 5.1.1 <gone@region.example.se>: no such user")
    settings = fast_settings(smtp_server)

    summary = dispatch(engine, SmtpTransport(settings), NOW, settings)

    assert (summary.sent, summary.failed, summary.dead) == (3, 0, 1)
    ((notice_id, key, kind, reason),) = summary.failures
    assert key == draft(2).key and kind == "documentation.reminder" and "550" in reason
    assert summary.dead_ids == [notice_id]
    rows = ledger(engine)
    bad = rows[draft(2).key]
    assert (bad.status, bad.attempts, bad.sent_at, bad.claimed_until) == (NoticeStatus.DEAD, 1, None, None)
    assert "no such user" in (bad.last_error or "")
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(
        draft(n).address for n in (1, 3, 4)
    )
    assert len({d.connection for d in smtp_server.deliveries}) == 1
    # dead stays dead: a later run does not try it again
    assert dispatch(engine, SmtpTransport(settings), NOW + timedelta(days=2), settings).batches == 0


def test_temporary_refusal_is_retried_with_backoff_then_sent_once(engine, smtp_server):
    add(engine, [draft(1), draft(2, address="full@region.example.se")])
    smtp_server.refuse("full@region.example.se", "452 4.2.2 mailbox full")
    settings = fast_settings(smtp_server)

    first = dispatch(engine, SmtpTransport(settings), NOW, settings)
    assert (first.sent, first.failed, first.dead) == (1, 1, 0)
    n = ledger(engine)[draft(2).key]
    assert (n.status, n.attempts, n.next_attempt_at) == (NoticeStatus.FAILED, 1, NOW + timedelta(seconds=60))
    assert "452" in (n.last_error or "")

    # not due before its backoff has passed
    assert dispatch(engine, SmtpTransport(settings), NOW + timedelta(seconds=59), settings).batches == 0
    del smtp_server.handler.refuse["full@region.example.se"]
    later = dispatch(engine, SmtpTransport(settings), NOW + timedelta(seconds=60), settings)
    assert later.sent == 1
    n = ledger(engine)[draft(2).key]
    assert (n.status, n.attempts, n.last_error) == (NoticeStatus.SENT, 2, None)
    assert [d.rcpt_tos[0] for d in smtp_server.deliveries].count("full@region.example.se") == 1


def test_server_down_costs_no_attempts_and_recovery_sends_once(engine):
    add(engine, [draft(1), draft(2)])
    settings = fast_settings(None, max_attempts=2)  # a free port where nobody listens
    for minutes in (0, 5, 10, 60, 24 * 60):  # far longer than every retry the notices have
        with pytest.raises(TransportUnavailable) as raised:
            dispatch(engine, SmtpTransport(settings), NOW + timedelta(minutes=minutes), settings)
        assert f"127.0.0.1:{settings.smtp_port}" in str(raised.value)
        assert raised.value.settings == ("SIPFLOWS_SMTP_HOST", "SIPFLOWS_SMTP_PORT")
        done = raised.value.summary
        assert (done.sent, done.failed, done.dead, done.held_back) == (0, 0, 0, 2)
        for n in ledger(engine).values():  # untouched: no attempt counted, no backoff, no claim
            assert (n.status, n.attempts, n.next_attempt_at, n.claimed_until, n.last_error) == (
                NoticeStatus.PENDING,
                0,
                NOW,
                None,
                None,
            )

    server = start_smtp_server(port=settings.smtp_port)
    try:
        later = NOW + timedelta(days=1, minutes=5)
        summary = dispatch(engine, SmtpTransport(settings), later, settings)
        assert summary.sent == 2
        assert sorted(d.message["Message-ID"] for d in server.deliveries) == sorted(
            n.message_id for n in ledger(engine).values()
        )
        assert dispatch(engine, SmtpTransport(settings), later + timedelta(days=1), settings).sent == 0
        assert len(server.deliveries) == 2
    finally:
        server.stop()
    assert {(n.status, n.attempts) for n in ledger(engine).values()} == {(NoticeStatus.SENT, 1)}


def test_an_outage_gives_back_the_batches_claimed_ahead_too(engine):
    """Over SMTP the next batch is claimed while the current one goes: an outage gives both back."""
    add(engine, [draft(n) for n in range(1, 8)])
    settings = fast_settings(None, batch_size=2)  # a free port where nobody listens
    with pytest.raises(TransportUnavailable) as raised:
        dispatch(engine, SmtpTransport(settings), NOW, settings)
    done = raised.value.summary
    assert (done.sent, done.failed, done.dead, done.batches) == (0, 0, 0, 1)
    assert done.held_back in (2, 4)  # the batch it tried, and the next if it was claimed already
    assert {
        (n.status, n.attempts, n.next_attempt_at, n.claimed_until, n.last_error)
        for n in ledger(engine).values()
    } == {(NoticeStatus.PENDING, 0, NOW, None, None)}


def test_a_server_that_dies_mid_batch_gives_the_rest_back(engine):
    add(engine, [draft(n) for n in range(1, 6)])
    server = start_smtp_server()
    settings = fast_settings(server)
    try:

        class DiesAfterTwo(SmtpTransport):
            def send(self, message: OutgoingMessage) -> SendResult:
                if message.key == draft(3).key:
                    server.stop()  # the server goes away before the third notice
                return super().send(message)

        with pytest.raises(TransportUnavailable, match="cannot connect") as raised:
            dispatch(engine, DiesAfterTwo(settings), NOW, settings)
    finally:
        server.stop()
    done = raised.value.summary
    rows = ledger(engine)
    assert [d.message["Message-ID"] for d in server.deliveries] == [
        rows[draft(n).key].message_id for n in (1, 2)
    ]
    assert [(rows[draft(n).key].status, rows[draft(n).key].attempts) for n in range(1, 6)] == [
        (NoticeStatus.SENT, 1),
        (NoticeStatus.SENT, 1),
        # the third lost its connection mid-message (it may even have arrived): one attempt, retried
        (NoticeStatus.FAILED, 1),
        (NoticeStatus.PENDING, 0),
        (NoticeStatus.PENDING, 0),
    ]
    assert (done.sent, done.failed, done.held_back) == (2, 1, 2)
    assert all(n.claimed_until is None for n in rows.values())


def test_default_retries_let_a_notice_fail_for_a_day_before_it_is_dead():
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    # the waits of a notice that keeps failing: after its 1st, 2nd, ... try, until it is dead
    schedule = [backoff(attempts, settings) for attempts in range(1, settings.max_attempts)]
    assert len(schedule) == settings.max_attempts - 1 == 15
    assert [w.total_seconds() / 60 for w in schedule[:8]] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert set(schedule[8:]) == {timedelta(hours=3)}
    assert timedelta(hours=24) <= sum(schedule, timedelta(0)) == timedelta(hours=25, minutes=15)


def test_a_refused_recipient_survives_a_day_of_retries_then_is_dead(engine, smtp_server):
    """Per-notice failures, with the default retry settings, every five minutes for 26 hours."""
    add(engine, [draft(1, address="full@region.example.se"), draft(2)])
    smtp_server.refuse("full@region.example.se", "452 4.2.2 mailbox full")
    settings = settings_for(smtp_server)  # the defaults: max_attempts, backoff
    when, first_failure, dead_at = NOW, None, None
    while when <= NOW + timedelta(hours=26):
        dispatch(engine, SmtpTransport(settings), when, settings)
        n = ledger(engine)[draft(1).key]
        if n.attempts and first_failure is None:
            first_failure = when
        if n.status == NoticeStatus.DEAD:
            dead_at = when
            break
        when += timedelta(minutes=5)  # the dispatch deployment's schedule
    assert first_failure == NOW and dead_at is not None
    assert dead_at - first_failure >= timedelta(hours=24)
    n = ledger(engine)[draft(1).key]
    assert (n.attempts, n.status) == (settings.max_attempts, NoticeStatus.DEAD)
    assert ledger(engine)[draft(2).key].status == NoticeStatus.SENT


def test_after_max_attempts_a_notice_is_dead_and_never_sent(engine, smtp_server):
    add(engine, [draft(1, address="full@region.example.se")])
    smtp_server.refuse("full@region.example.se", "450 4.2.1 mailbox busy, try again later")
    settings = fast_settings(smtp_server, max_attempts=3)
    when = NOW
    statuses = []
    for _ in range(3):
        dispatch(engine, SmtpTransport(settings), when, settings)
        n = ledger(engine)[draft(1).key]
        statuses.append((n.status, n.attempts))
        when = n.next_attempt_at
    assert statuses == [(NoticeStatus.FAILED, 1), (NoticeStatus.FAILED, 2), (NoticeStatus.DEAD, 3)]
    smtp_server.handler.refuse.clear()
    assert dispatch(engine, SmtpTransport(settings), when + timedelta(days=1), settings).batches == 0
    assert smtp_server.deliveries == []


def test_a_notice_that_cannot_be_built_is_dead_and_the_batch_goes_on(engine):
    bad_files = {"files": [{"filename": "rapport.csv", "content_type": "text/csv", "content_base64": "@@@"}]}
    add(engine, [draft(1), draft(2, attachments=bad_files), draft(3)])
    transport = RecordingTransport()
    summary = dispatch(engine, transport, NOW, fast_settings())
    assert (summary.sent, summary.dead) == (2, 1)
    assert [m.key for m in transport.sent] == [draft(1).key, draft(3).key]
    n = ledger(engine)[draft(2).key]
    assert n.status == NoticeStatus.DEAD and "rapport.csv" in (n.last_error or "")


def test_errors_of_any_kind_are_recorded_per_notice_without_secrets(engine):
    settings = fast_settings(
        exchange_password="Hemligt-Lösen-42", smtp_password="smtp-pw-9f3", max_attempts=2
    )
    add(engine, [draft(n) for n in range(1, 5)])
    transport = RecordingTransport(
        fail={
            draft(1).key: RuntimeError("EWS said: bad credentials Hemligt-Lösen-42 for sip@x"),
            draft(2).key: PermanentSendError("address rejected"),
            draft(3).key: TransientSendError("throttled; token smtp-pw-9f3"),
        }
    )
    summary = dispatch(engine, transport, NOW, settings)
    assert (summary.sent, summary.failed, summary.dead) == (1, 2, 1)
    rows = ledger(engine)
    assert rows[draft(1).key].status == NoticeStatus.FAILED  # an unknown error is transient
    assert rows[draft(1).key].last_error == "RuntimeError: EWS said: bad credentials *** for sip@x"
    assert rows[draft(2).key].status == NoticeStatus.DEAD  # permanent: never retried
    assert rows[draft(3).key].last_error == "throttled; token ***"
    for f in summary.failures:
        assert "Hemligt" not in f.reason and "smtp-pw" not in f.reason


def test_meeting_info_is_loaded_for_the_whole_batch_without_personal_data(engine, session, build):
    r = build.standard_region()
    cases = [build.case(r["k"], participants=(r["r"], r["s"])) for _ in range(6)]
    meetings = [build.meeting(c, date(2026, 3, 10), at="13:30") for c in cases]
    for m in meetings:
        build.invite(m, r["k"])
        build.invite(m, r["r"])
        build.invite(m, r["s"], required=False)
    session.commit()
    m0 = meetings[0]
    # an earlier send of this meeting to Rolf created a calendar item; the update must refer to it
    add(engine, [invitation_draft(m0, r["r"].id, r["r"].email, seq=0)])
    first_key = f"meeting.request:meeting:{m0.id}:seq:0:contact:{r['r'].id}"
    dispatch(engine, RecordingTransport(external_ids={first_key: "AAMk-1"}), NOW, fast_settings())

    def drafts_for(ms: Sequence[Meeting], seq: int) -> list[NoticeDraft]:
        return [invitation_draft(m, c.id, c.email, seq=seq) for m in ms for c in (r["k"], r["r"], r["s"])] + [
            draft(100 + m.id) for m in ms
        ]

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and " FROM " in statement.upper():
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        add(engine, drafts_for(meetings[:2], seq=1))
        statements.clear()
        small = RecordingTransport()
        dispatch(engine, small, NOW, fast_settings())
        few = len(statements)
        add(engine, drafts_for(meetings[2:], seq=1))
        statements.clear()
        large = RecordingTransport()
        dispatch(engine, large, NOW, fast_settings())
        many = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(small.sent) == 8 and len(large.sent) == 16
    assert few == many  # the same queries for 8 or 16 notices: set-based, not one per notice

    by_key = {m.key: m for m in small.sent}
    rolf = by_key[f"meeting.request:meeting:{m0.id}:seq:1:contact:{r['r'].id}"]
    info = rolf.meeting
    assert info is not None
    assert (info.uid, info.sequence, info.method) == (m0.ical_uid, 1, "REQUEST")
    assert (info.starts_at, info.ends_at, info.location) == (m0.starts_at, m0.ends_at, m0.place)
    # the organizer is the mailbox that receives the answers; the convener is an attendee, as chair
    settings = fast_settings()
    assert (info.organizer_email, info.organizer_name) == (settings.organizer(), settings.sender_name)
    assert [(a.email, a.required, a.chair) for a in info.attendees] == [
        (r["k"].email, True, True),
        (r["r"].email, True, False),
        (r["s"].email, False, False),
    ]
    assert rolf.external_id == "AAMk-1" and rolf.to_name == r["r"].name
    assert (rolf.reply_to, rolf.reply_to_name) == (r["k"].email, r["k"].name)  # human replies: the convener
    sven = by_key[f"meeting.request:meeting:{m0.id}:seq:1:contact:{r['s'].id}"]
    assert sven.external_id is None
    assert all(m.meeting is None for m in small.sent if m.ics is None)
    for m in small.sent + large.sent:
        text = repr(m)
        assert not any(secret in text for secret in SECRETS)


def test_a_transport_that_cannot_open_gives_its_batch_back_and_raises(engine):
    add(engine, [draft(n) for n in range(1, 6)])
    transport = RecordingTransport(open_error=TransientSendError("cannot reach SMTP mail:25: refused"))
    with pytest.raises(TransportUnavailable, match="cannot reach SMTP mail:25") as raised:
        dispatch(engine, transport, NOW, fast_settings(), batch_size=2)
    done = raised.value.summary
    assert (done.batches, done.failed, done.sent, done.held_back) == (1, 0, 0, 2)
    rows = ledger(engine)
    assert [(n.status, n.attempts) for n in rows.values()] == [(NoticeStatus.PENDING, 0)] * 5
    assert all(n.claimed_until is None and n.last_error is None for n in rows.values())


def test_unavailable_while_sending_gives_the_notice_back_without_an_attempt(engine):
    add(engine, [draft(n) for n in range(1, 5)])
    down = TransportUnavailable("recording", "test server", "421 service not available", ("SETTING",))
    transport = RecordingTransport(fail={draft(3).key: down, draft(2).key: PermanentSendError("550 gone")})
    with pytest.raises(TransportUnavailable):
        dispatch(engine, transport, NOW, fast_settings())
    rows = ledger(engine)
    assert [(rows[draft(n).key].status, rows[draft(n).key].attempts) for n in range(1, 5)] == [
        (NoticeStatus.SENT, 1),
        (NoticeStatus.DEAD, 1),  # a per-notice refusal still counts for that notice alone
        (NoticeStatus.PENDING, 0),
        (NoticeStatus.PENDING, 0),
    ]
    assert transport.closed == 1 and all(n.claimed_until is None for n in rows.values())


def test_batches_loop_until_nothing_is_due_or_max_batches(engine):
    add(engine, [draft(n) for n in range(1, 8)])
    transport = RecordingTransport()
    first = dispatch(engine, transport, NOW, fast_settings(), batch_size=3, max_batches=2)
    assert (first.batches, first.sent, transport.opened, transport.closed) == (2, 6, 2, 2)
    assert ledger(engine)[draft(7).key].claimed_until is None  # not claimed by a batch that never ran
    rest = dispatch(engine, transport, NOW, fast_settings(), batch_size=3)
    assert (rest.batches, rest.sent) == (1, 1)
    assert [m.key for m in transport.sent] == [draft(n).key for n in range(1, 8)]


def test_an_interrupted_batch_gives_back_the_claims_it_did_not_use(engine):
    add(engine, [draft(n) for n in range(1, 5)])
    transport = RecordingTransport(fail={draft(2).key: KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        dispatch(engine, transport, NOW, fast_settings(), clock=lambda: 0.0)
    rows = ledger(engine)
    assert rows[draft(1).key].status == NoticeStatus.SENT
    # the interrupted one may have gone out: it stays claimed until its lease ends (at-least-once)
    until = rows[draft(2).key].claimed_until
    assert until is not None and until > lease_now(engine) + timedelta(seconds=590)
    assert rows[draft(3).key].claimed_until is None and rows[draft(4).key].claimed_until is None
    again = RecordingTransport()
    dispatch(engine, again, NOW, fast_settings())
    assert [m.key for m in again.sent] == [draft(3).key, draft(4).key]


def test_a_long_run_keeps_its_claims_live_and_never_sends_on_a_stale_one(engine):
    """Leases follow the time the run has taken: a later dispatcher cannot take over a slow batch."""
    add(engine, [draft(n) for n in range(1, 6)])
    elapsed = [0.0]
    seen: list[tuple[str, datetime, datetime]] = []
    sqlite = engine.dialect.name == "sqlite"

    def lease_clock() -> datetime:  # SQLite's leases: this machine's clock, here advanced by the test
        return NOW + timedelta(seconds=elapsed[0])

    def clock_now() -> datetime:
        return lease_clock() if sqlite else lease_now(engine)

    class SlowTransport(RecordingTransport):
        def send(self, message: OutgoingMessage) -> SendResult:
            with Session(engine) as s:
                claimed_until = s.scalar(select(Notice.claimed_until).where(Notice.id == message.notice_id))
            assert claimed_until is not None
            seen.append((message.key, claimed_until, clock_now()))
            elapsed[0] += 200  # each send takes 200 s of a 600 s lease
            return super().send(message)

    settings = fast_settings(claim_lease_seconds=600)
    summary = dispatch(
        engine, SlowTransport(), NOW, settings, clock=lambda: elapsed[0], lease_clock=lease_clock
    )

    assert (summary.sent, summary.batches) == (5, 3)  # each batch stops at half its lease
    assert [k for k, _, _ in seen] == [draft(n).key for n in range(1, 6)]
    # every send happened on a claim live for at least the other half of its lease
    assert all(until - at >= timedelta(seconds=390) for _, until, at in seen)
    if sqlite:
        assert [until - NOW for _, until, _ in seen] == [
            timedelta(seconds=s) for s in (600, 600, 1000, 1000, 1400)
        ]
    rows = ledger(engine)
    assert all(n.status == NoticeStatus.SENT and n.sent_at == NOW for n in rows.values())


def test_naive_now_is_refused(engine):
    with pytest.raises(ValueError, match="aware"):
        dispatch(engine, RecordingTransport(), NOW.replace(tzinfo=None), fast_settings())


# ------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(monkeypatch, db_url, tmp_path):
    from sipflows.settings import get_settings

    monkeypatch.setenv("SIPFLOWS_DATABASE_URL", db_url)
    monkeypatch.setenv("SIPFLOWS_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("SIPFLOWS_TRANSPORT", "outbox")
    get_settings.cache_clear()
    yield tmp_path / "outbox"
    get_settings.cache_clear()


def test_cli_dispatch_and_list(engine, smtp_server, cli_env, monkeypatch):
    from sipflows.cli import app

    monkeypatch.setenv("SIPFLOWS_TRANSPORT", "smtp")
    monkeypatch.setenv("SIPFLOWS_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("SIPFLOWS_SMTP_PORT", str(smtp_server.port))
    from sipflows.settings import get_settings

    get_settings.cache_clear()
    add(engine, [draft(1), draft(2, address="gone@region.example.se"), draft(3)])
    smtp_server.refuse("gone@region.example.se")
    runner = CliRunner()

    result = runner.invoke(app, ["notices", "dispatch", "--batch-size", "2", "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "via smtp: 2 sent, 0 failed (will retry), 1 dead" in result.output
    assert (
        f"dead  {draft(2).key} (documentation.reminder): recipient gone@region.example.se refused: 550"
        in (result.output)
    )
    assert len(smtp_server.deliveries) == 2

    listed = runner.invoke(app, ["notices", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:4] == ["key", "kind", "status", "tries"]
    assert any(draft(1).key in line and " sent " in line for line in lines)
    assert draft(1).body_text.splitlines()[1] not in listed.output  # never a body

    dead = runner.invoke(app, ["notices", "list", "--status", "dead"])
    assert dead.exit_code == 0
    assert draft(2).key in dead.output and draft(1).key not in dead.output
    assert "gone@region.example.se" in dead.output and "550" in dead.output

    bad = runner.invoke(app, ["notices", "dispatch", "--now", "2026-03-02 08:00"])
    assert bad.exit_code != 0 and "time zone" in bad.output


def test_cli_dispatch_to_the_outbox_by_default(engine, cli_env):
    from sipflows.cli import app

    add(engine, [draft(1), draft(2)])
    result = CliRunner().invoke(app, ["notices", "dispatch", "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "via outbox: 2 sent" in result.output
    assert len(list(cli_env.glob("*.eml"))) == 2
    empty = CliRunner().invoke(app, ["notices", "list", "--status", "failed"])
    assert "no notices with status failed" in empty.output


def test_requeue_gives_dead_notices_new_attempts_with_the_contacts_fixed_address(engine, session, build):
    r = build.standard_region()
    contact = r["f"]
    session.commit()
    add(engine, [draft(1, address="old@fk.example.se", contact_id=contact.id), draft(2)])
    settings = fast_settings(max_attempts=1)
    failing = RecordingTransport(fail={draft(1).key: PermanentSendError("550 no such user")})
    assert dispatch(engine, failing, NOW, settings).dead == 1
    before = ledger(engine)[draft(1).key]

    later = NOW + timedelta(days=2)
    with Session(engine) as s, s.begin():
        assert requeue_dead(s, later, [draft(2).key]) == 0  # sent notices are left alone
        assert requeue_dead(s, later, [draft(1).key]) == 1
    n = ledger(engine)[draft(1).key]
    assert (n.status, n.attempts, n.next_attempt_at, n.last_error) == (NoticeStatus.PENDING, 0, later, None)
    assert n.address == contact.email and n.message_id == before.message_id

    transport = RecordingTransport()
    assert dispatch(engine, transport, later, settings).sent == 1
    assert [(m.key, m.to_address) for m in transport.sent] == [(draft(1).key, contact.email)]
    with Session(engine) as s, s.begin():
        assert requeue_dead(s, later) == 0


def test_cli_requeue(engine, cli_env):
    from sipflows.cli import app

    add(engine, [draft(1)])
    failing = RecordingTransport(fail={draft(1).key: PermanentSendError("550 no such user")})
    assert dispatch(engine, failing, NOW, fast_settings(max_attempts=1)).dead == 1
    runner = CliRunner()
    assert runner.invoke(app, ["notices", "requeue"]).exit_code != 0
    result = runner.invoke(app, ["notices", "requeue", draft(1).key, "no-such-key"])
    assert result.exit_code == 0, result.output
    assert "1 dead notice(s) requeued" in result.output and "1 key(s) were not dead" in result.output
    assert ledger(engine)[draft(1).key].status == NoticeStatus.PENDING
    sent = runner.invoke(app, ["notices", "dispatch"])  # requeued "now": due at once
    assert "via outbox: 1 sent" in sent.output, sent.output


def test_recording_leaves_pooled_connections_with_durable_commits(engine):
    """Outcomes skip PostgreSQL's WAL flush; the connection must not carry that back into the pool."""
    add(engine, [draft(1), draft(2)])
    assert dispatch(engine, RecordingTransport(), NOW, fast_settings()).sent == 2
    if engine.dialect.name != "postgresql":
        return
    for _ in range(engine.pool.checkedin() + 1):  # every pooled connection, and one more
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"

"""Invitation answers: iTIP REPLY messages from a real IMAP server (pymap) and from a folder, and by phone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from sipflows.cli import app
from sipflows.models import Answer, CaseStatus, Contact, Invitation, Meeting
from sipflows.replies import (
    ItipAnswer,
    MalformedReply,
    Outcome,
    PartialIngestError,
    ReplyIngestError,
    UntrustedReply,
    apply_answer,
    imap_utf7,
    ingest_configured,
    ingest_folder,
    ingest_imap,
    parse_itip_reply,
    record_answer,
)
from sipflows.settings import Settings, get_settings
from sipflows.timeutil import from_local
from tests.factories import SECRETS, RegisterBuilder
from tests.imap_server import ImapTestServer, running_imap_server
from tests.itip_messages import T1, broken_reply, google_reply, outlook_ics, outlook_reply, plain_mail

NOW = datetime(2026, 2, 5, 8, 0, tzinfo=UTC)
T2 = datetime(2026, 2, 4, 9, 30, tzinfo=UTC)
REJECTED = "sipflows-rejected"


@pytest.fixture
def imap_server() -> Iterator[ImapTestServer]:
    with running_imap_server() as server:
        yield server


# --- register ---------------------------------------------------------------------------------------------


@dataclass
class Scene:
    meeting: Meeting
    other: Meeting
    k: Contact
    r: Contact
    f: Contact
    s: Contact


@pytest.fixture
def scene(build: RegisterBuilder, session: Session) -> Scene:
    """One SIP meeting with four invited contacts (one of them answered already), committed."""
    reg = build.standard_region()
    k, r, f, s = (reg[n] for n in ("k", "r", "f", "s"))
    assert all(isinstance(c, Contact) for c in (k, r, f, s))
    case = build.case(k, participants=(r, f, s))
    meeting = build.meeting(case, date(2026, 2, 10))
    other = build.meeting(case, date(2026, 3, 10), kind=meeting.kind)
    for c in (k, r, f, s):
        build.invite(meeting, c, sent_on=date(2026, 2, 2))
    build.invite(other, k, sent_on=date(2026, 2, 2))
    session.commit()
    return Scene(meeting, other, k, r, f, s)


def answers(engine: Engine, meeting: Meeting) -> dict[str, tuple[Answer, datetime | None]]:
    with Session(engine) as s:
        rows = s.execute(
            select(Contact.code, Invitation.answer, Invitation.answered_at)
            .join(Invitation.contact)
            .where(Invitation.meeting_id == meeting.id)
        ).all()
    return {code: (answer, at) for code, answer, at in rows}


def imap_settings(server: ImapTestServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "imap_host": server.host,
        "imap_port": server.port,
        "imap_ssl": False,
        "imap_username": server.user,
        "imap_password": SecretStr(server.password),
        "imap_folder": "INBOX",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


# --- record_answer ----------------------------------------------------------------------------------------


def test_record_answer_matches_attendee_case_insensitively(scene: Scene, session: Session, engine: Engine):
    attendee = f"MAILTO:{scene.r.email.upper()}"
    assert record_answer(session, scene.meeting.ical_uid, attendee, Answer.ACCEPTED, T1, "t")
    session.commit()
    got = answers(engine, scene.meeting)
    assert got[scene.r.code] == (Answer.ACCEPTED, T1)
    assert got[scene.k.code] == (Answer.NONE, None)
    # the same contact's invitation to another meeting is untouched
    assert answers(engine, scene.other)[scene.k.code] == (Answer.NONE, None)


def test_record_answer_unknown_uid_or_attendee_is_false_and_logs_no_address(
    scene: Scene, session: Session, engine: Engine, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="sipflows")
    assert not record_answer(session, "nope@elsewhere", scene.r.email, Answer.ACCEPTED, T1, "t")
    uid = scene.meeting.ical_uid
    assert not record_answer(session, uid, "stranger@fk.example.se", Answer.DECLINED, T1, "t")
    session.commit()
    assert all(a == Answer.NONE for a, _ in answers(engine, scene.meeting).values())
    assert "stranger" not in caplog.text and scene.r.email not in caplog.text
    assert "fk.example.se" in caplog.text  # the domain helps a person find the sender's organisation
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2


def test_an_older_answer_never_overwrites_a_newer_one(scene: Scene, session: Session, engine: Engine):
    uid, r = scene.meeting.ical_uid, scene.r.email
    assert apply_answer(session, uid, r, Answer.DECLINED, T2, "t") is Outcome.APPLIED
    assert apply_answer(session, uid, r, Answer.ACCEPTED, T1, "t") is Outcome.STALE
    # the same instant: the first one stays
    assert apply_answer(session, uid, r, Answer.ACCEPTED, T2, "t") is Outcome.STALE
    session.commit()
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, T2)
    assert apply_answer(session, uid, r, Answer.TENTATIVE, T2 + timedelta(hours=1), "t") is Outcome.APPLIED
    session.commit()
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.TENTATIVE, T2 + timedelta(hours=1))


def test_a_reply_to_an_earlier_version_of_the_meeting_is_stale(
    scene: Scene, session: Session, engine: Engine
):
    scene.meeting.sequence = 2  # moved twice since the first invitation
    session.commit()
    uid, r = scene.meeting.ical_uid, scene.r.email
    assert apply_answer(session, uid, r, Answer.ACCEPTED, T2, "t", sequence=1) is Outcome.STALE
    assert apply_answer(session, uid, r, Answer.DECLINED, T2, "t", sequence=2) is Outcome.APPLIED
    session.commit()
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, T2)


def test_answers_for_a_closed_plan_are_not_recorded(scene: Scene, session: Session, engine: Engine):
    scene.meeting.case.status = CaseStatus.CLOSED
    scene.meeting.case.closed_on = date(2026, 2, 3)
    session.commit()
    uid, r = scene.meeting.ical_uid, scene.r.email
    assert apply_answer(session, uid, r, Answer.ACCEPTED, T2, "t") is Outcome.CLOSED
    assert not record_answer(session, uid, r, Answer.ACCEPTED, T2, "t")
    session.commit()
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.NONE, None)


# --- parse_itip_reply -------------------------------------------------------------------------------------


def test_parses_outlook_and_google_replies():
    o = parse_itip_reply(outlook_reply("m1@x", "Sara@Kommun.example.se", "TENTATIVE", T1, sequence=3))
    assert o == [ItipAnswer("m1@x", "sara@kommun.example.se", Answer.TENTATIVE, T1, 3)]
    # Google repeats the calendar as an invite.ics attachment: one answer, not two
    g = parse_itip_reply(google_reply("m2@x", "rolf@region.example.se", "DECLINED", T2))
    assert g == [ItipAnswer("m2@x", "rolf@region.example.se", Answer.DECLINED, T2, 0)]
    assert parse_itip_reply(google_reply("m2@x", "a@b.se", "ACCEPTED"))[0].answer is Answer.ACCEPTED


def test_without_dtstamp_the_date_header_dates_the_answer():
    stamp = f"DTSTAMP:{T2:%Y%m%dT%H%M%SZ}\r\n"
    raw = google_reply("m@x", "a@b.se", "ACCEPTED", T2, edit=lambda ics: ics.replace(stamp, ""))
    assert parse_itip_reply(raw)[0].answered_at == T2  # Google's Date header is T2 too
    no_date = raw.replace(f"Date: {format_datetime(T2)}\n".encode(), b"")
    assert b"Date:" not in no_date
    # neither: the answer claims no time, and the receipt time will date it
    assert parse_itip_reply(no_date)[0].answered_at is None


def _calendar_mail(ics: str, method: str | None = "REPLY", sender: str = "a@b.se") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Date"] = format_datetime(T1)
    msg.set_content(ics, subtype="calendar", params={"method": method} if method else {})
    return msg.as_bytes()


def test_messages_that_are_not_replies_give_no_answers():
    assert parse_itip_reply(plain_mail("a@b.se")) == []
    request_ics = outlook_ics("m@x", "a@b.se", "ACCEPTED", T1).replace("METHOD:REPLY", "METHOD:REQUEST")
    assert parse_itip_reply(_calendar_mail(request_ics, "REQUEST")) == []
    # a part declared as another method is not read at all, so its flaws are not ours to report
    assert parse_itip_reply(_calendar_mail("BEGIN:VCALENDAR\r\ngarbage\r\n", "CANCEL")) == []


def test_the_method_may_be_said_by_the_part_or_by_the_calendar():
    ics = outlook_ics("m@x", "a@b.se", "ACCEPTED", T1)
    only_param = _calendar_mail(ics.replace("METHOD:REPLY\r\n", ""), "REPLY")
    only_calendar = _calendar_mail(ics, None)
    for raw in (only_param, only_calendar):
        assert [a.answer for a in parse_itip_reply(raw)] == [Answer.ACCEPTED]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.replace("UID:m@x\r\n", ""), "no UID"),
        (lambda s: s.replace(f"DTSTAMP:{T1:%Y%m%dT%H%M%SZ}", "DTSTAMP:2026-02-0x"), "DTSTAMP cannot be read"),
        (lambda s: s.replace("SEQUENCE:0", "SEQUENCE:two"), "SEQUENCE cannot be read"),
        (lambda s: s.replace("PARTSTAT=ACCEPTED", "PARTSTAT=DELEGATED"), "answer is DELEGATED"),
        (lambda s: s.replace("PARTSTAT=ACCEPTED", "PARTSTAT=Ebba"), "answer is unknown"),
        (lambda s: s.replace("BEGIN:VEVENT", "BEGIN:VTODO").replace("END:VEVENT", "END:VTODO"), "no VEVENT"),
        (lambda s: s.replace("END:VCALENDAR\r\n", ""), "not valid iCalendar"),
    ],
)
def test_malformed_replies_raise_a_reason_that_quotes_nothing(change, reason):
    with pytest.raises(MalformedReply, match=reason) as exc:
        parse_itip_reply(_calendar_mail(change(outlook_ics("m@x", "a@b.se", "ACCEPTED", T1))))
    assert "a@b.se" not in str(exc.value) and "Ebba" not in str(exc.value)


def test_a_reply_for_someone_else_is_untrusted_and_quotes_nothing():
    ics = outlook_ics("m@x", "nobody@elsewhere.se", "ACCEPTED", T1)
    with pytest.raises(UntrustedReply, match="ATTENDEE is not its sender") as exc:
        parse_itip_reply(_calendar_mail(ics, sender="a@b.se"))
    assert "nobody" not in str(exc.value) and "a@b.se" not in str(exc.value)


def test_an_unreadable_calendar_part_is_malformed():
    with pytest.raises(MalformedReply, match=r"^text/calendar part 1 is not valid iCalendar \(line 3\)$"):
        parse_itip_reply(broken_reply())


# --- IMAP -------------------------------------------------------------------------------------------------


def test_imap_replies_update_the_right_invitations_and_bad_ones_are_set_aside(
    scene: Scene, engine: Engine, imap_server: ImapTestServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="sipflows")
    uid = scene.meeting.ical_uid
    imap_server.append(outlook_reply(uid, scene.r.email.upper(), "ACCEPTED", T1))
    imap_server.append(outlook_reply("unknown-uid@elsewhere.example", scene.r.email, "ACCEPTED", T1))
    imap_server.append(broken_reply())
    imap_server.append(google_reply(uid, scene.f.email, "DECLINED", T1))
    imap_server.append(outlook_reply(uid, "stranger@fk.example.se", "ACCEPTED", T1))
    imap_server.append(plain_mail(scene.s.email))
    imap_server.append(outlook_reply(uid, scene.s.email, "TENTATIVE", T2))
    imap_server.append(outlook_reply(uid, scene.k.email, "DECLINED", T2), flags="\\Seen")  # read by a person

    summary = ingest_imap(engine, imap_settings(imap_server), NOW)

    assert (summary.messages, summary.matched, summary.applied, summary.unknown) == (7, 3, 3, 2)
    assert (summary.malformed, summary.not_replies, summary.stale, summary.closed) == (1, 1, 0, 0)
    assert (summary.rejected, summary.errors, summary.untrusted) == (4, 0, 0)
    got = answers(engine, scene.meeting)
    assert got[scene.r.code] == (Answer.ACCEPTED, T1)
    assert got[scene.f.code] == (Answer.DECLINED, T1)
    assert got[scene.s.code] == (Answer.TENTATIVE, T2)
    assert got[scene.k.code] == (Answer.NONE, None)  # only unseen messages are read
    # the handled ones stay, seen; the four set aside were moved into the rejected folder, flagged
    assert imap_server.flags() == [{"\\Seen"}] * 4
    assert REJECTED in imap_server.mailboxes()
    rejected_flags = imap_server.flags(REJECTED)
    assert len(rejected_flags) == 4
    assert all("\\Flagged" in f and "\\Seen" not in f for f in rejected_flags)  # unread there, for a person
    reasons = sorted(item.reason for item in summary.set_aside)
    assert reasons == sorted(
        [
            "no meeting in the register has the reply's UID",
            "text/calendar part 1 is not valid iCalendar (line 3)",
            "the sender is not invited to the meeting",
            "not a calendar reply (no text/calendar part of its own)",
        ]
    )

    # a rerun finds nothing new
    again = ingest_imap(engine, imap_settings(imap_server), NOW)
    assert again.messages == 0
    # a new reply is read on the next run, and only it
    imap_server.append(outlook_reply(uid, scene.r.email, "DECLINED", T2))
    third = ingest_imap(engine, imap_settings(imap_server), NOW)
    assert (third.messages, third.applied) == (1, 1)
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, T2)

    for secret in (*SECRETS, imap_server.password, scene.r.email, scene.f.email, "stranger"):
        assert secret not in caplog.text


def test_without_a_rejected_folder_imap_flags_what_it_sets_aside(
    scene: Scene, engine: Engine, imap_server: ImapTestServer
):
    imap_server.append(plain_mail(scene.s.email))
    imap_server.append(outlook_reply(scene.meeting.ical_uid, scene.r.email, "ACCEPTED", T1))
    summary = ingest_imap(engine, imap_settings(imap_server, imap_rejected_folder=""), NOW)
    assert (summary.messages, summary.rejected, summary.applied) == (2, 1, 1)
    assert imap_server.flags() == [{"\\Seen", "\\Flagged"}, {"\\Seen"}]
    assert REJECTED not in imap_server.mailboxes()
    assert ingest_imap(engine, imap_settings(imap_server, imap_rejected_folder=""), NOW).messages == 0
    with pytest.raises(ReplyIngestError, match="SIPFLOWS_IMAP_REJECTED_FOLDER"):
        ingest_imap(engine, imap_settings(imap_server, imap_rejected_folder="inbox"), NOW)


def test_a_stale_reply_read_late_from_imap_keeps_the_newer_answer(
    scene: Scene, engine: Engine, imap_server: ImapTestServer
):
    uid = scene.meeting.ical_uid
    imap_server.append(outlook_reply(uid, scene.r.email, "DECLINED", T2))  # the later answer arrives first
    imap_server.append(google_reply(uid, scene.r.email, "ACCEPTED", T1))
    summary = ingest_imap(engine, imap_settings(imap_server), NOW)
    assert (summary.applied, summary.stale) == (1, 1)
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, T2)


def test_a_run_killed_before_flagging_is_rerun_harmlessly(
    scene: Scene, engine: Engine, imap_server: ImapTestServer
):
    uid = scene.meeting.ical_uid
    imap_server.append(outlook_reply(uid, scene.r.email, "ACCEPTED", T1))
    assert ingest_imap(engine, imap_settings(imap_server), NOW).applied == 1
    with imap_server.client() as conn:  # as if the run died after its commit, before \Seen reached the server
        conn.select("INBOX")
        conn.store("1", "-FLAGS", "(\\Seen)")
    rerun = ingest_imap(engine, imap_settings(imap_server), NOW)
    assert (rerun.messages, rerun.matched, rerun.applied, rerun.stale) == (1, 1, 0, 1)
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.ACCEPTED, T1)


def test_a_sender_clock_in_the_future_gives_way_to_the_receipt_time(
    scene: Scene, engine: Engine, imap_server: ImapTestServer
):
    uid, received = scene.meeting.ical_uid, NOW - timedelta(hours=1)
    imap_server.append(
        outlook_reply(uid, scene.r.email, "ACCEPTED", NOW + timedelta(days=300)), received=received
    )
    ingest_imap(engine, imap_settings(imap_server), NOW)
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.ACCEPTED, received)  # INTERNALDATE
    # a few minutes ahead is clock skew, believed but never later than the receipt
    imap_server.append(
        outlook_reply(uid, scene.f.email, "ACCEPTED", NOW + timedelta(minutes=5)), received=NOW
    )
    # a receipt time the server dates after the run is capped at the run's time
    imap_server.append(outlook_reply(uid, scene.s.email, "DECLINED", T2), received=NOW + timedelta(days=2))
    ingest_imap(engine, imap_settings(imap_server), NOW)
    assert answers(engine, scene.meeting)[scene.f.code] == (Answer.ACCEPTED, NOW)
    assert answers(engine, scene.meeting)[scene.s.code] == (Answer.DECLINED, T2)
    # so that a real later answer still counts
    later = NOW + timedelta(hours=2)
    imap_server.append(outlook_reply(uid, scene.r.email, "DECLINED", later), received=later)
    ingest_imap(engine, imap_settings(imap_server), NOW + timedelta(hours=3))
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, later)


def test_a_dtstamp_before_the_invitation_was_sent_gives_way_to_the_receipt_time(
    scene: Scene, engine: Engine, tmp_path: Path
):
    import os

    sent = answers(engine, scene.meeting)  # the scene's invitations went out on 2 February
    assert sent[scene.r.code] == (Answer.NONE, None)
    received = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
    path = tmp_path / "early.eml"
    path.write_bytes(
        outlook_reply(scene.meeting.ical_uid, scene.r.email, "DECLINED", datetime(2026, 1, 2, tzinfo=UTC))
    )
    os.utime(path, (received.timestamp(), received.timestamp()))  # the folder source's receipt time
    assert ingest_folder(engine, tmp_path, NOW).applied == 1
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.DECLINED, received)


def test_imap_login_refused_names_the_user_never_the_password(
    engine: Engine, imap_server: ImapTestServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="sipflows")
    wrong = "Wr0ng-but-secret-passw0rd"
    with pytest.raises(ReplyIngestError, match="refused the login") as exc:
        ingest_imap(engine, imap_settings(imap_server, imap_password=SecretStr(wrong)), NOW)
    assert wrong not in str(exc.value) and wrong not in caplog.text
    assert imap_server.user in str(exc.value)
    with pytest.raises(ReplyIngestError, match="cannot open the folder"):
        ingest_imap(engine, imap_settings(imap_server, imap_folder="Svar till SIP-teamet"), NOW)
    with pytest.raises(ReplyIngestError, match="SIPFLOWS_IMAP_HOST"):
        ingest_imap(engine, Settings(imap_host=None), NOW)


def test_a_non_ascii_password_logs_in_by_sasl_plain(scene: Scene, engine: Engine):
    with running_imap_server(password="Lösenord-för-SIP-åäö") as server:
        server.append(outlook_reply(scene.meeting.ical_uid, scene.r.email, "ACCEPTED", T1))
        assert ingest_imap(engine, imap_settings(server), NOW).applied == 1


def test_imap_folder_named_in_swedish(scene: Scene, engine: Engine, imap_server: ImapTestServer):
    assert imap_utf7("Svar på kallelser & annat") == "Svar p&AOU- kallelser &- annat"  # RFC 3501 5.1.3
    with imap_server.client() as conn:
        assert conn.create('"Svar p&AOU- kallelser"')[0] == "OK"
        assert any(b"Svar p&AOU- kallelser" in line for line in conn.list()[1] if isinstance(line, bytes))
    reply = outlook_reply(scene.meeting.ical_uid, scene.r.email, "ACCEPTED", T1)
    imap_server.append(reply, mailbox="Svar p&AOU- kallelser")
    settings = imap_settings(imap_server, imap_folder="Svar på kallelser")
    assert ingest_imap(engine, settings, NOW).applied == 1
    assert imap_server.flags("Svar p&AOU- kallelser") == [{"\\Seen"}]


# --- folder -----------------------------------------------------------------------------------------------


def test_folder_ingestion_moves_files_so_reruns_find_nothing(scene: Scene, engine: Engine, tmp_path: Path):
    inbox = tmp_path / "svar"
    inbox.mkdir()
    uid = scene.meeting.ical_uid
    (inbox / "01-accept.eml").write_bytes(outlook_reply(uid, scene.r.email, "ACCEPTED", T1))
    (inbox / "02-broken.eml").write_bytes(broken_reply())
    (inbox / "03-decline.EML").write_bytes(google_reply(uid, scene.f.email, "DECLINED", T2))
    (inbox / "04-unknown.eml").write_bytes(outlook_reply("gone@x", scene.f.email, "ACCEPTED", T2))
    (inbox / "05-note.eml").write_bytes(plain_mail(scene.s.email))
    (inbox / "notes.txt").write_text("not a message")

    summary = ingest_folder(engine, inbox, NOW)

    assert (summary.messages, summary.applied, summary.unknown, summary.malformed, summary.not_replies) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert summary.rejected == 3
    got = answers(engine, scene.meeting)
    assert got[scene.r.code] == (Answer.ACCEPTED, T1) and got[scene.f.code] == (Answer.DECLINED, T2)
    assert sorted(p.name for p in inbox.iterdir()) == ["notes.txt", "processed", "rejected"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["01-accept.eml", "03-decline.EML"]
    rejected = sorted(p.name for p in (inbox / "rejected").iterdir())
    assert rejected == [
        "02-broken.eml",
        "02-broken.eml.reason",
        "04-unknown.eml",
        "04-unknown.eml.reason",
        "05-note.eml",
        "05-note.eml.reason",
    ]
    assert "not valid iCalendar" in (inbox / "rejected" / "02-broken.eml.reason").read_text()
    assert "no meeting in the register" in (inbox / "rejected" / "04-unknown.eml.reason").read_text()

    assert ingest_folder(engine, inbox, NOW).messages == 0
    # the same file name dropped again does not overwrite the processed one
    (inbox / "01-accept.eml").write_bytes(outlook_reply(uid, scene.r.email, "TENTATIVE", T2))
    assert ingest_folder(engine, inbox, NOW).applied == 1
    assert (inbox / "processed" / "01-accept-1.eml").exists()
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.TENTATIVE, T2)


def test_a_missing_folder_is_an_error(engine: Engine, tmp_path: Path):
    with pytest.raises(ReplyIngestError, match="does not exist"):
        ingest_folder(engine, tmp_path / "nowhere", NOW)


# --- CLI --------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIPFLOWS_DATABASE_URL", db_url)
    for name in ("IMAP_HOST", "REPLIES_DIR", "EXCHANGE_SERVER", "EXCHANGE_SERVICE_ENDPOINT"):
        monkeypatch.delenv(f"SIPFLOWS_{name}", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_cli_records_an_answer_given_by_phone(scene: Scene, engine: Engine, cli_env: pytest.MonkeyPatch):
    runner = CliRunner()
    m, r = scene.meeting.code, scene.r.code
    res = runner.invoke(app, ["replies", "answer", m, r, "declined", "--at", "2026-02-03 14:30"])
    assert res.exit_code == 0, res.output
    at = from_local(date(2026, 2, 3), time(14, 30))
    assert answers(engine, scene.meeting)[r] == (Answer.DECLINED, at)
    assert "declined" in res.output

    older = runner.invoke(app, ["replies", "answer", m, r, "accepted", "--at", "2026-02-03 09:00"])
    assert older.exit_code == 0 and "later answer" in older.output
    assert answers(engine, scene.meeting)[r] == (Answer.DECLINED, at)

    before = datetime.now(UTC)
    res = runner.invoke(app, ["replies", "answer", m, scene.s.code, "tentative"])
    assert res.exit_code == 0, res.output
    answer, answered_at = answers(engine, scene.meeting)[scene.s.code]
    assert answer is Answer.TENTATIVE
    assert answered_at is not None and answered_at >= before - timedelta(seconds=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NOPE", "{r}", "accepted"], "no meeting with code 'NOPE'"),
        (["{m}", "C999", "accepted"], "has no invitation for contact 'C999'"),
        (["{m}", "{r}", "accepted", "--at", "3 feb 14.30"], "expected local time"),
        (["{m}", "{r}", "accepted", "--at", "2099-01-01 10:00"], "in the future"),
    ],
)
def test_cli_phone_answer_errors(scene: Scene, engine: Engine, cli_env: pytest.MonkeyPatch, args, message):
    argv = [a.format(m=scene.meeting.code, r=scene.r.code) for a in args]
    res = CliRunner().invoke(app, ["replies", "answer", *argv])
    assert res.exit_code == 1
    assert message in res.output
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.NONE, None)


def test_cli_ingest_reads_imap_and_folder(
    scene: Scene, engine: Engine, cli_env: pytest.MonkeyPatch, imap_server: ImapTestServer, tmp_path: Path
):
    runner = CliRunner()
    res = runner.invoke(app, ["replies", "ingest"])
    assert res.exit_code == 1 and "no source" in res.output

    imap_server.append(outlook_reply(scene.meeting.ical_uid, scene.r.email, "ACCEPTED", T1))
    (tmp_path / "a.eml").write_bytes(google_reply(scene.meeting.ical_uid, scene.f.email, "DECLINED", T1))
    for key, value in {
        "IMAP_HOST": imap_server.host,
        "IMAP_PORT": str(imap_server.port),
        "IMAP_SSL": "false",
        "IMAP_USERNAME": imap_server.user,
        "IMAP_PASSWORD": imap_server.password,
        "REPLIES_DIR": str(tmp_path),
    }.items():
        cli_env.setenv(f"SIPFLOWS_{key}", value)
    get_settings.cache_clear()
    res = runner.invoke(app, ["replies", "ingest"])
    assert res.exit_code == 0, res.output
    assert "applied 1" in res.output and imap_server.password not in res.output
    got = answers(engine, scene.meeting)
    assert got[scene.r.code][0] is Answer.ACCEPTED and got[scene.f.code][0] is Answer.DECLINED

    res = runner.invoke(app, ["replies", "ingest", "--folder", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_a_failing_source_does_not_stop_the_others(
    scene: Scene, engine: Engine, imap_server: ImapTestServer, tmp_path: Path
):
    imap_server.append(outlook_reply(scene.meeting.ical_uid, scene.r.email, "ACCEPTED", T1))
    (tmp_path / "a.eml").write_bytes(google_reply(scene.meeting.ical_uid, scene.f.email, "DECLINED", T1))
    settings = imap_settings(imap_server, imap_password=SecretStr("wrong"), replies_dir=tmp_path)
    with pytest.raises(PartialIngestError, match="refused the login") as exc:
        ingest_configured(engine, settings, NOW)
    assert set(exc.value.summaries) == {"folder"} and exc.value.summaries["folder"].applied == 1
    got = answers(engine, scene.meeting)
    assert got[scene.f.code][0] is Answer.DECLINED and got[scene.r.code][0] is Answer.NONE
    again = ingest_configured(engine, imap_settings(imap_server, replies_dir=tmp_path), NOW)
    assert again["imap"].applied == 1 and again["folder"].messages == 0
    assert ingest_configured(engine, Settings(imap_host=None, replies_dir=None), NOW) == {}


def test_cli_phone_answer_for_a_cancelled_meeting_is_not_recorded(
    scene: Scene, session: Session, engine: Engine, cli_env: pytest.MonkeyPatch
):
    from sipflows.models import MeetingStatus

    scene.meeting.status = MeetingStatus.CANCELLED
    session.commit()
    res = CliRunner().invoke(app, ["replies", "answer", scene.meeting.code, scene.r.code, "accepted"])
    assert res.exit_code == 0 and "not recorded, the meeting is cancelled" in res.output
    assert answers(engine, scene.meeting)[scene.r.code] == (Answer.NONE, None)


def test_without_move_a_message_is_copied_out_and_expunged(
    scene: Scene, engine: Engine, imap_server: ImapTestServer
):
    """Servers without MOVE (RFC 6851): COPY, flag \\Deleted, UID EXPUNGE (UIDPLUS) — just that message."""
    from sipflows.replies.mailbox import _Rejects

    imap_server.append(plain_mail(scene.s.email))
    imap_server.append(plain_mail(scene.r.email), flags="\\Deleted")  # a person's deletion: left alone
    with imap_server.client() as conn:
        conn.select("INBOX")
        typ, data = conn.uid("SEARCH", "ALL")
        first, second = data[0].split()
        rejects = _Rejects(conn, "Avvisade svar", {"UIDPLUS"}, "test")
        rejects.put_aside(first.decode())
    assert len(imap_server.flags()) == 1 and "\\Deleted" in imap_server.flags()[0]
    (moved,) = imap_server.flags("Avvisade svar")
    assert "\\Flagged" in moved and "\\Deleted" not in moved


def test_an_unreachable_register_stops_the_source_and_leaves_the_message(scene: Scene, tmp_path: Path):
    """Not the message's fault: it is neither set aside nor marked handled, and the run fails loudly."""
    from sqlalchemy import create_engine

    folder = tmp_path / "svar"
    folder.mkdir()
    (folder / "a.eml").write_bytes(outlook_reply(scene.meeting.ical_uid, scene.r.email, "ACCEPTED", T1))
    gone = create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'register.sqlite'}")
    with pytest.raises(ReplyIngestError, match="the register cannot be reached"):
        ingest_folder(gone, folder, NOW)
    with pytest.raises(PartialIngestError, match="the register cannot be reached") as exc:
        ingest_configured(gone, Settings(_env_file=None, replies_dir=folder), NOW)  # type: ignore[call-arg]
    assert exc.value.summaries["folder"].applied == 0  # what the source did before it stopped is reported
    gone.dispose()
    assert [p.name for p in folder.iterdir()] == ["a.eml"]

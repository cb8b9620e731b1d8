"""The Exchange transport and Exchange answer polling: exchangelib's real code against tests/ews_server.py."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sipflows.models import Answer, CaseStatus, Invitation, Meeting, Notice, NoticeStatus
from sipflows.notices.ledger import NoticeDraft, enqueue
from sipflows.replies import ReplyIngestError
from sipflows.replies.exchange import poll_exchange_responses
from sipflows.settings import Settings
from sipflows.transports.base import (
    Attachment,
    Attendee,
    MeetingInfo,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    TransportUnavailable,
)
from sipflows.transports.exchange import ExchangeConfigurationError, ExchangeTransport, exchange_item_uid
from tests import transport_messages
from tests.ews_server import EwsServer, iter_requests
from tests.factories import RegisterBuilder
from tests.transport_messages import STARTS, outgoing

PASSWORD = "Hemligt-lösen-7731!"
USER = "svc-sipflows"
MAILBOX = "sip-noreply@kommun.example.se"


@pytest.fixture
def ews() -> Iterator[EwsServer]:
    with EwsServer(username=USER, password=PASSWORD, mailbox=MAILBOX) as server:
        yield server


def exchange_settings(ews: EwsServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "transport": "exchange",
        "exchange_service_endpoint": ews.url,
        "exchange_auth": "basic",
        "exchange_username": USER,
        "exchange_password": SecretStr(PASSWORD),
        "exchange_primary_smtp_address": MAILBOX,
        "exchange_max_wait_seconds": 1,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def meeting_info(**kwargs: Any) -> MeetingInfo:
    return transport_messages.meeting_info((MAILBOX, "SIP-påminnelser"), **kwargs)


def send(settings: Settings, *messages: OutgoingMessage) -> list[SendResult]:
    with ExchangeTransport(settings) as transport:
        return [transport.send(m) for m in messages]


# --- meeting requests ------------------------------------------------------------------------------------


def test_invitation_books_a_meeting_request_in_the_calendar(ews: EwsServer) -> None:
    (result,) = send(exchange_settings(ews), outgoing(meeting=meeting_info()))

    (item,) = ews.calendar_items()
    assert result.external_id == item.item_id
    assert item.subject == "SIP-möte SIP-2026-7"
    assert item.start == STARTS and item.end == STARTS + timedelta(minutes=90)
    assert item.text("Start") == "2026-03-10T09:00:00+01:00"  # wall-clock Stockholm time
    assert item.element.find("{*}StartTimeZone").get("Id") == "W. Europe Standard Time"
    assert item.location == "Köpings vårdcentral, rum 3"
    assert item.body_type == "HTML" and "<b>SIP-möte</b>" in (item.body or "")
    assert item.required_attendees == ["sara@kommun.example.se"] and item.optional_attendees == []
    assert item.uid == exchange_item_uid("m1-sip-2026-7@sipflows.test", "sara@kommun.example.se")
    assert item.create_attributes["SendMeetingInvitations"] == "SendToAllAndSaveCopy"
    assert [(s.kind, s.recipients) for s in ews.sent] == [("meeting_request", ("sara@kommun.example.se",))]
    # exchangelib probed the server version first, logged in with basic auth and never re-probed
    assert ews.operations()[0] == "ConvertId"
    assert ews.operations().count("ConvertId") == 1
    assert all(r.headers["Authorization"].startswith("Basic ") for r in ews.requests)


def test_optional_attendee_is_booked_as_optional(ews: EwsServer) -> None:
    send(exchange_settings(ews), outgoing(to="FK@fk.example.se", meeting=meeting_info()))

    (item,) = ews.calendar_items()
    assert item.required_attendees == [] and item.optional_attendees == ["FK@fk.example.se"]


def test_each_attendee_gets_an_item_of_their_own(ews: EwsServer) -> None:
    info = meeting_info()
    results = send(
        exchange_settings(ews),
        outgoing(meeting=info),
        outgoing(to="fk@fk.example.se", meeting=info, notice_id=2, key="invitation:m1:c2:0"),
    )

    assert len({r.external_id for r in results}) == 2
    uids = {i.uid for i in ews.calendar_items()}
    assert uids == {
        exchange_item_uid(info.uid, "sara@kommun.example.se"),
        exchange_item_uid(info.uid, "fk@fk.example.se"),
    }
    assert sorted(s.recipients for s in ews.sent) == [("fk@fk.example.se",), ("sara@kommun.example.se",)]


def test_resend_after_a_lost_result_finds_the_booked_item(ews: EwsServer) -> None:
    """A run died after Exchange booked the meeting but before the ledger recorded it: no second request."""
    settings = exchange_settings(ews)
    (first,) = send(settings, outgoing(meeting=meeting_info()))
    (again,) = send(settings, outgoing(meeting=meeting_info()))  # the ledger still has no external_id

    assert again.external_id == first.external_id
    assert len(ews.calendar_items()) == 1
    assert [s.kind for s in ews.sent] == ["meeting_request"]


def test_update_moves_the_meeting_once(ews: EwsServer) -> None:
    settings = exchange_settings(ews)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    moved = meeting_info(starts_at=STARTS + timedelta(days=1, hours=4), location="Digitalt möte")
    update_notice = outgoing(
        meeting=moved, external_id=booked.external_id, notice_id=2, key="invitation:m1:c1:1"
    )

    (result,) = send(settings, update_notice)
    (retry,) = send(settings, update_notice)  # a retry of a send that did reach Exchange

    assert result.external_id == retry.external_id == booked.external_id
    (item,) = ews.calendar_items()
    assert item.start == STARTS + timedelta(days=1, hours=4)
    assert item.end == STARTS + timedelta(days=1, hours=4, minutes=90)
    assert item.location == "Digitalt möte"
    assert [s.kind for s in ews.sent] == ["meeting_request", "meeting_update"]
    (update_request,) = iter_requests(ews, "UpdateItem")
    assert update_request.element.get("SendMeetingInvitationsOrCancellations") == "SendToAllAndSaveCopy"


def test_cancel_sends_one_cancellation(ews: EwsServer) -> None:
    settings = exchange_settings(ews)
    (booked,) = send(settings, outgoing(meeting=meeting_info()))
    cancel = outgoing(
        meeting=meeting_info(method="CANCEL"), external_id=booked.external_id, notice_id=3, key="cancel:m1:c1"
    )

    (result,) = send(settings, cancel)
    (retry,) = send(settings, cancel)

    assert result.external_id == retry.external_id == booked.external_id
    (item,) = ews.calendar_items()
    assert item.cancelled
    assert [(s.kind, s.recipients) for s in ews.sent] == [
        ("meeting_request", ("sara@kommun.example.se",)),
        ("meeting_cancellation", ("sara@kommun.example.se",)),
    ]


def test_cancel_without_item_id_finds_the_item_by_uid(ews: EwsServer) -> None:
    settings = exchange_settings(ews)
    send(settings, outgoing(meeting=meeting_info()), outgoing(to="fk@fk.example.se", meeting=meeting_info()))

    send(settings, outgoing(meeting=meeting_info(method="CANCEL"), key="cancel:m1:c1"))

    cancelled = [(i.required_attendees, i.cancelled) for i in ews.calendar_items()]
    assert sorted(cancelled) == [([], False), (["sara@kommun.example.se"], True)]


def test_cancel_of_a_meeting_never_booked_sends_nothing(ews: EwsServer) -> None:
    (result,) = send(
        exchange_settings(ews), outgoing(meeting=meeting_info(method="CANCEL"), key="cancel:m1:c1")
    )

    assert result.external_id is None
    assert ews.sent == [] and ews.calendar_items() == []


# --- plain notices ---------------------------------------------------------------------------------------


def test_plain_notice_is_sent_as_a_message_with_its_message_id(ews: EwsServer) -> None:
    notice = outgoing(key="reminder:doc:case7:c1")
    settings = exchange_settings(ews)

    (result,) = send(settings, notice)
    send(settings, notice)  # resent after a crash: found in Sent Items, not sent again

    assert result.external_id is None
    (mail,) = ews.messages("sentitems")
    assert mail.subject == "Kallelse: SIP-möte SIP-2026-7"
    assert mail.to_recipients == ["sara@kommun.example.se"]
    assert mail.body_type == "HTML" and "<b>SIP-möte</b>" in (mail.body or "")
    assert mail.message_id == notice.message_id
    (create,) = iter_requests(ews, "CreateItem")
    assert create.element.get("MessageDisposition") == "SendAndSaveCopy"
    assert [(s.kind, s.recipients, s.message_id) for s in ews.sent] == [
        ("message", ("sara@kommun.example.se",), notice.message_id)
    ]
    assert ews.calendar_items() == []


def test_calendar_part_of_a_plain_notice_travels_as_an_attachment(ews: EwsServer) -> None:
    ics = "BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n"
    send(exchange_settings(ews), replace(outgoing(key="followup:case7:c1"), ics=ics, ics_method="PUBLISH"))

    (mail,) = ews.messages("sentitems")
    (attachment,) = mail.element.findall("{*}Attachments/{*}FileAttachment")
    assert attachment.findtext("{*}Name") == "invitation.ics"
    assert attachment.findtext("{*}ContentType").startswith("text/calendar")
    assert base64.b64decode(attachment.findtext("{*}Content")).decode() == ics


def test_a_notice_with_files_sends_them_all(ews: EwsServer) -> None:
    """The weekly report goes out over Exchange with its HTML page and CSV, byte for byte."""
    page = b"<html><body><h1>Vecka 48</h1></body></html>"
    figures = "organisation;andel\r\nKöpings kommun;0,75\r\n".encode()
    notice = replace(
        outgoing(key="report:2026-W48:c1"),
        attachments=(
            Attachment("sip-rapport.html", "text/html; charset=utf-8", page),
            Attachment("sip-siffror.csv", "text/csv; charset=utf-8", figures),
        ),
    )
    send(exchange_settings(ews), notice)

    (mail,) = ews.messages("sentitems")
    files = mail.element.findall("{*}Attachments/{*}FileAttachment")
    assert [(f.findtext("{*}Name"), f.findtext("{*}ContentType")) for f in files] == [
        ("sip-rapport.html", "text/html; charset=utf-8"),
        ("sip-siffror.csv", "text/csv; charset=utf-8"),
    ]
    assert [base64.b64decode(f.findtext("{*}Content") or "") for f in files] == [page, figures]


def test_rejected_recipient_is_a_permanent_error(ews: EwsServer) -> None:
    ews.rejected_recipients.add("nobody@kommun.example.se")

    with pytest.raises(PermanentSendError, match="ErrorInvalidRecipients"):
        send(exchange_settings(ews), outgoing(to="nobody@kommun.example.se"))
    assert ews.sent == []


# --- failures and credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        {"response_code": "ErrorServerBusy"},  # SOAP fault, no back-off hint: 10 s > max_wait 1 s
        {"status": 503},
        {"status": 500},
    ],
    ids=["server-busy", "http-503", "http-500"],
)
def test_server_trouble_is_the_transport_unavailable(ews: EwsServer, failure: dict[str, object]) -> None:
    ews.fail("CreateItem", times=50, **failure)  # type: ignore[arg-type]

    with pytest.raises(TransportUnavailable) as raised:
        send(exchange_settings(ews), outgoing(meeting=meeting_info()))
    assert raised.value.settings == ("SIPFLOWS_EXCHANGE_SERVICE_ENDPOINT",)
    assert ews.url in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no exchangelib chain
    assert ews.calendar_items() == [] and ews.sent == []


def test_a_fault_about_one_item_fails_that_notice_alone(ews: EwsServer) -> None:
    ews.fail("CreateItem", response_code="ErrorInternalServerError", times=1)

    with ExchangeTransport(exchange_settings(ews)) as transport:
        with pytest.raises(TransientSendError, match="ErrorInternalServerError"):
            transport.send(outgoing(meeting=meeting_info()))
        transport.send(outgoing(key="reminder:next"))  # the service itself is fine
    assert len(ews.sent) == 1


def test_a_short_busy_spell_is_ridden_out(ews: EwsServer) -> None:
    ews.fail("CreateItem", response_code="ErrorServerBusy", back_off_ms=50, times=2)

    (result,) = send(exchange_settings(ews), outgoing(meeting=meeting_info()))

    assert result.external_id == ews.calendar_items()[0].item_id
    assert ews.operations().count("CreateItem") == 3


def test_credentials_never_reach_errors_or_logs(ews: EwsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Fel-lösenord-99?"
    # basic auth carries user:password in base64; requests encodes it as Latin-1
    basic = [
        base64.b64encode(f"{USER}:{pw}".encode(encoding)).decode()
        for pw in (PASSWORD, wrong)
        for encoding in ("latin-1", "utf-8")
    ]

    send(exchange_settings(ews), outgoing(meeting=meeting_info()), outgoing(key="reminder:x"))
    with pytest.raises(TransportUnavailable) as raised:
        send(exchange_settings(ews, exchange_password=SecretStr(wrong)), outgoing(key="reminder:y"))
    assert "refused our login (HTTP 401)" in str(raised.value)
    assert raised.value.settings == (
        "SIPFLOWS_EXCHANGE_AUTH",
        "SIPFLOWS_EXCHANGE_USERNAME",
        "SIPFLOWS_EXCHANGE_PASSWORD",
    )

    assert "Authorization" in caplog.text  # exchangelib did log its request headers ...
    for secret in (PASSWORD, wrong, *basic):
        assert secret not in caplog.text  # ... with the credentials scrubbed
        assert secret not in str(raised.value)
    assert len(ews.sent) == 2


def test_an_endpoint_nobody_answers_is_the_transport_unavailable() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: connections are refused
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        transport="exchange",
        exchange_service_endpoint=f"http://127.0.0.1:{port}/EWS/Exchange.asmx",
        exchange_auth="basic",
        exchange_username=USER,
        exchange_password=SecretStr(PASSWORD),
        exchange_primary_smtp_address=MAILBOX,
        exchange_max_wait_seconds=1,
    )
    with pytest.raises(TransportUnavailable) as raised:
        send(settings, outgoing(meeting=meeting_info()))
    assert f"127.0.0.1:{port}" in str(raised.value) and "SIPFLOWS_EXCHANGE_SERVICE_ENDPOINT" in str(
        raised.value
    )
    assert PASSWORD not in str(raised.value)


def test_an_exchange_outage_costs_no_notice_an_attempt(engine, ews: EwsServer) -> None:
    from sipflows.notices.dispatch import dispatch

    now = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    with Session(engine) as s, s.begin():
        enqueue(
            s,
            [
                NoticeDraft(
                    key=f"documentation.reminder:case:{n}",
                    kind="documentation.reminder",
                    address=f"person{n}@kommun.example.se",
                    subject="Påminnelse",
                    body_text="Hej",
                    body_html="<p>Hej</p>",
                )
                for n in (1, 2, 3)
            ],
            now,
            "sipflows.test",
        )
    settings = exchange_settings(ews)
    ews.fail("CreateItem", times=50, status=503)
    with pytest.raises(TransportUnavailable) as raised:
        dispatch(engine, ExchangeTransport(settings), now, settings)
    assert raised.value.summary.held_back == 3
    with Session(engine) as s:
        assert {(n.status, n.attempts) for n in s.scalars(select(Notice))} == {(NoticeStatus.PENDING, 0)}
    ews.recover()
    assert dispatch(engine, ExchangeTransport(settings), now + timedelta(hours=2), settings).sent == 3
    assert len(ews.sent) == 3


def test_secret_comes_lazily_from_the_credentials_block(ews: EwsServer) -> None:
    asked: list[str] = []

    def loader(block: str) -> str:
        asked.append(block)
        return PASSWORD

    settings = exchange_settings(ews, exchange_password=None, exchange_credentials_block="exchange-sip")
    transport = ExchangeTransport(settings, secret_loader=loader)
    assert asked == []
    with transport:
        transport.send(outgoing(meeting=meeting_info()))
    assert asked == ["exchange-sip"]
    assert len(ews.calendar_items()) == 1


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ({"password": PASSWORD, "user": "svc"}, None),  # a JSON Secret block with the password in it
        ({"user": "svc"}, "holds no text secret"),
        ("", "holds no text secret"),
    ],
)
def test_a_credentials_block_is_read_through_the_loader_the_caller_gives(
    ews: EwsServer, stored: object, problem: str | None
) -> None:
    settings = exchange_settings(ews, exchange_password=None, exchange_credentials_block="exchange-sip")
    transport = ExchangeTransport(settings, secret_loader=lambda block: stored)
    if problem is None:
        with transport:
            transport.send(outgoing(meeting=meeting_info()))
        assert len(ews.calendar_items()) == 1
        return
    with pytest.raises(ExchangeConfigurationError) as raised:
        transport.__enter__()
    assert problem in str(raised.value) and "SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK" in str(raised.value)
    assert ews.sent == []


def test_a_credentials_block_without_a_secret_store_names_the_setting(ews: EwsServer) -> None:
    """The library reads no secret store of its own: without the entry point's loader it says so."""
    settings = exchange_settings(ews, exchange_password=None, exchange_credentials_block="exchange-sip")
    with pytest.raises(ExchangeConfigurationError) as raised, ExchangeTransport(settings):
        pass
    message = str(raised.value)
    assert "SIPFLOWS_EXCHANGE_CREDENTIALS_BLOCK" in message and "SIPFLOWS_EXCHANGE_PASSWORD" in message
    assert ews.sent == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"exchange_username": None}, "SIPFLOWS_EXCHANGE_USERNAME"),
        ({"exchange_password": None}, "SIPFLOWS_EXCHANGE_PASSWORD"),
        ({"exchange_auth": "oauth2", "exchange_client_id": "app"}, "SIPFLOWS_EXCHANGE_CLIENT_SECRET"),
        (
            {"exchange_auth": "oauth2", "exchange_client_secret": SecretStr(PASSWORD)},
            "SIPFLOWS_EXCHANGE_CLIENT_ID",
        ),
    ],
)
def test_incomplete_settings_name_what_is_missing(
    ews: EwsServer, overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(ExchangeConfigurationError, match=named) as raised:
        ExchangeTransport(exchange_settings(ews, **overrides)).__enter__()
    assert PASSWORD not in str(raised.value)
    assert ews.requests == []


def test_oauth2_acts_by_impersonation_without_contacting_anyone(ews: EwsServer) -> None:
    from sipflows.transports.exchange import connect

    secret = "client-secret-~8Q.abc"
    settings = exchange_settings(
        ews,
        exchange_auth="oauth2",
        exchange_client_id="0f0e-app",
        exchange_tenant_id="kommun-tenant",
        exchange_client_secret=SecretStr(secret),
    )
    account = connect(settings)

    assert account.access_type == "impersonation"
    assert account.protocol.auth_type == "OAuth 2.0"
    assert account.protocol.service_endpoint == ews.url
    assert secret not in repr(account.protocol.credentials)
    assert ews.requests == []


# --- answers from Exchange -------------------------------------------------------------------------------


def _book(session: Session, build: RegisterBuilder, ews: EwsServer, *, closed: bool = False):
    """A meeting with two invitations booked through the transport; ledger rows as dispatch leaves them."""
    r = build.standard_region()
    case = build.case(r["k"], participants=(r["r"], r["f"]), status=CaseStatus.ACTIVE)
    meeting = build.meeting(case, date(2026, 3, 10))
    inv_r = build.invite(meeting, r["r"], sent_on=date(2026, 2, 20))
    inv_f = build.invite(meeting, r["f"], sent_on=date(2026, 2, 20), required=False)
    info = meeting_info(
        uid=meeting.ical_uid,
        starts_at=meeting.starts_at,
        attendees=(Attendee(r["r"].email, r["r"].name, True), Attendee(r["f"].email, r["f"].name, False)),
    )
    now = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)
    drafts = [
        NoticeDraft(
            key=f"invitation:{meeting.code}:{c.code}:0",
            kind="invitation",
            address=c.email,
            subject=info.subject,
            body_text="Kallelse",
            body_html="<p>Kallelse</p>",
            case_id=case.id,
            meeting_id=meeting.id,
            contact_id=c.id,
            ics="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            ics_method="REQUEST",
            ics_sequence=0,
        )
        for c in (r["r"], r["f"])
    ]
    assert enqueue(session, drafts, now, "sipflows.local") == 2
    notices = session.scalars(select(Notice).where(Notice.meeting_id == meeting.id).order_by(Notice.id)).all()
    messages = [
        replace(outgoing(to=n.address, meeting=info, notice_id=n.id, key=n.key), message_id=n.message_id)
        for n in notices
    ]
    results = send(exchange_settings(ews), *messages)
    for notice, result in zip(notices, results, strict=True):
        notice.status, notice.sent_at, notice.external_id = NoticeStatus.SENT, now, result.external_id
    if closed:
        case.status = CaseStatus.CLOSED
    session.flush()
    return meeting, inv_r, inv_f, {n.address: n.external_id for n in notices}


def test_polling_records_the_attendees_answers(
    session: Session, build: RegisterBuilder, ews: EwsServer
) -> None:
    meeting, inv_r, inv_f, items = _book(session, build, ews)
    accepted_at = datetime(2026, 2, 21, 13, 5, tzinfo=UTC)
    ews.set_response(items[inv_r.contact.email], inv_r.contact.email, "Accept", accepted_at)
    since, now = datetime(2026, 2, 25, tzinfo=UTC), datetime(2026, 2, 25, 12, 0, tzinfo=UTC)

    summary = poll_exchange_responses(exchange_settings(ews), session, since, now)
    session.commit()

    session.expire_all()
    assert (inv_r.answer, inv_r.answered_at) == (Answer.ACCEPTED, accepted_at)
    assert (inv_f.answer, inv_f.answered_at) == (Answer.NONE, None)
    assert (summary.messages, summary.not_replies, summary.matched, summary.applied) == (2, 1, 1, 1)

    declined_at = datetime(2026, 2, 26, 8, 0, tzinfo=UTC)
    ews.set_response(items[inv_r.contact.email], inv_r.contact.email, "Decline", declined_at)
    ews.set_response(items[inv_f.contact.email], inv_f.contact.email, "Tentative", None)
    later = datetime(2026, 2, 27, 7, 0, tzinfo=UTC)
    second = poll_exchange_responses(exchange_settings(ews), session, since, later)
    again = poll_exchange_responses(exchange_settings(ews), session, since, later)
    session.commit()

    session.expire_all()
    assert (inv_r.answer, inv_r.answered_at) == (Answer.DECLINED, declined_at)
    assert (inv_f.answer, inv_f.answered_at) == (Answer.TENTATIVE, later)  # no response time: dated now
    assert (second.applied, again.applied, again.stale) == (2, 0, 2)
    assert session.get(Meeting, meeting.id) is not None


def test_polling_skips_old_meetings_gone_items_and_stale_answers(
    session: Session, build: RegisterBuilder, ews: EwsServer
) -> None:
    meeting, inv_r, inv_f, items = _book(session, build, ews)
    ews.set_response(
        items[inv_r.contact.email], inv_r.contact.email, "Accept", datetime(2026, 2, 21, tzinfo=UTC)
    )
    ews.set_response(
        items[inv_f.contact.email], inv_f.contact.email, "Accept", datetime(2026, 2, 21, tzinfo=UTC)
    )
    now = datetime(2026, 3, 1, tzinfo=UTC)

    # meetings that ended before `since` are not polled at all
    after = meeting.ends_at + timedelta(minutes=1)
    assert poll_exchange_responses(exchange_settings(ews), session, after, now).messages == 0

    # the meeting was moved after both answered; one attendee's item was deleted in Exchange
    session.execute(
        update(Meeting).where(Meeting.id == meeting.id).values(updated_at=datetime(2026, 2, 22, tzinfo=UTC))
    )
    ews.items[items[inv_f.contact.email]].deleted = True
    summary = poll_exchange_responses(exchange_settings(ews), session, datetime(2026, 2, 25, tzinfo=UTC), now)

    session.flush()
    session.expire_all()
    assert inv_r.answer == Answer.NONE and inv_f.answer == Answer.NONE
    assert (summary.messages, summary.stale, summary.applied) == (1, 1, 0)


def test_polling_leaves_closed_plans_alone(session: Session, build: RegisterBuilder, ews: EwsServer) -> None:
    _, inv_r, _, items = _book(session, build, ews, closed=True)
    ews.set_response(
        items[inv_r.contact.email], inv_r.contact.email, "Accept", datetime(2026, 2, 21, tzinfo=UTC)
    )

    summary = poll_exchange_responses(
        exchange_settings(ews), session, datetime(2026, 2, 25, tzinfo=UTC), datetime(2026, 2, 26, tzinfo=UTC)
    )

    session.flush()
    session.expire_all()
    assert inv_r.answer == Answer.NONE
    assert (summary.closed, summary.applied) == (1, 0)


def test_polling_reuses_an_open_account(session: Session, build: RegisterBuilder, ews: EwsServer) -> None:
    from sipflows.transports.exchange import close, connect

    _, inv_r, _, items = _book(session, build, ews)
    ews.set_response(
        items[inv_r.contact.email], inv_r.contact.email, "Tentative", datetime(2026, 2, 21, tzinfo=UTC)
    )
    account = connect(exchange_settings(ews))
    try:
        summary = poll_exchange_responses(
            account, session, datetime(2026, 2, 25, tzinfo=UTC), datetime(2026, 2, 26, tzinfo=UTC)
        )
    finally:
        close(account)

    session.flush()
    session.expire_all()
    assert inv_r.answer == Answer.TENTATIVE and summary.applied == 1
    assert session.scalars(select(Invitation).where(Invitation.answer == Answer.TENTATIVE)).all() == [inv_r]


def test_polling_ignores_an_item_booked_for_another_meeting(
    session: Session, build: RegisterBuilder, ews: EwsServer
) -> None:
    _, inv_r, _, items = _book(session, build, ews)
    (foreign,) = send(
        exchange_settings(ews), outgoing(to=inv_r.contact.email, meeting=meeting_info(uid="x@other"))
    )
    assert foreign.external_id is not None
    ews.set_response(foreign.external_id, inv_r.contact.email, "Decline", datetime(2026, 2, 21, tzinfo=UTC))
    session.execute(
        update(Notice)
        .where(Notice.external_id == items[inv_r.contact.email])
        .values(external_id=foreign.external_id)
    )

    summary = poll_exchange_responses(
        exchange_settings(ews), session, datetime(2026, 2, 25, tzinfo=UTC), datetime(2026, 2, 26, tzinfo=UTC)
    )

    session.flush()
    session.expire_all()
    assert inv_r.answer == Answer.NONE
    assert (summary.unknown, summary.applied, summary.messages) == (1, 0, 1)


def test_polling_failures_are_reply_ingest_errors_without_secrets(
    session: Session, build: RegisterBuilder, ews: EwsServer
) -> None:
    _book(session, build, ews)
    since, now = datetime(2026, 2, 25, tzinfo=UTC), datetime(2026, 2, 26, tzinfo=UTC)

    with pytest.raises(ReplyIngestError, match="SIPFLOWS_EXCHANGE_USERNAME"):
        poll_exchange_responses(exchange_settings(ews, exchange_username=None), session, since, now)
    ews.fail("GetItem", status=503, times=50)
    with pytest.raises(ReplyIngestError, match="Exchange polling failed") as raised:
        poll_exchange_responses(exchange_settings(ews), session, since, now)
    assert PASSWORD not in str(raised.value)


def _add_attendee(ews: EwsServer, item_id: str, email: str, response: str, when: datetime) -> None:
    """As Exchange does when an attendee forwards the meeting and the new attendee answers it."""
    from lxml import etree

    from tests.ews_server import T, q

    item = ews.items[item_id]
    container = item.element.find(q(T, "RequiredAttendees"))
    attendee = etree.SubElement(container, q(T, "Attendee"))
    mailbox = etree.SubElement(attendee, q(T, "Mailbox"))
    etree.SubElement(mailbox, q(T, "EmailAddress")).text = email
    etree.SubElement(attendee, q(T, "ResponseType")).text = response
    etree.SubElement(attendee, q(T, "LastResponseTime")).text = when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_attendee_on_another_invitees_item_answers_only_for_themselves(
    session: Session, build: RegisterBuilder, ews: EwsServer
) -> None:
    meeting, inv_r, inv_f, items = _book(session, build, ews)
    when = datetime(2026, 2, 21, 13, 5, tzinfo=UTC)
    # Rolf's item was forwarded: Försäkringskassan (invited on an item of its own) and an outsider answer
    _add_attendee(ews, items[inv_r.contact.email], inv_f.contact.email.upper(), "Decline", when)
    _add_attendee(ews, items[inv_r.contact.email], "mallory@evil.example", "Accept", when)
    summary = poll_exchange_responses(
        exchange_settings(ews), session, datetime(2026, 2, 25, tzinfo=UTC), datetime(2026, 2, 26, tzinfo=UTC)
    )
    session.flush()
    session.expire_all()
    assert (inv_r.answer, inv_r.answered_at) == (Answer.NONE, None)  # Rolf himself has not answered
    assert (inv_f.answer, inv_f.answered_at) == (Answer.DECLINED, when)
    assert (summary.applied, summary.unknown) == (1, 1)


def test_calendar_responses_follow_the_same_rules_whatever_the_service(
    session: Session, build: RegisterBuilder
) -> None:
    """What a Microsoft Graph source would hand over: (meeting UID, attendee, answer, time) tuples."""
    from sipflows.models import MeetingStatus
    from sipflows.replies import CalendarResponse, apply_calendar_responses

    r = build.standard_region()
    case = build.case(r["k"], participants=(r["r"], r["f"], r["s"]))
    meeting = build.meeting(case, date(2026, 3, 10))
    inv = {c: build.invite(meeting, r[c], sent_on=date(2026, 2, 20)) for c in ("r", "f", "s")}
    cancelled = build.meeting(case, date(2026, 3, 11), status=MeetingStatus.CANCELLED)
    inv_cancelled = build.invite(cancelled, r["r"], sent_on=date(2026, 2, 20))
    session.flush()
    now = datetime(2026, 2, 26, 12, 0, tzinfo=UTC)
    good = datetime(2026, 2, 24, 9, 0, tzinfo=UTC)
    responses = [
        CalendarResponse(meeting.ical_uid, r["r"].email, Answer.ACCEPTED, good),
        CalendarResponse(meeting.ical_uid, r["f"].email, Answer.DECLINED, datetime(2026, 1, 1, tzinfo=UTC)),
        CalendarResponse(meeting.ical_uid, r["s"].email, Answer.TENTATIVE, datetime(2030, 1, 1, tzinfo=UTC)),
        CalendarResponse(meeting.ical_uid, r["k"].email, Answer.ACCEPTED, good),  # the convener, not invited
        CalendarResponse(meeting.ical_uid, "mallory@evil.example", Answer.DECLINED, good),
        CalendarResponse(cancelled.ical_uid, r["r"].email, Answer.ACCEPTED, good),
        CalendarResponse("nobody@elsewhere", r["r"].email, Answer.DECLINED, good),
    ]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    from sqlalchemy import event

    event.listen(session.get_bind(), "before_cursor_execute", count)
    try:
        summary = apply_calendar_responses(session, responses, now, "Graph")
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", count)
    session.flush()
    session.expire_all()
    assert (inv["r"].answer, inv["r"].answered_at) == (Answer.ACCEPTED, good)
    # a response time before the invitation was sent, or in the future, is replaced by the time of reading
    assert (inv["f"].answer, inv["f"].answered_at) == (Answer.DECLINED, now)
    assert (inv["s"].answer, inv["s"].answered_at) == (Answer.TENTATIVE, now)
    assert inv_cancelled.answer is Answer.NONE
    assert (summary.applied, summary.convener, summary.unknown, summary.cancelled) == (3, 1, 2, 1)
    assert len(statements) == 2  # the meetings and their invitations, looked up together


def test_the_convener_gets_an_item_of_their_own_and_their_answer_records_nothing(
    session: Session, build: RegisterBuilder, ews: EwsServer
) -> None:
    from sipflows.booking import book_meeting
    from sipflows.notices.dispatch import dispatch
    from sipflows.notices.invitations import sync_invitations

    r = build.standard_region()
    case = build.case(r["k"], participants=(r["r"],))
    session.commit()
    now = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)
    settings = exchange_settings(ews, mail_domain="kommun.example.se")
    meeting = book_meeting(
        session,
        case.reference,
        "sip_meeting",
        STARTS,
        STARTS + timedelta(minutes=90),
        invitees=[(r["r"].code, True)],
        place="Rum 3",
        now=now,
        settings=settings,
    )
    sync_invitations(session, now, settings)
    session.commit()
    assert dispatch(session.get_bind(), ExchangeTransport(settings), now, settings).sent == 2
    items = {i.required_attendees[0]: i for i in ews.calendar_items()}
    assert set(items) == {r["k"].email, r["r"].email}  # the sending mailbox organizes; the convener attends
    when = datetime(2026, 2, 21, 8, 0, tzinfo=UTC)
    ews.set_response(items[r["k"].email].item_id, r["k"].email, "Accept", when)
    ews.set_response(items[r["r"].email].item_id, r["r"].email, "Tentative", when)
    summary = poll_exchange_responses(settings, session, now, now + timedelta(days=2))
    session.commit()
    (inv,) = session.scalars(select(Invitation).where(Invitation.meeting_id == meeting.id)).all()
    assert (inv.contact_id, inv.answer, inv.answered_at) == (r["r"].id, Answer.TENTATIVE, when)
    assert (summary.applied, summary.convener) == (1, 1)

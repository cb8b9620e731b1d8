"""Invitation answers read from Exchange: the attendee responses on the meeting items sipflows booked.

Exchange processes the attendees' answers itself and keeps them on the organiser's calendar item; polling
those items is all it takes. The items are found through the ledger: every meeting notice the Exchange
transport sent carries the item id (``Notice.external_id``), and the notice's meeting gives the UID
the answer is recorded against. Answers are state, so polling twice changes nothing.

What is read becomes :class:`~sipflows.replies.answers.CalendarResponse` tuples handed to
:func:`~sipflows.replies.answers.apply_calendar_responses`, so Exchange answers follow the same rules as
mailed ones (each attendee's response changes only that attendee's invitation; cancelled meetings and
closed plans are not recorded; an implausible response time is replaced by the time of polling). The
Microsoft Graph source (:mod:`sipflows.replies.graph`) reads its events' attendees and hands over the same
tuples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sipflows.models import Answer, Meeting, MeetingStatus, Notice, NoticeStatus
from sipflows.replies.answers import (
    CalendarResponse,
    ReplyIngestError,
    ReplySummary,
    apply_calendar_responses,
)
from sipflows.settings import Settings
from sipflows.transports.base import SecretLoader

log = logging.getLogger("sipflows.replies")

SOURCE = "Exchange"
# EWS ResponseType → answer; Unknown, NoResponseReceived and Organizer are no answer
RESPONSE_ANSWERS = {"Accept": Answer.ACCEPTED, "Tentative": Answer.TENTATIVE, "Decline": Answer.DECLINED}
_FETCH_CHUNK = 100


def _booked_items(session: Session, since: datetime) -> list[tuple[str, str]]:
    """(item id, meeting UID) for scheduled meetings ending at or after ``since``."""
    rows = session.execute(
        select(Notice.external_id, Meeting.ical_uid)
        .join(Meeting, Notice.meeting_id == Meeting.id)
        .where(
            Notice.external_id.is_not(None),
            Notice.status == NoticeStatus.SENT,
            or_(Notice.ics_method.is_(None), Notice.ics_method != "CANCEL"),
            Meeting.status == MeetingStatus.SCHEDULED,
            Meeting.ends_at >= since,
        )
        .order_by(Notice.id)
    ).all()
    seen: dict[str, tuple[str, str]] = {}
    for item_id, uid in rows:
        seen.setdefault(str(item_id), (str(item_id), uid))
    return list(seen.values())


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _plain_utc(value: datetime) -> datetime:
    """exchangelib's EWSDateTime as a plain aware datetime (it refuses stdlib time zones)."""
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC)


def item_responses(item: Any, uid: str) -> list[CalendarResponse]:
    """The answers on one of our Exchange items, each the answer of the attendee who gave it."""
    out = []
    for attendee in [*(item.required_attendees or ()), *(item.optional_attendees or ())]:
        answer = RESPONSE_ANSWERS.get(str(attendee.response_type))
        address = getattr(attendee.mailbox, "email_address", None)
        if answer is None or not address:
            continue
        when = _plain_utc(attendee.last_response_time) if attendee.last_response_time else None
        out.append(CalendarResponse(uid, str(address), answer, when))
    return out


def poll_exchange_responses(
    account_or_settings: Any,
    session: Session,
    since: datetime,
    now: datetime,
    *,
    secret_loader: SecretLoader | None = None,
) -> ReplySummary:
    """Record the attendees' answers on the Exchange items of meetings that end at or after ``since``.

    ``account_or_settings`` is an exchangelib ``Account`` (the dispatch's, say) or ``Settings`` to
    connect with. ``now`` dates answers Exchange gives no time for. Summary: ``messages`` items read,
    ``not_replies`` of them with no answer yet; answers as ``matched``/``applied``/``stale``/``unknown``/
    ``closed``. An item gone from Exchange is logged and skipped. Does not commit. Raises
    ``ReplyIngestError`` (credentials scrubbed) when Exchange cannot be configured or read.
    """
    if since.tzinfo is None or now.tzinfo is None:
        raise ValueError("since and now must be aware datetimes")
    from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound

    from sipflows.transports import exchange

    summary = ReplySummary()
    booked = _booked_items(session, since)
    if not booked:
        return summary
    owned = isinstance(account_or_settings, Settings)
    try:
        account = exchange.connect(account_or_settings, secret_loader) if owned else account_or_settings
    except Exception as exc:  # incomplete settings, an unreadable secret block: this source fails alone
        raise ReplyIngestError(f"Exchange polling cannot start: {exchange.describe_error(exc)}") from None
    responses: list[CalendarResponse] = []
    try:
        for chunk in _chunks(booked, _FETCH_CHUNK):
            items = list(
                account.fetch(
                    ids=[(item_id, None) for item_id, _ in chunk],
                    only_fields=["uid", "is_cancelled", "required_attendees", "optional_attendees"],
                )
            )
            for (_, uid), item in zip(chunk, items, strict=True):
                if isinstance(item, ErrorItemNotFound | ErrorInvalidIdMalformed):
                    log.warning("the Exchange item of meeting %s is gone; skipped", uid)
                    continue
                if isinstance(item, Exception):
                    raise item
                if not str(item.uid or "").startswith(f"{uid}/"):
                    # the ledger points at an item booked for another meeting: answer nothing from it
                    log.warning("the Exchange item recorded for meeting %s is not its booking; skipped", uid)
                    summary.unknown += 1
                    continue
                if item.is_cancelled:
                    continue
                summary.messages += 1
                found = item_responses(item, uid)
                if not found:
                    summary.not_replies += 1
                responses.extend(found)
    except ReplyIngestError:
        raise
    except Exception as exc:
        raise ReplyIngestError(f"Exchange polling failed: {exchange.describe_error(exc)}") from None
    finally:
        if owned:
            exchange.close(account)
    summary += apply_calendar_responses(session, responses, now, SOURCE)
    log.info("Exchange responses: %s", summary.describe())
    return summary

"""Invitation answers read from Exchange: the attendee responses on the meeting items sipflows booked.

Exchange processes the attendees' answers itself and keeps them on the organiser's calendar item; polling
those items is all it takes. The items are found through the ledger: every meeting notice the Exchange
transport sent carries the item id (``Notice.external_id``), and the notice's meeting gives the UID
the answer is recorded against. Answers are state, so polling twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sipflows.models import Answer, Meeting, MeetingStatus, Notice, NoticeStatus
from sipflows.replies import Outcome, ReplyIngestError, ReplySummary, apply_answer
from sipflows.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "Exchange"
# EWS ResponseType → answer; Unknown, NoResponseReceived and Organizer are no answer
RESPONSE_ANSWERS = {"Accept": Answer.ACCEPTED, "Tentative": Answer.TENTATIVE, "Decline": Answer.DECLINED}
_FETCH_CHUNK = 100


def _booked_items(session: Session, since: datetime) -> list[tuple[str, str, datetime | None]]:
    """(item id, meeting UID, meeting last changed) for scheduled meetings ending at or after ``since``."""
    rows = session.execute(
        select(Notice.external_id, Meeting.ical_uid, Meeting.updated_at)
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
    seen: dict[str, tuple[str, str, datetime | None]] = {}
    for item_id, uid, updated_at in rows:
        seen.setdefault(str(item_id), (str(item_id), uid, updated_at))
    return list(seen.values())


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _plain_utc(value: datetime) -> datetime:
    """exchangelib's EWSDateTime as a plain aware datetime (it refuses stdlib time zones)."""
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC)


def _count(summary: ReplySummary, outcome: Outcome) -> None:
    if outcome is Outcome.APPLIED:
        summary.matched += 1
        summary.applied += 1
    elif outcome is Outcome.STALE:
        summary.matched += 1
        summary.stale += 1
    elif outcome is Outcome.CLOSED:
        summary.closed += 1
    else:
        summary.unknown += 1


def _apply_item(
    session: Session, item: Any, uid: str, updated_at: datetime | None, now: datetime, summary: ReplySummary
) -> None:
    answered = False
    for attendee in [*(item.required_attendees or ()), *(item.optional_attendees or ())]:
        answer = RESPONSE_ANSWERS.get(str(attendee.response_type))
        if answer is None:
            continue
        answered = True
        answered_at = _plain_utc(attendee.last_response_time) if attendee.last_response_time else now
        answered_at = min(answered_at, now)  # a server clock ahead of ours must not date answers ahead
        if updated_at is not None and answered_at < updated_at:
            # the answer is to the meeting before it was moved, like a reply to an earlier SEQUENCE
            log.info("an Exchange answer predates the meeting's last change: not recorded")
            _count(summary, Outcome.STALE)
            continue
        outcome = apply_answer(session, uid, str(attendee.mailbox.email_address), answer, answered_at, SOURCE)
        _count(summary, outcome)
    summary.messages += 1
    if not answered:
        summary.not_replies += 1


def poll_exchange_responses(
    account_or_settings: Any, session: Session, since: datetime, now: datetime
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
        account = exchange.connect(account_or_settings) if owned else account_or_settings
    except Exception as exc:  # incomplete settings, an unreadable secret block: this source fails alone
        raise ReplyIngestError(f"Exchange polling cannot start: {exchange.describe_error(exc)}") from None
    try:
        for chunk in _chunks(booked, _FETCH_CHUNK):
            items = list(
                account.fetch(
                    ids=[(item_id, None) for item_id, _, _ in chunk],
                    only_fields=["uid", "is_cancelled", "required_attendees", "optional_attendees"],
                )
            )
            for (_, uid, updated_at), item in zip(chunk, items, strict=True):
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
                _apply_item(session, item, uid, updated_at, now, summary)
    except ReplyIngestError:
        raise
    except Exception as exc:
        raise ReplyIngestError(f"Exchange polling failed: {exchange.describe_error(exc)}") from None
    finally:
        if owned:
            exchange.close(account)
    log.info("Exchange responses: %s", summary.describe())
    return summary

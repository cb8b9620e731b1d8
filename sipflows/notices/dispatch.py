"""Dispatch: send what the ledger holds, record what happened, never lose or duplicate a notice.

Each batch is *claimed* in one short transaction: due notices (pending or failed, ``next_attempt_at``
reached, no live claim) get ``claimed_until`` (the moment of claiming plus ``claim_lease_seconds``) and
``claimed_by``. On PostgreSQL the select uses ``FOR UPDATE SKIP LOCKED``; on SQLite it runs inside
``BEGIN IMMEDIATE`` (SQLite's single writer serialises claimers). So two dispatchers running at once —
two Prefect workers, a flow and the CLI — never send the same notice. A batch goes through one transport
context (one SMTP connection, one Exchange session) and stops sending once half its lease is used, giving
the rest back, so nothing is sent on a claim that may have expired. Each notice's outcome is recorded:
sent; failed, retried after an exponential backoff (``min(backoff_base * 2**(attempts-1), backoff_max)``);
or dead — at once after a permanent refusal (5xx, an unusable address), or after ``max_attempts`` tries.
One bad notice never stops the batch. Outcomes are written by a recorder thread, in transactions of up to
50 outcomes (or what has arrived within 0.2 s), while the next messages are being sent; a batch ends only
once all its outcomes are committed.

Leases run on a real clock, never on the run's ``now``: the database server's (``now()``) on PostgreSQL,
so that a dispatcher whose clock runs ahead, or a ``--now`` given by hand, cannot take over a batch
another dispatcher still holds; the machine's on SQLite (one file, one machine, one clock). ``now``
decides only what is due and stamps what is recorded.

When the transport itself cannot be used (``TransportUnavailable``: the server refuses connections,
times out, fails TLS or our login), that is nobody's notice's fault: the claimed notices are given back
untouched (no attempt counted, no backoff), the dispatch stops and the exception goes up to the caller
— the flow run fails naming the transport, host and settings to check; the CLI exits non-zero. An
outage of any length therefore kills no notice: each is sent once the server is back.

Delivery guarantee — at least once, idempotent for the receiver: a process killed between a send and
its record leaves the notice claimed but unrecorded. When the lease has expired, the next run sends it
again with the SAME Message-ID (derived from the ledger key) and the SAME calendar part (UID and SEQUENCE
stored with the notice). Mail systems that deduplicate on Message-ID show it once, and calendar clients
treat the repeat as the same version of the same event, so the repeat is harmless. A notice is sent
twice only in that window (or if the database server itself crashes within a second of recording it:
outcomes are committed without waiting for PostgreSQL's WAL flush), and nothing is ever dropped: a
failure is retried until it is sent or marked dead with its last error for an operator to see.

The resend window: over SMTP a message is committed to the server (its DATA) only once all but the last
``record_window`` outcomes (``SIPFLOWS_RECORD_WINDOW``, default 100) are in the ledger — the transport
calls back between the envelope and DATA, so the wait overlaps the envelope's round trips. A process
killed at any moment thus leaves at most ``record_window`` + 1 sent notices unrecorded, the last ones it
sent, and the next run sends those again. ``SIPFLOWS_RECORD_WINDOW=0`` gives the narrowest window, one
notice, at the cost of waiting for each outcome's commit. Other transports (Exchange, Graph, the
outbox), whose sends are slower than a commit anyway, wait for every outcome before the next send:
their window is one notice.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)

from sipflows.models import Contact, Invitation, Meeting, Notice, NoticeStatus, SipCase, UTCDateTime
from sipflows.settings import Settings
from sipflows.transports.base import (
    Attendee,
    MeetingInfo,
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
    Transport,
    TransportUnavailable,
)
from sipflows.transports.mime import AttachmentError, MailMessage, attachments_from_json

log = logging.getLogger(__name__)

notices = cast(Table, Notice.__table__)
_MAX_ERROR = 500

Row = Mapping[Any, Any]  # a ledger row as SQLAlchemy returns it (RowMapping)


class Failure(NamedTuple):
    notice_id: int
    key: str
    kind: str
    reason: str


@dataclass
class DispatchSummary:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    failures: list[Failure] = field(default_factory=list)
    dead_ids: list[int] = field(default_factory=list)  # which of the failures are final
    batches: int = 0
    held_back: int = 0  # claimed, then given back untouched because the transport was unavailable


def backoff(attempts: int, settings: Settings) -> timedelta:
    """The wait before the next try after ``attempts`` failed tries (1, 2, ...)."""
    exponent = min(max(attempts - 1, 0), 62)  # bounded: 2**62 * base already exceeds any sane maximum
    return timedelta(seconds=min(settings.backoff_base_seconds * 2**exponent, settings.backoff_max_seconds))


def retry_schedule(settings: Settings) -> list[timedelta]:
    """The waits of a notice that keeps failing: after its 1st, 2nd, ... try, until it is dead."""
    return [backoff(attempts, settings) for attempts in range(1, settings.max_attempts)]


def retry_window(settings: Settings) -> timedelta:
    """How long after its first failed try a notice that keeps failing gets its last try."""
    return sum(retry_schedule(settings), timedelta(0))


LeaseClock = Callable[[], datetime]


def wall_clock() -> datetime:
    """The machine's clock, for leases on SQLite (which has no server clock of its own)."""
    return datetime.now(UTC)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]


def _secrets(settings: Settings) -> list[str]:
    values = (
        settings.smtp_password,
        settings.exchange_password,
        settings.exchange_client_secret,
        settings.graph_client_secret,
        settings.graph_certificate_password,
        settings.imap_password,
    )
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def _reason(exc: BaseException, settings: Settings) -> str:
    """A short reason for the ledger and logs; any configured secret is blanked out, whoever raised."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, PermanentSendError | TransientSendError):
        text = f"{type(exc).__name__}: {text}"
    for secret in _secrets(settings):
        text = text.replace(secret, "***")
    return " ".join(text.split())[:_MAX_ERROR]


# --------------------------------------------------------------------------------------------- claiming


def _due(now: datetime, clock_now: Any) -> Any:
    return and_(
        notices.c.status.in_([NoticeStatus.PENDING, NoticeStatus.FAILED]),
        notices.c.next_attempt_at <= now,
        or_(notices.c.claimed_until.is_(None), notices.c.claimed_until < clock_now),
    )


def _claim_in(
    conn: Connection, now: datetime, limit: int, worker_id: str, lease: timedelta, lease_clock: LeaseClock
) -> list[Row]:
    # PostgreSQL: the server's clock, the same for every dispatcher; SQLite: the machine's
    clock_now: Any = func.now() if conn.dialect.name == "postgresql" else lease_clock()
    stmt = select(notices).where(_due(now, clock_now)).order_by(notices.c.id).limit(limit)
    if conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update(skip_locked=True)
    rows: list[Row] = list(conn.execute(stmt).mappings())
    if rows:
        conn.execute(
            update(notices)
            .where(notices.c.id.in_([r["id"] for r in rows]))
            .values(claimed_until=clock_now + lease, claimed_by=worker_id)
        )
    return rows


def claim(
    engine: Engine,
    now: datetime,
    limit: int,
    worker_id: str,
    lease_seconds: float,
    lease_clock: LeaseClock | None = None,
) -> list[Row]:
    """Claim up to ``limit`` notices due at ``now`` for ``worker_id``, in id order; returns their rows.

    The claim lasts ``lease_seconds`` on the lease clock: PostgreSQL's own ``now()``, or ``lease_clock``
    (default: the machine's clock) on SQLite. A claim is live while ``claimed_until`` is not before it.
    """
    lease = timedelta(seconds=lease_seconds)
    clock = lease_clock or wall_clock
    if engine.dialect.name == "sqlite":
        # pysqlite would open a deferred transaction; a deferred reader that later writes loses the race
        # with SQLITE_BUSY. BEGIN IMMEDIATE takes the write lock first (waiting out busy_timeout).
        with engine.connect() as base:
            conn = base.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                rows = _claim_in(conn, now, limit, worker_id, lease, clock)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            return rows
    with engine.begin() as conn:
        return _claim_in(conn, now, limit, worker_id, lease, clock)


def _release(engine: Engine, ids: Iterable[int], worker_id: str) -> None:
    """Give back claims we did not get to (after an error, or slow sending), so nobody waits the lease."""
    ids = list(ids)
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(notices)
            .where(notices.c.id.in_(ids), notices.c.claimed_by == worker_id)
            .values(claimed_until=None)
        )


# ------------------------------------------------------------------------------------ building messages


@dataclass
class _BatchContext:
    contact_names: dict[int, str]
    meetings: dict[int, Row]
    attendees: dict[int, list[Attendee]]
    previous_external: dict[tuple[int, int], str]
    organizer: tuple[str, str] = ("", "")  # (address, name) of the mailbox that receives the answers


def _load_context(
    conn: Connection, rows: Sequence[Row], organizer: tuple[str, str] = ("", "")
) -> _BatchContext:
    """Everything the batch's messages need, in a handful of set-based queries (never one per notice).

    Only the columns a message needs are read: no personal data of the plan is ever loaded here. A
    meeting's attendees are its invitees and, first and as chair, the plan's convener.
    """
    contact_ids = {r["contact_id"] for r in rows if r["contact_id"] is not None}
    meeting_ids = {r["meeting_id"] for r in rows if r["meeting_id"] is not None and r["ics"]}
    names: dict[int, str] = {}
    if contact_ids:
        names = dict(
            conn.execute(select(Contact.id, Contact.name).where(Contact.id.in_(contact_ids))).tuples().all()
        )
    meetings: dict[int, Row] = {}
    attendees: dict[int, list[Attendee]] = {}
    previous: dict[tuple[int, int], str] = {}
    if meeting_ids:
        q = (
            select(
                Meeting.id,
                Meeting.ical_uid,
                Meeting.sequence,
                Meeting.starts_at,
                Meeting.ends_at,
                Meeting.place,
                Meeting.digital_link,
                Contact.email.label("convener_email"),
                Contact.name.label("convener_name"),
            )
            .join(SipCase, SipCase.id == Meeting.case_id)
            .join(Contact, Contact.id == SipCase.convener_contact_id)
            .where(Meeting.id.in_(meeting_ids))
        )
        meetings = {m["id"]: m for m in conn.execute(q).mappings()}
        q2 = (
            select(Invitation.meeting_id, Invitation.required, Contact.email, Contact.name)
            .join(Contact, Contact.id == Invitation.contact_id)
            .where(Invitation.meeting_id.in_(meeting_ids))
            .order_by(Invitation.meeting_id, Invitation.id)
        )
        for m in meetings.values():
            attendees[m["id"]] = [Attendee(m["convener_email"], m["convener_name"], True, chair=True)]
        for meeting_id, required, email, name in conn.execute(q2).tuples():
            listed = attendees.setdefault(meeting_id, [])
            if not any(a.chair and a.email.casefold() == email.casefold() for a in listed):
                listed.append(Attendee(email=email, name=name, required=required))
        # the calendar item an earlier send created for the same meeting and person (Exchange updates it)
        q3 = (
            select(notices.c.meeting_id, notices.c.contact_id, notices.c.external_id)
            .where(
                notices.c.meeting_id.in_(meeting_ids),
                notices.c.external_id.is_not(None),
                notices.c.status == NoticeStatus.SENT,
            )
            .order_by(notices.c.id)
        )
        for meeting_id, contact_id, external_id in conn.execute(q3).tuples():
            if contact_id is not None:
                previous[(meeting_id, contact_id)] = external_id
    return _BatchContext(names, meetings, attendees, previous, organizer)


def _meeting_info(row: Row, ctx: _BatchContext) -> MeetingInfo | None:
    m = ctx.meetings.get(row["meeting_id"]) if row["ics"] and row["meeting_id"] is not None else None
    if m is None:
        return None
    return MeetingInfo(
        uid=m["ical_uid"],
        # the SEQUENCE the notice's ics carries, so a resend or a late retry books the same version
        sequence=row["ics_sequence"] if row["ics_sequence"] is not None else m["sequence"],
        method=(row["ics_method"] or "REQUEST").upper(),
        subject=row["subject"],
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        location=m["place"] or m["digital_link"],
        organizer_email=ctx.organizer[0] or m["convener_email"],
        organizer_name=ctx.organizer[1] or m["convener_name"],
        attendees=tuple(ctx.attendees.get(m["id"], ())),
    )


def build_message(row: Row, ctx: _BatchContext, now: datetime) -> MailMessage:
    """The message for one ledger row; ``AttachmentError`` if its attachments are unusable."""
    external_id = row["external_id"]
    if external_id is None and row["meeting_id"] is not None and row["contact_id"] is not None:
        external_id = ctx.previous_external.get((row["meeting_id"], row["contact_id"]))
    # an invitation's human replies go to the convener; calendar answers go to the ORGANIZER mailbox
    meeting = ctx.meetings.get(row["meeting_id"]) if row["ics"] and row["meeting_id"] is not None else None
    return MailMessage(
        notice_id=row["id"],
        key=row["key"],
        message_id=row["message_id"],
        to_address=row["address"],
        to_name=ctx.contact_names.get(row["contact_id"]) if row["contact_id"] is not None else None,
        subject=row["subject"],
        body_text=row["body_text"],
        body_html=row["body_html"],
        ics=row["ics"],
        ics_method=(row["ics_method"] or "REQUEST").upper() if row["ics"] else row["ics_method"],
        meeting=_meeting_info(row, ctx),
        external_id=external_id,
        reply_to=meeting["convener_email"] if meeting is not None else None,
        reply_to_name=meeting["convener_name"] if meeting is not None else None,
        date=now,
        attachments=attachments_from_json(row["attachments"]),
    )


# ------------------------------------------------------------------------------------------- recording


_MARK_SENT = (
    update(notices)
    .where(notices.c.id == bindparam("b_id"), notices.c.claimed_by == bindparam("b_worker"))
    .values(
        status=NoticeStatus.SENT,
        sent_at=bindparam("b_at", type_=UTCDateTime()),
        attempts=bindparam("b_attempts", type_=Integer()),
        claimed_until=None,
        last_error=None,
        external_id=func.coalesce(bindparam("b_external", type_=String()), notices.c.external_id),
    )
)
_MARK_INVITED = (
    update(Invitation)
    .where(
        Invitation.meeting_id == bindparam("b_meeting"),
        Invitation.contact_id == bindparam("b_contact"),
        Invitation.sent_at.is_(None),
    )
    .values(sent_at=bindparam("b_at", type_=UTCDateTime()))
)
_MARK_FAILED = (
    update(notices)
    .where(notices.c.id == bindparam("b_id"), notices.c.claimed_by == bindparam("b_worker"))
    .values(
        status=bindparam("b_status", type_=notices.c.status.type),
        attempts=bindparam("b_attempts", type_=Integer()),
        last_error=bindparam("b_error", type_=Text()),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        claimed_until=None,
    )
)


class _Recorder:
    """Records outcomes on one connection per batch: a group in one transaction (``group``), or one
    outcome by one autocommitted statement (``sent``, ``failed``).

    For an invitation the invitee's ``sent_at`` is marked with or *before* the notice: a kill between the
    two leaves a notice that is sent again (the guarantee above) on an invitation already marked as sent
    — never a sent invitation that the unanswered-invitations check would not know about.
    """

    def __init__(self, engine: Engine, worker_id: str, now: datetime, settings: Settings) -> None:
        self.engine, self.worker_id, self.now, self.settings = engine, worker_id, now, settings
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.dialect.name == "postgresql":
                # An outcome need not wait for its WAL flush: if the database server itself crashed
                # in the next fraction of a second, the notice would merely be sent again after its
                # lease, with the same Message-ID — the guarantee above. Saves a disk flush per commit.
                conn.exec_driver_sql("SET synchronous_commit TO OFF")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                if conn.dialect.name == "postgresql" and not conn.invalidated:
                    conn.exec_driver_sql("RESET synchronous_commit")  # the pooled connection goes back clean
            finally:
                conn.close()

    @staticmethod
    def _is_invitation(row: Row) -> bool:
        return (
            row["meeting_id"] is not None
            and row["contact_id"] is not None
            and (row["ics_method"] or "").upper() == "REQUEST"
        )

    def sent(self, row: Row, result: SendResult) -> None:
        conn = self._connection()
        if self._is_invitation(row):
            conn.execute(
                _MARK_INVITED,
                {"b_meeting": row["meeting_id"], "b_contact": row["contact_id"], "b_at": self.now},
            )
        done = cast(CursorResult[Any], conn.execute(_MARK_SENT, self._sent_params(row, result))).rowcount
        if not done:
            log.warning("notice %s was reclaimed by another dispatcher before it was recorded", row["key"])

    def _sent_params(self, row: Row, result: SendResult) -> dict[str, Any]:
        return {
            "b_id": row["id"],
            "b_worker": self.worker_id,
            "b_at": self.now,
            "b_attempts": row["attempts"] + 1,
            "b_external": result.external_id,
        }

    def _failed_params(self, row: Row, reason: str, permanent: bool) -> dict[str, Any]:
        attempts = row["attempts"] + 1
        return {
            "b_id": row["id"],
            "b_worker": self.worker_id,
            "b_status": self.status_after_failure(row, permanent),
            "b_attempts": attempts,
            "b_error": reason,
            "b_next": self.now + backoff(attempts, self.settings),
        }

    def group(self, outcomes: Sequence[tuple[Row, SendResult | None, str, bool]]) -> None:
        """Several outcomes in one transaction: (row, result) when sent, (row, None, reason, permanent)
        when failed. Invitations are marked in the same transaction as their notices."""
        if len(outcomes) == 1:  # one autocommitted statement: no BEGIN/COMMIT round trips around it
            row, result, reason, permanent = outcomes[0]
            if result is None:
                self.failed(row, reason, permanent)
            else:
                self.sent(row, result)
            return
        invited = [
            {"b_meeting": row["meeting_id"], "b_contact": row["contact_id"], "b_at": self.now}
            for row, result, _, _ in outcomes
            if result is not None and self._is_invitation(row)
        ]
        sent = [self._sent_params(row, result) for row, result, _, _ in outcomes if result is not None]
        failed = [
            self._failed_params(row, why, perm) for row, result, why, perm in outcomes if result is None
        ]
        conn = self._connection()
        conn.exec_driver_sql("BEGIN")
        try:
            if invited:
                conn.execute(_MARK_INVITED, invited)
            done = cast(CursorResult[Any], conn.execute(_MARK_SENT, sent)).rowcount if sent else 0
            if failed:
                conn.execute(_MARK_FAILED, failed)
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            if not conn.invalidated:
                conn.exec_driver_sql("ROLLBACK")
            raise
        if 0 <= done < len(sent):
            log.warning(
                "%d of %d notices were reclaimed by another dispatcher before they were recorded",
                len(sent) - done,
                len(sent),
            )

    def status_after_failure(self, row: Row, permanent: bool) -> NoticeStatus:
        """What a failed try makes of the notice: dead when permanent or out of attempts, else failed."""
        dead = permanent or row["attempts"] + 1 >= self.settings.max_attempts
        return NoticeStatus.DEAD if dead else NoticeStatus.FAILED

    def failed(self, row: Row, reason: str, permanent: bool) -> NoticeStatus:
        params = self._failed_params(row, reason, permanent)
        self._connection().execute(_MARK_FAILED, params)
        return cast(NoticeStatus, params["b_status"])


class _RecordingFailed(Exception):
    """Writing an outcome failed (the database went away): carries that error out of a transport."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _takes_before_commit(transport: Transport) -> bool:
    """Whether ``transport.send`` takes ``before_commit`` (the SMTP transport's, unless overridden)."""
    try:
        return "before_commit" in inspect.signature(transport.send).parameters
    except (TypeError, ValueError):
        return False


GROUP_SIZE = 50  # outcomes per transaction, at most ...
GROUP_SECONDS = 0.2  # ... or what has arrived when the oldest has waited this long


class _Pipeline:
    """Commits outcomes on a thread of its own, in groups, while the next messages travel.

    Whatever has arrived while the previous group was being committed goes in the next transaction, so
    the database costs one commit per group instead of one per notice, and its round trips overlap the
    SMTP conversation instead of adding to it. ``wait(behind)`` returns once all but the last ``behind``
    outcomes handed over are committed, or raises ``_RecordingFailed``. Dispatch calls it before the
    next message is committed to the transport — the SMTP transport calls it between the envelope and
    DATA (``before_commit``) with ``behind`` = ``record_window``; other transports wait for every
    outcome before ``send``. So a process killed at any moment leaves at most ``record_window`` + 1 sent
    notices unrecorded (1 for other transports), and the next run sends those again after the lease.
    """

    def __init__(self, record: _Recorder) -> None:
        self._record = record
        self._cond = threading.Condition()
        self._queue: list[tuple[Row, SendResult | None, str, bool]] = []
        self._submitted = 0
        self._committed = 0
        self._error: BaseException | None = None
        self._closing = False
        self._waiting = 0
        self._thread: threading.Thread | None = None

    def sent(self, row: Row, result: SendResult) -> None:
        self._submit((row, result, "", False))

    def failed(self, row: Row, reason: str, permanent: bool) -> None:
        self._submit((row, None, reason, permanent))

    def _submit(self, outcome: tuple[Row, SendResult | None, str, bool]) -> None:
        with self._cond:
            self._queue.append(outcome)
            self._submitted += 1
            if len(self._queue) in (1, GROUP_SIZE):  # the recorder starts its clock, or has a group
                self._cond.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sipflows-recorder", daemon=True)
            self._thread.start()

    def _next_group(self) -> list[tuple[Row, SendResult | None, str, bool]] | None:
        """Wait for a full group, the oldest outcome's deadline, a waiter or the end; None at the end."""
        with self._cond:
            first_at: float | None = None
            while True:
                if self._queue and first_at is None:
                    first_at = time.monotonic()
                full = len(self._queue) >= GROUP_SIZE
                due = first_at is not None and time.monotonic() - first_at >= GROUP_SECONDS
                if self._queue and (full or due or self._waiting or self._closing):
                    group, self._queue = self._queue, []
                    return group
                if self._closing:
                    return None
                timeout = None if first_at is None else first_at + GROUP_SECONDS - time.monotonic()
                self._cond.wait(timeout)

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            try:
                self._record.group(group)
            except BaseException as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._committed += len(group)
                self._cond.notify_all()

    def wait(self, behind: int = 0) -> None:
        with self._cond:
            while self._error is None and self._committed < self._submitted - behind:
                self._waiting += 1
                self._cond.notify_all()
                self._cond.wait()
                self._waiting -= 1
            if self._error is not None:
                raise _RecordingFailed(self._error)

    def close(self) -> None:
        """Commit the outcomes still on their way and stop the thread; raises a recording error."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._cond:
            if self._error is not None:
                error, self._error = self._error, None
                raise _RecordingFailed(error)


# -------------------------------------------------------------------------------------------- dispatch


def _count_failure(summary: DispatchSummary, row: Row, reason: str, status: NoticeStatus) -> None:
    if status == NoticeStatus.DEAD:
        summary.dead += 1
        summary.dead_ids.append(row["id"])
    else:
        summary.failed += 1
    summary.failures.append(Failure(row["id"], row["key"], row["kind"], reason))
    log.warning("notice %s (%s) %s: %s", row["key"], row["kind"], status.value, reason)


def _unavailable(exc: BaseException, transport: Transport, settings: Settings) -> TransportUnavailable:
    """Whatever stopped the transport from opening, as ``TransportUnavailable`` (secrets blanked out)."""
    if isinstance(exc, TransportUnavailable):
        return exc
    return TransportUnavailable(transport.name, f"{transport.name} transport", _reason(exc, settings))


def _dispatch_batch(
    engine: Engine,
    transport: Transport,
    rows: list[Row],
    now: datetime,
    settings: Settings,
    worker_id: str,
    summary: DispatchSummary,
    clock: Callable[[], float],
    send_until: float,
) -> None:
    """Send one claimed batch; raises ``TransportUnavailable`` with the unsent claims given back.

    Past ``send_until`` (half the lease, on ``clock``) the unsent rest is given back for the next
    batch to claim afresh: nothing is ever sent on a claim that may have run out meanwhile.
    """
    pending = {r["id"] for r in rows}
    record = _Recorder(engine, worker_id, now, settings)
    pipe = _Pipeline(record)
    try:
        with engine.connect() as conn:
            ctx = _load_context(conn, rows, (settings.organizer(), settings.sender_name))
        messages: list[tuple[Row, OutgoingMessage]] = []
        for row in rows:
            try:
                messages.append((row, build_message(row, ctx, now)))
            except AttachmentError as exc:
                reason = _reason(exc, settings)
                pipe.failed(row, reason, True)
                pending.discard(row["id"])
                _count_failure(summary, row, reason, record.status_after_failure(row, True))
        if not messages:
            pipe.close()
            return
        try:
            transport.__enter__()
        except Exception as exc:
            # nothing of the batch could be tried, and no notice is to blame: all go back untouched
            raise _unavailable(exc, transport, settings) from None
        before_commit = _takes_before_commit(transport)
        window = settings.record_window

        def recorded() -> None:  # all but the last ``window`` outcomes are committed
            pipe.wait(window)

        try:
            for i, (row, message) in enumerate(messages):
                if i and clock() > send_until:
                    log.warning("slow sending: %d notices go back for a fresh claim", len(pending))
                    break
                if not before_commit:
                    pipe.wait()  # the previous outcome is committed before this message can go
                # in flight from here: if we are interrupted now it may have gone out, so its claim is
                # kept until the lease ends rather than given back for an immediate resend
                pending.discard(row["id"])
                try:
                    if before_commit:
                        result = transport.send(message, before_commit=recorded)  # type: ignore[call-arg]
                    else:
                        result = transport.send(message)
                except (TransportUnavailable, _RecordingFailed):
                    pending.add(row["id"])  # it did not go: back with the rest, no attempt counted
                    raise
                except Exception as exc:
                    reason = _reason(exc, settings)
                    permanent = isinstance(exc, PermanentSendError)
                    pipe.failed(row, reason, permanent)
                    _count_failure(summary, row, reason, record.status_after_failure(row, permanent))
                else:
                    pipe.sent(row, result)
                    summary.sent += 1
        finally:
            try:
                transport.__exit__(None, None, None)
            except Exception as exc:  # closing is best effort; what was sent is recorded
                log.warning("closing the %s transport failed: %s", transport.name, _reason(exc, settings))
        pipe.close()
        record.close()
        _release(engine, pending, worker_id)
        pending.clear()
    except BaseException as exc:
        try:
            pipe.close()  # what was sent is recorded before anything else happens
        except _RecordingFailed as failed:
            log.warning("could not record the last outcomes: %s", _reason(failed.error, settings))
        record.close()  # a broken connection must not be reused for the release
        if isinstance(exc, TransportUnavailable):
            summary.held_back += len(pending)
        try:
            _release(engine, pending, worker_id)
        except Exception:  # the database itself may be what failed; the lease expires anyway
            log.warning(
                "could not release %d claimed notices; they are retried when the lease ends", len(pending)
            )
        if isinstance(exc, _RecordingFailed):
            raise exc.error from None  # the database's own error, as the recorder met it
        raise
    finally:
        record.close()


def dispatch(
    engine: Engine,
    transport: Transport,
    now: datetime,
    settings: Settings,
    batch_size: int | None = None,
    worker_id: str | None = None,
    max_batches: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    lease_clock: LeaseClock | None = None,
) -> DispatchSummary:
    """Send every notice due at ``now`` through ``transport``, batch by batch, until none is due.

    ``now`` is the run's time (the flow's, or the CLI's clock): it decides what is due, stamps sent_at
    and Date, and starts the backoff. Stops early after ``max_batches``.

    Raises ``TransportUnavailable`` when the transport cannot be used at all: the claimed notices are
    given back untouched (``exc.summary`` says what was done before), and the rest wait for the next run.

    A batch stops sending once half its lease is used (elapsed time on ``clock``, monotonic seconds;
    tests pass their own). Leases themselves are on the database's clock (PostgreSQL) or ``lease_clock``
    (SQLite; default the machine's clock).
    """
    if now.tzinfo is None:
        raise ValueError("dispatch needs an aware 'now'")
    size = batch_size or settings.batch_size
    worker = worker_id or default_worker_id()
    summary = DispatchSummary()
    lease = settings.claim_lease_seconds
    try:
        while max_batches is None or summary.batches < max_batches:
            claimed = clock()
            rows = claim(engine, now, size, worker, lease, lease_clock)
            if not rows:
                break
            summary.batches += 1
            send_until = claimed + lease / 2
            _dispatch_batch(engine, transport, rows, now, settings, worker, summary, clock, send_until)
    except TransportUnavailable as exc:
        exc.summary = summary
        log.error(
            "dispatch stopped, %s; %d sent before, %d claimed notices given back untouched",
            exc,
            summary.sent,
            summary.held_back,
        )
        raise
    log.info(
        "dispatch via %s: %d sent, %d failed, %d dead in %d batches",
        transport.name,
        summary.sent,
        summary.failed,
        summary.dead,
        summary.batches,
    )
    return summary

"""Recording outcomes: a recorder thread commits them in groups while the next messages travel.

``Pipeline.wait(behind)`` is what bounds the resend window: dispatch lets a message be committed to the
transport only once all but the last ``behind`` outcomes are in the ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Integer,
    String,
    Text,
    bindparam,
    func,
    tuple_,
    update,
)

from sipflows.models import Invitation, NoticeStatus, UTCDateTime
from sipflows.notices.dispatch.claims import Row, notices
from sipflows.notices.dispatch.summary import backoff
from sipflows.settings import Settings
from sipflows.transports.base import SendResult

log = logging.getLogger("sipflows.notices.dispatch")


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
# a group's sent notices at once: attempts + 1 is the claimed row's attempts + 1, as the claim still holds
_MARK_SENT_ALL = (
    update(notices)
    .where(
        notices.c.id.in_(bindparam("b_ids", expanding=True)),
        notices.c.claimed_by == bindparam("b_worker"),
    )
    .values(
        status=NoticeStatus.SENT,
        sent_at=bindparam("b_at", type_=UTCDateTime()),
        attempts=notices.c.attempts + 1,
        claimed_until=None,
        last_error=None,
    )
)


def _marked_invited(pairs: Sequence[tuple[int, int]]) -> Any:
    """Marks the invitations of these (meeting, contact) pairs as sent at ``b_at``, unless already."""
    return (
        update(Invitation)
        .where(tuple_(Invitation.meeting_id, Invitation.contact_id).in_(pairs), Invitation.sent_at.is_(None))
        .values(sent_at=bindparam("b_at", type_=UTCDateTime()))
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


class Recorder:
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
            (row["meeting_id"], row["contact_id"])
            for row, result, _, _ in outcomes
            if result is not None and self._is_invitation(row)
        ]
        # what sent without an item id (every SMTP outcome) is one set-based UPDATE; with one, row by row
        plain = [
            row["id"] for row, result, _, _ in outcomes if result is not None and result.external_id is None
        ]
        sent = [
            self._sent_params(row, result)
            for row, result, _, _ in outcomes
            if result is not None and result.external_id is not None
        ]
        failed = [
            self._failed_params(row, why, perm) for row, result, why, perm in outcomes if result is None
        ]
        conn = self._connection()
        conn.exec_driver_sql("BEGIN")
        try:
            if invited:
                conn.execute(_marked_invited(invited), {"b_at": self.now})
            done = 0
            if plain:
                marked = conn.execute(
                    _MARK_SENT_ALL, {"b_ids": plain, "b_worker": self.worker_id, "b_at": self.now}
                )
                done += cast(CursorResult[Any], marked).rowcount
            if sent:
                done += cast(CursorResult[Any], conn.execute(_MARK_SENT, sent)).rowcount
            if failed:
                conn.execute(_MARK_FAILED, failed)
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            if not conn.invalidated:
                conn.exec_driver_sql("ROLLBACK")
            raise
        sent_count = len(plain) + len(sent)
        if 0 <= done < sent_count:
            log.warning(
                "%d of %d notices were reclaimed by another dispatcher before they were recorded",
                sent_count - done,
                sent_count,
            )

    def status_after_failure(self, row: Row, permanent: bool) -> NoticeStatus:
        """What a failed try makes of the notice: dead when permanent or out of attempts, else failed."""
        dead = permanent or row["attempts"] + 1 >= self.settings.max_attempts
        return NoticeStatus.DEAD if dead else NoticeStatus.FAILED

    def failed(self, row: Row, reason: str, permanent: bool) -> NoticeStatus:
        params = self._failed_params(row, reason, permanent)
        self._connection().execute(_MARK_FAILED, params)
        return cast(NoticeStatus, params["b_status"])


class RecordingFailed(Exception):
    """Writing an outcome failed (the database went away): carries that error out of a transport."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


GROUP_SIZE = 50  # outcomes per transaction, at most ...
GROUP_SECONDS = 0.2  # ... or what has arrived when the oldest has waited this long


class Pipeline:
    """Commits outcomes on a thread of its own, in groups, while the next messages travel.

    Whatever has arrived while the previous group was being committed goes in the next transaction, so
    the database costs one commit per group instead of one per notice, and its round trips overlap the
    SMTP conversation instead of adding to it. ``wait(behind)`` returns once all but the last ``behind``
    outcomes handed over are committed, or raises ``RecordingFailed``. Dispatch calls it before the
    next message is committed to the transport — the SMTP transport calls it between the envelope and
    DATA (``before_commit``) with ``behind`` = ``record_window``; other transports wait for every
    outcome before ``send``. So a process killed at any moment leaves at most ``record_window`` + 1 sent
    notices unrecorded (1 for other transports), and the next run sends those again after the lease.
    """

    def __init__(self, record: Recorder) -> None:
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
                raise RecordingFailed(self._error)

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
                raise RecordingFailed(error)

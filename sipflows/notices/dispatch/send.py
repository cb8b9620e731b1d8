"""The send loop: a producer thread claims batches and builds their messages ahead; the caller's thread
sends each batch through one transport context and hands the outcomes to the recorder thread."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine

from sipflows.notices.dispatch.claims import LeaseClock, Row, claim, default_worker_id, release
from sipflows.notices.dispatch.messages import BatchContext, build_message, load_context
from sipflows.notices.dispatch.recorder import Pipeline, Recorder, RecordingFailed
from sipflows.notices.dispatch.summary import DispatchSummary, count_failure, reason_for
from sipflows.settings import Settings
from sipflows.transports.base import (
    AttachmentError,
    OutgoingMessage,
    PermanentSendError,
    Transport,
    TransportUnavailable,
)

log = logging.getLogger("sipflows.notices.dispatch")


def _unavailable(exc: BaseException, transport: Transport, settings: Settings) -> TransportUnavailable:
    """Whatever stopped the transport from opening, as ``TransportUnavailable`` (secrets blanked out)."""
    if isinstance(exc, TransportUnavailable):
        return exc
    return TransportUnavailable(transport.name, f"{transport.name} transport", reason_for(exc, settings))


class _Start(NamedTuple):
    """A batch begins: its claimed rows and the moment (on ``clock``) past which none of it is sent."""

    ids: frozenset[int]
    send_until: float


class _Item(NamedTuple):
    """One claimed notice, ready to go: its message and what the transport prepared from it, or the
    error that makes it unsendable (its attachments, a recipient no message can be written for)."""

    row: Row
    message: OutgoingMessage | None
    prepared: object | None
    error: Exception | None


class _End(NamedTuple):
    pass


class _Done(NamedTuple):
    error: BaseException | None = None  # what stopped the producer, raised again by the sender


class _Producer:
    """Claims batches and builds their messages on a thread of its own, ahead of the sender.

    The sending thread then only holds the transport's conversation: while it waits for the server
    (socket waits release the GIL) the next message is claimed, built and, for SMTP, written to bytes.
    At most ``AHEAD`` messages wait built, so the producer mostly sleeps on a full buffer and hands
    the GIL back at once. With ``ahead`` the next batch is claimed while the last messages of the
    current one still wait to go — at most two batches are claimed at once; without it (transports
    that update an earlier send's item: Exchange, Graph) a batch is claimed only once the previous one
    is sent and recorded, so its messages see the item ids that batch recorded. Every id claimed and
    not yet taken by the sender is in ``held``: what the sender gives back when it stops.
    """

    AHEAD = 200

    def __init__(
        self,
        engine: Engine,
        now: datetime,
        settings: Settings,
        size: int,
        worker: str,
        max_batches: int | None,
        clock: Callable[[], float],
        lease_clock: LeaseClock | None,
        *,
        ahead: bool,
        prepare: Callable[[OutgoingMessage], object] | None,
    ) -> None:
        self.engine, self.now, self.settings = engine, now, settings
        self.size, self.worker, self.max_batches = size, worker, max_batches
        self.clock, self.lease_clock, self.ahead, self.prepare = clock, lease_clock, ahead, prepare
        self.held: set[int] = set()
        self._cond = threading.Condition()
        self._buffer: deque[_Start | _Item | _End | _Done] = deque()
        self._outstanding = 0  # batches claimed and not yet finished by the sender
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sipflows-dispatch-producer", daemon=True)

    # -- the sender's side

    def start(self) -> None:
        self._thread.start()

    def take(self) -> _Start | _Item | _End | _Done:
        with self._cond:
            while not self._buffer:
                self._cond.wait()
            entry = self._buffer.popleft()
            if isinstance(entry, _Item):
                self.held.discard(entry.row["id"])
            self._cond.notify_all()
            return entry

    def finished_batch(self) -> None:
        """The sender is done with a batch (and, without ``ahead``, has it recorded)."""
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def stop(self) -> set[int]:
        """Stop claiming and building; returns the ids claimed and not taken, to be given back."""
        with self._cond:
            self._stopped = True
            self._buffer.clear()
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            held, self.held = self.held, set()
            return held

    # -- the producer's side

    def _put(self, entry: _Start | _Item | _End | _Done, limit: int | None = None) -> bool:
        with self._cond:
            while limit is not None and len(self._buffer) >= limit and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return False
            self._buffer.append(entry)
            self._cond.notify_all()
            return True

    def _may_claim(self, last_empty: bool) -> bool:
        """Wait until another batch may be claimed; False once stopped."""
        most = 2 if self.ahead and not last_empty else 1  # batches claimed at once, this one included
        with self._cond:
            while not self._stopped and self._outstanding >= most:
                self._cond.wait()
            return not self._stopped

    def _item(self, row: Row, ctx: BatchContext) -> _Item:
        try:
            message = build_message(row, ctx, self.now)
        except AttachmentError as exc:
            return _Item(row, None, None, exc)
        try:
            prepared = self.prepare(message) if self.prepare is not None else None
        except PermanentSendError as exc:
            return _Item(row, message, None, exc)
        return _Item(row, message, prepared, None)

    def _run(self) -> None:
        try:
            batches, last_empty = 0, False
            organizer = (self.settings.organizer(), self.settings.sender_name)
            while self.max_batches is None or batches < self.max_batches:
                if not self._may_claim(last_empty):
                    return
                claimed = self.clock()
                rows = claim(
                    self.engine,
                    self.now,
                    self.size,
                    self.worker,
                    self.settings.claim_lease_seconds,
                    self.lease_clock,
                )
                if not rows:
                    if last_empty or not self._outstanding:
                        break
                    # the sender may still give claims back (slow sending): look again once it is done
                    last_empty = True
                    continue
                batches, last_empty = batches + 1, False
                ids = frozenset(r["id"] for r in rows)
                with self._cond:
                    self.held.update(ids)
                    self._outstanding += 1
                if not self._put(_Start(ids, claimed + self.settings.claim_lease_seconds / 2)):
                    return
                with self.engine.connect() as conn:
                    ctx = load_context(conn, rows, organizer)
                for row in rows:
                    if not self._put(self._item(row, ctx), self.AHEAD):
                        return
                if not self._put(_End()):
                    return
            self._put(_Done())
        except BaseException as exc:
            self._put(_Done(exc))


def _send_options(transport: Transport) -> tuple[bool, bool]:
    """Whether ``transport.send`` takes ``before_commit`` and ``prepared`` (the SMTP transport's,
    unless a subclass overrides ``send`` without them)."""
    try:
        parameters = inspect.signature(transport.send).parameters
    except (TypeError, ValueError):
        return False, False
    before_commit = "before_commit" in parameters
    return before_commit, before_commit and "prepared" in parameters and hasattr(transport, "prepare")


def _send_all(
    engine: Engine,
    transport: Transport,
    now: datetime,
    settings: Settings,
    worker: str,
    summary: DispatchSummary,
    size: int,
    max_batches: int | None,
    clock: Callable[[], float],
    lease_clock: LeaseClock | None,
) -> None:
    """Send what the producer hands over, batch by batch; one transport context per batch."""
    before_commit, takes_prepared = _send_options(transport)
    prepare: Callable[[OutgoingMessage], object] | None = (
        getattr(transport, "prepare", None) if takes_prepared else None
    )
    producer = _Producer(
        engine,
        now,
        settings,
        size,
        worker,
        max_batches,
        clock,
        lease_clock,
        ahead=before_commit,
        prepare=prepare,
    )
    record = Recorder(engine, worker, now, settings)
    pipe = Pipeline(record)
    window = settings.record_window

    def recorded() -> None:  # all but the last ``window`` outcomes are committed
        pipe.wait(window)

    unsent: set[int] = set()  # of the current batch: claimed, not (yet) handed to the transport
    send_until, tried, expired, opened = 0.0, 0, False, False
    producer.start()
    try:
        while True:
            entry = producer.take()
            if isinstance(entry, _Done):
                if entry.error is not None:
                    raise entry.error
                break
            if isinstance(entry, _Start):
                summary.batches += 1
                unsent, send_until, tried, expired = set(entry.ids), entry.send_until, 0, False
                continue
            if isinstance(entry, _End):
                if opened:
                    opened = False
                    _close(transport, settings)
                if unsent:
                    log.warning("slow sending: %d notices go back for a fresh claim", len(unsent))
                    release(engine, unsent, worker)
                    unsent = set()
                if not before_commit:
                    pipe.wait()  # the next batch's messages must see what this one recorded
                producer.finished_batch()
                continue
            row = entry.row
            if entry.message is None:  # its attachments cannot be sent: dead at once
                assert entry.error is not None
                unsent.discard(row["id"])
                reason = reason_for(entry.error, settings)
                pipe.failed(row, reason, True)
                count_failure(summary, row, reason, record.status_after_failure(row, True))
                continue
            # past half its lease the rest of the batch goes back (at its end) for a fresh claim:
            # nothing is ever sent on a claim that may have run out meanwhile
            expired = expired or (tried > 0 and clock() > send_until)
            if expired:
                continue
            tried += 1
            if not opened:
                try:
                    transport.__enter__()
                except Exception as exc:
                    # nothing of the batch could be tried, and no notice is to blame: all go back
                    raise _unavailable(exc, transport, settings) from None
                opened = True
            if not before_commit:
                pipe.wait()  # the previous outcome is committed before this message can go
            # in flight from here: if we are interrupted now it may have gone out, so its claim is
            # kept until the lease ends rather than given back for an immediate resend
            unsent.discard(row["id"])
            try:
                if entry.error is not None:
                    raise entry.error
                assert entry.message is not None
                if takes_prepared:
                    result = transport.send(  # type: ignore[call-arg]
                        entry.message, before_commit=recorded, prepared=entry.prepared
                    )
                elif before_commit:
                    result = transport.send(entry.message, before_commit=recorded)  # type: ignore[call-arg]
                else:
                    result = transport.send(entry.message)
            except (TransportUnavailable, RecordingFailed):
                unsent.add(row["id"])  # it did not go: back with the rest, no attempt counted
                raise
            except Exception as exc:
                reason = reason_for(exc, settings)
                permanent = isinstance(exc, PermanentSendError)
                pipe.failed(row, reason, permanent)
                count_failure(summary, row, reason, record.status_after_failure(row, permanent))
            else:
                pipe.sent(row, result)
                summary.sent += 1
        pipe.close()
    except BaseException as exc:
        back = producer.stop() | unsent
        if opened:
            _close(transport, settings)
        try:
            pipe.close()  # what was sent is recorded before anything else happens
        except RecordingFailed as failed:
            log.warning("could not record the last outcomes: %s", reason_for(failed.error, settings))
        record.close()  # a broken connection must not be reused for the release
        if isinstance(exc, TransportUnavailable):
            summary.held_back += len(back)
        try:
            release(engine, back, worker)
        except Exception:  # the database itself may be what failed; the lease expires anyway
            log.warning(
                "could not release %d claimed notices; they are retried when the lease ends", len(back)
            )
        if isinstance(exc, RecordingFailed):
            raise exc.error from None  # the database's own error, as the recorder met it
        raise
    finally:
        producer.stop()
        record.close()


def _close(transport: Transport, settings: Settings) -> None:
    try:
        transport.__exit__(None, None, None)
    except Exception as exc:  # closing is best effort; what was sent is recorded
        log.warning("closing the %s transport failed: %s", transport.name, reason_for(exc, settings))


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
    try:
        _send_all(engine, transport, now, settings, worker, summary, size, max_batches, clock, lease_clock)
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

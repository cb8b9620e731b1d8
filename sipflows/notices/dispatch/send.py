"""The send loop: claim a batch, send it through one transport context, hand outcomes to the recorder."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from sipflows.notices.dispatch.claims import LeaseClock, Row, claim, default_worker_id, release
from sipflows.notices.dispatch.messages import build_message, load_context
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


def _takes_before_commit(transport: Transport) -> bool:
    """Whether ``transport.send`` takes ``before_commit`` (the SMTP transport's, unless overridden)."""
    try:
        return "before_commit" in inspect.signature(transport.send).parameters
    except (TypeError, ValueError):
        return False


def _unavailable(exc: BaseException, transport: Transport, settings: Settings) -> TransportUnavailable:
    """Whatever stopped the transport from opening, as ``TransportUnavailable`` (secrets blanked out)."""
    if isinstance(exc, TransportUnavailable):
        return exc
    return TransportUnavailable(transport.name, f"{transport.name} transport", reason_for(exc, settings))


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
    record = Recorder(engine, worker_id, now, settings)
    pipe = Pipeline(record)
    try:
        with engine.connect() as conn:
            ctx = load_context(conn, rows, (settings.organizer(), settings.sender_name))
        messages: list[tuple[Row, OutgoingMessage]] = []
        for row in rows:
            try:
                messages.append((row, build_message(row, ctx, now)))
            except AttachmentError as exc:
                reason = reason_for(exc, settings)
                pipe.failed(row, reason, True)
                pending.discard(row["id"])
                count_failure(summary, row, reason, record.status_after_failure(row, True))
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
                except (TransportUnavailable, RecordingFailed):
                    pending.add(row["id"])  # it did not go: back with the rest, no attempt counted
                    raise
                except Exception as exc:
                    reason = reason_for(exc, settings)
                    permanent = isinstance(exc, PermanentSendError)
                    pipe.failed(row, reason, permanent)
                    count_failure(summary, row, reason, record.status_after_failure(row, permanent))
                else:
                    pipe.sent(row, result)
                    summary.sent += 1
        finally:
            try:
                transport.__exit__(None, None, None)
            except Exception as exc:  # closing is best effort; what was sent is recorded
                log.warning("closing the %s transport failed: %s", transport.name, reason_for(exc, settings))
        pipe.close()
        record.close()
        release(engine, pending, worker_id)
        pending.clear()
    except BaseException as exc:
        try:
            pipe.close()  # what was sent is recorded before anything else happens
        except RecordingFailed as failed:
            log.warning("could not record the last outcomes: %s", reason_for(failed.error, settings))
        record.close()  # a broken connection must not be reused for the release
        if isinstance(exc, TransportUnavailable):
            summary.held_back += len(pending)
        try:
            release(engine, pending, worker_id)
        except Exception:  # the database itself may be what failed; the lease expires anyway
            log.warning(
                "could not release %d claimed notices; they are retried when the lease ends", len(pending)
            )
        if isinstance(exc, RecordingFailed):
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

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
50 outcomes (or what has arrived within 0.2 s), while the next messages are being sent; a run ends only
once all its outcomes are committed.

Three threads share the work (``send``): a producer claims batches and builds their messages (for SMTP
the very bytes of the wire) at most 200 ahead of the sender; the caller's thread holds only the transport's
conversation; the recorder commits outcomes. Over SMTP the producer claims the next batch while the
last messages of the current one go, so a dispatcher holds at most two batches' claims at once; a
process killed then leaves those unsent claims to run out their lease (they are sent on a later run,
once). Other transports get the next batch claimed only once the previous one is sent and recorded.

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

from sipflows.notices.dispatch.claims import LeaseClock, claim, default_worker_id, wall_clock
from sipflows.notices.dispatch.messages import build_message
from sipflows.notices.dispatch.send import dispatch
from sipflows.notices.dispatch.summary import DispatchSummary, Failure, backoff

__all__ = [
    "DispatchSummary",
    "Failure",
    "LeaseClock",
    "backoff",
    "build_message",
    "claim",
    "default_worker_id",
    "dispatch",
    "wall_clock",
]

"""Dispatch: send what the ledger holds, retry with backoff, and show operations what failed and why.

A transport that cannot be used at all (server down, TLS or login refused) fails the run, naming the
transport, host and settings to check; no notice loses an attempt over it. The flow has no retries of
its own: the deployment runs every five minutes, and that is the retry. A failed run stays Failed for
operations staff (and the alert automation) to see, rather than sleeping in AwaitingRetry while it holds
the deployment's concurrency slot. Notices that end dead are announced with a Prefect event
(``sipflows.notices.dead``) that the alert automation turns into a notification.
"""

from __future__ import annotations

from contextlib import suppress
from typing import get_args

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel, Field

from flows._prefect import flow_register, load_settings, prefect_secret, publish, this_run
from sipflows.artifacts import dispatch_artifacts
from sipflows.notices.dispatch import DispatchSummary, dispatch
from sipflows.settings import Settings
from sipflows.transports.base import TransportUnavailable
from sipflows.transports.factory import make_transport

TRANSPORTS: tuple[str, ...] = get_args(Settings.model_fields["transport"].annotation)
DEAD_NOTICES_EVENT = "sipflows.notices.dead"
# The transport slot is leased, not just taken: if the process dies (a serve process or worker killed
# hard), the Prefect server gives the slot back when the lease runs out. 60 s is the shortest lease the
# API accepts; the flow renews it while it runs, and the server's repossessor frees a dead run's slot
# within about 75 s.
TRANSPORT_SLOT_LEASE_SECONDS = 60
# Waiting longer than this means another dispatcher really holds the slot: fail rather than queue up
# behind it (the next scheduled run, five minutes on, tries again).
TRANSPORT_SLOT_WAIT_SECONDS = 240


class DispatchParameters(BaseModel):
    batch_size: int | None = Field(default=None, ge=1, le=5000, description="Default: SIPFLOWS_BATCH_SIZE.")
    max_batches: int | None = Field(default=None, ge=1, description="Stop after this many batches.")


class TransportBusy(RuntimeError):
    """The transport's concurrency slot stayed taken: another dispatcher is using the mail server."""


def transport_limit_name(transport: str) -> str:
    """The global concurrency limit that keeps SMTP or Exchange from being flooded by parallel dispatchers."""
    return f"sipflows-transport-{transport}"


def ensure_transport_limits(slots: int = 1) -> list[str]:
    """Create the per-transport global concurrency limits the dispatch flow takes, where missing.

    Existing limits are left as they are (an operator may have raised them), and quietly: asking the
    server to create what exists makes it log an error with a traceback. Returns the names created.
    """
    created = []
    with get_client(sync_client=True) as client:
        for transport in TRANSPORTS:
            name = transport_limit_name(transport)
            try:
                client.read_global_concurrency_limit_by_name(name)
                continue
            except ObjectNotFound:
                pass
            with suppress(ObjectAlreadyExists):  # another process created it in between
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                created.append(name)
    return created


def _send(
    params: DispatchParameters, settings: Settings
) -> tuple[DispatchSummary, TransportUnavailable | None]:
    _, now = this_run(None)
    with flow_register("dispatch", settings) as engine:
        limit = transport_limit_name(settings.transport)
        holding = False
        try:
            with concurrency(
                limit,
                occupy=1,
                lease_duration=TRANSPORT_SLOT_LEASE_SECONDS,
                timeout_seconds=TRANSPORT_SLOT_WAIT_SECONDS,
            ):
                holding = True
                summary = dispatch(
                    engine,
                    make_transport(settings, prefect_secret),
                    now,
                    settings,
                    batch_size=params.batch_size,
                    max_batches=params.max_batches,
                )
        except TransportUnavailable as exc:
            return (exc.summary or DispatchSummary()), exc
        except TimeoutError:
            if holding:
                raise
            raise TransportBusy(
                f"the concurrency slot {limit} stayed taken for {TRANSPORT_SLOT_WAIT_SECONDS} s: "
                f"another dispatcher is using the {settings.transport} transport (see `prefect gcl "
                f"inspect {limit}`); this run sent nothing"
            ) from None
    return summary, None


@flow(name="sipflows-dispatch")
def dispatch_notices(params: DispatchParameters = DispatchParameters()) -> dict[str, int]:
    """Claim due notices, send them through the configured transport, record sent / failed / dead."""
    logger = get_run_logger()
    settings = load_settings("dispatch")
    summary, outage = _send(params, settings)
    publish(dispatch_artifacts(settings.transport, summary, outage))
    if summary.dead:
        # the alert automation reports this to operations staff; no personal data in the event
        emit_event(
            event=DEAD_NOTICES_EVENT,
            resource={
                "prefect.resource.id": "sipflows.notice-ledger",
                "prefect.resource.name": "notice ledger",
            },
            payload={"dead": summary.dead, "transport": settings.transport},
        )
    if outage is not None:
        logger.error("Dispatch stopped: %s", outage)
        raise outage
    logger.info(
        "Dispatch via %s: %d sent, %d failed, %d dead",
        settings.transport,
        summary.sent,
        summary.failed,
        summary.dead,
    )
    return {"sent": summary.sent, "failed": summary.failed, "dead": summary.dead}

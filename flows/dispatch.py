"""Dispatch: send what the ledger holds, retry with backoff, and show operations what failed and why."""

from __future__ import annotations

from contextlib import suppress
from typing import get_args

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from pydantic import BaseModel, Field

from flows._prefect import load_settings, this_run
from sipflows.db import open_register
from sipflows.notices.dispatch import dispatch
from sipflows.settings import Settings
from sipflows.transports.factory import make_transport

TRANSPORTS: tuple[str, ...] = get_args(Settings.model_fields["transport"].annotation)


class DispatchParameters(BaseModel):
    batch_size: int | None = Field(default=None, ge=1, le=5000, description="Default: SIPFLOWS_BATCH_SIZE.")
    max_batches: int | None = Field(default=None, ge=1, description="Stop after this many batches.")


def transport_limit_name(transport: str) -> str:
    """The global concurrency limit that keeps SMTP or Exchange from being flooded by parallel dispatchers."""
    return f"sipflows-transport-{transport}"


def ensure_transport_limits(slots: int = 1) -> None:
    """Create the per-transport global concurrency limits the dispatch flow takes, where missing."""
    with get_client(sync_client=True) as client:
        for transport in TRANSPORTS:
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=transport_limit_name(transport), limit=slots)
                )


@flow(name="sipflows-dispatch", retries=1, retry_delay_seconds=60)
def dispatch_notices(params: DispatchParameters = DispatchParameters()) -> dict[str, int]:
    """Claim due notices, send them through the configured transport, record sent / failed / dead."""
    logger = get_run_logger()
    settings = load_settings("dispatch")
    _, now = this_run(None)
    engine = open_register(settings.sqlalchemy_url())
    try:
        with concurrency(transport_limit_name(settings.transport), occupy=1):
            summary = dispatch(
                engine,
                make_transport(settings),
                now,
                settings,
                batch_size=params.batch_size,
                max_batches=params.max_batches,
            )
    finally:
        engine.dispose()
    create_table_artifact(
        key="dispatch-summary",
        table=[
            {
                "transport": settings.transport,
                "sent": summary.sent,
                "failed": summary.failed,
                "dead": summary.dead,
            }
        ],
        description="Notices sent, failed (will be retried) and dead (gave up) in this run",
    )
    dead = set(summary.dead_ids)
    failures = [
        {
            "notice": f.notice_id,
            "kind": f.kind,
            "status": "dead" if f.notice_id in dead else "failed (will retry)",
            "reason": f.reason,
        }
        for f in summary.failures
    ]
    if failures:
        create_table_artifact(
            key="dispatch-failures",
            table=failures,
            description="Each failed notice and why (dead ones need a person: fix the address and requeue)",
        )
        create_markdown_artifact(
            key="dispatch-attention",
            markdown=(
                f"**{summary.failed} failed, {summary.dead} dead** in this run: see `dispatch-failures`."
            ),
        )
    logger.info(
        "Dispatch via %s: %d sent, %d failed, %d dead",
        settings.transport,
        summary.sent,
        summary.failed,
        summary.dead,
    )
    return {"sent": summary.sent, "failed": summary.failed, "dead": summary.dead}

"""Replies: invitation answers (Exchange, Graph, IMAP, a folder of .eml files) into the register."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows._prefect import flow_register, load_settings, prefect_secret, publish, this_run
from sipflows.artifacts import replies_artifacts, replies_table
from sipflows.replies import PartialIngestError, ReplySummary, ingest_configured


class RepliesParameters(BaseModel):
    calendar_lookback_days: int = Field(
        default=90,
        ge=1,
        le=365,
        description="How far back to read the attendee responses Exchange or Microsoft Graph track: "
        "meetings that ended within this many days, and all later ones.",
    )


@flow(name="sipflows-replies")
def ingest_replies(params: RepliesParameters = RepliesParameters()) -> dict[str, int]:
    """Read every configured answer source. A message that cannot be answered from is set aside and
    counted, never stops the run; a source that cannot be read fails the run after the others ran."""
    settings = load_settings("replies")
    _, now = this_run(None)
    logger = get_run_logger()
    with flow_register("replies", settings) as engine:
        try:
            summaries = ingest_configured(
                engine,
                settings,
                now,
                since=now - timedelta(days=params.calendar_lookback_days),
                secret_loader=prefect_secret,
            )
        except PartialIngestError as exc:
            logger.error("Replies: a source failed: %s", exc)
            publish(replies_artifacts(exc.summaries))
            raise
    publish(replies_artifacts(summaries))
    table = replies_table(summaries)
    logger.info("Replies: %s", table)
    total = sum(summaries.values(), ReplySummary())
    return {"matched": total.matched, "applied": total.applied, "set_aside": total.rejected}

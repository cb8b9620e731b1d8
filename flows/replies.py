"""Replies: invitation answers from Exchange, an IMAP mailbox or a folder of .eml files into the register."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from flows._prefect import load_settings, open_flow_register, this_run
from sipflows.replies import ingest_configured


class RepliesParameters(BaseModel):
    exchange_lookback_days: int = Field(
        default=90, ge=1, le=365, description="How far back to read Exchange attendee responses."
    )


@flow(name="sipflows-replies")
def ingest_replies(params: RepliesParameters = RepliesParameters()) -> dict[str, int]:
    """Read every configured answer source; unknown or malformed answers are logged and skipped."""
    settings = load_settings("replies")
    _, now = this_run(None)
    engine = open_flow_register("replies", settings)
    try:
        summaries = ingest_configured(
            engine, settings, now, since=now - timedelta(days=params.exchange_lookback_days)
        )
    finally:
        engine.dispose()
    table = [{"source": name, **s.as_dict()} for name, s in summaries.items()] or [
        {"source": "none configured", "matched": 0, "unknown": 0, "malformed": 0}
    ]
    create_table_artifact(
        key="replies-summary", table=table, description="Invitation answers read in this run"
    )
    get_run_logger().info("Replies: %s", table)
    return {"matched": sum(s.matched for s in summaries.values())}

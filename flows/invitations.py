"""Invitations: calendar requests for booked meetings, updates for moved ones, cancellations otherwise."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from sqlalchemy.orm import Session

from flows._prefect import flow_register, load_settings, this_run
from sipflows.notices.invitations import sync_invitations


@flow(name="sipflows-invitations")
def sync_meeting_invitations() -> dict[str, int]:
    """Queue REQUEST/CANCEL notices for every invitee whose calendar is behind the meeting (idempotent)."""
    settings = load_settings("invitations")
    _, now = this_run(None)
    with (
        flow_register("invitations", settings) as engine,
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        summary = sync_invitations(session, now, settings)
    counts = {k: int(v) for k, v in asdict(summary).items() if isinstance(v, int)}
    create_table_artifact(
        key="invitations-summary",
        table=[counts],
        description="Calendar notices queued in this run (requests, updates, cancellations)",
    )
    get_run_logger().info("Invitations queued: %s", counts)
    return counts

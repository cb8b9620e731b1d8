"""Invitations: calendar requests for booked meetings, updates for moved ones, cancellations otherwise."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows._prefect import flow_register, load_settings, publish, this_run
from sipflows.artifacts import invitation_counts, invitations_artifacts
from sipflows.db import session_scope
from sipflows.notices.invitations import sync_invitations


@flow(name="sipflows-invitations")
def sync_meeting_invitations() -> dict[str, int]:
    """Queue REQUEST/CANCEL notices for every invitee whose calendar is behind the meeting (idempotent)."""
    settings = load_settings("invitations")
    _, now = this_run(None)
    with flow_register("invitations", settings) as engine, session_scope(engine) as session:
        summary = sync_invitations(session, now, settings)
    publish(invitations_artifacts(summary))
    counts = invitation_counts(summary)
    get_run_logger().info("Invitations queued: %s", counts)
    return counts

"""Daily sweep: every check for the run's date, their notices into the ledger, artifacts for operations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows._prefect import (
    check_policy_organisations,
    flow_register,
    flow_run_id,
    load_effective_policy,
    load_settings,
    publish,
    this_run,
)
from sipflows.artifacts import sweep_artifacts, sweep_skipped
from sipflows.checks import ALL_CHECKS
from sipflows.sweep import judges_nothing, run_sweep, unknown_checks

CHECK_NAMES = [c.NAME for c in ALL_CHECKS]


class SweepParameters(BaseModel):
    """Leave the date empty for scheduled runs: the date is the scheduled start's local date."""

    date: dt.date | None = Field(
        default=None, description="Local date to judge (Europe/Stockholm), for replays and backfills."
    )
    checks: list[str] | None = Field(
        default=None, description=f"Run only these checks (default all): {', '.join(CHECK_NAMES)}."
    )


@flow(name="sipflows-daily-sweep", log_prints=False)
def daily_sweep(params: SweepParameters = SweepParameters()) -> dict[str, Any]:
    """Find what is late or due and enqueue one notice per finding and recipient (never twice)."""
    logger = get_run_logger()
    settings = load_settings("daily-sweep")
    policy = load_effective_policy("daily-sweep", settings)
    judged, now = this_run(params.date)
    unknown = unknown_checks(params.checks)
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {CHECK_NAMES}")
    # the register is checked on holidays too: a missing one must not hide behind a skipped day
    with flow_register("daily-sweep", settings) as engine:
        check_policy_organisations("daily-sweep", engine, policy)
        if judges_nothing(judged, scheduled=params.date is None):
            logger.info("%s is not a Swedish working day: nothing to judge", judged)
            publish(sweep_skipped(judged))
            return {"findings": 0, "enqueued": 0, "per_check": {}}
        result = run_sweep(
            engine, judged, policy, now, settings, only=params.checks, flow_run_id=flow_run_id()
        )
    publish(sweep_artifacts(result, judged, policy))
    logger.info(
        "Sweep of %s: %d findings, %d new notices enqueued", judged, result.total_findings, result.enqueued
    )
    per_check = {check: len(found) for check, found in result.findings.items()}
    return {"findings": result.total_findings, "enqueued": result.enqueued, "per_check": per_check}

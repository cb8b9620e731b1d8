"""Weekly report: last week's figures as artifacts, and the report mailed to report recipients (once)."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows._prefect import (
    check_policy_organisations,
    flow_register,
    load_effective_policy,
    load_settings,
    publish,
    this_run,
)
from sipflows.artifacts import weekly_report_artifacts
from sipflows.report import last_week_ending, weekly_report
from sipflows.timeutil import local_date


class WeeklyReportParameters(BaseModel):
    week_ending: dt.date | None = Field(
        default=None, description="Last day (Sunday) of the week to report; default: the week before the run."
    )


@flow(name="sipflows-weekly-report")
def weekly_report_flow(params: WeeklyReportParameters = WeeklyReportParameters()) -> dict[str, int]:
    """Aggregates only: no plan reference, no person, in the artifacts, the folder or the mail."""
    settings = load_settings("weekly-report")
    policy = load_effective_policy("weekly-report", settings)
    _, now = this_run(None)
    week_ending = params.week_ending or last_week_ending(local_date(now))
    with flow_register("weekly-report", settings) as engine:
        check_policy_organisations("weekly-report", engine, policy)
        report = weekly_report(
            engine,
            week_ending,
            settings.reports_dir,
            settings,
            policy,
            now,
            language=settings.report_language,
        )
    publish(weekly_report_artifacts(report.stats, settings.report_language, week_ending))
    get_run_logger().info(
        "Weekly report for %s written to %s; %d mails enqueued for %d recipients",
        week_ending,
        report.folder,
        report.enqueued,
        report.recipients,
    )
    return {"recipients": report.recipients, "enqueued": report.enqueued}

"""Every artifact the flows publish, built here without Prefect: tables and Markdown for operations staff.

A flow runs the work, hands the result to a builder below and publishes what it gets back
(``flows._prefect.publish``), so what operations see is tested without a Prefect server. Nothing here
holds a person or message content: plan references, notice kinds, counts, reasons and settings' names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sipflows.notices.dispatch import DispatchSummary
from sipflows.notices.invitations import SyncSummary
from sipflows.policy import EffectivePolicy
from sipflows.replies import ReplySummary
from sipflows.stats import ReportStats
from sipflows.sweep import SweepResult
from sipflows.transports.base import TransportUnavailable

Table = list[dict[str, Any]]


@dataclass(frozen=True)
class TableArtifact:
    key: str
    table: Table
    description: str | None = None


@dataclass(frozen=True)
class MarkdownArtifact:
    key: str
    markdown: str
    description: str | None = None


Artifact = TableArtifact | MarkdownArtifact


# ------------------------------------------------------------------------------------ shared by every flow


def configuration_error(flow_key: str, what: str, detail: str, verb: str = "is invalid") -> MarkdownArtifact:
    """Why a run stopped before doing anything (settings, register or policy)."""
    return MarkdownArtifact(
        key=f"{flow_key}-configuration-error",
        markdown=f"# {what} {verb}\n\nThe run stopped before doing anything.\n\n```\n{detail}\n```\n",
        description=f"{what} {verb}",
    )


def policy_markdown(policy: EffectivePolicy) -> str:
    lines = ["| scope | key | value | source |", "|---|---|---|---|"]
    lines += [
        f"| {scope} | `{key}` | {value} | {source} |" for scope, key, value, source in policy.describe()
    ]
    return "\n".join(lines)


def policy_artifact(flow_key: str, policy: EffectivePolicy) -> MarkdownArtifact:
    return MarkdownArtifact(
        key=f"{flow_key}-policy",
        markdown="# Deadline policy used by this run\n\n" + policy_markdown(policy),
        description="The effective deadline policy and where each value came from",
    )


def policy_log_lines(policy: EffectivePolicy) -> list[str]:
    """The effective policy as the run's log shows it, one value a line."""
    return [f"{scope} {key}={value} ({source})" for scope, key, value, source in policy.describe()]


# ------------------------------------------------------------------------------------------- daily sweep


def sweep_counts_table(result: SweepResult) -> Table:
    rows = [{"check": c, "stage": s, "findings": n} for (c, s), n in sorted(result.counts().items())]
    for check, found in sorted(result.findings.items()):
        if not found:
            rows.append({"check": check, "stage": "-", "findings": 0})
    return rows


def enqueued_table(result: SweepResult) -> Table:
    return [
        {"reference": e.reference, "kind": e.kind, "recipient organisation": e.recipient_organisation}
        for e in result.enqueued_notices
    ]


def sweep_skipped(judged: date) -> list[Artifact]:
    """A day that is not a working day: the sweep judged nothing."""
    return [
        MarkdownArtifact(
            key="daily-sweep-counts",
            markdown=f"{judged.isoformat()} is not a working day: the sweep skipped it.",
        )
    ]


def sweep_artifacts(result: SweepResult, judged: date, policy: EffectivePolicy) -> list[Artifact]:
    """The findings per check and stage, the notices enqueued and the policy the sweep used."""
    return [
        TableArtifact(
            key="daily-sweep-counts",
            table=sweep_counts_table(result),
            description=f"Findings per check and stage for {judged.isoformat()}",
        ),
        TableArtifact(
            key="daily-sweep-notices",
            table=enqueued_table(result)
            or [{"reference": "-", "kind": "nothing new", "recipient organisation": "-"}],
            description=f"Notices enqueued by the sweep of {judged.isoformat()} (no personal data)",
        ),
        policy_artifact("daily-sweep", policy),
    ]


# ---------------------------------------------------------------------------------------------- dispatch


def dispatch_artifacts(
    transport: str, summary: DispatchSummary, outage: TransportUnavailable | None
) -> list[Artifact]:
    """The run's counts; each failure and why, when there are any; what to check when the transport is out."""
    out: list[Artifact] = [
        TableArtifact(
            key="dispatch-summary",
            table=[
                {
                    "transport": transport,
                    "sent": summary.sent,
                    "failed": summary.failed,
                    "dead": summary.dead,
                    "waiting for the transport": summary.held_back,
                }
            ],
            description="Notices sent, failed (will be retried), dead (gave up) and given back untouched",
        )
    ]
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
        attention = f"**{summary.failed} failed, {summary.dead} dead** in this run: see `dispatch-failures`."
        out += [
            TableArtifact(
                key="dispatch-failures",
                table=failures,
                description="Each failed notice and why (dead ones need a person: fix the address and "
                "requeue)",
            ),
            MarkdownArtifact(key="dispatch-attention", markdown=attention),
        ]
    if outage is not None:
        settings_list = "\n".join(f"- `{name}`" for name in outage.settings) or "- the transport's settings"
        markdown = (
            f"# The {outage.transport} transport cannot be used\n\n"
            f"**{outage.where}**: {outage.reason}\n\n"
            f"{summary.sent} notices were sent before it stopped. {summary.held_back} claimed notices "
            "were given back untouched: no attempt was counted, and the next dispatch sends them "
            "once the transport works again.\n\n"
            f"Check:\n{settings_list}\n"
        )
        out.append(
            MarkdownArtifact(
                key="dispatch-outage",
                markdown=markdown,
                description=f"The {outage.transport} transport cannot be used",
            )
        )
    return out


# ------------------------------------------------------------------------------------------- invitations


def invitation_counts(summary: SyncSummary) -> dict[str, int]:
    return {k: int(v) for k, v in asdict(summary).items() if isinstance(v, int)}


def invitations_artifacts(summary: SyncSummary) -> list[Artifact]:
    return [
        TableArtifact(
            key="invitations-summary",
            table=[invitation_counts(summary)],
            description="Calendar notices queued in this run (requests, updates, cancellations)",
        )
    ]


# ----------------------------------------------------------------------------------------------- replies


def replies_table(summaries: Mapping[str, ReplySummary]) -> Table:
    """One row per answer source (a placeholder row when none is configured)."""
    return [{"source": name, **s.as_dict()} for name, s in summaries.items()] or [
        {"source": "none configured", **ReplySummary().as_dict()}
    ]


def replies_artifacts(summaries: Mapping[str, ReplySummary]) -> list[Artifact]:
    """The answers read per source; the messages set aside for a person, by place and reason only."""
    out: list[Artifact] = [
        TableArtifact(
            key="replies-summary",
            table=replies_table(summaries),
            description="Invitation answers read in this run",
        )
    ]
    set_aside = [
        {"source": name, "message": item.where, "reason": item.reason}
        for name, s in summaries.items()
        for item in s.set_aside
    ]
    if set_aside:
        out.append(
            TableArtifact(
                key="replies-set-aside",
                table=set_aside,
                description="Messages set aside for a person to look at (IMAP: the rejected folder; "
                "folder: rejected/ with a .reason file). No message content is shown.",
            )
        )
    return out


# ----------------------------------------------------------------------------------------- weekly report


def weekly_report_artifacts(stats: ReportStats, language: str, week_ending: date) -> list[Artifact]:
    """The week's key figures as Markdown and every figure as a table: aggregates only."""
    # imported here, not above: the report loads matplotlib, which the other flows have no use for
    from sipflows.report.page import markdown_summary, table_rows

    return [
        MarkdownArtifact(
            key="weekly-report-summary",
            markdown=markdown_summary(stats, language, weekly=True),
            description=f"SIP figures for the week ending {week_ending.isoformat()}",
        ),
        TableArtifact(
            key="weekly-report-figures",
            table=table_rows(stats, language),
            description="Every figure of the weekly report",
        ),
    ]

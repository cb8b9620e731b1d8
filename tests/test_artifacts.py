"""The artifacts the flows publish, built without Prefect (the flows only hand them to Prefect)."""

from __future__ import annotations

from datetime import date

from sipflows.artifacts import (
    MarkdownArtifact,
    TableArtifact,
    configuration_error,
    dispatch_artifacts,
    invitation_counts,
    invitations_artifacts,
    policy_artifact,
    policy_log_lines,
    replies_artifacts,
    replies_table,
    sweep_artifacts,
    sweep_skipped,
)
from sipflows.checks.base import Finding
from sipflows.notices.dispatch import DispatchSummary, Failure
from sipflows.notices.invitations import SyncSummary
from sipflows.policy import default_policy
from sipflows.replies import ReplySummary
from sipflows.replies.answers import SetAside
from sipflows.sweep import EnqueuedNotice, SweepResult
from sipflows.transports.base import TransportUnavailable

DAY = date(2026, 11, 24)


def _finding(check: str, stage: str, object_id: int) -> Finding:
    return Finding(check, stage, "meeting", object_id, 1, "SIP-1", (1,), DAY)


def test_configuration_error_says_what_and_why():
    art = configuration_error("daily-sweep", "The register", "no such file", verb="cannot be used")
    assert art == MarkdownArtifact(
        key="daily-sweep-configuration-error",
        markdown="# The register cannot be used\n\nThe run stopped before doing anything.\n\n"
        "```\nno such file\n```\n",
        description="The register cannot be used",
    )


def test_policy_artifact_and_log_lines_show_every_value_and_its_source():
    policy = default_policy()
    art = policy_artifact("daily-sweep", policy)
    assert art.key == "daily-sweep-policy"
    assert art.markdown.startswith("# Deadline policy used by this run\n\n| scope | key | value | source |")
    rows = policy.describe()
    assert len(policy_log_lines(policy)) == len(rows) > 0
    scope, key, value, source = rows[0]
    assert f"| {scope} | `{key}` | {value} | {source} |" in art.markdown
    assert policy_log_lines(policy)[0] == f"{scope} {key}={value} ({source})"


def test_sweep_artifacts_fold_stages_and_list_checks_with_nothing_found():
    result = SweepResult(
        judged=DAY,
        findings={
            "documentation": [
                _finding("documentation", "escalation-1", 1),
                _finding("documentation", "escalation-2", 2),
            ],
            "follow_up": [],
        },
        enqueued=1,
        enqueued_notices=[EnqueuedNotice("SIP-1", "documentation.escalation", "Köpings kommun")],
    )
    counts, notices, policy = sweep_artifacts(result, DAY, default_policy())
    assert isinstance(counts, TableArtifact) and isinstance(notices, TableArtifact)
    assert (counts.key, notices.key, policy.key) == (
        "daily-sweep-counts",
        "daily-sweep-notices",
        "daily-sweep-policy",
    )
    assert counts.table == [
        {"check": "documentation", "stage": "escalation", "findings": 2},
        {"check": "follow_up", "stage": "-", "findings": 0},
    ]
    assert notices.table == [
        {"reference": "SIP-1", "kind": "documentation.escalation", "recipient organisation": "Köpings kommun"}
    ]
    assert "2026-11-24" in (notices.description or "")


def test_a_sweep_that_enqueued_nothing_says_so_and_a_holiday_is_skipped():
    result = SweepResult(judged=DAY, findings={}, enqueued=0)
    _, notices, _ = sweep_artifacts(result, DAY, default_policy())
    assert isinstance(notices, TableArtifact)
    assert notices.table == [{"reference": "-", "kind": "nothing new", "recipient organisation": "-"}]
    [skipped] = sweep_skipped(date(2026, 12, 25))
    assert skipped == MarkdownArtifact(
        key="daily-sweep-counts", markdown="2026-12-25 is not a working day: the sweep skipped it."
    )


def test_dispatch_artifacts_count_and_list_failures_dead_apart():
    summary = DispatchSummary(
        sent=3,
        failed=2,
        dead=1,
        failures=[
            Failure(7, "k7", "documentation.overdue", "550 no such user"),
            Failure(8, "k8", "x", "timeout"),
        ],
        dead_ids=[7],
    )
    table, failures, attention = dispatch_artifacts("smtp", summary, None)
    assert isinstance(table, TableArtifact) and isinstance(failures, TableArtifact)
    assert table.table == [
        {"transport": "smtp", "sent": 3, "failed": 2, "dead": 1, "waiting for the transport": 0}
    ]
    assert [row["status"] for row in failures.table] == ["dead", "failed (will retry)"]
    assert failures.table[0] == {
        "notice": 7,
        "kind": "documentation.overdue",
        "status": "dead",
        "reason": "550 no such user",
    }
    assert attention == MarkdownArtifact(
        key="dispatch-attention", markdown="**2 failed, 1 dead** in this run: see `dispatch-failures`."
    )


def test_a_clean_dispatch_publishes_its_counts_only_and_an_outage_names_the_settings():
    assert [a.key for a in dispatch_artifacts("smtp", DispatchSummary(sent=1), None)] == ["dispatch-summary"]
    outage = TransportUnavailable("smtp", "mail.example.se:587", "connection refused", ["SIPFLOWS_SMTP_HOST"])
    arts = dispatch_artifacts("smtp", DispatchSummary(sent=2, held_back=5), outage)
    assert [a.key for a in arts] == ["dispatch-summary", "dispatch-outage"]
    text = arts[1]
    assert isinstance(text, MarkdownArtifact)
    assert text.markdown.startswith(
        "# The smtp transport cannot be used\n\n**mail.example.se:587**: connection"
    )
    assert "2 notices were sent before it stopped. 5 claimed notices" in text.markdown
    assert text.markdown.endswith("Check:\n- `SIPFLOWS_SMTP_HOST`\n")


def test_invitations_artifact_counts_what_was_queued():
    summary = SyncSummary(invitations=2, updates=1, cancels=0, skipped=3)
    assert invitation_counts(summary) == {"invitations": 2, "updates": 1, "cancels": 0, "skipped": 3}
    [art] = invitations_artifacts(summary)
    assert art == TableArtifact(
        key="invitations-summary",
        table=[invitation_counts(summary)],
        description="Calendar notices queued in this run (requests, updates, cancellations)",
    )


def test_replies_artifacts_per_source_and_set_aside_without_content():
    assert replies_table({}) == [{"source": "none configured", **ReplySummary().as_dict()}]
    assert [a.key for a in replies_artifacts({"folder": ReplySummary(messages=1, applied=1)})] == [
        "replies-summary"
    ]
    imap = ReplySummary(
        messages=2, rejected=1, malformed=1, set_aside=[SetAside("uid 17", "not a calendar reply")]
    )
    summary, aside = replies_artifacts({"imap": imap})
    assert isinstance(summary, TableArtifact) and isinstance(aside, TableArtifact)
    assert summary.table == [{"source": "imap", **imap.as_dict()}]
    assert aside.table == [{"source": "imap", "message": "uid 17", "reason": "not a calendar reply"}]

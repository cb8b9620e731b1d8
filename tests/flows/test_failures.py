"""Failure is loud: every flow fails (never a green run) and says what to fix, and nothing is lost.

Under the Prefect test harness: a register that is not there, an unreachable PostgreSQL, a wrong setting,
a policy override for an organisation the register lacks, and a mail server that is down.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from sqlalchemy import select

from flows.daily_sweep import SweepParameters, daily_sweep
from flows.dispatch import dispatch_notices
from flows.invitations import sync_meeting_invitations
from flows.replies import ingest_replies
from flows.weekly_report import WeeklyReportParameters, weekly_report_flow
from sipflows.models import Notice, NoticeStatus
from tests.flows.test_flows import _register_with_late_documentation, latest_artifact

FLOWS: dict[str, Callable[[], Any]] = {
    "daily-sweep": lambda: daily_sweep(SweepParameters(date=date(2026, 11, 19)), return_state=True),
    "invitations": lambda: sync_meeting_invitations(return_state=True),
    "dispatch": lambda: dispatch_notices(return_state=True),
    "replies": lambda: ingest_replies(return_state=True),
    "weekly-report": lambda: weekly_report_flow(
        WeeklyReportParameters(week_ending=date(2026, 11, 22)), return_state=True
    ),
}


def _settings_changed(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    from sipflows.settings import get_settings

    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_logs(flow_run_id: Any, containing: str, timeout: float = 15) -> list[str]:
    """The run's log lines (they reach the API in batches: wait for the one we look for)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        lines = [log.message for log in logs]
        if any(containing in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


@pytest.mark.parametrize("key", sorted(FLOWS))
def test_every_flow_fails_on_a_register_that_is_not_there(key, flow_env, tmp_path: Path, monkeypatch):
    missing = tmp_path / "gone" / "sipflows.sqlite"
    _settings_changed(monkeypatch, SIPFLOWS_DATABASE_URL=f"sqlite:///{missing}")
    state = FLOWS[key]()
    assert state.is_failed()
    assert "SIPFLOWS_DATABASE_URL" in state.message and "sipflows db upgrade" in state.message
    artifact = str(latest_artifact(f"{key}-configuration-error").data)
    assert "The register cannot be used" in artifact and str(missing) in artifact
    assert not missing.exists() and not missing.parent.exists()


def test_an_unreachable_postgresql_fails_the_run_without_its_password(flow_env, monkeypatch):
    url = f"postgresql+psycopg://sip:Hemligt-pg-5521@127.0.0.1:{closed_port()}/sip"
    _settings_changed(monkeypatch, SIPFLOWS_DATABASE_URL=url)
    state = sync_meeting_invitations(return_state=True)
    assert state.is_failed() and "cannot reach the register" in state.message
    artifact = str(latest_artifact("invitations-configuration-error").data)
    assert "postgresql+psycopg://sip:***@127.0.0.1" in artifact and "SIPFLOWS_DATABASE_URL" in artifact
    assert "Hemligt-pg-5521" not in artifact + state.message
    logs = run_logs(state.state_details.flow_run_id, "Register:")
    assert any("Register: postgresql+psycopg://sip:***@127.0.0.1" in line for line in logs)
    assert not any("Hemligt-pg-5521" in line for line in logs)


def test_each_run_logs_the_register_it_uses(flow_env):
    state = ingest_replies(return_state=True)
    assert state.is_completed()
    logs = run_logs(state.state_details.flow_run_id, "Register:")
    assert f"Register: {flow_env['SIPFLOWS_DATABASE_URL'].split('?')[0]}" in "\n".join(logs)


def test_a_wrong_setting_fails_the_run_naming_the_environment_variable(flow_env, monkeypatch):
    _settings_changed(monkeypatch, SIPFLOWS_SMTP_PORT="twenty-five")
    state = dispatch_notices(return_state=True)
    assert state.is_failed()
    artifact = str(latest_artifact("dispatch-configuration-error").data)
    assert "SIPFLOWS_SMTP_PORT: Input should be a valid integer" in artifact
    assert "smtp_port" not in artifact


def test_an_override_for_an_unknown_organisation_fails_the_sweep(
    flow_env, build, session, tmp_path, monkeypatch
):
    _register_with_late_documentation(build, session)
    policy = tmp_path / "policy.toml"
    policy.write_text('[organisations."KOP-IF0".documentation]\ndue_working_days = 3\n')
    _settings_changed(monkeypatch, SIPFLOWS_POLICY_FILE=str(policy))
    state = daily_sweep(SweepParameters(date=date(2026, 11, 19)), return_state=True)
    assert state.is_failed()
    artifact = str(latest_artifact("daily-sweep-configuration-error").data)
    assert "organisations.KOP-IF0: no organisation with this code in the register" in artifact
    assert "did you mean KOP-IFO?" in artifact
    assert session.scalar(select(Notice.id).limit(1)) is None  # nothing was enqueued


def test_a_mail_server_that_is_down_fails_the_dispatch_run_and_costs_no_attempt(
    flow_env, build, session, monkeypatch
):
    _register_with_late_documentation(build, session)
    daily_sweep(SweepParameters(date=date(2026, 11, 19)))
    port = closed_port()
    _settings_changed(
        monkeypatch,
        SIPFLOWS_TRANSPORT="smtp",
        SIPFLOWS_SMTP_HOST="127.0.0.1",
        SIPFLOWS_SMTP_PORT=str(port),
        SIPFLOWS_SMTP_USERNAME="sip",
        SIPFLOWS_SMTP_PASSWORD="hemligt-lösenord-123",
        SIPFLOWS_SMTP_TIMEOUT="2",
    )
    state = dispatch_notices(return_state=True)

    assert state.is_failed()
    assert f"SMTP 127.0.0.1:{port}" in state.message
    assert "check SIPFLOWS_SMTP_HOST, SIPFLOWS_SMTP_PORT" in state.message
    outage = str(latest_artifact("dispatch-outage").data)
    assert "The smtp transport cannot be used" in outage and "`SIPFLOWS_SMTP_HOST`" in outage
    summary = latest_artifact("dispatch-summary").data
    assert "waiting for the transport" in str(summary)
    for text in (state.message, outage, str(summary)):
        assert "hemligt-lösenord-123" not in text
    session.expire_all()
    notices = session.scalars(select(Notice)).all()
    assert notices and {(n.status, n.attempts, n.last_error) for n in notices} == {
        (NoticeStatus.PENDING, 0, None)
    }


def test_a_transport_slot_held_by_another_dispatcher_fails_the_run_after_a_bounded_wait(
    flow_env, build, session, monkeypatch
):
    import flows.dispatch as dispatch_flow

    _register_with_late_documentation(build, session)
    daily_sweep(SweepParameters(date=date(2026, 11, 19)))
    dispatch_flow.ensure_transport_limits()
    monkeypatch.setattr(dispatch_flow, "TRANSPORT_SLOT_WAIT_SECONDS", 3)
    with get_client(sync_client=True) as client:  # another dispatcher holds the outbox's only slot
        taken = client.increment_concurrency_slots_with_lease(
            names=["sipflows-transport-outbox"], slots=1, mode="concurrency", lease_duration=60
        )
        try:
            state = dispatch_notices(return_state=True)
        finally:
            client.release_concurrency_slots_with_lease(taken.json()["lease_id"])
    assert state.is_failed()
    assert "sipflows-transport-outbox stayed taken for 3 s" in state.message
    session.expire_all()
    assert {n.status for n in session.scalars(select(Notice))} == {NoticeStatus.PENDING}  # nothing claimed
    assert dispatch_notices()["sent"] >= 1  # the slot is free again: the next run sends

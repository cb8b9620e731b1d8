"""prefect.yaml: every entrypoint imports and is a flow, every schedule parses with its timezone."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prefect.schedules import Cron

from deployments.serve import PREFECT_YAML, build_deployments, load_entrypoint, load_prefect_yaml

CONFIG = load_prefect_yaml()
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}


def test_every_flow_has_a_deployment():
    assert set(DEPLOYMENTS) == {"daily-sweep", "invitations", "dispatch", "replies", "weekly-report"}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_entrypoint_imports_and_is_a_flow(name):
    flow = load_entrypoint(DEPLOYMENTS[name]["entrypoint"], PREFECT_YAML.parent)
    assert flow.name.startswith("sipflows-")
    # pydantic parameter models render as forms: the schema must name them
    assert flow.parameters.model_dump()["type"] == "object"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_schedules_are_cron_in_stockholm_and_never_overlap(name):
    spec = DEPLOYMENTS[name]
    assert spec["schedules"], name
    for schedule in spec["schedules"]:
        assert schedule["timezone"] == "Europe/Stockholm"
        ZoneInfo(schedule["timezone"])
        cron = Cron(schedule["cron"], timezone=schedule["timezone"])
        assert cron.timezone == "Europe/Stockholm"
    assert spec["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert spec["work_pool"]["name"] == "sipflows"


def _next_runs(spec: dict, start: datetime, n: int) -> list[datetime]:
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule

    schedule = CronSchedule(cron=spec["cron"], timezone=spec["timezone"])
    return asyncio.run(schedule.get_dates(n=n, start=start))


def test_sweep_runs_on_weekday_mornings_and_report_on_monday():
    tz = ZoneInfo("Europe/Stockholm")
    friday_noon = datetime(2026, 11, 20, 12, tzinfo=tz)
    runs = [d.astimezone(tz) for d in _next_runs(DEPLOYMENTS["daily-sweep"]["schedules"][0], friday_noon, 5)]
    assert [d.weekday() for d in runs] == [0, 1, 2, 3, 4]
    assert all(d.hour == 6 and d.minute == 30 for d in runs)
    # across the DST change the local time stays 06:30
    spring = [
        d.astimezone(tz)
        for d in _next_runs(
            DEPLOYMENTS["daily-sweep"]["schedules"][0], datetime(2026, 3, 27, 12, tzinfo=tz), 2
        )
    ]
    assert [(d.day, d.hour) for d in spring] == [(30, 6), (31, 6)]
    report = [
        d.astimezone(tz) for d in _next_runs(DEPLOYMENTS["weekly-report"]["schedules"][0], friday_noon, 2)
    ]
    assert all(d.weekday() == 0 and d.hour == 7 for d in report)


def test_no_pull_step_bakes_in_a_local_path():
    text = PREFECT_YAML.read_text()
    assert str(Path.cwd()) not in text and "/work/" not in text and "/home/" not in text
    assert CONFIG["pull"] == [{"deployments.steps.enter_sipflows_home": {}}]  # reads $SIPFLOWS_HOME


def test_worker_runs_send_heartbeats_often_enough_for_the_silent_runs_automation():
    env = CONFIG["definitions"]["work_pools"]["sipflows_pool"]["job_variables"]["env"]
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) * 3 <= 120  # three beats within its window
    assert all(d["work_pool"]["job_variables"]["env"] == env for d in CONFIG["deployments"])


def test_definitions_are_anchored_and_shared():
    text = PREFECT_YAML.read_text()
    assert "definitions:" in text and "&sipflows_pool" in text and "*sipflows_pool" in text


def test_serve_builds_a_deployment_per_entry():
    deployments = build_deployments()
    assert sorted(d.name for d in deployments) == sorted(DEPLOYMENTS)
    for d in deployments:
        assert d.schedules and all(s.schedule.timezone == "Europe/Stockholm" for s in d.schedules)
        assert d.concurrency_limit == 1 or getattr(d.concurrency_limit, "limit", None) == 1


def test_transport_limits_are_created_once_with_one_slot(prefect_harness):
    from prefect.client.orchestration import get_client

    from flows.dispatch import TRANSPORTS, ensure_transport_limits, transport_limit_name

    ensure_transport_limits()
    ensure_transport_limits()  # idempotent: a restarted serve process finds them in place
    with get_client(sync_client=True) as client:
        limits = {
            t: client.read_global_concurrency_limit_by_name(transport_limit_name(t)) for t in TRANSPORTS
        }
    assert set(TRANSPORTS) == {"outbox", "smtp", "exchange", "graph"}
    assert {t: (lim.name, lim.limit, lim.active) for t, lim in limits.items()} == {
        t: (f"sipflows-transport-{t}", 1, True) for t in TRANSPORTS
    }

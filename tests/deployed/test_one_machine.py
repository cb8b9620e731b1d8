"""README's "One machine": a real Prefect server and ``python -m deployments.serve``, as operators run them.

Asserts what the scheduler did (future scheduled runs for every deployment, created by the server's own
scheduler), that the deployments carry prefect.yaml's schedules and overlap rules, that manual runs reach
Completed, that the Prefect CLI's list commands work, and — with a real SMTP server stopped and started
again and a local webhook standing in for Teams — that an outage fails the dispatch run loudly, that dead
notices are announced, and that restarting serve is quiet.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from deployments.serve import build_deployments, load_prefect_yaml
from sipflows.db import make_engine
from sipflows.models import Notice, NoticeStatus
from sipflows.notices.ledger import NoticeDraft, enqueue
from tests.deployed.conftest import BIN, Deployed, WebhookReceiver
from tests.deployed.readme import ONE_MACHINE, README_PORT, words
from tests.smtp_server import start_smtp_server

PYTHON = sys.executable
DEPLOYMENTS = {d["name"]: d for d in load_prefect_yaml()["deployments"]}
FLOW_NAMES = {d.name: d.flow_name for d in build_deployments()}


def command(line: str, port: int) -> list[str]:
    """A README line as the test runs it: the server's port, this venv's executables."""
    argv = words(line.replace(README_PORT, str(port)))
    if argv[0] in ("prefect", "sipflows"):
        argv[0] = str(BIN / argv[0])
    elif argv[0] == "python":
        argv[0] = PYTHON
    return argv


def wait_for_text(process, text: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.text():
        assert process.running(), f"{process.name} exited:\n{process.text()[-4000:]}"
        assert time.monotonic() < deadline, f"{process.name}: no {text!r} after {timeout} s"
        time.sleep(0.5)


def future_scheduled_runs(deployed: Deployed) -> dict[str, int]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    counts = {}
    with deployed.client() as client:
        for name in DEPLOYMENTS:
            deployment = client.read_deployment_by_name(f"{FLOW_NAMES[name]}/{name}")
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=datetime.now(UTC)),
                ),
                limit=200,
            )
            counts[name] = sum(1 for r in runs if r.auto_scheduled)
    return counts


def add_notices(url: str, addresses: list[str], tag: str) -> None:
    engine = make_engine(url)
    now = datetime.now(UTC) - timedelta(minutes=1)
    with Session(engine) as s, s.begin():
        enqueue(
            s,
            [
                NoticeDraft(
                    key=f"test.{tag}:{n}",
                    kind="documentation.reminder",
                    address=address,
                    subject=f"Påminnelse {tag} {n}",
                    body_text="Hej!\n",
                    body_html="<p>Hej!</p>",
                )
                for n, address in enumerate(addresses)
            ],
            now,
            "sipflows.test",
        )
    engine.dispose()


def ledger(url: str, tag: str) -> dict[str, tuple[NoticeStatus, int]]:
    engine = make_engine(url)
    with Session(engine) as s:
        rows = s.execute(
            select(Notice.address, Notice.status, Notice.attempts).where(Notice.key.like(f"test.{tag}:%"))
        )
        found = {address: (status, attempts) for address, status, attempts in rows}
    engine.dispose()
    return found


def test_one_machine_as_in_readme(
    deployed: Deployed, webhook: WebhookReceiver, tmp_path: Path, record_property
):
    started = time.monotonic()
    smtp = start_smtp_server()
    register = tmp_path / "data" / "sipflows.sqlite"
    deployed.env.update(
        {
            # configuration, not commands: where the register and files go, mail, alerts
            "SIPFLOWS_DATA_DIR": str(tmp_path / "data"),
            "SIPFLOWS_OUTBOX_DIR": str(tmp_path / "outbox"),
            "SIPFLOWS_REPORTS_DIR": str(tmp_path / "reports"),
            "SIPFLOWS_TRANSPORT": "smtp",
            "SIPFLOWS_SMTP_HOST": smtp.host,
            "SIPFLOWS_SMTP_PORT": str(smtp.port),
            "SIPFLOWS_SMTP_TIMEOUT": "5",
            "SIPFLOWS_SENDER_ADDRESS": "sip-noreply@sipflows.test",
            "SIPFLOWS_ALERTS_WEBHOOK_URL": webhook.url,
        }
    )
    url = f"sqlite:///{register}"
    port = deployed.port
    lines = iter(ONE_MACHINE)
    try:
        assert next(lines) == "prefect server start"  # the deployed fixture started it
        assert next(lines).startswith("export PREFECT_API_URL=")  # the fixture's environment has it

        deployed.run(command(next(lines), port))  # sipflows db upgrade
        assert register.is_file()
        deployed.run(command(next(lines), port))  # sipflows demo --date today

        serve = deployed.start("serve", command(next(lines), port))  # python -m deployments.serve
        wait_for_text(serve, "Your deployments are being served")
        deployed.mark("serving")
        out = serve.text()
        assert "automations created: sipflows-run-failed, sipflows-dead-notices, sipflows-silent-runs" in out
        assert "custom-webhook/sipflows-alerts" in out

        # the deployments carry prefect.yaml's schedules and overlap rules
        with deployed.client() as client:
            for name, spec in DEPLOYMENTS.items():
                d = client.read_deployment_by_name(f"{FLOW_NAMES[name]}/{name}")
                assert d.work_pool_name is None  # served, not pulled by a worker
                assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules] == [
                    (s["cron"], s["timezone"], True) for s in spec["schedules"]
                ]
                assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1
                assert d.concurrency_options is not None
                assert d.concurrency_options.collision_strategy.value == "CANCEL_NEW"
                assert set(spec["tags"]) <= set(d.tags)

        # the server's scheduler creates future runs for every deployment
        deadline = time.monotonic() + 120
        while min((counts := future_scheduled_runs(deployed)).values()) == 0:
            assert time.monotonic() < deadline, f"the scheduler created no runs: {counts}"
            time.sleep(2)
        record_property("scheduled_runs", counts)
        deployed.mark(f"future runs created by the scheduler: {counts}")

        assert next(lines).startswith("export PREFECT_API_URL=")
        first = ["sipflows-invitations/invitations", "sipflows-daily-sweep/daily-sweep"]
        assert [next(lines), next(lines)] == [f"prefect deployment run {name}" for name in first]
        for name, run in zip(first, deployed.run_all_to_the_end(first), strict=True):  # both at once
            assert run.state.is_completed(), (name, run.state, deployed.logs_of(str(run.id)))
        assert next(lines) == "prefect deployment run sipflows-dispatch/dispatch"
        run = deployed.run_to_the_end("sipflows-dispatch/dispatch")
        assert run.state.is_completed(), (run.state, deployed.logs_of(str(run.id)))
        assert "Register: sqlite:///" in deployed.logs_of(str(run.id), containing="Register: sqlite:///")
        assert smtp.deliveries, "the demo's invitations went out through SMTP"

        # the Prefect CLI's list commands
        line = next(lines)
        assert line.startswith("prefect flow-run ls --state-type COMPLETED")
        ended = deployed.run(command(line, port), COLUMNS="200").stdout  # a wide table: nothing cut off
        assert "sipflows-dispatch" in ended and "COMPLETED" in ended
        listings = [
            "prefect flow-run ls",
            "prefect deployment ls",
            "prefect artifact ls",
            "prefect work-pool ls",
        ]
        deployed.run_at_once([command(listing, port) for listing in listings])
        deployed.mark("the CLI's list commands exit 0")
        assert next(lines, None) is None  # every README line was run

        # the mail server goes down: the dispatch run fails, names what to check, and alerts
        smtp.stop()
        add_notices(url, ["anna@kommun.example.se", "gone@region.example.se"], "outage")
        run = deployed.run_to_the_end("sipflows-dispatch/dispatch", cli=False)
        assert run.state.is_failed(), run.state
        assert f"SMTP {smtp.host}:{smtp.port}" in run.state.message
        assert "check SIPFLOWS_SMTP_HOST, SIPFLOWS_SMTP_PORT" in run.state.message
        assert ledger(url, "outage") == {
            "anna@kommun.example.se": (NoticeStatus.PENDING, 0),
            "gone@region.example.se": (NoticeStatus.PENDING, 0),
        }
        failed = webhook.wait_for(lambda b: "sipflows-dispatch Failed" in b.get("subject", ""))
        assert "SIPFLOWS_SMTP_HOST" in failed["text"] and f"{smtp.host}:{smtp.port}" in failed["text"]
        deployed.mark("the failed run's alert arrived")

        # it is back, refusing one address for good: everything else goes, the dead one is announced
        smtp = start_smtp_server(port=smtp.port)
        smtp.refuse("gone@region.example.se", "550 5.1.1 no such user")
        run = deployed.run_to_the_end("sipflows-dispatch/dispatch", cli=False)
        assert run.state.is_completed(), run.state
        assert ledger(url, "outage") == {
            "anna@kommun.example.se": (NoticeStatus.SENT, 1),
            "gone@region.example.se": (NoticeStatus.DEAD, 1),
        }
        dead = webhook.wait_for(lambda b: "dead after dispatch" in b.get("subject", ""))
        assert "sipflows notices requeue" in dead["text"]
        assert "gone@region.example.se" not in str(dead)  # counts only, no addresses
        deployed.mark("the dead notices' alert arrived")

        # a restart of serve is quiet: the limits and automations it finds are left as they are
        server_log_before = deployed.processes[0].text()
        assert serve.stop() is not None
        again = deployed.start("serve-again", command("python -m deployments.serve", port))
        wait_for_text(again, "Your deployments are being served")
        restart = again.text()
        assert "transport limits in place" in restart and "automations up to date" in restart
        assert "Traceback" not in restart and "ERROR" not in restart
        server_log_after = deployed.processes[0].text()[len(server_log_before) :]
        assert "UNIQUE constraint failed" not in server_log_after and "Traceback" not in server_log_after
        deployed.mark("serve restarted quietly")
    finally:
        smtp.stop()
        record_property("one_machine_s", round(time.monotonic() - started, 1))


pytestmark = pytest.mark.slow

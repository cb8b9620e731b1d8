"""README's "Several machines": a process work pool, ``prefect deploy --all``, ``prefect worker start``.

A worker runs the flows from its own checkout (SIPFLOWS_HOME) with the register on PostgreSQL when the
suite has one. Also: a worker without SIPFLOWS_HOME fails the run saying to set it, and
``deployments.serve`` refuses to take the workers' deployments over.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from deployments.serve import build_deployments, load_prefect_yaml
from sipflows.db import make_engine
from tests.conftest import PG_URL
from tests.deployed.conftest import BIN, REPO, Deployed
from tests.deployed.readme import README_HOME, README_PORT, SEVERAL_MACHINES, words

PYTHON = sys.executable
DEPLOYMENTS = {d["name"]: d for d in load_prefect_yaml()["deployments"]}
FLOW_NAMES = {d.name: d.flow_name for d in build_deployments()}


def command(line: str, port: int) -> list[str]:
    argv = words(line.replace(README_PORT, str(port)))
    if argv[0] in ("prefect", "sipflows"):
        argv[0] = str(BIN / argv[0])
    elif argv[0] == "python":
        argv[0] = PYTHON
    return argv


@pytest.fixture
def register_url(tmp_path: Path):
    """The register on PostgreSQL (a schema of its own) when the suite has one, else an SQLite file."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'register.sqlite'}"
        return
    schema = f"t_deployed_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(PG_URL)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_several_machines_as_in_readme(
    deployed: Deployed, register_url: str, tmp_path: Path, record_property
):
    started = time.monotonic()
    port = deployed.port
    worker_machine = tmp_path / "worker-machine"  # a worker is not started inside the checkout
    worker_machine.mkdir()
    outbox = tmp_path / "outbox"
    deployed.env.update(
        {
            "SIPFLOWS_DATABASE_URL": register_url,
            "SIPFLOWS_OUTBOX_DIR": str(outbox),
            "SIPFLOWS_REPORTS_DIR": str(tmp_path / "reports"),
        }
    )
    lines = iter(SEVERAL_MACHINES)
    assert next(lines).startswith("export PREFECT_API_URL=")  # the fixture's environment has it
    for expected in (
        "sipflows db upgrade",
        "sipflows demo --date today",
        "prefect work-pool create sipflows --type process",
        "prefect --no-prompt deploy --all",  # from the checkout: it reads ./prefect.yaml
        "python -m deployments.setup",
    ):
        line = next(lines)
        assert line == expected
        done = deployed.run(command(line, port), timeout=240)
        deployed.mark(line)
    assert "automations created" in done.stdout and "no alert channel configured" in done.stdout

    with deployed.client() as client:
        for name, spec in DEPLOYMENTS.items():
            d = client.read_deployment_by_name(f"{FLOW_NAMES[name]}/{name}")
            assert (d.work_pool_name, d.work_queue_name) == ("sipflows", "default")
            assert d.pull_steps == [{"deployments.steps.enter_sipflows_home": {}}]
            assert d.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
            assert [(s.schedule.cron, s.schedule.timezone) for s in d.schedules] == [
                (s["cron"], s["timezone"]) for s in spec["schedules"]
            ]
            assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1
            assert d.concurrency_options is not None
            assert d.concurrency_options.collision_strategy.value == "CANCEL_NEW"

    # serving on the same server would take the workers' deployments away: refused
    refused = deployed.run([PYTHON, "-m", "deployments.serve"], check=False, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "already runs sipflows through workers" in refused.stderr
    assert "sipflows-dispatch/dispatch (work pool sipflows)" in refused.stderr
    deployed.mark("deployments.serve refused")
    with deployed.client() as client:
        assert client.read_deployment_by_name("sipflows-dispatch/dispatch").work_pool_name == "sipflows"

    # a worker started without SIPFLOWS_HOME: the run fails, saying to set it (a queue of its own, so
    # that it takes no scheduled run meant for the real worker)
    worker = deployed.start(
        "worker-without-home",
        command("prefect worker start --pool sipflows --work-queue without-home", port),
        cwd=worker_machine,
    )
    run = deployed.wait_final(deployed.create_run("sipflows-replies/replies", work_queue_name="without-home"))
    told = "SIPFLOWS_HOME is not set on this worker: set it to this machine's sipflows checkout"
    assert run.state.is_failed() and told in run.state.message, run.state
    logs = deployed.logs_of(str(run.id), containing=told)
    assert told in logs, logs
    worker.stop()
    assert told in worker.text()

    # README: on each worker machine
    assert next(lines).startswith("export PREFECT_API_URL=")
    home = next(lines)
    assert home == f"export SIPFLOWS_HOME={README_HOME}"
    line = next(lines)
    assert line == "prefect worker start --pool sipflows"
    worker = deployed.start("worker", command(line, port), cwd=worker_machine, SIPFLOWS_HOME=str(REPO))
    line = next(lines)
    assert line == "prefect deployment run sipflows-daily-sweep/daily-sweep"
    assert next(lines, None) is None  # every README line is run here
    first = ["sipflows-daily-sweep/daily-sweep", "sipflows-invitations/invitations"]
    for name, run in zip(first, deployed.run_all_to_the_end(first), strict=True):  # at once, as a worker may
        assert run.state.is_completed(), (name, run.state, deployed.logs_of(str(run.id)))
    run = deployed.run_to_the_end("sipflows-dispatch/dispatch", cli=False)
    assert run.state.is_completed(), (run.state, deployed.logs_of(str(run.id)))
    assert "Register: " in deployed.logs_of(str(run.id), containing="Register: ")
    assert list(outbox.glob("*.eml")), "the worker's dispatch wrote the demo's notices"
    assert not (REPO / "outbox").exists() and not (REPO / "data").exists()
    record_property("several_machines_s", round(time.monotonic() - started, 1))


pytestmark = pytest.mark.slow

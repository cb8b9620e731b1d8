"""sipflows as deployed: a real ``prefect server start`` subprocess, the commands of README, real workers.

Each test gets its own Prefect server on a free port with its own ``PREFECT_HOME`` (so its own SQLite
database under a temporary folder) and talks to it the way operations staff do: the ``prefect`` and
``sipflows`` commands, ``python -m deployments.serve``, ``prefect worker start``. Nothing here shares
the in-process test harness: these tests are grouped onto one xdist worker of their own
(``xdist_group("deployed")``).

Only poll intervals are shortened (``PREFECT_RUNNER_POLL_FREQUENCY``, ``PREFECT_WORKER_QUERY_SECONDS``)
so that a run starts within seconds; every command is the README's. Every process is started in its
own process group and killed with it at the end (flow runs started by a worker, which sit in sessions
of their own, are found by the test's unique ``PREFECT_HOME`` in their environment). The logs of the
server, serve process and workers are attached to a failing test's report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 180
RUN_TIMEOUT = 240


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deployed/" in str(item.fspath):
            item.add_marker(pytest.mark.xdist_group("deployed"))
            item.add_marker(pytest.mark.deployed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_sigint() -> None:
    # a background shell or xdist may have SIGINT ignored; Prefect's CLI turns SIGTERM into SIGINT
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        """SIGTERM to the process group, without waiting."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM to the process group (what Ctrl-C or systemd does), SIGKILL after ``timeout``."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # whatever is left of the group
        try:
            return self.popen.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not reap it
            return None


@dataclass
class Deployed:
    """One Prefect server and everything the test starts against it."""

    root: Path
    port: int
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, name: str, args: list[str], cwd: Path = REPO, **env: str | None) -> Process:
        log = self.root / "logs" / f"{len(self.processes):02d}-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args,
                cwd=cwd,
                env=self.child_env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def child_env(self, **extra: str | None) -> dict[str, str]:
        env = dict(self.env)
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run_at_once(self, commands: list[list[str]], timeout: float = 180) -> list[str]:
        """Several commands side by side (independent ones: saves their start-up time); each must exit 0."""
        procs = [
            subprocess.Popen(
                args,
                cwd=REPO,
                env=self.child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            for args in commands
        ]
        outputs = []
        for args, proc in zip(commands, procs, strict=True):
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{out}"
            outputs.append(out)
        return outputs

    def run(
        self, args: list[str], cwd: Path = REPO, timeout: float = 180, check: bool = True, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """A command to completion; on failure its output is in the assertion message."""
        done = subprocess.run(
            args,
            cwd=cwd,
            env=self.child_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, (
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def client(self) -> Any:
        """A Prefect client for this server only (never the harness another test may run in-process)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(api=self.api_url)

    def wait_healthy(self, server: Process) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            assert server.running(), f"prefect server exited:\n{server.text()[-3000:]}"
            try:
                if httpx.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"prefect server not healthy after {SERVER_START_TIMEOUT} s")

    # --- flow runs ------------------------------------------------------------------------------------

    def run_deployment(self, name: str, *params: str) -> str:
        """``prefect deployment run NAME``; returns the flow run's id."""
        done = self.run([str(BIN / "prefect"), "deployment", "run", name, *params])
        found = re.search(r"flow-run/([0-9a-f-]{36})", done.stdout)
        assert found, done.stdout
        return found.group(1)

    def wait_final(self, flow_run_id: str, timeout: float = RUN_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state is not None and run.state.is_final():
                    return run
                assert time.monotonic() < deadline, (
                    f"flow run {flow_run_id} still {run.state} after {timeout} s"
                )
                time.sleep(1)

    def run_to_the_end(self, name: str, tries: int = 4, cli: bool = True) -> Any:
        """Run a deployment now (``prefect deployment run``, or the API) and wait for its final state."""
        (run,) = self.run_all_to_the_end([name], tries, cli)
        return run

    def mark(self, what: str) -> None:
        """A timestamped line in the test's output: where the time goes (shown with -s or on failure)."""
        print(f"{time.monotonic() - self.started:7.1f} s  {what}", flush=True)

    def create_run(self, name: str, work_queue_name: str | None = None) -> str:
        """A run of a deployment now, through the API (as the UI's 'Quick run' does)."""
        with self.client() as client:
            deployment = client.read_deployment_by_name(name)
            run = client.create_flow_run_from_deployment(deployment.id, work_queue_name=work_queue_name)
            return str(run.id)

    def run_all_to_the_end(self, names: list[str], tries: int = 4, cli: bool = True) -> list[Any]:
        """Run deployments now (at once, in the order given) and wait for their final states.

        With ``CANCEL_NEW`` a run that starts while a scheduled run of the same deployment is going is
        cancelled by design: then wait for that one to end and run again.
        """
        start = self.run_deployment if cli else self.create_run
        ids = [start(name) for name in names]
        runs = [self.wait_final(flow_run_id) for flow_run_id in ids]
        for i, name in enumerate(names):
            for _ in range(tries):
                run = runs[i]
                if not (run.state.is_cancelled() and "concurrency limit" in (run.state.message or "")):
                    break
                self.wait_deployment_idle(name)
                runs[i] = self.wait_final(start(name))
            else:
                raise AssertionError(f"{name}: every try was cancelled by a concurrent run")
        for name, run in zip(names, runs, strict=True):
            self.mark(f"{name}: {run.state.name}")
        return runs

    def wait_deployment_idle(self, name: str, timeout: float = RUN_TIMEOUT) -> None:
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        deadline = time.monotonic() + timeout
        with self.client() as client:
            deployment = client.read_deployment_by_name(name)
            while time.monotonic() < deadline:
                busy = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING])
                        )
                    ),
                )
                if not busy:
                    return
                time.sleep(1)
        raise AssertionError(f"{name} still busy after {timeout} s")

    def logs_of(self, flow_run_id: str, containing: str | None = None, timeout: float = 60) -> str:
        """The run's logs as the server has them; with `containing`, wait until that text has arrived.

        A run's log records reach the server in batches, after its state may already read Completed, so
        a test that looks for a line polls instead of reading once.
        """
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        deadline = time.monotonic() + timeout
        of_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        while True:
            with self.client() as client:
                logs = client.read_logs(log_filter=of_run)
            text = "\n".join(log.message for log in logs)
            if containing is None or containing in text or time.monotonic() > deadline:
                return text
            time.sleep(1)


def _kill_strays(marker: str) -> None:
    """Kill processes (flow runs in sessions of their own) whose environment carries our PREFECT_HOME."""
    needle = f"PREFECT_HOME={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture
def deployed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Deployed]:
    """A running Prefect server of this test's own; stopped, with all it started, afterwards."""
    home = tmp_path / "prefect-home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SIPFLOWS_"))}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    world = Deployed(root=tmp_path, port=port, env=env)
    started = time.monotonic()
    try:
        server = world.start("prefect-server", [str(BIN / "prefect"), "server", "start", "--port", str(port)])
        world.wait_healthy(server)
        world.mark("prefect server healthy")
        request.node.user_properties.append(("prefect_server_start_s", round(time.monotonic() - started, 1)))
        yield world
    finally:
        # serve processes and workers first, all at once, then the server they talk to
        others, server_process = world.processes[1:], world.processes[:1]
        for process in others:
            process.terminate()
        for process in [*others, *server_process]:
            process.stop()
        _kill_strays(str(home))
        for process in world.processes:
            request.node.add_report_section("teardown", process.name, process.text()[-20000:])
        request.node.user_properties.append(("deployed_total_s", round(time.monotonic() - started, 1)))


class WebhookReceiver:
    """A local HTTP endpoint standing in for Teams or a chat webhook; keeps every JSON body posted."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received
        lock = threading.Lock()
        self._lock = lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/sipflows-alerts"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, predicate: Any, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for body in self.received:
                    if predicate(body):
                        return body
            time.sleep(1)
        raise AssertionError(f"no matching notification in {timeout} s; received: {self.received}")

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()

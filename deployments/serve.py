"""Serve every deployment of ``prefect.yaml`` from one process: sipflows on a single machine.

    prefect server start            # in one terminal
    python -m deployments.serve     # in another (PREFECT_API_URL set): runs each flow on its schedule

The deployments, schedules and overlap rules are read from ``prefect.yaml`` so that the single-machine
and the many-machine set-ups cannot drift apart. Before serving it prepares the server as
``deployments.setup`` does (transport limits, alert block, automations), and it refuses to start when
the server already holds the same deployments made by ``prefect deploy`` for workers: serving them
would silently take them away from the work pool.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from prefect import Flow, serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron

from deployments.alerts import AlertSetupError
from deployments.setup import prepare_server, settings_or_exit

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"


def load_prefect_yaml(path: Path = PREFECT_YAML) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def load_entrypoint(entrypoint: str, root: Path = ROOT) -> Flow[Any, Any]:
    """Import ``path/to/file.py:flow_name`` relative to the project root."""
    file_part, _, name = entrypoint.partition(":")
    module_name = file_part.removesuffix(".py").replace("/", ".")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(module_name)
    flow = getattr(module, name)
    if not isinstance(flow, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return flow


def build_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    config = load_prefect_yaml(path)
    deployments = []
    for spec in config["deployments"]:
        flow = load_entrypoint(spec["entrypoint"], path.parent)
        schedules = [Cron(s["cron"], timezone=s["timezone"]) for s in spec.get("schedules", [])]
        limit = spec.get("concurrency_limit")
        deployment = flow.to_deployment(
            name=spec["name"],
            description=spec.get("description"),
            tags=spec.get("tags"),
            schedules=schedules,
            concurrency_limit=ConcurrencyLimitConfig(**limit) if limit else None,
        )
        if not isinstance(deployment, RunnerDeployment):  # a coroutine when called inside an event loop
            raise TypeError("build_deployments must be called outside an event loop")
        deployments.append(deployment)
    return deployments


# Served runs send a heartbeat every 30 s (Prefect's default is 180 s), so that the sipflows-silent-runs
# automation can mark a run whose process died Crashed, freeing its concurrency slot, within two minutes.
HEARTBEAT_SECONDS = 30


def worker_deployments(deployments: list[RunnerDeployment]) -> list[str]:
    """``flow/deployment`` names that the server already holds for a work pool (``prefect deploy``)."""
    taken = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                taken.append(f"{name} (work pool {existing.work_pool_name})")
    return taken


def main() -> None:
    settings = settings_or_exit()
    deployments = build_deployments()
    taken = worker_deployments(deployments)
    if taken:
        typer.echo(
            "error: this Prefect server already runs sipflows through workers; serving here would take "
            "these deployments away from their work pool:\n  "
            + "\n  ".join(taken)
            + "\nUse one set-up per server: keep the workers (then do not serve), or delete those "
            "deployments first (`prefect deployment delete NAME`), or point PREFECT_API_URL at another "
            "server.",
            err=True,
        )
        sys.exit(2)
    try:
        lines = prepare_server(settings)
    except AlertSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for line in lines:
        typer.echo(line)
    serve(*deployments, heartbeat_seconds=HEARTBEAT_SECONDS)


if __name__ == "__main__":
    main()

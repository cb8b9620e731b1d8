"""Serve every deployment of ``prefect.yaml`` from one process: sipflows on a single machine.

    prefect server start            # in one terminal (or PREFECT_API_URL pointing at a server)
    python -m deployments.serve     # in another: runs each flow on its schedule

The deployments, schedules and overlap rules are read from ``prefect.yaml`` so that the single-machine
and the many-machine set-ups cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.dispatch import ensure_transport_limits

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
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                schedules=schedules,
                concurrency_limit=ConcurrencyLimitConfig(**limit) if limit else None,
            )
        )
    return deployments


def main() -> None:
    ensure_transport_limits()
    serve(*build_deployments())


if __name__ == "__main__":
    main()

"""The pull step of ``prefect.yaml``: run the flows from this worker machine's own sipflows checkout.

``SIPFLOWS_HOME`` is read on the worker, so no deploying machine's path is baked into the deployments.
A worker started without it fails the flow run with a message saying to set it — in the run's state
and logs, where operations staff (and the alert automation) see it, and on the worker's console —
instead of Prefect's ``FileNotFoundError`` about a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from uuid import UUID

SETTING = "SIPFLOWS_HOME"


class SipflowsHomeError(RuntimeError):
    """The worker cannot find the sipflows checkout to run the flows from."""


def _fail_the_run(error: SipflowsHomeError) -> SipflowsHomeError:
    """Put the message where the run is looked at: its logs and its Failed state (not "exit code 1")."""
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")  # set by the worker for the run's process
    if flow_run_id:
        with contextlib.suppress(Exception):  # the raised error stops the run in any case
            from prefect.client.orchestration import get_client
            from prefect.logging.loggers import flow_run_logger
            from prefect.states import Failed

            with get_client(sync_client=True) as client:
                flow_run_logger(client.read_flow_run(UUID(flow_run_id))).error("%s", error)
                client.set_flow_run_state(UUID(flow_run_id), Failed(message=str(error)), force=True)
    return error


def enter_sipflows_home() -> dict[str, str]:
    """Change into ``$SIPFLOWS_HOME`` (the checkout holding ``prefect.yaml`` and ``flows/``)."""
    value = os.environ.get(SETTING, "").strip()
    if not value:
        raise _fail_the_run(
            SipflowsHomeError(
                f"{SETTING} is not set on this worker: set it to this machine's sipflows checkout (the "
                "folder with prefect.yaml and flows/) before `prefect worker start`, "
                f"e.g. export {SETTING}=/opt/sipflows"
            )
        )
    home = Path(value).expanduser()
    if not (home / "flows").is_dir() or not (home / "prefect.yaml").is_file():
        raise _fail_the_run(
            SipflowsHomeError(
                f"{SETTING}={value} is not a sipflows checkout (no prefect.yaml and flows/ there): set it "
                "to this machine's sipflows checkout before `prefect worker start`"
            )
        )
    os.chdir(home)
    return {"directory": str(home.resolve())}

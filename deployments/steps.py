"""The pull step of ``prefect.yaml``: run the flows from this worker machine's own sipflows checkout.

``SIPFLOWS_HOME`` is read on the worker, so no deploying machine's path is baked into the deployments.
A worker started without it fails the flow run with a message saying to set it, instead of Prefect's
``FileNotFoundError`` about a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

SETTING = "SIPFLOWS_HOME"


class SipflowsHomeError(RuntimeError):
    """The worker cannot find the sipflows checkout to run the flows from."""


def enter_sipflows_home() -> dict[str, str]:
    """Change into ``$SIPFLOWS_HOME`` (the checkout holding ``prefect.yaml`` and ``flows/``)."""
    value = os.environ.get(SETTING, "").strip()
    if not value:
        raise SipflowsHomeError(
            f"{SETTING} is not set on this worker: set it to this machine's sipflows checkout (the "
            "folder with prefect.yaml and flows/) before `prefect worker start`, "
            f"e.g. export {SETTING}=/opt/sipflows"
        )
    home = Path(value).expanduser()
    if not (home / "flows").is_dir() or not (home / "prefect.yaml").is_file():
        raise SipflowsHomeError(
            f"{SETTING}={value} is not a sipflows checkout (no prefect.yaml and flows/ there): set it to "
            "this machine's sipflows checkout before `prefect worker start`"
        )
    os.chdir(home)
    return {"directory": str(home.resolve())}

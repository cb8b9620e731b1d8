"""The commands of README's "One machine" and "Several machines" sections, as the deployed tests run them.

The tests run exactly these lines (only the port, the worker's checkout path and test-only poll
intervals differ), and ``tests/test_readme_deployment.py`` checks that README still says the same.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
README_PORT = "4200"
README_HOME = "/opt/sipflows"

ONE_MACHINE = [
    "prefect server start",
    "export PREFECT_API_URL=http://127.0.0.1:4200/api",
    "sipflows db upgrade",
    "sipflows demo --date today",
    "python -m deployments.serve",
    "export PREFECT_API_URL=http://127.0.0.1:4200/api",
    "prefect deployment run sipflows-invitations/invitations",
    "prefect deployment run sipflows-daily-sweep/daily-sweep",
    "prefect deployment run sipflows-dispatch/dispatch",
    "prefect flow-run ls --state-type COMPLETED --state-type FAILED --state-type CRASHED",
]

SEVERAL_MACHINES = [
    "export PREFECT_API_URL=http://127.0.0.1:4200/api",
    "sipflows db upgrade",
    "sipflows demo --date today",
    "prefect work-pool create sipflows --type process",
    "prefect --no-prompt deploy --all",
    "python -m deployments.setup",
    "export PREFECT_API_URL=http://127.0.0.1:4200/api",
    "export SIPFLOWS_HOME=/opt/sipflows",
    "prefect worker start --pool sipflows",
    "prefect deployment run sipflows-daily-sweep/daily-sweep",
]


def section_commands(heading: str, readme: Path = README) -> list[str]:
    """The command lines of the ```sh blocks under README's bold ``heading``, comments stripped."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(f"**{heading}**")
    rest = text[start + len(heading) + 4 :]
    end = min(
        (i for i in (rest.find("\n**"), rest.find("\n## "), rest.find("\n### ")) if i >= 0), default=len(rest)
    )
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", rest[:end], flags=re.DOTALL):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def words(command: str) -> list[str]:
    return command.split()

"""The ``sipflows`` command line. Each command group lives in its own module with ``register(app)``."""

from __future__ import annotations

import typer

from sipflows.cli import (
    db,
    demo,
    importer,
    meetings,
    notices,
    policy,
    quickstart,
    replies,
    report,
    status,
    sweep,
)
from sipflows.cli.common import fail
from sipflows.settings import SettingsError, get_settings

app = typer.Typer(help="sipflows: SIP deadlines, notices and invitations.", no_args_is_help=True)


@app.callback()
def _check_settings() -> None:
    # every command reads the settings: a wrong one stops here, named as the environment variable
    try:
        get_settings()
    except SettingsError as exc:
        fail(str(exc))


for module in (quickstart, db, policy, sweep, importer, demo, meetings, notices, replies, status, report):
    module.register(app)

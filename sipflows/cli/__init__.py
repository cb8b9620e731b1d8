"""The ``sipflows`` command line. Each command group lives in its own module with ``register(app)``."""

from __future__ import annotations

import typer

from sipflows.cli import (
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

app = typer.Typer(help="sipflows: SIP deadlines, notices and invitations.", no_args_is_help=True)

for module in (quickstart, policy, sweep, importer, demo, meetings, notices, replies, status, report):
    module.register(app)

"""README's first command, end to end in a temporary folder: real Prefect (ephemeral API), real outbox.

The command is run as a user runs it — the installed ``sipflows`` console script in a fresh folder, with
no SIPFLOWS_ or Prefect settings inherited — twice, because a second run must send nothing new.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date
from email.message import Message
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sipflows.checks import ALL_CHECKS
from sipflows.db import make_engine
from sipflows.models import Deviation, Notice, NoticeStatus, SipCase
from sipflows.quickstart import PIN_FILE, pick_demo_date
from sipflows.workdays import is_working_day

pytestmark = pytest.mark.slow


def _run_quickstart(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPFLOWS_", "PREFECT_"))}
    env |= {"PREFECT_HOME": str(folder / ".prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    script = Path(sys.executable).parent / "sipflows"
    return subprocess.run(
        [str(script), "quickstart"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def _texts(message: Message) -> str:
    parts = []
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            parts.append(payload.decode(part.get_content_charset() or "utf-8"))
    return "\n".join(parts) + "\n" + "\n".join(str(v) for v in message.values())


def test_quickstart_writes_the_outbox_once(tmp_path: Path) -> None:
    first = _run_quickstart(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr

    demo_day = date.fromisoformat(json.loads((tmp_path / "data" / PIN_FILE).read_text())["demo_date"])
    assert is_working_day(demo_day)
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert files, first.stdout

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'sipflows.sqlite'}")
    with Session(engine) as session:
        sent = session.scalar(
            select(func.count()).select_from(Notice).where(Notice.status == NoticeStatus.SENT)
        )
        not_sent = session.scalar(
            select(func.count()).select_from(Notice).where(Notice.status != NoticeStatus.SENT)
        )
        kinds = set(session.scalars(select(Notice.kind)))
        secrets = {
            v
            for row in session.execute(
                select(SipCase.individual_name, SipCase.personal_identity_number, SipCase.case_notes)
            )
            for v in row
            if v
        } | {d for d in session.scalars(select(Deviation.description)) if d}
    engine.dispose()
    assert sent == len(files) and not_sent == 0
    # every check found something on the demo's day, and invitations went out as calendar requests
    assert {c.NAME for c in ALL_CHECKS} <= {k.split(".")[0] for k in kinds}
    assert "meeting.invitation" in kinds
    assert secrets

    calendars = Counter()
    for path in files:
        message = email.message_from_bytes(path.read_bytes())
        assert message["Message-ID"] and message["To"] and message["Subject"], path.name
        text = _texts(message)
        for secret in secrets:
            assert secret not in text, f"{path.name} carries personal data"
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                calendars[part.get_param("method")] += 1
    # requests for the meeting booked today; cancellations for the plan whose consent was withdrawn
    assert calendars["REQUEST"] >= 1 and set(calendars) <= {"REQUEST", "CANCEL"}

    for line in (f"{c.NAME} " for c in ALL_CHECKS):
        assert line in first.stdout, first.stdout
    assert f"{len(files)} new in this run" in first.stdout

    mtimes = {p.name: p.stat().st_mtime_ns for p in files}
    second = _run_quickstart(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 new in this run" in second.stdout
    assert "0 sent" in second.stdout
    again = sorted((tmp_path / "outbox").glob("*.eml"))
    assert {p.name: p.stat().st_mtime_ns for p in again} == mtimes


def test_demo_date_is_pinned_on_the_first_run(tmp_path: Path) -> None:
    saturday = date(2026, 12, 5)
    chosen, new = pick_demo_date(tmp_path, saturday)
    assert (chosen, new) == (date(2026, 12, 7), True)  # the Monday after
    # a later day keeps the first run's choice, so a rerun judges the same day and sends nothing new
    assert pick_demo_date(tmp_path, date(2026, 12, 9)) == (date(2026, 12, 7), False)
    # an explicit date wins and is remembered
    assert pick_demo_date(tmp_path, date(2026, 12, 9), date(2026, 12, 23)) == (date(2026, 12, 23), True)
    assert pick_demo_date(tmp_path, date(2026, 12, 30)) == (date(2026, 12, 23), False)
    # julafton is not a working day: the first working day after Christmas is the 28th
    assert pick_demo_date(tmp_path / "x", date(2026, 12, 24))[0] == date(2026, 12, 28)


def test_a_damaged_pin_file_is_named(tmp_path: Path) -> None:
    (tmp_path / PIN_FILE).write_text("not json either", encoding="utf-8")
    with pytest.raises(ValueError, match=PIN_FILE):
        pick_demo_date(tmp_path, date(2026, 12, 7))


def test_the_command_names_a_damaged_pin_file_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sipflows.cli import app

    (tmp_path / PIN_FILE).write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(app, ["quickstart", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert PIN_FILE in result.output and "Traceback" not in result.output

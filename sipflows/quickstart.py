"""What ``sipflows quickstart`` needs besides the flows: its own settings, a pinned demo date, a summary.

The quickstart never touches a configured production register or mail server: it always uses a SQLite
file under its data folder and the outbox transport. The demo's date is chosen once and kept in the data
folder, so running the command again — tomorrow too — judges the same day and sends nothing new.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sipflows.workdays import WorkCalendar

PIN_FILE = "quickstart.json"


def quickstart_environment(data_dir: Path, outbox_dir: Path) -> dict[str, str]:
    """The ``SIPFLOWS_`` settings the quickstart's flows run with (flows read them from the environment)."""
    database = (data_dir / "sipflows.sqlite").resolve()
    return {
        "SIPFLOWS_DATA_DIR": str(data_dir.resolve()),
        "SIPFLOWS_DATABASE_URL": f"sqlite:///{database.as_posix()}",
        "SIPFLOWS_OUTBOX_DIR": str(outbox_dir.resolve()),
        "SIPFLOWS_TRANSPORT": "outbox",
    }


def pick_demo_date(data_dir: Path, today: date, requested: date | None = None) -> tuple[date, bool]:
    """The day the demo is judged on, and whether it was newly chosen.

    An explicit ``requested`` date wins and is remembered; otherwise the remembered date; otherwise the
    first working day from ``today`` on, so that the demo's coming meetings lie in the future.
    """
    pin = data_dir / PIN_FILE
    if requested is None and pin.exists():
        try:
            return date.fromisoformat(json.loads(pin.read_text(encoding="utf-8"))["demo_date"]), False
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{pin}: not a quickstart file (delete it to choose a new date)") from None
    calendar = WorkCalendar()
    chosen = requested or calendar.next_working_day(today)
    data_dir.mkdir(parents=True, exist_ok=True)
    pin.write_text(json.dumps({"demo_date": chosen.isoformat()}) + "\n", encoding="utf-8")
    return chosen, True


def outbox_files(outbox_dir: Path) -> list[Path]:
    return sorted(outbox_dir.glob("*.eml")) if outbox_dir.exists() else []


@dataclass
class QuickstartReport:
    demo_date: date
    database: str
    outbox_dir: Path
    invitations: Mapping[str, int]
    sweep: Mapping[str, object]
    dispatch: Mapping[str, int]
    files_before: int
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        per_check = self.sweep.get("per_check") or {}
        assert isinstance(per_check, Mapping)
        new_files = len(self.files) - self.files_before
        out = [
            "",
            f"sipflows quickstart: the demo region Västra Mälardalen, judged on {self.demo_date:%A %Y-%m-%d}",
            f"  register      {self.database}",
            f"  invitations   {self.invitations.get('invitations', 0)} requests, "
            f"{self.invitations.get('updates', 0)} updates, "
            f"{self.invitations.get('cancels', 0)} cancellations queued",
            f"  daily sweep   {self.sweep.get('findings', 0)} findings, "
            f"{self.sweep.get('enqueued', 0)} new notices queued",
        ]
        for check, n in sorted(per_check.items()):
            out.append(f"                  {check:<16} {n:>3} findings")
        out += [
            f"  dispatch      {self.dispatch.get('sent', 0)} sent, {self.dispatch.get('failed', 0)} failed, "
            f"{self.dispatch.get('dead', 0)} dead",
            f"  outbox        {self.outbox_dir} — {len(self.files)} .eml files, {new_files} new in this run",
        ]
        if new_files == 0:
            out.append("  Nothing new was sent: this day's notices are already in the ledger and the outbox.")
        if self.files:
            example = self.files[0]
            out += [
                "",
                "Open a notice: double-click an .eml file (Outlook, Thunderbird and Apple Mail open it), or",
                f"  less '{example}'",
                "Invitations carry a text/calendar part your calendar program can accept.",
            ]
        out += [
            "",
            "See the ledger with `sipflows status`; the flow runs and their artifacts live in Prefect",
            "(start `prefect server start` to keep them between runs and browse them at http://127.0.0.1:4200).",
        ]
        return out

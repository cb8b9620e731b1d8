"""Import benchmark: 100,000-row files of every kind into a fresh register, then the same files again.

Generates one CSV file per import kind (organisations, closed_days, contacts, cases, participants, meetings,
invitations, deviations), ``--rows`` rows each (default 100,000), shaped like a county's export: contacts
with escalation contacts in the same file, plans in every status (closed ones and withdrawn consent among
them), past meetings held and documented, future ones scheduled, invitations already sent and answered,
deviations at every stage. The files refer to each other, so they import in the documented order into an
empty register.

For each database it creates a fresh register (a SQLite file in ``--folder``; on PostgreSQL a schema named
``--schema``, by default ``issue_12_import``, dropped at the end), then:

- **first import**: every file in order through ``sipflows.importer.import_files``, one call per file (its
  own transaction, as ``sipflows import`` does), timed from reading the file to the commit;
- **re-import**: the same files again — every row is already there and unchanged (the idempotent path a
  nightly export takes);

and prints, per file, wall seconds, CPU seconds of this process, on PostgreSQL the CPU seconds of the
server's backends (read from /proc when the server runs on this machine), rows/s (rows ÷ wall seconds)
and whether it is under the target of 5 s. The load average is printed before and after: the machine is
shared, compare figures from one run; this process's and the server's CPU seconds add up to the wall
time the import would take on a quiet machine, at most.

    nice python benchmarks/imports.py [--rows 100000] [--database sqlite|postgresql|both]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--schema issue_12_import]
        [--only meetings,contacts]

This is a script that measures, not a test.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` and ``sipflows`` importable
    sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from sipflows.db import make_engine, migrate  # noqa: E402
from sipflows.importer import KINDS, import_files  # noqa: E402

TARGET_SECONDS = 5.0
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "issue_12_import"
# the import's "now": meetings before it are past (held), after it future (scheduled)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

ORG_KINDS = ("municipal_unit", "region_unit", "school", "forsakringskassan", "other")
PRINCIPAL = {"municipal_unit": "kommun", "region_unit": "region", "school": "kommun"}
MEETING_KINDS = ("pre_meeting", "sip_meeting", "follow_up")
DEVIATION_KINDS = (
    "party_absent",
    "plan_not_followed",
    "documentation_late",
    "invitation_not_answered",
    "other",
)


def _day(start: date, offset: int) -> str:
    return (start + timedelta(days=offset)).isoformat()


def _clock(day: date, hour: int, minute: int = 0) -> str:
    """Stockholm wall-clock time as an export writes it (never in the hour the clocks change)."""
    return f"{day.isoformat()} {hour:02d}:{minute:02d}"


class Files:
    """The rows of every file for ``n`` rows per file; plan ``i`` uses contacts ``10*i % n + 1..3``."""

    def __init__(self, n: int) -> None:
        if n < 10:
            raise SystemExit("--rows: at least 10")
        self.n = n

    def org(self, i: int) -> str:
        return f"ORG-{i % self.n:06d}"

    def contact(self, i: int) -> str:
        return f"C-{i % self.n:06d}"

    def plan_contacts(self, i: int) -> tuple[int, int, int]:
        """(convener, coordinator, participant) of plan i: three staff of one organisation's team."""
        base = (i * 10) % self.n
        return base + 1, base + 2, base + 3

    def organisations(self) -> Iterator[list[str]]:
        yield ["code", "name", "kind", "principal"]
        for i in range(self.n):
            kind = ORG_KINDS[i % len(ORG_KINDS)]
            yield [self.org(i), f"Enhet {i} för samordning", kind, PRINCIPAL.get(kind, "")]

    def closed_days(self) -> Iterator[list[str]]:
        yield ["organisation", "day", "reason"]
        orgs = min(1000, self.n)
        for i in range(self.n):
            yield [self.org(i % orgs), _day(date(2026, 1, 1), i // orgs), "Klämdag" if i % 3 else ""]

    def contacts(self) -> Iterator[list[str]]:
        yield [
            "code",
            "organisation",
            "name",
            "email",
            "kind",
            "language",
            "escalation_contact",
            "escalation_for_organisation",
            "report_recipient",
        ]
        for i in range(self.n):
            chief = i % 10 == 0  # every tenth contact heads a team of ten at one organisation
            yield [
                self.contact(i),
                self.org(i // 10),
                f"Handläggare {i}",
                f"handlaggare.{i}@enhet{i // 10}.example.se",
                "functional" if i % 97 == 5 else "person",
                "en" if i % 50 == 3 else "sv",
                "" if chief else self.contact(i - i % 10),
                "yes" if chief else "no",
                "yes" if chief and i % 1000 == 0 else "no",
            ]

    def cases(self) -> Iterator[list[str]]:
        yield [
            "reference",
            "convener_contact",
            "convener_organisation",
            "coordinator",
            "individual_name",
            "personal_identity_number",
            "case_notes",
            "status",
            "identified_on",
            "offered_on",
            "activated_on",
            "closed_on",
            "closure_reason",
            "consent_given_on",
            "consent_withdrawn_on",
            "follow_up_due",
        ]
        start = date(2026, 1, 1)
        for i in range(self.n):
            convener, coordinator, _ = self.plan_contacts(i)
            identified = i % 300
            closed = i % 50 == 0
            withdrawn = i % 200 == 7
            status = "closed" if closed else ("identified", "offered", "active", "active", "active")[i % 5]
            offered = status != "identified"
            active = status in ("active", "closed")
            yield [
                f"SIP-{i:06d}",
                self.contact(convener),
                self.org(convener // 10),
                self.contact(coordinator) if i % 5 == 0 else "",
                f"Testperson {i}",
                "19121212-1212",
                "Påhittade anteckningar" if i % 4 == 0 else "",
                status,
                _day(start, identified),
                _day(start, identified + 2) if offered else "",
                _day(start, identified + 7) if active else "",
                _day(start, identified + 200) if closed else "",
                "need_met" if closed else "",
                _day(start, identified + 7) if active else "",
                _day(start, identified + 60) if withdrawn else "",
                _day(start, identified + 180) if active and not closed else "",
            ]

    def participants(self) -> Iterator[list[str]]:
        yield ["case", "contact", "role"]
        for i in range(self.n):
            _, _, participant = self.plan_contacts(i)
            yield [f"SIP-{i:06d}", self.contact(participant), "deltagare"]

    def _meeting_start(self, i: int) -> tuple[date, int]:
        return date(2026, 6, 1) + timedelta(days=i % 240), 9 + i % 6

    def meetings(self) -> Iterator[list[str]]:
        yield [
            "code",
            "case",
            "kind",
            "starts_at",
            "ends_at",
            "place",
            "digital_link",
            "purpose",
            "status",
            "documented_at",
            "chair",
        ]
        for i in range(self.n):
            day, hour = self._meeting_start(i)
            past = day < NOW.date()
            convener, _, _ = self.plan_contacts(i)
            documented = past and i % 5 != 0
            yield [
                f"SIP-{i:06d}-M",
                f"SIP-{i:06d}",
                MEETING_KINDS[i % 3],
                _clock(day, hour),
                _clock(day, hour + 1, 30),
                f"Vårdcentralen rum {i % 40}" if i % 4 else "",
                f"https://meet.example.se/sip-{i:06d}" if i % 4 == 0 else "",
                "Samordna insatser och planera nästa steg",
                "held" if past else "scheduled",
                _clock(day + timedelta(days=1), 15, 10) if documented else "",
                self.contact(convener) if i % 3 == 0 else "",
            ]

    def invitations(self) -> Iterator[list[str]]:
        yield ["meeting", "contact", "required", "sent_at", "answer", "answered_at", "attended"]
        for i in range(self.n):
            day, _ = self._meeting_start(i)
            past = day < NOW.date()
            _, _, participant = self.plan_contacts(i)
            sent = past or i % 2 == 0
            answer = ("accepted", "declined", "tentative", "none")[i % 4] if sent else "none"
            yield [
                f"SIP-{i:06d}-M",
                self.contact(participant),
                "no" if i % 7 == 0 else "yes",
                _clock(day - timedelta(days=10), 8, 30) if sent else "",
                answer,
                _clock(day - timedelta(days=9), 12) if answer != "none" else "",
                ("yes" if answer == "accepted" else "no") if past else "",
            ]

    def deviations(self) -> Iterator[list[str]]:
        yield [
            "code",
            "case",
            "reported_by",
            "concerning_organisation",
            "kind",
            "severity",
            "description",
            "reported_at",
            "acknowledged_at",
            "replied_at",
            "resolved_at",
        ]
        for i in range(self.n):
            convener, _, _ = self.plan_contacts(i)
            day = date(2026, 3, 1) + timedelta(days=i % 250)
            yield [
                f"AVV-{i:06d}",
                f"SIP-{i:06d}",
                self.contact(convener),
                self.org(i * 7),
                DEVIATION_KINDS[i % len(DEVIATION_KINDS)],
                "high" if i % 10 == 0 else "normal",
                "Fri text som stannar i registret" if i % 2 else "",
                _clock(day, 10),
                _clock(day + timedelta(days=1), 9) if i % 2 else "",
                _clock(day + timedelta(days=3), 9) if i % 3 == 1 else "",
                _clock(day + timedelta(days=5), 9) if i % 3 == 2 else "",
            ]

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for kind in KINDS:
            path = folder / f"{kind}.csv"
            with path.open("w", encoding="utf-8", newline="") as fh:
                csv.writer(fh, lineterminator="\n").writerows(getattr(self, kind)())
            paths[kind] = path
        return paths


@dataclass
class Timing:
    kind: str
    rows: int
    seconds: float
    cpu: float
    inserted: int
    updated: int
    unchanged: int
    # PostgreSQL on this machine: CPU seconds of the server's backends in the import (None elsewhere)
    server: float | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def import_all(engine: Engine, paths: dict[str, Path], kinds: Sequence[str]) -> list[Timing]:
    timings = []
    for kind in kinds:
        server = server_cpu(engine)
        wall, cpu = time.perf_counter(), time.process_time()
        report = import_files(engine, [paths[kind]], NOW, mail_domain="sipflows.example.se")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = server_cpu(engine)
        (result,) = report.files
        timings.append(
            Timing(
                kind,
                result.rows,
                wall,
                cpu,
                result.inserted,
                result.updated,
                result.unchanged,
                None if server is None or after is None else after - server,
            )
        )
        print(f"   {kind}: {wall:.2f} s", file=sys.stderr, flush=True)
    return timings


def server_cpu(engine: Engine) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends serving this benchmark (found by their
    application_name), read from /proc: only when the server runs on this machine, else None."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        pids = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = current_setting('application_name')"
            )
        ).scalars()
        total = 0.0
        try:
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
    return total


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def report(database: str, first: list[Timing], again: list[Timing]) -> str:
    server = any(t.server is not None for t in (*first, *again))

    def srv(t: Timing) -> str:
        if not server:
            return ""
        return f" {t.server:>6.2f}" if t.server is not None else f" {'-':>6}"

    head = f" {'srv s':>6}" if server else ""
    lines = [
        f"{database}",
        f"  {'file':<14} {'rows':>8} | {'first s':>8} {'cpu s':>6}{head} {'rows/s':>9} | "
        f"{'re-import s':>11} {'cpu s':>6}{head} {'rows/s':>9} | target < {TARGET_SECONDS:.0f} s",
    ]
    for a, b in zip(first, again, strict=True):
        ok = "met" if max(a.seconds, b.seconds) < TARGET_SECONDS else "NOT met"
        lines.append(
            f"  {a.kind:<14} {a.rows:>8,} | {a.seconds:>8.2f} {a.cpu:>6.2f}{srv(a)} {a.rate:>9,.0f} | "
            f"{b.seconds:>11.2f} {b.cpu:>6.2f}{srv(b)} {b.rate:>9,.0f} | {ok}"
        )
    for a, b in zip(first, again, strict=True):
        if a.inserted != a.rows or b.unchanged != b.rows:
            lines.append(
                f"  ! {a.kind}: first import inserted {a.inserted} of {a.rows}; re-import left "
                f"{b.unchanged} unchanged, updated {b.updated}"
            )
    return "\n".join(lines)


def sqlite_engine(folder: Path) -> Engine:
    path = folder / "register.sqlite"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return make_engine(f"sqlite:///{path}")


def postgres_engine(base_url: str, schema: str) -> tuple[Engine, Engine]:
    admin = make_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict(
        {"options": f"-csearch_path={schema}", "application_name": f"sipflows-bench-{schema}"}
    )
    return admin, make_engine(url.render_as_string(hide_password=False))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Import benchmark: large files of every kind, imported twice.")
    ap.add_argument("--rows", type=int, default=100_000, help="rows per file (default 100000)")
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--postgres-url", default=os.environ.get("SIPFLOWS_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    ap.add_argument(
        "--schema",
        default=SCHEMA,
        help=f"PostgreSQL schema to create and drop (default {SCHEMA}; name your own when others run this)",
    )
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "sipflows-bench-imports")
    ap.add_argument("--only", help="comma-separated kinds to time (the files before them are still imported)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.schema):
        raise SystemExit("--schema: lower-case letters, digits and _ only")

    only = set(args.only.split(",")) if args.only else set(KINDS)
    unknown = only - set(KINDS)
    if unknown:
        raise SystemExit(
            f"--only: unknown kind(s) {', '.join(sorted(unknown))}; the kinds are {', '.join(KINDS)}"
        )
    # the kinds up to the last one asked for: later files refer to earlier ones
    last = max(KINDS.index(k) for k in only)
    kinds = KINDS[: last + 1]

    files_dir = args.folder / f"files-{args.rows}"
    started = time.perf_counter()
    paths = Files(args.rows).write(files_dir)
    print(
        f"-- {len(paths)} files of {args.rows:,} rows in {files_dir} ({time.perf_counter() - started:.1f} s)"
    )
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    for database in databases:
        print(f"-- {database}: load average before {loadavg()}", flush=True)
        admin = None
        if database == "sqlite":
            engine = sqlite_engine(args.folder)
        else:
            if not re.fullmatch(r"postgresql(\+\w+)?://.*", args.postgres_url):
                raise SystemExit("--postgres-url: not a postgresql:// URL")
            admin, engine = postgres_engine(args.postgres_url, args.schema)
        try:
            migrate(engine)
            print("-- first import", file=sys.stderr, flush=True)
            first = import_all(engine, paths, kinds)
            print("-- re-import", file=sys.stderr, flush=True)
            again = import_all(engine, paths, kinds)
        finally:
            engine.dispose()
            if admin is not None:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
                admin.dispose()
        keep = [i for i, t in enumerate(first) if t.kind in only]
        print(report(database, [first[i] for i in keep], [again[i] for i in keep]))
        print(f"-- {database}: load average after {loadavg()}", flush=True)
    print(
        "first = into the register as the earlier files left it; re-import = the same file again (nothing "
        "changes). Seconds are wall time of one import_files call per file (read, validate, write, commit); "
        "cpu = this process's CPU time in it; srv = the PostgreSQL server's CPU time in it (a server on "
        "this machine); rows/s = rows ÷ wall seconds."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scale benchmark of the checks: a synthetic county-scale register, every check judged on one date.

Builds N open plans (default 200,000; closed and consent-withdrawn plans come on top, see
``benchmarks/synthetic.py``) with ~1M meetings, ~3M invitations and 50,000 deviations, in SQLite and/or
PostgreSQL, then runs every check through ``sipflows.checks.run_checks`` and prints, per database:

- seconds per check: ``cold`` is the first run in this process (fresh connection, empty statement caches;
  the operating system's page cache is warm from the load), ``warm`` the median of ``--repeat`` runs after;
- findings and SQL statements per check (a statement count that grows with the register means N+1);
- rows/s = rows in the tables the check's SQL names (counted from the statements it executed, the
  context's organisations and closed days included) ÷ warm seconds: a rough scan rate, not rows returned;
- all checks together (one ``run_checks`` call, warm) against the target: under 5 s on each database;
- peak memory: this process's ``ru_maxrss`` (imports included; the loader runs in a child process and is
  reported apart) and the ``tracemalloc`` peak of the checks alone; target under 1 GB.

    nice python benchmarks/sweep.py [--plans 200000] [--database sqlite|postgresql|both]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--date 2026-11-24] [--reuse]

The SQLite register is a file in ``--folder`` (default: a folder under the system temp dir); the PostgreSQL
one lives in schema ``--schema`` (default ``bench``), dropped and rebuilt unless ``--reuse`` finds it
holding the same number of open plans. This is a script that measures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` and ``sipflows`` importable
    sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.synthetic import TABLES, BenchSpec  # noqa: E402
from sipflows.db import make_engine  # noqa: E402
from sipflows.policy import default_policy  # noqa: E402

TARGET_SECONDS = 5.0
TARGET_BYTES = 1 << 30
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_TABLE_RE = re.compile(r"\b(" + "|".join(TABLES) + r")\b")


@dataclass
class CheckFigures:
    name: str
    cold_seconds: float = 0.0
    warm_seconds: float = 0.0
    findings: int = 0
    statements: int = 0
    tables: list[str] = field(default_factory=list)
    rows_read: int = 0
    tracemalloc_peak_mb: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.warm_seconds if self.warm_seconds > 0 else 0.0


@dataclass
class DatabaseFigures:
    database: str
    location: str
    plans: int
    judged: str
    loaded: bool
    load_seconds: float = 0.0
    load_generate_seconds: float = 0.0
    loader_peak_rss_mb: float = 0.0
    analyze_seconds: float = 0.0
    table_rows: dict[str, int] = field(default_factory=dict)
    checks: list[CheckFigures] = field(default_factory=list)
    all_cold_seconds: float = 0.0
    all_warm_seconds: float = 0.0
    all_findings: int = 0
    tracemalloc_peak_mb: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def meets_targets(self) -> bool:
        return self.all_warm_seconds < TARGET_SECONDS and self.peak_rss_mb * 2**20 < TARGET_BYTES


# -- building the register ---------------------------------------------------------------------------


def _open_plans(engine: Engine) -> int | None:
    """Open plans in an existing register, or None when there is no usable register."""
    try:
        with engine.connect() as conn:
            sql = "SELECT count(*) FROM sip_cases WHERE status <> 'closed' AND consent_withdrawn_on IS NULL"
            return int(conn.execute(text(sql)).scalar_one())
    except Exception:  # no schema, no table: build it
        return None


def _run_loader(url: str, spec: BenchSpec) -> dict[str, Any]:
    """The loader runs as a child process, so its memory is not counted as the checks' memory."""
    cmd = [sys.executable, "-m", "benchmarks.synthetic", "--url", url, "--plans", str(spec.plans)]
    cmd += ["--date", spec.judged.isoformat(), "--seed", str(spec.seed)]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def sqlite_register(folder: Path, spec: BenchSpec, reuse: bool) -> tuple[str, dict[str, Any] | None]:
    path = folder / f"register-{spec.plans}-{spec.judged.isoformat()}.sqlite"
    url = f"sqlite:///{path}"
    if reuse and path.exists():
        engine = make_engine(url)
        found = _open_plans(engine)
        engine.dispose()
        if found == spec.plans:
            return url, None
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    stats = _run_loader(url, spec)
    return url, stats


def postgres_register(
    base_url: str, schema: str, spec: BenchSpec, reuse: bool
) -> tuple[str, dict[str, Any] | None]:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise SystemExit(f"--schema: {schema!r} is not a plain lower-case identifier")
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    if reuse:
        engine = make_engine(url_text)
        found = _open_plans(engine)
        engine.dispose()
        if found == spec.plans:
            return url_text, None
    admin = make_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    stats = _run_loader(url_text, spec)
    return url_text, stats


def analyze(engine: Engine) -> float:
    """Fresh planner statistics, as a maintained register has them (VACUUM also sets the visibility map)."""
    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
    else:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.execute(text("PRAGMA optimize"))
            conn.commit()
    return time.perf_counter() - started


def table_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}


# -- running the checks ------------------------------------------------------------------------------


def check_names() -> list[str]:
    from sipflows.checks import ALL_CHECKS

    names = []
    for check in ALL_CHECKS:
        names.append(check if isinstance(check, str) else str(getattr(check, "NAME", check)))
    return names


class StatementLog:
    """Every SQL statement the engine executes while ``active``: how many, and which tables they name."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        self.active = False
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.active:
            self.statements.append(statement)

    def tables(self) -> list[str]:
        found = {m for s in self.statements for m in _TABLE_RE.findall(s)}
        return [t for t in TABLES if t in found]


def run_once(engine: Engine, judged: date, only: Sequence[str] | None) -> tuple[float, int]:
    """One ``run_checks`` call in its own session: (seconds, findings)."""
    from sipflows.checks import run_checks

    policy = default_policy()
    with Session(engine) as session:
        started = time.perf_counter()
        result = run_checks(session, judged, policy, only=list(only) if only is not None else None)
        seconds = time.perf_counter() - started
        session.rollback()
    return seconds, sum(len(v) for v in result.values())


def measure(engine: Engine, figures: DatabaseFigures, judged: date, repeat: int) -> None:
    names = check_names()
    log = StatementLog(engine)
    for name in names:  # cold: the first run of each check in this process
        log.statements.clear()
        log.active = True
        seconds, findings = run_once(engine, judged, [name])
        log.active = False
        tables = log.tables()
        figures.checks.append(
            CheckFigures(
                name=name,
                cold_seconds=seconds,
                findings=findings,
                statements=len(log.statements),
                tables=tables,
                rows_read=sum(figures.table_rows.get(t, 0) for t in tables),
            )
        )
    figures.all_cold_seconds, _ = run_once(engine, judged, None)
    for check in figures.checks:
        check.warm_seconds = statistics.median(
            run_once(engine, judged, [check.name])[0] for _ in range(repeat)
        )
    runs = [run_once(engine, judged, None) for _ in range(repeat)]
    figures.all_warm_seconds = statistics.median(s for s, _ in runs)
    figures.all_findings = runs[0][1]
    # memory: a separate pass, since tracemalloc slows Python down
    tracemalloc.start()
    for check in figures.checks:
        tracemalloc.reset_peak()
        run_once(engine, judged, [check.name])
        check.tracemalloc_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.reset_peak()
    run_once(engine, judged, None)
    figures.tracemalloc_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    figures.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- report ------------------------------------------------------------------------------------------


def _rate(x: float) -> str:
    return f"{x / 1e6:.1f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def report(f: DatabaseFigures) -> str:
    lines = [f"== {f.database}: {f.location}", f"   judged {f.judged}, {f.plans:,} open plans"]
    if f.loaded:
        lines.append(
            f"   load {f.load_seconds:.1f} s (generating rows {f.load_generate_seconds:.1f} s), "
            f"{'VACUUM ANALYZE' if f.database == 'postgresql' else 'ANALYZE + PRAGMA optimize'} "
            f"{f.analyze_seconds:.1f} s, loader peak RSS {f.loader_peak_rss_mb:.0f} MB"
        )
    else:
        lines.append(f"   reused the existing register (--reuse): no load; analyze {f.analyze_seconds:.1f} s")
    lines.append("   rows: " + ", ".join(f"{t} {n:,}" for t, n in f.table_rows.items()))
    lines.append("")
    lines.append(
        f"   {'check':<14}{'cold s':>9}{'warm s':>9}{'findings':>10}{'stmts':>7}{'rows read':>12}"
        f"{'rows/s':>9}{'tracemalloc':>13}  tables"
    )
    for c in f.checks:
        lines.append(
            f"   {c.name:<14}{c.cold_seconds:>9.3f}{c.warm_seconds:>9.3f}{c.findings:>10,}{c.statements:>7}"
            f"{c.rows_read:>12,}{_rate(c.rows_per_second):>9}{c.tracemalloc_peak_mb:>10.1f} MB  "
            + ", ".join(c.tables)
        )
    total_cold = sum(c.cold_seconds for c in f.checks)
    total_warm = sum(c.warm_seconds for c in f.checks)
    lines.append(f"   {'sum':<14}{total_cold:>9.3f}{total_warm:>9.3f}")
    ok_time = "OK" if f.all_warm_seconds < TARGET_SECONDS else "MISSED"
    ok_mem = "OK" if f.peak_rss_mb * 2**20 < TARGET_BYTES else "MISSED"
    lines.append(
        f"   all checks together (one run_checks call): cold {f.all_cold_seconds:.3f} s, warm "
        f"{f.all_warm_seconds:.3f} s, {f.all_findings:,} findings  "
        f"[target < {TARGET_SECONDS:.0f} s: {ok_time}]"
    )
    lines.append(
        f"   peak memory: process RSS {f.peak_rss_mb:.0f} MB (ru_maxrss, imports included), tracemalloc "
        f"peak of all checks {f.tracemalloc_peak_mb:.1f} MB  [target < 1 GB: {ok_mem}]"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Scale benchmark of the checks on a synthetic register.")
    ap.add_argument("--plans", type=int, default=BenchSpec.plans, help="open plans (default 200000)")
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--postgres-url", default=os.environ.get("SIPFLOWS_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    ap.add_argument("--schema", default="bench", help="PostgreSQL schema for the register (default bench)")
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "sipflows-bench")
    ap.add_argument("--date", type=date.fromisoformat, default=BenchSpec.judged, help="the judged date")
    ap.add_argument("--reuse", action="store_true", help="keep a register already built with the same size")
    ap.add_argument("--repeat", type=int, default=3, help="warm runs per check; the median is reported")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)

    spec = BenchSpec(plans=args.plans, judged=args.date)
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    results: list[DatabaseFigures] = []
    for database in databases:
        print(f"-- {database}: {spec.plans:,} open plans…", file=sys.stderr, flush=True)
        if database == "sqlite":
            args.folder.mkdir(parents=True, exist_ok=True)
            url, stats = sqlite_register(args.folder, spec, args.reuse)
            location = url.removeprefix("sqlite:///")
        else:
            url, stats = postgres_register(args.postgres_url, args.schema, spec, args.reuse)
            shown = make_url(args.postgres_url).render_as_string(hide_password=True)
            location = f"{shown} schema {args.schema}"
        engine = make_engine(url)
        figures = DatabaseFigures(
            database, location, spec.plans, spec.judged.isoformat(), loaded=stats is not None
        )
        if stats is not None:
            figures.load_seconds = stats["seconds"]
            figures.load_generate_seconds = stats["generate_seconds"]
            figures.loader_peak_rss_mb = stats["peak_rss_mb"]
        figures.analyze_seconds = analyze(engine)
        figures.table_rows = table_rows(engine)
        print(f"-- running the checks on {database}…", file=sys.stderr, flush=True)
        measure(engine, figures, spec.judged, max(1, args.repeat))
        engine.dispose()
        results.append(figures)
        print(report(figures), flush=True)
        print(flush=True)
    print(
        "rows/s = rows in the tables the check's SQL names ÷ its warm seconds. cold = first run in this "
        "process; warm = median of the next runs. RSS is this process (the loader ran as a child process).",
        flush=True,
    )
    if args.json:
        payload = [
            {**asdict(r), "checks": [{**asdict(c), "rows_per_second": c.rows_per_second} for c in r.checks]}
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

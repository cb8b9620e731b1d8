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

- the daily sweep as the flow runs it (``sipflows.sweep.run_sweep``: statistics check, checks, ledger
  look-up, rendering and enqueueing what is new, one transaction) beside one ``run_checks`` call timed in
  the same run: a first day that enqueues every finding's notices, then a steady-state day with nothing
  new (the same date again, median of ``--repeat``); the ratios to ``run_checks``, and the sweeps' peak
  RSS (``VmHWM`` reset before them through ``/proc/self/clear_refs``). Targets: steady state ≤ 1.3 ×
  ``run_checks``, first day ≤ 15 s, peak RSS < 400 MB. The notices and sweep rows are deleted afterwards,
  so ``--reuse`` finds the register as built. ``--no-sweep`` leaves this part out.

``--no-analyze`` times the register as the loader (or an import) leaves it: no ``ANALYZE`` before the
checks, and on SQLite any ``sqlite_stat1`` from an earlier run dropped; the sweep part then shows what
``sipflows.db.ensure_statistics`` costs when it has to take them. (PostgreSQL's autovacuum may have
analysed the tables on its own after the load: the report says whether it had.)

    nice python benchmarks/sweep.py [--plans 200000] [--database sqlite|postgresql|both]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--date 2026-11-24] [--reuse]
        [--no-analyze] [--no-sweep | --no-checks] [--repeat 3]

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
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` and ``sipflows`` importable
    sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.synthetic import TABLES, BenchSpec  # noqa: E402
from sipflows.db import make_engine, migrate  # noqa: E402
from sipflows.policy import default_policy  # noqa: E402

TARGET_SECONDS = 5.0
TARGET_BYTES = 1 << 30
TARGET_STEADY_RATIO = 1.3
TARGET_FIRST_DAY_SECONDS = 15.0
TARGET_SWEEP_RSS_MB = 400.0
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
class SweepFigures:
    statistics_seconds: float = 0.0
    statistics_tables: list[str] = field(default_factory=list)
    statistics_fresh_seconds: float = 0.0
    run_checks_seconds: float = 0.0
    run_checks_cpu_seconds: float = 0.0
    run_checks_findings: int = 0
    first_day_seconds: float = 0.0
    first_day_cpu_seconds: float = 0.0
    first_day_enqueued: int = 0
    steady_seconds: list[float] = field(default_factory=list)
    steady_cpu_seconds: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # 1-minute, before and after the sweeps
    steady_enqueued: int = 0
    peak_rss_mb: float = 0.0
    peak_rss_source: str = ""
    only: list[str] | None = None  # the checks swept, when not all

    @property
    def steady_median(self) -> float:
        return statistics.median(self.steady_seconds) if self.steady_seconds else 0.0

    @property
    def steady_ratio(self) -> float:
        return self.steady_median / self.run_checks_seconds if self.run_checks_seconds else 0.0

    @property
    def first_day_ratio(self) -> float:
        return self.first_day_seconds / self.run_checks_seconds if self.run_checks_seconds else 0.0


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
    analyzed: bool = True
    statistics_before: str = ""
    sweep: SweepFigures | None = None

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


def drop_statistics(engine: Engine) -> None:
    """The register without planner statistics, as the loader leaves it (SQLite; PostgreSQL keeps its own)."""
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            for table in ("sqlite_stat1", "sqlite_stat4"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()  # connections forget the statistics they loaded


def statistics_state(engine: Engine) -> str:
    """What planner statistics the register has, in a few words."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first()
            rows = conn.execute(text("SELECT count(*) FROM sqlite_stat1")).scalar_one() if found else 0
            return f"sqlite_stat1 with {rows} rows" if rows else "no sqlite_stat1"
        sql = (
            "SELECT count(*) FILTER (WHERE coalesce(last_analyze, last_autoanalyze) IS NOT NULL), count(*) "
            "FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        )
        done, total = conn.execute(text(sql)).one()
        return f"{done} of {total} tables analysed (by ANALYZE or autovacuum)"


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


# -- the daily sweep ---------------------------------------------------------------------------------


def _reset_peak_rss() -> str:
    """Reset this process's peak RSS (Linux: ``5`` into ``/proc/self/clear_refs``); says what is measured."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM reset before the sweeps"
    except OSError:
        return "ru_maxrss of the whole process (VmHWM could not be reset)"


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _forget_sweeps(engine: Engine) -> None:
    """The synthetic register holds no notices: delete what the sweeps enqueued, for the next run."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM notices"))
        conn.execute(text("DELETE FROM sweep_runs"))


def measure_sweep(
    engine: Engine, judged: date, repeat: int, only: Sequence[str] | None = None
) -> SweepFigures:
    """Statistics refresh, one ``run_checks``, a first day, ``repeat`` steady-state days of run_sweep."""
    from sipflows.db import ensure_statistics
    from sipflows.settings import Settings
    from sipflows.sweep import run_sweep
    from sipflows.timeutil import STOCKHOLM

    policy = default_policy()
    settings = Settings(_env_file=None, mail_domain="bench.invalid", sender_name="SIP")  # type: ignore[call-arg]
    now = datetime.combine(judged, dt_time(6, 0), tzinfo=STOCKHOLM).astimezone(UTC)
    figures = SweepFigures()
    _forget_sweeps(engine)
    started = time.perf_counter()
    figures.statistics_tables = ensure_statistics(engine)
    figures.statistics_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ensure_statistics(engine)
    figures.statistics_fresh_seconds = time.perf_counter() - started
    figures.load_average.append(os.getloadavg()[0])
    cpu = time.process_time()
    figures.only = list(only) if only is not None else None
    figures.run_checks_seconds, figures.run_checks_findings = run_once(engine, judged, only)
    figures.run_checks_cpu_seconds = time.process_time() - cpu

    figures.peak_rss_source = _reset_peak_rss()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        first = run_sweep(engine, judged, policy, now, settings, only=only)
        figures.first_day_seconds = time.perf_counter() - started
        figures.first_day_cpu_seconds = time.process_time() - cpu
        figures.first_day_enqueued = first.enqueued
        del first
        for i in range(repeat):
            started, cpu = time.perf_counter(), time.process_time()
            again = run_sweep(engine, judged, policy, now + timedelta(hours=1 + i), settings, only=only)
            figures.steady_seconds.append(time.perf_counter() - started)
            figures.steady_cpu_seconds.append(time.process_time() - cpu)
            figures.steady_enqueued += again.enqueued
            del again
        figures.peak_rss_mb = _peak_rss_mb()
        figures.load_average.append(os.getloadavg()[0])
    finally:
        _forget_sweeps(engine)
    return figures


# -- report ------------------------------------------------------------------------------------------


def _rate(x: float) -> str:
    return f"{x / 1e6:.1f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def report(f: DatabaseFigures) -> str:
    lines = [f"== {f.database}: {f.location}", f"   judged {f.judged}, {f.plans:,} open plans"]
    how = "VACUUM ANALYZE" if f.database == "postgresql" else "ANALYZE + PRAGMA optimize"
    analysed = f"{how} {f.analyze_seconds:.1f} s" if f.analyzed else f"no {how} (--no-analyze)"
    if f.loaded:
        lines.append(
            f"   load {f.load_seconds:.1f} s (generating rows {f.load_generate_seconds:.1f} s), "
            f"{analysed}, loader peak RSS {f.loader_peak_rss_mb:.0f} MB"
        )
    else:
        lines.append(f"   reused the existing register (--reuse): no load; {analysed}")
    lines.append(f"   planner statistics when the checks ran: {f.statistics_before}")
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
    if f.sweep is not None:
        w = f.sweep
        ok = {True: "OK", False: "MISSED"}
        tables = ", ".join(w.statistics_tables) or "none: all fresh"
        lines += [
            "",
            "   daily sweep (run_sweep, as the flow runs it"
            + (f"; only the checks {', '.join(w.only)}" if w.only else "")
            + "):",
            f"   statistics at the sweep's start (ensure_statistics): {w.statistics_seconds:.3f} s, "
            f"analysed {tables}; again when fresh {w.statistics_fresh_seconds:.3f} s",
            f"   run_checks (same run, for the ratios)   {w.run_checks_seconds:>7.3f} s  "
            f"(CPU {w.run_checks_cpu_seconds:.2f} s)  {w.run_checks_findings:,} findings",
            f"   first day: run_sweep                    {w.first_day_seconds:>7.3f} s  "
            f"(CPU {w.first_day_cpu_seconds:.2f} s)  "
            f"{w.first_day_enqueued:,} notices enqueued  {w.first_day_ratio:.2f}x run_checks  "
            f"[target <= {TARGET_FIRST_DAY_SECONDS:.0f} s: "
            f"{ok[w.first_day_seconds <= TARGET_FIRST_DAY_SECONDS]}]",
            f"   steady state: run_sweep (median of {len(w.steady_seconds)}) {w.steady_median:>7.3f} s  "
            f"{w.steady_enqueued:,} enqueued  {w.steady_ratio:.2f}x run_checks  "
            f"[target <= {TARGET_STEADY_RATIO}x: {ok[w.steady_ratio <= TARGET_STEADY_RATIO]}]  "
            f"runs: {', '.join(f'{x:.2f}' for x in w.steady_seconds)} "
            f"(CPU {', '.join(f'{x:.2f}' for x in w.steady_cpu_seconds)})",
            "   CPU = this process's (the database server's is not counted); load average (1 min) "
            f"{' -> '.join(f'{x:.1f}' for x in w.load_average)}",
            f"   sweeps' peak RSS {w.peak_rss_mb:.0f} MB ({w.peak_rss_source})  "
            f"[target < {TARGET_SWEEP_RSS_MB:.0f} MB: {ok[w.peak_rss_mb < TARGET_SWEEP_RSS_MB]}]",
        ]
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
    ap.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="no ANALYZE before timing (SQLite: earlier statistics dropped): the register as imported",
    )
    ap.add_argument("--no-sweep", dest="sweep", action="store_false", help="time the checks only")
    ap.add_argument(
        "--sweep-checks",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help="sweep only these checks (comma-separated; run_checks of the ratios too): e.g. the five the "
        "sweep's targets were set with, documentation,invitations,pre_meeting,follow_up,deviations",
    )
    ap.add_argument(
        "--no-checks", dest="checks", action="store_false", help="no per-check figures: the sweep part only"
    )
    args = ap.parse_args(argv)
    if args.sweep_checks is not None:
        from sipflows.sweep import unknown_checks

        if unknown := unknown_checks(args.sweep_checks):
            ap.error(f"--sweep-checks: no check named {', '.join(unknown)}")

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
        migrate(engine)  # a register reused from an older schema
        figures.analyzed = args.analyze
        if args.analyze:
            figures.analyze_seconds = analyze(engine)
        else:
            drop_statistics(engine)
        figures.statistics_before = statistics_state(engine)
        figures.table_rows = table_rows(engine)
        print(f"-- running the checks on {database}…", file=sys.stderr, flush=True)
        if args.checks:
            measure(engine, figures, spec.judged, max(1, args.repeat))
        if args.sweep:
            print(f"-- running the daily sweep on {database}…", file=sys.stderr, flush=True)
            figures.sweep = measure_sweep(engine, spec.judged, max(1, args.repeat), args.sweep_checks)
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
            {
                **asdict(r),
                "checks": [{**asdict(c), "rows_per_second": c.rows_per_second} for c in r.checks],
                "sweep_ratios": None
                if r.sweep is None
                else {"steady_state": r.sweep.steady_ratio, "first_day": r.sweep.first_day_ratio},
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Files to import: which files a path names (in dependency order), one transaction per file, the first
failing file stops the ones after it; ``import_table`` dispatches a table to its kind's upsert."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from sipflows import collector
from sipflows.db import ensure_statistics, session_scope, trial_scope
from sipflows.importer.csvfile import Table, read_table
from sipflows.importer.directory import _import_closed_days, _import_contacts, _import_organisations
from sipflows.importer.plans import (
    _import_cases,
    _import_deviations,
    _import_invitations,
    _import_meetings,
    _import_participants,
)
from sipflows.importer.register import _Job
from sipflows.importer.results import FileResult, ImportErrors, ImportIssue, ImportReport
from sipflows.importer.specs import KINDS, PERSONAL_KINDS, SPECS


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if not name.endswith(".csv"):
        return None
    stem = name[: -len(".csv")]
    return stem if stem in SPECS else None


_HANDLERS: dict[str, Callable[[_Job], FileResult]] = {
    "organisations": _import_organisations,
    "closed_days": _import_closed_days,
    "contacts": _import_contacts,
    "cases": _import_cases,
    "participants": _import_participants,
    "meetings": _import_meetings,
    "invitations": _import_invitations,
    "deviations": _import_deviations,
}


def import_table(session: Session, table: Table, now: datetime, mail_domain: str) -> FileResult:
    """Validate and write one table in the caller's transaction; raises ImportErrors, writing nothing,
    when any row is wrong. Does not commit."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return _HANDLERS[table.kind](_Job(session, table, now, mail_domain))


def collect_files(paths: Iterable[Path | str]) -> list[tuple[Path, str]]:
    """The files to import with their kinds, in dependency order; a folder gives its ``*.csv`` files.

    Unknown file names are refused rather than skipped: a misspelt ``meeting.csv`` must not be silently
    left out."""
    issues: list[ImportIssue] = []
    found: list[tuple[Path, str]] = []
    names = ", ".join(f"{k}.csv" for k in KINDS)
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
            if not candidates:
                issues.append(ImportIssue(str(path), None, None, f"the folder has no CSV files ({names})"))
        elif path.exists():
            candidates = [path]
        else:
            issues.append(ImportIssue(str(path), None, None, "no such file or folder"))
            continue
        for candidate in candidates:
            kind = _kind_of(candidate)
            if kind is None:
                issues.append(
                    ImportIssue(str(candidate), None, None, f"not an import file; the names are: {names}")
                )
            else:
                found.append((candidate, kind))
    if issues:
        raise ImportErrors(issues, ImportReport(not_attempted=[str(p) for p, _ in found]))
    return sorted(found, key=lambda item: KINDS.index(item[1]))


def _file_error(source: str, kind: str, exc: DBAPIError) -> ImportIssue:
    # first line only: PostgreSQL's DETAIL line can quote row values; for the files that hold personal
    # data not even that line, which can quote a value too ('invalid input syntax …: "…"')
    first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if kind in PERSONAL_KINDS:
        first = type(exc.orig if exc.orig is not None else exc).__name__
    return ImportIssue(
        source, None, None, f"the database refused the file, nothing of it was written: {first}"
    )


def _stopped_at(report: ImportReport, files: Sequence[tuple[Path, str]], index: int) -> None:
    report.failed = str(files[index][0])
    report.not_attempted = [str(p) for p, _ in files[index + 1 :]]


def import_files(
    engine: Engine,
    paths: Iterable[Path | str],
    now: datetime,
    *,
    mail_domain: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import the files (or folders) in dependency order, each file in its own unit of work.

    On the first file with errors that file is written not at all, the files after it are not attempted,
    and ImportErrors is raised carrying every error of that file and a report of what was imported.
    ``now`` stamps ``Meeting.updated_at``. With ``dry_run`` everything is validated in one unit of work
    that is rolled back (later files see the earlier ones' rows).
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if mail_domain is None:
        from sipflows.settings import get_settings

        mail_domain = get_settings().mail_domain
    files = collect_files(paths)
    report = ImportReport(dry_run=dry_run)
    with ExitStack() as stack:
        trial = stack.enter_context(trial_scope(engine)) if dry_run else None
        for index, (path, kind) in enumerate(files):
            try:
                with collector.paused():
                    table = read_table(path, kind)
                    if trial is not None:
                        result = import_table(trial, table, now, mail_domain)
                    else:
                        with session_scope(engine) as session:
                            result = import_table(session, table, now, mail_domain)
            except ImportErrors as exc:
                _stopped_at(report, files, index)
                raise ImportErrors(exc.errors, report) from None
            except (IntegrityError, DataError) as exc:
                # a race with another writer, or a limit the validation does not know: still all or nothing
                _stopped_at(report, files, index)
                raise ImportErrors([_file_error(str(path), kind, exc)], report) from None
            report.files.append(result)
    if not dry_run and report.files:  # the planner's statistics follow what was imported
        ensure_statistics(engine)
    return report

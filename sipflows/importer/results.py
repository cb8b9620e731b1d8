"""What an import reports: the problems found (file, line, column, reason), the files written and the
exception that refuses a file. The bottom of the importer: it imports nothing of the package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sipflows.hygiene import one_line


@dataclass(frozen=True)
class ImportIssue:
    """One problem in one cell (or one file): where it is and what is wrong, never a personal value."""

    file: str
    line: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        # one line whatever a file name, header or value holds: a CR/LF never splits an error line
        where = one_line(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.column is None:
            return f"{where}: {one_line(self.reason)}"
        return f"{where}: column '{one_line(self.column)}': {one_line(self.reason)}"


@dataclass(frozen=True)
class FileResult:
    path: str
    kind: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    # cases.csv: future meetings cancelled because their plan was closed or consent withdrawn
    cancelled_meetings: int = 0


@dataclass
class ImportReport:
    """What was imported: the files written (in order) and the ones that were not."""

    files: list[FileResult] = field(default_factory=list)
    failed: str | None = None
    not_attempted: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def imported(self) -> list[str]:
        return [f.path for f in self.files]


class ImportErrors(Exception):
    """A file (or the list of files) was refused. ``errors`` holds every problem found in it; ``report``
    says which files before it were imported and which were not attempted."""

    def __init__(self, errors: Sequence[ImportIssue], report: ImportReport | None = None) -> None:
        self.errors = list(errors)
        self.report = report or ImportReport()
        super().__init__(f"{len(self.errors)} import error(s); first: {self.errors[0]}" if errors else "")

"""CSV import into the register: whole files or nothing, every error at once, upsert by external code.

The format is documented in ``docs/import-format.md``. Rows refer to each other by codes and references
(organisation code, contact code, case reference, meeting code), never by database ids, so that an export
from another system can be loaded as it is and loaded again to update it.

A file is validated completely before anything of it is written; if any row is wrong, nothing of that file
is written and every problem is reported as ``file:line: column 'x': reason``. Files are imported in
dependency order, each in its own transaction, and the first failing file stops the ones after it (they
would only repeat its errors as unknown references).

Work is set-based: each file loads the codes it refers to with a few ``IN`` queries and writes with bulk
INSERT and bulk UPDATE statements, so that a file of 100 000 rows is a handful of statements, not 100 000.

The package, bottom up (each module imports only those above it in this list):

- ``results``: ``ImportIssue``, ``FileResult``, ``ImportReport``, ``ImportErrors``;
- ``cells``: the cell parsers (dates, times, choices, codes, text);
- ``specs``: the kinds of file, their columns and keys;
- ``csvfile``: one CSV file (or the demo's rows) to a ``Table`` of parsed records;
- ``register``: look-ups by code, bulk writes through the driver, the per-file ``_Job``;
- ``directory``, ``plans``: the upserts per kind (organisations, closed days, contacts; cases, participants,
  meetings, invitations, deviations);
- ``files``: which files to import, in which order, one transaction each (``import_files``,
  ``import_table``).
"""

from sipflows.importer.cells import MAX_YEAR, MIN_YEAR, Parser
from sipflows.importer.csvfile import (
    CELL_LIMIT,
    Record,
    Table,
    detect_delimiter,
    parse_table,
    read_table,
    table_from_rows,
)
from sipflows.importer.files import collect_files, import_files, import_table
from sipflows.importer.results import FileResult, ImportErrors, ImportIssue, ImportReport
from sipflows.importer.specs import CALENDAR_FIELDS, KEYS, KINDS, PERSONAL_KINDS, SPECS, Column

__all__ = [
    "CALENDAR_FIELDS",
    "CELL_LIMIT",
    "KEYS",
    "KINDS",
    "MAX_YEAR",
    "MIN_YEAR",
    "PERSONAL_KINDS",
    "SPECS",
    "Column",
    "FileResult",
    "ImportErrors",
    "ImportIssue",
    "ImportReport",
    "Parser",
    "Record",
    "Table",
    "collect_files",
    "detect_delimiter",
    "import_files",
    "import_table",
    "parse_table",
    "read_table",
    "table_from_rows",
]

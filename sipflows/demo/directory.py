"""The demo region's directory — organisations and their contacts — kept as CSV files beside this module
(``organisations.csv``, ``contacts.csv``, in the import format of ``docs/import-format.md``) and read with
the importer's own ``read_table``, as a user's files are.

Every address is under example.se. Contacts without a personal escalation contact (``KOP-IFO-ERIK``) have
their escalations go to the organisation's escalation contact."""

from __future__ import annotations

from importlib.resources import as_file, files

from sipflows.importer import Table, read_table


def directory_table(kind: str) -> Table:
    """The demo's ``organisations`` or ``contacts`` table, parsed from its CSV file (``demo/<kind>.csv``)."""
    with as_file(files("sipflows.demo").joinpath(f"{kind}.csv")) as path:
        return read_table(path, kind, f"demo/{kind}.csv")


def organisation_of(contacts: Table) -> dict[str, str]:
    """Each contact's organisation code, by contact code."""
    return {rec.values["code"]: rec.values["organisation"] for rec in contacts.records}

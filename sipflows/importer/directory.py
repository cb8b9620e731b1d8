"""Upserts of the directory files: organisations, closed days and contacts (with their escalation
contacts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sipflows.importer.register import _changes, _Job, _select_dicts, _select_in, _write
from sipflows.importer.results import FileResult
from sipflows.models import (
    ClosedDay,
    Contact,
    ContactKind,
    Language,
    Organisation,
)


def _import_organisations(job: _Job) -> FileResult:
    job.check_duplicates()
    job.raise_if_issues()
    attrs = ("name", "kind", "principal")
    existing = job.existing(Organisation, Organisation.code, attrs)
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        new = {a: v[a] for a in attrs if job.has(a)}
        row = existing.get(v["code"])
        if row is None:
            inserts.append({"code": v["code"], "principal": None, **new})
        elif changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
    _write(job.session, Organisation, inserts, updates)
    return job.result(len(inserts), len(updates))


def _import_closed_days(job: _Job) -> FileResult:
    job.check_duplicates()
    orgs = job.organisations("organisation")
    job.raise_if_issues()
    rows = _select_dicts(
        job.session,
        (ClosedDay.id, ClosedDay.organisation_id, ClosedDay.day, ClosedDay.reason),
        ClosedDay.organisation_id,
        orgs.values(),
    )
    existing = {(r["organisation_id"], r["day"]): r for r in rows}
    inserts, updates = [], []
    for rec in job.records:
        v = rec.values
        org_id = orgs[v["organisation"]]
        row = existing.get((org_id, v["day"]))
        new = {"reason": v["reason"]} if job.has("reason") else {}
        if row is None:
            inserts.append({"organisation_id": org_id, "day": v["day"], "reason": None, **new})
        elif changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
    _write(job.session, ClosedDay, inserts, updates)
    return job.result(len(inserts), len(updates))


def _import_contacts(job: _Job) -> FileResult:
    job.check_duplicates()
    orgs = job.organisations("organisation")
    in_file = {r.values["code"] for r in job.records if r.values.get("code")}
    referred = [r.values.get("escalation_contact") for r in job.records]
    in_register = dict(_select_in(job.session, (Contact.code, Contact.id), Contact.code, referred))
    escalation_for: dict[str, int] = {}
    for rec in job.records:
        v = rec.values
        ref = v.get("escalation_contact")
        if ref is not None:
            if ref == v.get("code"):
                job.issue(rec.line, "escalation_contact", "a contact cannot be its own escalation contact")
            elif ref not in in_register and ref not in in_file:
                job.issue(
                    rec.line,
                    "escalation_contact",
                    f"unknown contact '{ref}' (not in the register, in this file nor in an earlier file)",
                )
        if v.get("escalation_for_organisation") and v.get("organisation") is not None:
            org_code = v["organisation"]
            if org_code in escalation_for:
                job.issue(
                    rec.line,
                    "escalation_for_organisation",
                    f"organisation '{org_code}' already has its escalation contact on line "
                    f"{escalation_for[org_code]}",
                )
            else:
                escalation_for[org_code] = rec.line
    job.raise_if_issues()

    attrs = (
        "organisation_id",
        "name",
        "email",
        "kind",
        "language",
        "report_recipient",
        "escalation_contact_id",
    )
    existing = job.existing(Contact, Contact.code, attrs)
    new_rows = [r for r in job.records if r.values["code"] not in existing]
    ids = dict(in_register) | {code: row["id"] for code, row in existing.items()}
    # New contacts go in two waves so that most escalation ids are known at INSERT time (staff after their
    # chiefs); the few left (chains, cycles) get theirs by UPDATE below.
    escalation_at_insert: dict[str, int | None] = {}
    for wave in (1, 2):
        ready = [
            r.values
            for r in new_rows
            if r.values["code"] not in escalation_at_insert
            and (
                wave == 2
                or r.values.get("escalation_contact") is None
                or r.values["escalation_contact"] in ids
            )
        ]
        for v in ready:
            escalation_at_insert[v["code"]] = ids.get(v.get("escalation_contact") or "")
        inserts = [
            {
                "code": v["code"],
                "organisation_id": orgs[v["organisation"]],
                "name": v["name"],
                "email": v["email"],
                "kind": v.get("kind", ContactKind.PERSON),
                "language": v.get("language", Language.SV),
                "report_recipient": v.get("report_recipient", False),
                "escalation_contact_id": escalation_at_insert[v["code"]],
            }
            for v in ready
        ]
        _write(job.session, Contact, inserts, [])
        ids.update(
            _select_in(job.session, (Contact.code, Contact.id), Contact.code, [v["code"] for v in ready])
        )

    updates = []
    changed: set[int] = set()
    for rec in job.records:
        v = rec.values
        new: dict[str, Any] = {
            "organisation_id": orgs[v["organisation"]],
            "name": v["name"],
            "email": v["email"],
        }
        for attr in ("kind", "language", "report_recipient"):
            if job.has(attr):
                new[attr] = v[attr]
        if job.has("escalation_contact"):
            ref = v["escalation_contact"]
            new["escalation_contact_id"] = ids[ref] if ref is not None else None
        row = existing.get(v["code"])
        if row is None:
            target = new.get("escalation_contact_id")
            if target != escalation_at_insert[v["code"]]:
                updates.append({"id": ids[v["code"]], "escalation_contact_id": target})
        elif changes := _changes(row, new):
            updates.append({"id": row["id"], **changes})
            changed.add(row["id"])
    _write(job.session, Contact, [], updates)

    if job.has("escalation_for_organisation"):
        changed |= _set_organisation_escalations(job, orgs, ids)
    existing_ids = {row["id"] for row in existing.values()}
    return job.result(len(new_rows), len(changed & existing_ids))


def _set_organisation_escalations(job: _Job, orgs: Mapping[str, int], ids: Mapping[str, int]) -> set[int]:
    """``escalation_for_organisation`` is authoritative for the contacts in the file: yes makes the contact
    its organisation's escalation contact, no takes the role away. Returns the contacts whose role changed."""
    wanted = {
        orgs[r.values["organisation"]]: ids[r.values["code"]]
        for r in job.records
        if r.values["escalation_for_organisation"]
    }
    in_file = {ids[r.values["code"]] for r in job.records}
    columns = (Organisation.id, Organisation.escalation_contact_id)
    current = dict(_select_in(job.session, columns, Organisation.id, wanted))
    current.update(_select_in(job.session, columns, Organisation.escalation_contact_id, in_file))
    updates = []
    touched: set[int] = set()
    for org_id, contact_id in current.items():
        # an organisation keeps an escalation contact the file does not mention
        target = wanted.get(org_id, None if contact_id in in_file else contact_id)
        if target != contact_id:
            updates.append({"id": org_id, "escalation_contact_id": target})
            touched.update(c for c in (target, contact_id) if c is not None)
    _write(job.session, Organisation, [], updates)
    return touched

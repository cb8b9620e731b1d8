"""A synthetic SIP register at county scale, loaded fast, for the scale benchmark.

The register is shaped like a real one around the judged date: about 110 organisations (50 kommun units in
ten Västmanland municipalities, 40 region units, Försäkringskassan, Arbetsförmedlingen, schools, …), a few
thousand contacts with escalation contacts, and ``plans`` open plans (status identified/offered/active and
consent not withdrawn). Closed plans (4 %) and active plans whose consent was just withdrawn (0.5 %) come
on top, because the checks must skip them at scale too. Active plans carry a chain of pre-meetings, SIP
meetings and follow-ups over the past year and the next two months; every meeting has invitations to the
plan's participants; deviations are spread over the past year.

Rows are generated in chunks of plans with one seeded ``random.Random`` (same seed, same register) and
written straight through the DBAPI connection: ``executemany`` with ``PRAGMA synchronous=OFF`` on SQLite,
``COPY … FROM STDIN`` on PostgreSQL. Ids are explicit, so no row is read back while loading. Timestamps
are written exactly as ``UTCDateTime`` stores them (naive UTC text on SQLite, ``+00`` on PostgreSQL).

    python -m benchmarks.synthetic --url sqlite:////tmp/bench.sqlite --plans 2000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from sipflows.timeutil import STOCKHOLM
from sipflows.workdays import is_working_day

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
DAY = 86_400

# the order rows are written in: parents before children, so foreign keys hold row by row
COLUMNS: dict[str, tuple[str, ...]] = {
    "organisations": ("id", "code", "name", "kind", "principal", "escalation_contact_id"),
    "contacts": (
        "id",
        "code",
        "organisation_id",
        "name",
        "kind",
        "email",
        "language",
        "escalation_contact_id",
        "report_recipient",
    ),
    "closed_days": ("id", "organisation_id", "day", "reason"),
    "sip_cases": (
        "id",
        "reference",
        "convener_org_id",
        "convener_contact_id",
        "coordinator_contact_id",
        "individual_name",
        "personal_identity_number",
        "case_notes",
        "consent_given_on",
        "consent_withdrawn_on",
        "status",
        "identified_on",
        "offered_on",
        "activated_on",
        "closed_on",
        "closure_reason",
        "follow_up_due",
    ),
    "participants": ("id", "case_id", "contact_id", "role"),
    "meetings": (
        "id",
        "code",
        "case_id",
        "kind",
        "starts_at",
        "ends_at",
        "place",
        "digital_link",
        "purpose",
        "status",
        "documented_at",
        "ical_uid",
        "sequence",
        "updated_at",
    ),
    "invitations": (
        "id",
        "meeting_id",
        "contact_id",
        "required",
        "sent_at",
        "answer",
        "answered_at",
        "attended",
    ),
    "deviations": (
        "id",
        "code",
        "case_id",
        "reported_by_contact_id",
        "concerning_org_id",
        "kind",
        "severity",
        "description",
        "reported_at",
        "acknowledged_at",
        "replied_at",
        "resolved_at",
    ),
}
TABLES = tuple(COLUMNS)

MUNICIPALITIES = (
    ("VAS", "Västerås"),
    ("KOP", "Köping"),
    ("ARB", "Arboga"),
    ("KGS", "Kungsör"),
    ("SAL", "Sala"),
    ("FAG", "Fagersta"),
    ("NOR", "Norberg"),
    ("SKB", "Skinnskatteberg"),
    ("SUR", "Surahammar"),
    ("HAL", "Hallstahammar"),
)
KOMMUN_UNITS = (
    ("IFO", "individ- och familjeomsorg"),
    ("VOO", "vård och omsorg"),
    ("LSS", "LSS och funktionsstöd"),
    ("EH", "elevhälsa"),
    ("PO", "personligt ombud"),
)
REGION_UNITS = (
    ("VC", "Vårdcentralen", 25),
    ("BUP", "BUP", 5),
    ("VUP", "Vuxenpsykiatrin", 5),
    ("HAB", "Habiliteringen", 5),
)
# (code, name, kind, principal, count, staff weight): ~110 organisations
OTHER_ORGS = (
    ("FK", "Försäkringskassan", "forsakringskassan", None, 3, 25),
    ("AF", "Arbetsförmedlingen", "arbetsformedlingen", None, 3, 20),
    ("SKOLA", "Skolan", "school", "kommun", 10, 15),
    ("KV", "Kriminalvården", "kriminalvarden", None, 1, 10),
    ("POL", "Polisen", "police", None, 1, 10),
    ("BO", "Brukarorganisationen", "user_organisation", None, 2, 5),
)
# who else sits at the table, besides the convener and the other principal
PARTNER_WEIGHTS = (
    ("same", 30),
    ("other", 20),
    ("forsakringskassan", 12),
    ("arbetsformedlingen", 8),
    ("school", 18),
    ("kriminalvarden", 3),
    ("police", 2),
    ("user_organisation", 7),
)
PLACES = (
    "Vårdcentralen, samtalsrum 2",
    "Socialkontoret, mötesrum Ängen",
    "BUP-mottagningen, rum 114",
    "Stadshuset, plan 3",
    "Hemma hos den enskilde",
)
PURPOSES = (
    "Samordna insatser inför skolstart",
    "Planera stöd vid utskrivning",
    "Följa upp boende och sysselsättning",
    "Klargöra ansvar mellan kommun och region",
)
DEVIATION_KINDS = (
    ("party_absent", 35),
    ("plan_not_followed", 25),
    ("documentation_late", 20),
    ("invitation_not_answered", 12),
    ("other", 8),
)
DEVIATION_TEXTS = (
    "Kallad part uteblev utan att meddela förhinder.",
    "Överenskommen insats har inte påbörjats enligt planen.",
    "Planen dokumenterades inte i tid i det gemensamma systemet.",
    "Kallelsen besvarades inte trots påminnelse.",
)


@dataclass(frozen=True)
class BenchSpec:
    """How big the register is and which day it is judged on; the rest scales with ``plans``."""

    plans: int = 200_000
    judged: date = date(2026, 11, 24)
    seed: int = 20261124
    chunk_plans: int = 5_000
    closed_share: float = 0.04
    withdrawn_share: float = 0.005
    deviations_per_plan: float = 0.25  # 50,000 at 200,000 plans
    max_contacts: int = 3_000

    @property
    def closed(self) -> int:
        return round(self.plans * self.closed_share)

    @property
    def withdrawn(self) -> int:
        return round(self.plans * self.withdrawn_share)

    @property
    def total_plans(self) -> int:
        return self.plans + self.closed + self.withdrawn

    @property
    def deviations(self) -> int:
        return round(self.plans * self.deviations_per_plan)

    @property
    def contacts(self) -> int:
        return max(400, min(self.max_contacts, self.plans * 3 // 200))


@dataclass
class LoadStats:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    generate_seconds: float = 0.0
    open_plans: int = 0
    total_plans: int = 0
    peak_rss_mb: float = 0.0


Rows = dict[str, list[tuple[Any, ...]]]
Writer = Callable[[str, list[tuple[Any, ...]]], None]


class Format:
    """Dates and UTC timestamps as text the way the register stores them on one database."""

    def __init__(self, time_suffix: str) -> None:
        self._days: dict[int, str] = {}
        self._times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{time_suffix}" for s in range(DAY)]

    def day(self, ordinal: int | None) -> str | None:
        if ordinal is None:
            return None
        text = self._days.get(ordinal)
        if text is None:
            text = self._days[ordinal] = date.fromordinal(ordinal).isoformat()
        return text

    def ts(self, epoch: int | None) -> str | None:
        if epoch is None:
            return None
        d, s = divmod(epoch, DAY)
        return f"{self.day(d + EPOCH_ORDINAL)} {self._times[s]}"


SQLITE_FORMAT_SUFFIX = ".000000"  # SQLAlchemy's SQLite DATETIME text: 'YYYY-MM-DD HH:MM:SS.ffffff'
POSTGRES_FORMAT_SUFFIX = "+00"


class SqliteSink:
    """``executemany`` on the engine's own sqlite3 connection, synchronous off while loading."""

    def __init__(self, engine: Engine) -> None:
        self.format = Format(SQLITE_FORMAT_SUFFIX)
        self._fairy = engine.raw_connection()
        conn = self._fairy.driver_connection
        assert conn is not None, "the engine gave no DBAPI connection"
        self.conn: Any = conn
        for pragma in ("synchronous=OFF", "cache_size=-262144", "temp_store=MEMORY"):
            self.conn.execute(f"PRAGMA {pragma}")

    def write(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        cols = COLUMNS[table]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self.conn.executemany(sql, rows)

    def link_escalation_contacts(self, pairs: Sequence[tuple[int, int]]) -> None:
        self.conn.executemany(
            "UPDATE organisations SET escalation_contact_id = ? WHERE id = ?", [(c, o) for o, c in pairs]
        )

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.commit()
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._fairy.close()


class PostgresSink:
    """``COPY … FROM STDIN`` through psycopg 3 on the engine's raw connection."""

    def __init__(self, engine: Engine) -> None:
        self.format = Format(POSTGRES_FORMAT_SUFFIX)
        self._fairy = engine.raw_connection()
        conn = self._fairy.driver_connection
        assert conn is not None, "the engine gave no DBAPI connection"
        self.conn: Any = conn
        with self.conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")

    def write(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        cols = ", ".join(COLUMNS[table])
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def link_escalation_contacts(self, pairs: Sequence[tuple[int, int]]) -> None:
        with self.conn.cursor() as cur:
            sql = "UPDATE organisations SET escalation_contact_id = %s WHERE id = %s"
            cur.executemany(sql, [(c, o) for o, c in pairs])

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        # ids were given explicitly: move every id sequence past them for later inserts
        with self.conn.cursor() as cur:
            for table in TABLES:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
        self.conn.commit()
        self._fairy.close()


Sink = SqliteSink | PostgresSink


def make_sink(engine: Engine) -> Sink:
    return SqliteSink(engine) if engine.dialect.name == "sqlite" else PostgresSink(engine)


class _Calendar:
    """National working days as a sorted list of ordinals: add n working days by bisection."""

    def __init__(self, first: int, last: int) -> None:
        self.days = [o for o in range(first, last + 1) if is_working_day(date.fromordinal(o))]
        self._offsets: dict[int, int] = {}

    def add(self, ordinal: int, n: int) -> int:
        if n <= 0:
            return ordinal
        return self.days[bisect_right(self.days, ordinal) + n - 1]

    def on_or_after(self, ordinal: int) -> int:
        i = bisect_right(self.days, ordinal - 1)
        return self.days[i]

    def utc_offset(self, ordinal: int) -> int:
        """Seconds Stockholm is ahead of UTC at noon on that day (meetings are held in daytime)."""
        off = self._offsets.get(ordinal)
        if off is None:
            noon = datetime.combine(date.fromordinal(ordinal), datetime.min.time(), tzinfo=STOCKHOLM)
            noon = noon.replace(hour=12)
            delta = noon.utcoffset()
            off = self._offsets[ordinal] = int(delta.total_seconds()) if delta else 0
        return off


class Generator:
    """Builds the register's rows chunk by chunk; ``write`` receives (table, rows)."""

    def __init__(self, spec: BenchSpec, fmt: Format) -> None:
        self.spec = spec
        self.fmt = fmt
        self.rng = random.Random(spec.seed)
        self.j = spec.judged.toordinal()
        self.cal = _Calendar(self.j - 4 * 366, self.j + 400)
        # the register as it stands at 06:00 local on the judged day: nothing is recorded after that
        self.snapshot = self.epoch(self.j, 6 * 60)
        self.counts: Counter[str] = Counter()
        self._ids: Counter[str] = Counter()

    # -- small helpers -------------------------------------------------------------------------
    def epoch(self, ordinal: int, minute_of_day: int) -> int:
        """A Stockholm wall-clock minute as UTC epoch seconds."""
        return (ordinal - EPOCH_ORDINAL) * DAY + minute_of_day * 60 - self.cal.utc_offset(ordinal)

    def next_id(self, table: str) -> int:
        self._ids[table] += 1
        return self._ids[table]

    # -- organisations and contacts --------------------------------------------------------------
    def organisations(self, write: Writer) -> list[tuple[int, int]]:
        """Writes organisations, contacts and closed days; returns (organisation, escalation contact)."""
        rng = self.rng
        orgs: list[tuple[str, str, str, str | None, int]] = []  # code, name, kind, principal, weight
        for mcode, mname in MUNICIPALITIES:
            for ucode, uname in KOMMUN_UNITS:
                orgs.append((f"K-{mcode}-{ucode}", f"{mname} {uname}", "municipal_unit", "kommun", 30))
        for ucode, uname, n in REGION_UNITS:
            for i in range(1, n + 1):
                orgs.append((f"R-{ucode}-{i:02d}", f"{uname} {i}", "region_unit", "region", 28))
        for code, name, kind, principal, n, weight in OTHER_ORGS:
            for i in range(1, n + 1):
                orgs.append((f"{code}-{i:02d}", f"{name} {i}", kind, principal, weight))
        self.org_kind: dict[int, str] = {}
        self.org_principal: dict[int, str | None] = {}
        rows = []
        for i, (code, name, kind, principal, _w) in enumerate(orgs, start=1):
            rows.append((i, code, name, kind, principal, None))
            self.org_kind[i] = kind
            self.org_principal[i] = principal
        write("organisations", rows)
        self.counts["organisations"] = len(rows)

        # contacts: each organisation's functional escalation mailbox first, then unit managers, then staff
        contacts: list[tuple[Any, ...]] = []
        self.contact_org: dict[int, int] = {}
        escalation: list[tuple[int, int]] = []
        managers: dict[int, list[int]] = {}

        def add(org_id: int, name: str, kind: str, esc: int | None, report: bool) -> int:
            cid = len(contacts) + 1
            code = orgs[org_id - 1][0].lower()
            lang = "en" if rng.random() < 0.03 else "sv"
            contacts.append(
                (cid, f"C{cid:05d}", org_id, name, kind, f"c{cid}@{code}.example.se", lang, esc, report)
            )
            self.contact_org[cid] = org_id
            return cid

        for org_id in range(1, len(orgs) + 1):
            escalation.append((org_id, add(org_id, "SIP-eskalering", "functional", None, True)))
        for org_id in range(1, len(orgs) + 1):
            n_managers = rng.randint(1, 2)
            managers[org_id] = [
                add(org_id, f"Enhetschef {k}", "person", None, k == 1) for k in range(1, n_managers + 1)
            ]
        staff_total = self.spec.contacts - len(contacts)
        weights = [o[4] for o in orgs]
        per_org = [max(2, round(staff_total * w / sum(weights))) for w in weights]
        self.staff: dict[int, list[int]] = {}
        for org_id, n in enumerate(per_org, start=1):
            self.staff[org_id] = [
                add(
                    org_id,
                    f"Handläggare {k}",
                    "person",
                    rng.choice(managers[org_id]) if rng.random() < 0.6 else None,
                    False,
                )
                for k in range(1, n + 1)
            ]
        write("contacts", contacts)
        self.counts["contacts"] = len(contacts)

        self.kommun_orgs = [o for o, k in self.org_kind.items() if k == "municipal_unit"]
        self.region_orgs = [o for o, k in self.org_kind.items() if k == "region_unit"]
        self.pool: dict[str, list[int]] = {}
        for org_id, ids in self.staff.items():
            self.pool.setdefault(self.org_kind[org_id], []).extend(ids)
        self.pool["kommun"] = [c for o in self.kommun_orgs for c in self.staff[o]]
        self.pool["region"] = [c for o in self.region_orgs for c in self.staff[o]]
        self.partner_kinds = [k for k, _ in PARTNER_WEIGHTS]
        self.partner_cum = []
        acc = 0
        for _, w in PARTNER_WEIGHTS:
            acc += w
            self.partner_cum.append(acc)

        # a few organisations close extra days around the judged date (a klämdag, a staff day)
        closed: list[tuple[Any, ...]] = []
        for org_id in rng.sample(range(1, len(orgs) + 1), 6):
            days = set()
            for _ in range(rng.randint(1, 4)):
                days.add(self.cal.on_or_after(self.j + rng.randint(-20, 20)))
            for d in sorted(days):
                closed.append((len(closed) + 1, org_id, self.fmt.day(d), "Planeringsdag"))
        write("closed_days", closed)
        self.counts["closed_days"] = len(closed)
        return escalation

    # -- plans -------------------------------------------------------------------------------------
    def statuses(self) -> bytearray:
        """Status of every plan, shuffled: a active, i identified, o offered, w withdrawn, c closed."""
        spec = self.spec
        n_ident = round(spec.plans * 0.08)
        n_offer = round(spec.plans * 0.12)
        codes = bytearray(
            b"i" * n_ident
            + b"o" * n_offer
            + b"a" * (spec.plans - n_ident - n_offer)
            + b"w" * spec.withdrawn
            + b"c" * spec.closed
        )
        self.rng.shuffle(codes)
        return codes

    def deviation_cases(self, statuses: bytearray) -> Counter[int]:
        eligible = [i + 1 for i, s in enumerate(statuses) if s in b"awc"]
        return Counter(self.rng.choices(eligible, k=self.spec.deviations))

    def plans(self, write: Writer, progress: Callable[[int], None]) -> None:
        statuses = self.statuses()
        dev_cases = self.deviation_cases(statuses)
        chunk = self.spec.chunk_plans
        for start in range(0, len(statuses), chunk):
            rows: Rows = {t: [] for t in TABLES[3:]}
            for idx in range(start, min(start + chunk, len(statuses))):
                case_id = idx + 1
                self.plan(case_id, chr(statuses[idx]), dev_cases.get(case_id, 0), rows)
            for table, table_rows in rows.items():
                write(table, table_rows)
                self.counts[table] += len(table_rows)
            progress(min(start + chunk, len(statuses)))

    def _partners(self, convener_kommun: bool, convener: int, n: int) -> list[int]:
        rng = self.rng
        chosen: list[int] = []
        if rng.random() < 0.92:
            chosen.append(rng.choice(self.pool["region" if convener_kommun else "kommun"]))
        tries = 0
        while len(chosen) < n and tries < 20:
            tries += 1
            kind = self.partner_kinds[bisect_right(self.partner_cum, rng.random() * self.partner_cum[-1])]
            if kind == "same":
                kind = "kommun" if convener_kommun else "region"
            elif kind == "other":
                kind = "region" if convener_kommun else "kommun"
            c = rng.choice(self.pool[kind])
            if c != convener and c not in chosen:
                chosen.append(c)
        return chosen

    def plan(self, case_id: int, status: str, n_deviations: int, rows: Rows) -> None:
        rng = self.rng
        r = rng.random
        ri = rng.randint
        j = self.j
        convener_kommun = r() < 0.55
        convener_org = rng.choice(self.kommun_orgs if convener_kommun else self.region_orgs)
        convener = rng.choice(self.staff[convener_org])
        partners = self._partners(convener_kommun, convener, ri(3, 5))
        coordinator = None
        if r() < 0.25:
            coordinator = rng.choice(self.pool["kommun" if r() < 0.5 else "region"])
            if coordinator == convener:
                coordinator = None

        # the life of the plan: meeting kinds and local dates, and the plan's own dates
        kinds: list[str] = []
        days: list[int] = []
        consent_given = offered = activated = closed_on = withdrawn = follow_up_due = None
        closure_reason = None
        if status == "i":
            identified = j - ri(1, 60)
            if r() < 0.3:
                consent_given = min(j - 1, identified + ri(0, 10))
            if r() < 0.3:
                kinds, days = ["pre_meeting"], [j + ri(-20, 30)]
            db_status = "identified"
        elif status == "o":
            identified = j - ri(10, 150)
            offered = min(j - 1, identified + ri(0, 14))
            if r() < 0.7:
                consent_given = min(j - 1, offered + ri(0, 10))
            pre = j + ri(-30, 25)
            kinds, days = ["pre_meeting"], [pre]
            if r() < 0.75:
                kinds.append("sip_meeting")
                days.append(pre + ri(4, 30))
            db_status = "offered"
        else:
            length = ri(5, 7) if status != "c" else ri(3, 6)
            kinds = ["pre_meeting", "sip_meeting"]
            while len(kinds) < length:
                if r() < 0.35 and len(kinds) < length - 1:
                    kinds += ["pre_meeting", "follow_up"]
                else:
                    kinds.append("follow_up")
            if status == "c":
                end = j - ri(10, 300)
                first = end - ri(60, 330)
            else:
                first = j - ri(40, 365)
                end = j + ri(-30, 60)
            gaps = [ri(3, 14) if k == "pre_meeting" else 0 for k in kinds[:-1]]
            free = max(0, end - first - sum(gaps))
            weights = [0.0 if g else 0.5 + r() for g in gaps]
            total = sum(weights) or 1.0
            day = first
            days = [first]
            for g, w in zip(gaps, weights, strict=True):
                day += g or max(7, int(free * w / total))
                days.append(day)
            identified = first - ri(7, 60)
            offered = identified + ri(0, 7)
            consent_given = activated = min(first, offered + ri(0, 5))
            db_status = "active"
            if status == "c":
                db_status = "closed"
                closed_on = min(j - 1, days[-1] + ri(1, 30))
                x = r()
                closure_reason = "need_met" if x < 0.75 else "consent_withdrawn" if x < 0.95 else "other"
                if closure_reason == "consent_withdrawn":
                    withdrawn = closed_on
            elif status == "w":
                withdrawn = j - ri(1, 20)
        days = [self.cal.on_or_after(d) for d in days]
        if db_status == "active" and r() < 0.85:
            future_fu = [d for k, d in zip(kinds, days, strict=True) if k == "follow_up" and d >= j]
            if future_fu:
                follow_up_due = future_fu[0] + ri(-7, 14)
            elif min(days) < j:
                follow_up_due = max(d for d in days if d < j) + ri(20, 200)
            else:
                follow_up_due = j + ri(30, 120)

        day_ = self.fmt.day
        rows["sip_cases"].append(
            (
                case_id,
                f"SIP-{case_id:07d}",
                convener_org,
                convener,
                coordinator,
                f"Person {case_id}",
                f"19{ri(40, 99)}{ri(1, 12):02d}{ri(1, 28):02d}-{ri(0, 9999):04d}",
                "Insatser från socialtjänst och psykiatri; se journal.",
                day_(consent_given),
                day_(withdrawn),
                db_status,
                day_(identified),
                day_(offered),
                day_(activated),
                day_(closed_on),
                closure_reason,
                day_(follow_up_due),
            )
        )
        participants = rows["participants"]
        nid = self.next_id
        participants.append((nid("participants"), case_id, convener, "convener"))
        for p in partners:
            participants.append((nid("participants"), case_id, p, "participant"))
        if coordinator is not None and coordinator not in partners:
            participants.append((nid("participants"), case_id, coordinator, "coordinator"))

        past_meetings: list[int] = []
        for kind, d in zip(kinds, days, strict=True):
            past = self.meeting(case_id, kind, d, partners, rows)
            if past is not None:
                past_meetings.append(past)
        for _ in range(n_deviations):
            self.deviation(case_id, identified, convener, partners, past_meetings, rows)

    def meeting(self, case_id: int, kind: str, d: int, invitees: list[int], rows: Rows) -> int | None:
        """Writes one meeting and its invitations; returns its start when it was held before the snapshot."""
        rng = self.rng
        r = rng.random
        ri = rng.randint
        j = self.j
        ts = self.fmt.ts
        mid = self.next_id("meetings")
        minute = 8 * 60 + 30 * ri(0, 15)
        length = rng.choice((45, 60)) if kind == "pre_meeting" else rng.choice((60, 90, 90, 120))
        starts = self.epoch(d, minute)
        ends = starts + length * 60
        x = r()
        if d < j:
            status = "held" if x < 0.88 else "cancelled" if x < 0.96 else "scheduled"
        else:
            status = "scheduled" if x < 0.95 else "cancelled"
        documented = None
        if status == "held" and kind != "pre_meeting":
            y = r()
            if y < 0.98:
                lag = (
                    0 if y < 0.3 else 1 if y < 0.6 else 2 if y < 0.8 else ri(3, 5) if y < 0.92 else ri(6, 20)
                )
                if lag == 0:
                    documented = ends + ri(30, 240) * 60
                else:
                    documented = self.epoch(self.cal.add(d, lag), ri(8 * 60, 17 * 60))
                if documented > self.snapshot:
                    documented = None
        created = self.epoch(d - ri(10, 40), ri(8 * 60, 16 * 60))
        digital = r() < 0.4
        code = f"M{mid:08d}"
        rows["meetings"].append(
            (
                mid,
                code,
                case_id,
                kind,
                ts(starts),
                ts(ends),
                None if digital else rng.choice(PLACES),
                f"https://meet.example.se/sip/{code.lower()}" if digital else None,
                rng.choice(PURPOSES),
                status,
                ts(documented),
                f"{code.lower()}@bench.sipflows.invalid",
                0 if r() < 0.8 else ri(1, 3),
                ts(min(created, self.snapshot)),
            )
        )
        if kind == "pre_meeting":
            invited = rng.sample(invitees, min(len(invitees), ri(1, 3))) if invitees else []
        else:
            invited = [c for c in invitees if r() < 0.92] or invitees[:1]
        held = status == "held"
        future = d >= j
        inv = rows["invitations"]
        for contact in invited:
            sent: int | None = self.epoch(d - ri(5, 30), ri(8 * 60, 16 * 60))
            answer = "none"
            answered = attended = None
            assert sent is not None
            if sent > self.snapshot:
                sent = None
            else:
                age_days = (self.snapshot - sent) / DAY
                p_answered = min(0.85, 0.2 + 0.1 * age_days) if future else 0.9
                if r() < p_answered:
                    answered = sent + int(rng.expovariate(1 / (1.5 * DAY)))
                    if answered < min(starts, self.snapshot):
                        y = r()
                        answer = "accepted" if y < 0.78 else "tentative" if y < 0.85 else "declined"
                    else:
                        answered = None
            if held:
                attended = (
                    r() < 0.93
                    if answer == "accepted"
                    else r() < 0.6
                    if answer == "tentative"
                    else False
                    if answer == "declined"
                    else r() < 0.3
                )
            iid = self.next_id("invitations")
            inv.append((iid, mid, contact, r() < 0.85, ts(sent), answer, ts(answered), attended))
        return starts if held and starts < self.snapshot else None

    def deviation(
        self,
        case_id: int,
        identified: int,
        convener: int,
        partners: list[int],
        past_meetings: list[int],
        rows: Rows,
    ) -> None:
        rng = self.rng
        r = rng.random
        ri = rng.randint
        ts = self.fmt.ts
        did = self.next_id("deviations")
        people = [convener, *partners]
        reporter = rng.choice(people)
        others = [p for p in people if self.contact_org[p] != self.contact_org[reporter]] or people
        concerning = self.contact_org[rng.choice(others)]
        if past_meetings:
            reported = rng.choice(past_meetings) + ri(2, 72) * 3600
        else:
            reported = self.epoch(rng.randint(min(identified, self.j - 1), self.j - 1), ri(8 * 60, 17 * 60))
        reported = min(reported, self.snapshot - 3600)
        age = (self.snapshot - reported) / DAY
        acknowledged = replied = resolved = None
        if r() < (0.95 if age > 10 else 0.55):
            acknowledged = reported + int(rng.expovariate(1 / (2 * DAY)))
        if r() < (0.8 if age > 90 else 0.45 if age > 30 else 0.1):
            replied = reported + ri(5, 60) * DAY
            acknowledged = min(acknowledged or reported + DAY, replied)
            resolved = replied + ri(0, 20) * DAY
        elif r() < (0.5 if age > 30 else 0.2):
            replied = reported + ri(3, max(3, min(int(age), 60))) * DAY
        acknowledged, replied, resolved = (
            t if t is not None and t < self.snapshot else None for t in (acknowledged, replied, resolved)
        )
        kind = rng.choices([k for k, _ in DEVIATION_KINDS], [w for _, w in DEVIATION_KINDS])[0]
        rows["deviations"].append(
            (
                did,
                f"AVV-{did:07d}",
                case_id,
                reporter,
                concerning,
                kind,
                "high" if r() < 0.15 else "normal",
                rng.choice(DEVIATION_TEXTS),
                ts(reported),
                ts(acknowledged),
                ts(replied),
                ts(resolved),
            )
        )


def load_register(
    engine: Engine, spec: BenchSpec, progress: Callable[[int], None] | None = None
) -> LoadStats:
    """Fill a migrated, empty register with the synthetic one; returns row counts and seconds."""
    started = time.perf_counter()
    sink = make_sink(engine)
    gen = Generator(spec, sink.format)
    generate = 0.0
    tick = time.perf_counter()

    def write(table: str, rows: list[tuple[Any, ...]]) -> None:
        nonlocal generate, tick
        now = time.perf_counter()
        generate += now - tick
        sink.write(table, rows)
        tick = time.perf_counter()

    def chunk_done(done: int) -> None:
        sink.commit()
        if progress:
            progress(done)

    try:
        escalation = gen.organisations(write)
        sink.link_escalation_contacts(escalation)
        sink.commit()
        gen.plans(write, chunk_done)
    finally:
        sink.close()
    return LoadStats(
        rows=dict(gen.counts),
        seconds=time.perf_counter() - started,
        generate_seconds=generate,
        open_plans=spec.plans,
        total_plans=spec.total_plans,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Migrate the register at ``--url`` and load it; prints the load statistics as JSON on stdout."""
    from sipflows.db import make_engine, migrate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--plans", type=int, default=BenchSpec.plans)
    ap.add_argument("--date", type=date.fromisoformat, default=BenchSpec.judged)
    ap.add_argument("--seed", type=int, default=BenchSpec.seed)
    args = ap.parse_args(argv)
    spec = BenchSpec(plans=args.plans, judged=args.date, seed=args.seed)
    engine = make_engine(args.url)
    migrate(engine)

    def progress(done: int) -> None:
        print(f"  loaded {done:,}/{spec.total_plans:,} plans", file=sys.stderr, flush=True)

    stats = load_register(engine, spec, progress)
    engine.dispose()
    print(json.dumps(asdict(stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

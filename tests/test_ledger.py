"""The ledger inserts each key once: twice in a row, within a batch, and from two processes at once."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from sipflows.db import make_engine
from sipflows.models import Notice, NoticeStatus
from sipflows.notices.ledger import NoticeDraft, enqueue, insert_drafts, message_id_for

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def drafts(n: int, prefix: str = "documentation:meeting") -> list[NoticeDraft]:
    return [
        NoticeDraft(
            key=f"{prefix}:{i}:reminder:c{i % 7}",
            kind="documentation.reminder",
            address=f"c{i % 7}@example.se",
            subject=f"Dokumentera plan SIP-{i}",
            body_text="text",
            body_html="<p>html</p>",
        )
        for i in range(n)
    ]


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Notice)) or 0


def test_enqueue_twice_inserts_once(session: Session) -> None:
    batch = drafts(30)
    assert enqueue(session, batch, NOW, "sipflows.test") == 30
    session.commit()
    assert enqueue(session, batch, NOW + timedelta(hours=1), "sipflows.test") == 0
    session.commit()
    assert count(session) == 30
    row = session.scalars(select(Notice).where(Notice.key == batch[0].key)).one()
    assert row.status == NoticeStatus.PENDING and row.attempts == 0
    assert row.created_at == NOW and row.next_attempt_at == NOW  # the first insert stands
    assert row.message_id == message_id_for(batch[0].key, "sipflows.test")


def test_duplicate_keys_within_one_batch_insert_once(session: Session) -> None:
    batch = drafts(5)
    assert enqueue(session, batch + batch[::-1] + batch[:2], NOW, "sipflows.test") == 5
    assert count(session) == 5


def test_new_keys_among_old_ones_are_inserted(session: Session) -> None:
    assert enqueue(session, drafts(10), NOW, "d") == 10
    assert enqueue(session, drafts(15), NOW, "d") == 5
    assert count(session) == 15


def test_large_batches_span_chunks(session: Session) -> None:
    assert enqueue(session, drafts(1234), NOW, "d") == 1234
    assert enqueue(session, drafts(1300), NOW, "d") == 66
    assert count(session) == 1300


def test_inserted_keys_are_exactly_the_new_ones(session: Session) -> None:
    """What the sweep lists for operations: the keys this call inserted, not those already there, even
    when they were stamped with the same time; across chunks too."""
    old = drafts(5100)[::3]
    assert sorted(insert_drafts(session.connection(), old, NOW, "d")) == sorted(d.key for d in old)
    # more than one chunk of the insert (5,000 rows); repeats within the call count once
    batch = drafts(5100) + drafts(5100)[:5]
    inserted = insert_drafts(session.connection(), batch, NOW, "d")
    assert len(inserted) == len(set(inserted)) == 5100 - len(old)
    assert set(inserted) == {d.key for d in batch} - {d.key for d in old}
    assert insert_drafts(session.connection(), batch, NOW, "d") == []
    assert count(session) == 5100


def test_a_role_without_temporary_tables_enqueues_a_large_batch_all_the_same(engine: Engine) -> None:
    """A hardened database may revoke TEMPORARY from PUBLIC: the staged insert is not open to such a
    role, so a large call takes the JSON document instead of failing the sweep."""
    if engine.dialect.name != "postgresql":
        pytest.skip("TEMPORARY is PostgreSQL's privilege")
    role = f"sipflows_notemp_{uuid.uuid4().hex[:8]}"
    schema = engine.url.query["options"].split("=", 1)[1]
    with engine.begin() as conn:
        database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        conn.exec_driver_sql(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
        conn.exec_driver_sql(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}')
        conn.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
    limited = make_engine(engine.url.set(username=role).render_as_string(hide_password=False))
    try:
        with Session(limited) as session:
            may = session.connection().exec_driver_sql(
                "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
            )
            assert may.scalar_one() is False
            assert len(insert_drafts(session.connection(), drafts(1_200), NOW, "d")) == 1_200
            session.commit()
    finally:
        limited.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql(f'GRANT TEMPORARY ON DATABASE "{database}" TO PUBLIC')
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
    with Session(engine) as session:
        assert count(session) == 1_200


def test_naive_now_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="aware"):
        enqueue(session, drafts(1), datetime(2026, 3, 2), "d")


def _enqueue_in_process(url: str, n: int, reverse: bool, barrier: object, results: object) -> None:
    """Runs in a fresh interpreter (spawn): its own engine, its own transaction."""
    engine = make_engine(url)
    batch = drafts(n)
    if reverse:
        batch.reverse()  # the other process sees the same keys in the opposite order
    with Session(engine) as session:
        session.connection()  # connected and in a transaction before the start signal
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        inserted = enqueue(session, batch, NOW, "sipflows.test")
        time.sleep(0.3)  # hold the uncommitted rows: the other process must wait on them, not duplicate
        session.commit()
    results.put(inserted)  # type: ignore[attr-defined]
    engine.dispose()


@pytest.mark.skipif(
    not os.environ.get("SIPFLOWS_TEST_POSTGRES_URL"), reason="needs SIPFLOWS_TEST_POSTGRES_URL"
)
@pytest.mark.parametrize("n", [200, 1_200], ids=["json", "staged"])  # the two ways of _enqueue_postgresql
def test_two_processes_enqueue_the_same_drafts_once(engine: Engine, db_url: str, n: int) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the concurrent test runs against PostgreSQL")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_enqueue_in_process, args=(db_url, n, rev, barrier, results))
        for rev in (False, True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    inserted = sorted(results.get(timeout=5) for _ in procs)
    assert sum(inserted) == n  # each key inserted by exactly one of them
    with Session(engine) as session:
        assert count(session) == n
        keys = session.scalars(select(Notice.key)).all()
        assert len(set(keys)) == n

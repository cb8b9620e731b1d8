"""the ledger's rows keep their bodies inline and uncompressed on PostgreSQL (``toast_tuple_target``)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:30:00

A notice is about 2.3 kB (subject, text and HTML bodies, an invitation's calendar part), just over the
2 kB at which PostgreSQL starts compressing a row's largest values. Every insert then ran ``pglz`` over
the HTML body and every dispatch decompressed it again: on the first day of a sweep, 103,710 notices,
that compression was about a sixth of the server's work on the insert (``EXPLAIN ANALYZE`` of 20,000
drafts: 0.92–1.00 s, 0.76–0.78 s with this). With the target at a page's worth (8160 bytes), rows up to
that size stay as they are; larger ones (a long invitation list) are still compressed and moved out of
line. The price is space: about 350 bytes more per notice. SQLite has no such setting.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE notices SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE notices RESET (toast_tuple_target)")

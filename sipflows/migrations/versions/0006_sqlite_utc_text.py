"""UTC times the importer wrote on SQLite get the text form SQLAlchemy writes (with microseconds)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:10:00

SQLite stores a time as text and compares it as text. SQLAlchemy writes ``2026-09-21 07:00:00.000000``;
the importer's bulk path (before this revision) wrote ``2026-09-21 07:00:00`` for a whole second, which
sorts *before* the same instant written by SQLAlchemy, so a check's cut-off at exactly a meeting's start
(or an answer's, a report's) put that row on the wrong side. This appends the missing ``.000000`` to every
such value; PostgreSQL stores ``timestamptz`` and has nothing to do. Data only: downgrading keeps the
values, which the earlier code reads as well.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

# every UTC time column of the register (models.UTCDateTime)
UTC_COLUMNS = {
    "meetings": ("starts_at", "ends_at", "documented_at", "updated_at"),
    "invitations": ("sent_at", "answered_at"),
    "deviations": ("reported_at", "acknowledged_at", "replied_at", "resolved_at"),
    "notices": ("next_attempt_at", "claimed_until", "created_at", "sent_at"),
    "sweep_runs": ("started_at", "finished_at"),
}


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":  # works offline (--sql) too
        return
    for table, columns in UTC_COLUMNS.items():
        for column in columns:
            # 'YYYY-MM-DD HH:MM:SS' is 19 characters; every other stored form already has its fraction
            op.execute(f"UPDATE {table} SET {column} = {column} || '.000000' WHERE length({column}) = 19")


def downgrade() -> None:
    pass

"""meetings by case, kind, status and start: the checks' per-plan look-ups without planner statistics

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:40:00

``pre_meeting`` and ``follow_up`` ask, per plan, for its meetings of one kind in one status around a
time. With only ``ix_meetings_case_kind`` SQLite, lacking ``sqlite_stat1`` (a register nobody has
ANALYZEd), chose ``ix_meetings_status_start`` instead and rescanned every held meeting per plan: cost
growing with the square of the register. ``ix_meetings_case_kind_status_start`` answers those look-ups
from the index alone, with or without statistics. It replaces ``ix_meetings_case_kind``, its prefix.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_meetings_case_kind_status_start", "meetings", ["case_id", "kind", "status", "starts_at"]
    )
    op.drop_index("ix_meetings_case_kind", table_name="meetings")


def downgrade() -> None:
    op.create_index("ix_meetings_case_kind", "meetings", ["case_id", "kind"])
    op.drop_index("ix_meetings_case_kind_status_start", table_name="meetings")

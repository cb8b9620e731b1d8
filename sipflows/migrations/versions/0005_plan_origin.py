"""the plan's origin (ordinary or discharge, with the discharge date) and whether it is for a child

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:30:00

What the first-meeting check needs to pick its time limit: ``sip_cases.origin`` (``ordinary`` by default,
``discharge`` for a plan arising at discharge from inpatient care, Lag 2017:612), ``discharged_on`` (set
exactly when the origin is ``discharge``) and ``under_18`` (a yes/no, never a birth date). Existing plans
become ordinary plans for adults, which is what the register said about them before.

The constraints are column constraints of ``ADD COLUMN``: SQLite adds them without rebuilding the table
(a rebuild would drop and recreate ``sip_cases``, which the meetings' ON DELETE CASCADE must never see).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE sip_cases ADD COLUMN origin VARCHAR(32) DEFAULT 'ordinary' NOT NULL "
        "CONSTRAINT plan_origin CHECK (origin IN ('ordinary', 'discharge'))"
    )
    op.execute(
        "ALTER TABLE sip_cases ADD COLUMN discharged_on DATE "
        "CONSTRAINT ck_case_discharge_date CHECK ("
        "(origin = 'discharge' AND discharged_on IS NOT NULL) "
        "OR (origin <> 'discharge' AND discharged_on IS NULL))"
    )
    op.add_column("sip_cases", sa.Column("under_18", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    # each column carries its own constraint; dropping discharged_on first frees origin
    op.drop_column("sip_cases", "under_18")
    op.drop_column("sip_cases", "discharged_on")
    op.drop_column("sip_cases", "origin")

"""meeting chair; the invitation version an imported send already delivered

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25 09:00:00

``meetings.chair_contact_id``: the meeting's chair, whose principal is present by definition.
``invitations.sent_sequence``: the meeting's SEQUENCE an invitee already holds from a send made before
sipflows (an imported invitation with ``sent_at``), so no second REQUEST asks for an answer again.
Both are nullable additions: existing rows keep their meaning.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # inline REFERENCES: SQLite adds the column without rebuilding the table
    op.add_column(
        "meetings",
        sa.Column(
            "chair_contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id"),
            nullable=True,
        ),
        inline_references=True,
    )
    op.add_column("invitations", sa.Column("sent_sequence", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_column("sent_sequence")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_column("chair_contact_id")

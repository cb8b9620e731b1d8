"""initial register and notice ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:18:49.375039
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "municipal_unit",
                "region_unit",
                "forsakringskassan",
                "arbetsformedlingen",
                "school",
                "kriminalvarden",
                "police",
                "user_organisation",
                "other",
                name="org_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "principal",
            sa.Enum(
                "kommun", "region", name="principal", native_enum=False, create_constraint=True, length=32
            ),
            nullable=True,
        ),
        sa.Column("escalation_contact_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "sweep_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("judged_on", sa.Date(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("enqueued", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "closed_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organisation_id", "day", name="uq_closed_day"),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "person",
                "functional",
                name="contact_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column(
            "language",
            sa.Enum("sv", "en", name="language", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("escalation_contact_id", sa.Integer(), nullable=True),
        sa.Column("report_recipient", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["escalation_contact_id"], ["contacts.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index("ix_contacts_organisation", ["organisation_id"], unique=False)

    # organisations <-> contacts is a cycle: the organisation's escalation contact is added afterwards
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_org_escalation_contact", "contacts", ["escalation_contact_id"], ["id"], ondelete="SET NULL"
        )

    op.create_table(
        "sip_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("convener_org_id", sa.Integer(), nullable=False),
        sa.Column("convener_contact_id", sa.Integer(), nullable=False),
        sa.Column("coordinator_contact_id", sa.Integer(), nullable=True),
        sa.Column("individual_name", sa.String(length=200), nullable=True),
        sa.Column("personal_identity_number", sa.String(length=20), nullable=True),
        sa.Column("case_notes", sa.Text(), nullable=True),
        sa.Column("consent_given_on", sa.Date(), nullable=True),
        sa.Column("consent_withdrawn_on", sa.Date(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "identified",
                "offered",
                "active",
                "closed",
                name="case_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("identified_on", sa.Date(), nullable=False),
        sa.Column("offered_on", sa.Date(), nullable=True),
        sa.Column("activated_on", sa.Date(), nullable=True),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column(
            "closure_reason",
            sa.Enum(
                "need_met",
                "consent_withdrawn",
                "other",
                name="closure_reason",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("follow_up_due", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["convener_contact_id"],
            ["contacts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["convener_org_id"],
            ["organisations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["coordinator_contact_id"],
            ["contacts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
    )
    with op.batch_alter_table("sip_cases", schema=None) as batch_op:
        batch_op.create_index("ix_cases_convener_org", ["convener_org_id"], unique=False)
        batch_op.create_index("ix_cases_follow_up_due", ["follow_up_due"], unique=False)
        batch_op.create_index("ix_cases_status", ["status"], unique=False)

    op.create_table(
        "deviations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reported_by_contact_id", sa.Integer(), nullable=False),
        sa.Column("concerning_org_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "party_absent",
                "plan_not_followed",
                "documentation_late",
                "invitation_not_answered",
                "other",
                name="deviation_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "severity",
            sa.Enum("normal", "high", name="severity", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["sip_cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["concerning_org_id"],
            ["organisations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reported_by_contact_id"],
            ["contacts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    with op.batch_alter_table("deviations", schema=None) as batch_op:
        batch_op.create_index("ix_deviations_case", ["case_id"], unique=False)
        batch_op.create_index(
            "ix_deviations_open", ["resolved_at", "acknowledged_at", "reported_at"], unique=False
        )
        batch_op.create_index(
            "ix_deviations_unreplied", ["resolved_at", "replied_at", "reported_at"], unique=False
        )

    op.create_table(
        "meetings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "pre_meeting",
                "sip_meeting",
                "follow_up",
                name="meeting_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("digital_link", sa.String(length=500), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "held",
                "cancelled",
                name="meeting_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("documented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ical_uid", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name="ck_meeting_ends_after_start"),
        sa.ForeignKeyConstraint(["case_id"], ["sip_cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.UniqueConstraint("ical_uid"),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index("ix_meetings_case_kind", ["case_id", "kind"], unique=False)
        batch_op.create_index("ix_meetings_status_start", ["status", "starts_at"], unique=False)
        batch_op.create_index(
            "ix_meetings_status_documented_start",
            ["status", "documented_at", "kind", "starts_at"],
            unique=False,
        )

    op.create_table(
        "participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["sip_cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "contact_id", name="uq_participant"),
    )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index("ix_participants_contact", ["contact_id"], unique=False)

    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "answer",
            sa.Enum(
                "none",
                "accepted",
                "tentative",
                "declined",
                name="answer",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attended", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
        ),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("meeting_id", "contact_id", name="uq_invitation"),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invitations_answer_sent", ["answer", "sent_at", "meeting_id", "contact_id"], unique=False
        )
        batch_op.create_index("ix_invitations_contact", ["contact_id"], unique=False)

    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("meeting_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("ics", sa.Text(), nullable=True),
        sa.Column("ics_method", sa.String(length=16), nullable=True),
        sa.Column("ics_sequence", sa.Integer(), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sent",
                "failed",
                "dead",
                name="notice_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("external_id", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["sip_cases.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index("ix_notices_case", ["case_id"], unique=False)
        batch_op.create_index("ix_notices_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_notices_meeting_contact", ["meeting_id", "contact_id", "kind"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_meeting_contact")
        batch_op.drop_index("ix_notices_due")
        batch_op.drop_index("ix_notices_case")

    op.drop_table("notices")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_invitations_contact")
        batch_op.drop_index("ix_invitations_answer_sent")

    op.drop_table("invitations")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_contact")

    op.drop_table("participants")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_status_documented_start")
        batch_op.drop_index("ix_meetings_status_start")
        batch_op.drop_index("ix_meetings_case_kind")

    op.drop_table("meetings")
    with op.batch_alter_table("deviations", schema=None) as batch_op:
        batch_op.drop_index("ix_deviations_unreplied")
        batch_op.drop_index("ix_deviations_open")
        batch_op.drop_index("ix_deviations_case")

    op.drop_table("deviations")
    with op.batch_alter_table("sip_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_status")
        batch_op.drop_index("ix_cases_follow_up_due")
        batch_op.drop_index("ix_cases_convener_org")

    op.drop_table("sip_cases")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_organisation")

    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_org_escalation_contact", type_="foreignkey")
    op.drop_table("contacts")
    op.drop_table("closed_days")
    op.drop_table("sweep_runs")
    op.drop_table("organisations")

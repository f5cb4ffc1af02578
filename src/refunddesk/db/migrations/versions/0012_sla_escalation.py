"""SLA clocks and escalations

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import refunddesk.db.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = refunddesk.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "refund_clocks",
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("refund_id", sa.String(length=26), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("jurisdiction", sa.String(length=8), nullable=False),
        sa.Column("clocks", sa.JSON(), nullable=False),
        sa.Column("next_due_at", _AT, nullable=True),
        sa.Column("next_check_at", _AT, nullable=True),
        sa.Column("fired", sa.JSON(), nullable=False),
        sa.Column("breached_at", _AT, nullable=True),
        sa.Column("contacts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_contact_at", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "refund_id"],
            ["refunds.tenant_id", "refunds.id"],
            name=op.f("fk_refund_clocks_tenant_id_refund_id_refunds"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "refund_id", name=op.f("pk_refund_clocks")),
    )
    with op.batch_alter_table("refund_clocks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_refund_clocks_tenant_next_due", ["tenant_id", "next_due_at"], unique=False
        )
        batch_op.create_index(
            "ix_refund_clocks_tenant_next_check", ["tenant_id", "next_check_at"], unique=False
        )
        batch_op.create_index(
            "ix_refund_clocks_tenant_breached", ["tenant_id", "breached_at"], unique=False
        )

    op.create_table(
        "escalations",
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("refund_id", sa.String(length=26), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=26), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.Column("touched_at", _AT, nullable=False),
        sa.Column("escalate_at", _AT, nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_at", _AT, nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("note_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "refund_id"],
            ["refunds.tenant_id", "refunds.id"],
            name=op.f("fk_escalations_tenant_id_refund_id_refunds"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_escalations")),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index(
            "uq_escalations_tenant_refund_open",
            ["tenant_id", "refund_id"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch_op.create_index(
            "ix_escalations_tenant_refund", ["tenant_id", "refund_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_escalations_tenant_status_id", ["tenant_id", "status", "id"], unique=False
        )
        batch_op.create_index(
            "ix_escalations_tenant_escalate_at", ["tenant_id", "escalate_at"], unique=False
        )

    op.create_table(
        "escalation_notes",
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("escalation_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "escalation_id"],
            ["escalations.tenant_id", "escalations.id"],
            name=op.f("fk_escalation_notes_tenant_id_escalation_id_escalations"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_escalation_notes")),
    )
    with op.batch_alter_table("escalation_notes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_escalation_notes_tenant_escalation",
            ["tenant_id", "escalation_id", "at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("escalation_notes")
    op.drop_table("escalations")
    op.drop_table("refund_clocks")

"""fraud signals on orders, refunds and returns; risk scores; labels

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import refunddesk.db.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = refunddesk.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_ref", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("customer_since", UTC, nullable=True))
        batch_op.add_column(sa.Column("shipping_address", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("billing_address", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("ip_address", sa.String(length=45), nullable=True))
        batch_op.add_column(sa.Column("device_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("payment_fingerprint", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("payment_last4", sa.String(length=4), nullable=True))

    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weight_grams", sa.Integer(), nullable=True))

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_confirmation", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("risk_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("risk_level", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("risk_reasons", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("risk_model_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("risk_rules_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("risk_scored_at", UTC, nullable=True))
        batch_op.create_index(
            "ix_refunds_tenant_risk", ["tenant_id", "risk_level", "id"], unique=False
        )

    with op.batch_alter_table("return_authorizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("returned_weight_grams", sa.Integer(), nullable=True))

    op.create_table(
        "fraud_identity_keys",
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "order_id"],
            ["orders.tenant_id", "orders.id"],
            name=op.f("fk_fraud_identity_keys_tenant_id_order_id_orders"),
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "key_hash", "order_id", name=op.f("pk_fraud_identity_keys")
        ),
    )
    with op.batch_alter_table("fraud_identity_keys", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_order", ["tenant_id", "order_id"], unique=False
        )
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_customer", ["tenant_id", "customer_key"], unique=False
        )

    op.create_table(
        "fraud_labels",
        sa.Column("tenant_id", sa.String(length=26), nullable=False),
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("refund_id", sa.String(length=26), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "refund_id"],
            ["refunds.tenant_id", "refunds.id"],
            name=op.f("fk_fraud_labels_tenant_id_refund_id_refunds"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_fraud_labels")),
    )
    with op.batch_alter_table("fraud_labels", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fraud_labels_tenant_refund_at", ["tenant_id", "refund_id", "at"], unique=False
        )
        batch_op.create_index("ix_fraud_labels_tenant_at", ["tenant_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fraud_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_fraud_labels_tenant_at")
        batch_op.drop_index("ix_fraud_labels_tenant_refund_at")
    op.drop_table("fraud_labels")
    with op.batch_alter_table("fraud_identity_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_fraud_identity_keys_tenant_customer")
        batch_op.drop_index("ix_fraud_identity_keys_tenant_order")
    op.drop_table("fraud_identity_keys")
    with op.batch_alter_table("return_authorizations", schema=None) as batch_op:
        batch_op.drop_column("returned_weight_grams")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_tenant_risk")
        for column in (
            "risk_scored_at",
            "risk_rules_version",
            "risk_model_version",
            "risk_reasons",
            "risk_level",
            "risk_score",
            "delivery_confirmation",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_column("weight_grams")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        for column in (
            "payment_last4",
            "payment_fingerprint",
            "device_id",
            "ip_address",
            "billing_address",
            "shipping_address",
            "customer_since",
            "customer_ref",
        ):
            batch_op.drop_column(column)

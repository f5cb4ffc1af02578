"""covering indexes for a customer's history and identity keys (fraud features, policy)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-22 11:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Same names, wider: the lookups that used them still do, and now read no table rows.
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_tenant_order")
        batch_op.create_index(
            "ix_refunds_tenant_order",
            ["tenant_id", "order_id", "created_at", "status", "amount_minor"],
            unique=False,
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_tenant_customer_email")
        batch_op.create_index(
            "ix_orders_tenant_customer_email",
            ["tenant_id", "customer_email", "purchased_at", "id"],
            unique=False,
        )
    with op.batch_alter_table("fraud_identity_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_fraud_identity_keys_tenant_order")
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_order",
            ["tenant_id", "order_id", "key_hash", "kind"],
            unique=False,
        )
        batch_op.drop_index("ix_fraud_identity_keys_tenant_customer")
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_customer",
            ["tenant_id", "customer_key", "order_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_key_holder",
            ["tenant_id", "key_hash", "customer_key", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("fraud_identity_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_fraud_identity_keys_tenant_key_holder")
        batch_op.drop_index("ix_fraud_identity_keys_tenant_customer")
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_customer", ["tenant_id", "customer_key"], unique=False
        )
        batch_op.drop_index("ix_fraud_identity_keys_tenant_order")
        batch_op.create_index(
            "ix_fraud_identity_keys_tenant_order", ["tenant_id", "order_id"], unique=False
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_tenant_customer_email")
        batch_op.create_index(
            "ix_orders_tenant_customer_email", ["tenant_id", "customer_email"], unique=False
        )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_tenant_order")
        batch_op.create_index("ix_refunds_tenant_order", ["tenant_id", "order_id"], unique=False)

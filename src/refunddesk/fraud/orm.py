"""Fraud tables: identity keys written at order intake (for linking) and outcome labels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class IdentityKey(Base):
    """One identity signal of one order: kind (email, address, device, payment) and its hash.

    Orders that share a key_hash are linked; customer_key names the customer who placed the
    order (the retailer's customer id, else the lower-cased email), so a cluster of linked
    customers is two indexed lookups away.
    """

    __tablename__ = "fraud_identity_keys"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        # Covering what scoring reads, so no lookup touches a table row: an order's keys
        # (batch claims), a customer's orders (linked customers' history) ...
        Index("ix_fraud_identity_keys_tenant_order", "tenant_id", "order_id", "key_hash", "kind"),
        Index(
            "ix_fraud_identity_keys_tenant_customer",
            "tenant_id",
            "customer_key",
            "order_id",
            "created_at",
        ),
        # ... and a key's holders with when each first held it, in GROUP BY order (intake).
        Index(
            "ix_fraud_identity_keys_tenant_key_holder",
            "tenant_id",
            "key_hash",
            "customer_key",
            "created_at",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class FraudLabel(Base):
    """An outcome for a refund: fraud or legit, from an agent or a chargeback. Latest wins."""

    __tablename__ = "fraud_labels"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        Index("ix_fraud_labels_tenant_refund_at", "tenant_id", "refund_id", "at"),
        Index("ix_fraud_labels_tenant_at", "tenant_id", "at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    label: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]

"""Approvals as stored: who approved which refund, in which role, for how much."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKeyConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class Approval(Base):
    """One approver's yes; four-eyes refunds need two rows with different actors."""

    __tablename__ = "approvals"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        # The same approver twice never counts as two pairs of eyes.
        Index("uq_approvals_tenant_refund_actor", "tenant_id", "refund_id", "actor", unique=True),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
